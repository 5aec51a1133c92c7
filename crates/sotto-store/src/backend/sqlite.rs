//! SQLite backend: one database file in WAL mode with `synchronous=FULL`.
//!
//! * **Durability.** In WAL mode a commit appends the transaction to the `-wal` file; with
//!   `synchronous=FULL` SQLite fsyncs the WAL before the commit returns, so an acknowledged
//!   write survives a process kill *and* an OS crash or power loss. (`NORMAL` would survive a
//!   process kill but could lose the last commits on power loss — not acceptable for writes
//!   we acknowledge.) Checkpoints copy the WAL back into the main file with fsyncs of their
//!   own; a crash during a checkpoint is recovered from the WAL at the next open.
//! * **Concurrency.** One connection, used from tokio's blocking pool behind a mutex: SQLite
//!   has a single writer anyway, and every write transaction is `BEGIN IMMEDIATE`. One
//!   process per database file (the relay); for several relays use PostgreSQL.

#[path = "sqlite_passkeys.rs"]
mod passkeys;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{
    Backend, CurrentItem, PAIRING_COLUMNS, PAIRING_PURGE_AFTER_MS, R, RawPairing, apply_update,
    attach_blobs, check_advance, cut_by_bytes, migrations, pairing_from_raw, parse_kind,
    plan_write, to_i64, to_u64,
};
use crate::{
    AccountId, AccountUsage, Challenge, ChangePage, Credential, CredentialId, Item, ItemId,
    ItemWrite, KeyId, KeyRecord, NewCredential, PairingId, PairingSlot, PairingUpdate, Quota,
    Session, StoreError, WriteOutcome,
};

/// The SQLite backend. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct SqliteBackend {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file, sets WAL mode and `synchronous=FULL`,
    /// and applies pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> R<Self> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_sync(&p))
            .await
            .map_err(|e| StoreError::storage(format_args!("sqlite open task: {e}")))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection in tokio's blocking pool.
    async fn run<T, F>(&self, f: F) -> R<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> R<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` dropped its transaction (rolled back): the connection is fine.
            let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::storage(format_args!("sqlite task: {e}")))?
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed iff `f` returns `Ok`.
    async fn write<T, F>(&self, f: F) -> R<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> R<T> + Send + 'static,
    {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

fn open_sync(path: &Path) -> R<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::InvalidConfig(format!(
            "{}: SQLite refused WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync != 2 {
        return Err(StoreError::InvalidConfig(format!(
            "SQLite synchronous is {sync}, expected 2 (FULL)"
        )));
    }
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> R<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current > migrations::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: migrations::SCHEMA_VERSION,
        });
    }
    for (version, sql) in migrations::SQLITE.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            params![version, crate::unix_ms_now()],
        )?;
        tracing::info!(version, "sqlite: applied schema migration");
    }
    tx.commit()?;
    Ok(())
}

fn credential_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawCredential> {
    Ok(RawCredential {
        id: r.get(0)?,
        account: r.get(1)?,
        kind: r.get(2)?,
        public_key: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

struct RawCredential {
    id: Vec<u8>,
    account: Vec<u8>,
    kind: String,
    public_key: Vec<u8>,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl RawCredential {
    fn into_credential(self) -> R<Credential> {
        Ok(Credential {
            id: CredentialId::from_slice(&self.id)?,
            account: AccountId::from_slice(&self.account)?,
            kind: parse_kind(&self.kind)?,
            public_key: self.public_key,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

const CREDENTIAL_COLUMNS: &str = "id, account_id, kind, public_key, created_at, revoked_at";

fn pairing_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPairing> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn read_pairing(c: &Connection, slot: &PairingId) -> R<Option<PairingSlot>> {
    c.query_row(
        &format!("SELECT {PAIRING_COLUMNS} FROM pairing_slots WHERE id = ?1"),
        [&slot.0[..]],
        pairing_row,
    )
    .optional()?
    .map(pairing_from_raw)
    .transpose()
}

fn account_exists(tx: &Transaction<'_>, account: &AccountId) -> R<bool> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM accounts WHERE id = ?1",
            [&account.0[..]],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

impl Backend for SqliteBackend {
    async fn create_account(
        &self,
        account: AccountId,
        credential: NewCredential,
        now: i64,
    ) -> R<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO accounts (id, created_at) VALUES (?1, ?2)",
                params![&account.0[..], now],
            )?;
            tx.execute(
                "INSERT INTO credentials (id, account_id, kind, public_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &credential.id.0[..],
                    &account.0[..],
                    credential.kind.as_str(),
                    credential.public_key,
                    now
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn account(&self, account: AccountId) -> R<Option<AccountUsage>> {
        self.run(move |c| {
            let row = c
                .query_row(
                    "SELECT created_at, last_seq, used_bytes, item_count FROM accounts
                     WHERE id = ?1",
                    [&account.0[..]],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(created_at, seq, bytes, count)| {
                Ok(AccountUsage {
                    created_at,
                    last_seq: to_u64(seq)?,
                    used_bytes: to_u64(bytes)?,
                    item_count: to_u64(count)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn add_credential(
        &self,
        account: AccountId,
        credential: NewCredential,
        max_active: u64,
        now: i64,
    ) -> R<()> {
        self.write(move |tx| {
            if !account_exists(tx, &account)? {
                return Err(StoreError::UnknownAccount);
            }
            let duplicate = tx
                .query_row(
                    "SELECT 1 FROM credentials
                     WHERE account_id = ?1 AND kind = ?2 AND public_key = ?3",
                    params![
                        &account.0[..],
                        credential.kind.as_str(),
                        credential.public_key
                    ],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            // A client-chosen id (pairing) may collide with any account's credential.
            let id_taken = tx
                .query_row(
                    "SELECT 1 FROM credentials WHERE id = ?1",
                    [&credential.id.0[..]],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if duplicate || id_taken {
                return Err(StoreError::DuplicateCredential);
            }
            let active: i64 = tx.query_row(
                "SELECT COUNT(*) FROM credentials WHERE account_id = ?1 AND revoked_at IS NULL",
                [&account.0[..]],
                |r| r.get(0),
            )?;
            if to_u64(active)? >= max_active {
                return Err(StoreError::TooManyCredentials { limit: max_active });
            }
            tx.execute(
                "INSERT INTO credentials (id, account_id, kind, public_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &credential.id.0[..],
                    &account.0[..],
                    credential.kind.as_str(),
                    credential.public_key,
                    now
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn credential(
        &self,
        account: AccountId,
        credential: CredentialId,
    ) -> R<Option<Credential>> {
        self.run(move |c| {
            c.query_row(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                     WHERE id = ?1 AND account_id = ?2"
                ),
                params![&credential.0[..], &account.0[..]],
                credential_from_row,
            )
            .optional()?
            .map(RawCredential::into_credential)
            .transpose()
        })
        .await
    }

    async fn credentials(&self, account: AccountId) -> R<Vec<Credential>> {
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE account_id = ?1
                 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([&account.0[..]], credential_from_row)?;
            rows.map(|r| r?.into_credential()).collect()
        })
        .await
    }

    async fn revoke_credential(
        &self,
        account: AccountId,
        credential: CredentialId,
        now: i64,
    ) -> R<()> {
        self.write(move |tx| {
            let revoked: Option<Option<i64>> = tx
                .query_row(
                    "SELECT revoked_at FROM credentials WHERE id = ?1 AND account_id = ?2",
                    params![&credential.0[..], &account.0[..]],
                    |r| r.get(0),
                )
                .optional()?;
            match revoked {
                None => return Err(StoreError::UnknownCredential),
                Some(Some(_)) => return Err(StoreError::CredentialRevoked),
                Some(None) => {}
            }
            let active: i64 = tx.query_row(
                "SELECT COUNT(*) FROM credentials WHERE account_id = ?1 AND revoked_at IS NULL",
                [&account.0[..]],
                |r| r.get(0),
            )?;
            if active <= 1 {
                return Err(StoreError::LastCredential);
            }
            tx.execute(
                "UPDATE credentials SET revoked_at = ?1 WHERE id = ?2",
                params![now, &credential.0[..]],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE credential_id = ?1",
                [&credential.0[..]],
            )?;
            tx.execute(
                "DELETE FROM challenges WHERE credential_id = ?1",
                [&credential.0[..]],
            )?;
            Ok(())
        })
        .await
    }

    async fn insert_challenge(
        &self,
        challenge: Challenge,
        max_outstanding: u64,
        now: i64,
    ) -> R<()> {
        let keep = to_i64(max_outstanding.max(1) - 1)?;
        self.write(move |tx| {
            tx.execute("DELETE FROM challenges WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "DELETE FROM challenges WHERE credential_id = ?1 AND challenge NOT IN (
                     SELECT challenge FROM challenges WHERE credential_id = ?1
                     ORDER BY expires_at DESC, challenge LIMIT ?2)",
                params![&challenge.credential.0[..], keep],
            )?;
            tx.execute(
                "INSERT INTO challenges (challenge, account_id, credential_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    &challenge.challenge[..],
                    &challenge.account.0[..],
                    &challenge.credential.0[..],
                    challenge.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_challenge(&self, challenge: [u8; 32]) -> R<Option<Challenge>> {
        self.write(move |tx| {
            let row = tx
                .query_row(
                    "DELETE FROM challenges WHERE challenge = ?1
                     RETURNING account_id, credential_id, expires_at",
                    [&challenge[..]],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(a, c, expires_at)| {
                Ok(Challenge {
                    challenge,
                    account: AccountId::from_slice(&a)?,
                    credential: CredentialId::from_slice(&c)?,
                    expires_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn insert_session(&self, session: Session, now: i64) -> R<()> {
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "INSERT INTO sessions (token_hash, account_id, credential_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    &session.token_hash[..],
                    &session.account.0[..],
                    &session.credential.0[..],
                    session.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: [u8; 32]) -> R<Option<Session>> {
        self.run(move |c| {
            let row = c
                .query_row(
                    "SELECT s.account_id, s.credential_id, s.expires_at
                     FROM sessions s JOIN credentials c ON c.id = s.credential_id
                     WHERE s.token_hash = ?1 AND c.revoked_at IS NULL",
                    [&token_hash[..]],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(a, cr, expires_at)| {
                Ok(Session {
                    token_hash,
                    account: AccountId::from_slice(&a)?,
                    credential: CredentialId::from_slice(&cr)?,
                    expires_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> R<()> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [&token_hash[..]],
            )?;
            Ok(())
        })
        .await
    }

    async fn put_key(
        &self,
        account: AccountId,
        key: KeyId,
        expected_version: u64,
        blob: Vec<u8>,
        max_keys: u64,
        now: i64,
    ) -> R<u64> {
        self.write(move |tx| {
            if !account_exists(tx, &account)? {
                return Err(StoreError::UnknownAccount);
            }
            let current: Option<i64> = tx
                .query_row(
                    "SELECT version FROM wrapped_keys WHERE account_id = ?1 AND key_id = ?2",
                    params![&account.0[..], key.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let current_version = current.map(to_u64).transpose()?.unwrap_or(0);
            if expected_version != current_version {
                return Err(StoreError::VersionConflict {
                    current: current_version,
                    deleted: false,
                });
            }
            if current.is_none() {
                let count: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM wrapped_keys WHERE account_id = ?1",
                    [&account.0[..]],
                    |r| r.get(0),
                )?;
                if to_u64(count)? >= max_keys {
                    return Err(StoreError::TooManyKeys { limit: max_keys });
                }
            }
            let version = current_version + 1;
            tx.execute(
                "INSERT INTO wrapped_keys (account_id, key_id, version, blob, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account_id, key_id) DO UPDATE SET
                     version = excluded.version, blob = excluded.blob,
                     updated_at = excluded.updated_at",
                params![&account.0[..], key.as_str(), to_i64(version)?, blob, now],
            )?;
            Ok(version)
        })
        .await
    }

    async fn key(&self, account: AccountId, key: KeyId) -> R<Option<KeyRecord>> {
        self.run(move |c| {
            let row = c
                .query_row(
                    "SELECT version, blob, updated_at FROM wrapped_keys
                     WHERE account_id = ?1 AND key_id = ?2",
                    params![&account.0[..], key.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(version, blob, updated_at)| {
                Ok(KeyRecord {
                    id: key,
                    version: to_u64(version)?,
                    blob,
                    updated_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn keys(&self, account: AccountId) -> R<Vec<KeyRecord>> {
        self.run(move |c| {
            let mut stmt = c.prepare(
                "SELECT key_id, version, blob, updated_at FROM wrapped_keys
                 WHERE account_id = ?1 ORDER BY key_id",
            )?;
            let rows = stmt.query_map([&account.0[..]], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            rows.map(|row| {
                let (id, version, blob, updated_at) = row?;
                Ok(KeyRecord {
                    id: KeyId::parse(&id)?,
                    version: to_u64(version)?,
                    blob,
                    updated_at,
                })
            })
            .collect()
        })
        .await
    }

    async fn delete_key(&self, account: AccountId, key: KeyId, expected_version: u64) -> R<()> {
        self.write(move |tx| {
            let current: Option<i64> = tx
                .query_row(
                    "SELECT version FROM wrapped_keys WHERE account_id = ?1 AND key_id = ?2",
                    params![&account.0[..], key.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(current) = current.map(to_u64).transpose()? else {
                return Err(StoreError::KeyNotFound);
            };
            if current != expected_version {
                return Err(StoreError::VersionConflict {
                    current,
                    deleted: false,
                });
            }
            tx.execute(
                "DELETE FROM wrapped_keys WHERE account_id = ?1 AND key_id = ?2",
                params![&account.0[..], key.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn write_item(
        &self,
        account: AccountId,
        item: ItemId,
        expected_version: u64,
        write: ItemWrite,
        quota: Quota,
        now: i64,
    ) -> R<WriteOutcome> {
        self.write(move |tx| {
            let row = tx
                .query_row(
                    "UPDATE accounts SET last_seq = last_seq + 1 WHERE id = ?1
                     RETURNING last_seq, used_bytes, item_count",
                    [&account.0[..]],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            let Some((seq, used_bytes, item_count)) = row else {
                return Err(StoreError::UnknownAccount);
            };
            let current = tx
                .query_row(
                    "SELECT version, deleted, size FROM items
                     WHERE account_id = ?1 AND item_id = ?2",
                    params![&account.0[..], item.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?
                .map(|(v, deleted, size)| {
                    Ok::<_, StoreError>(CurrentItem {
                        version: to_u64(v)?,
                        deleted,
                        size: to_u64(size)?,
                    })
                })
                .transpose()?;
            let plan = plan_write(
                current,
                expected_version,
                write,
                to_u64(used_bytes)?,
                to_u64(item_count)?,
                quota,
            )?;
            tx.execute(
                "INSERT INTO items
                     (account_id, item_id, version, seq, deleted, size, blob, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (account_id, item_id) DO UPDATE SET
                     version = excluded.version, seq = excluded.seq,
                     deleted = excluded.deleted, size = excluded.size,
                     blob = excluded.blob, updated_at = excluded.updated_at",
                params![
                    &account.0[..],
                    item.as_str(),
                    to_i64(plan.version)?,
                    seq,
                    plan.deleted,
                    to_i64(plan.blob.len() as u64)?,
                    plan.blob,
                    now
                ],
            )?;
            tx.execute(
                "UPDATE accounts SET used_bytes = ?1, item_count = ?2 WHERE id = ?3",
                params![
                    to_i64(plan.used_bytes)?,
                    to_i64(plan.item_count)?,
                    &account.0[..]
                ],
            )?;
            Ok(WriteOutcome {
                version: plan.version,
                seq: to_u64(seq)?,
            })
        })
        .await
    }

    async fn item(&self, account: AccountId, item: ItemId) -> R<Option<Item>> {
        self.run(move |c| {
            let row = c
                .query_row(
                    "SELECT version, seq, deleted, size, blob, updated_at FROM items
                     WHERE account_id = ?1 AND item_id = ?2",
                    params![&account.0[..], item.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Vec<u8>>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(version, seq, deleted, size, blob, updated_at)| {
                Ok(Item {
                    id: item,
                    version: to_u64(version)?,
                    seq: to_u64(seq)?,
                    deleted,
                    size: to_u64(size)?,
                    blob,
                    updated_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn changes(
        &self,
        account: AccountId,
        since: u64,
        limit: u32,
        with_blobs: bool,
        max_blob_bytes: u64,
    ) -> R<ChangePage> {
        let since_i = to_i64(since)?;
        self.run(move |c| {
            // One read transaction: the metadata and blob queries see the same snapshot.
            let tx = c.transaction()?;
            let mut items = Vec::new();
            {
                let mut stmt = tx.prepare(
                    "SELECT item_id, version, seq, deleted, size, updated_at FROM items
                     WHERE account_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(
                    params![&account.0[..], since_i, i64::from(limit) + 1],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    },
                )?;
                for row in rows {
                    let (id, version, seq, deleted, size, updated_at) = row?;
                    items.push(Item {
                        id: ItemId::parse(&id)?,
                        version: to_u64(version)?,
                        seq: to_u64(seq)?,
                        deleted,
                        size: to_u64(size)?,
                        blob: Vec::new(),
                        updated_at,
                    });
                }
            }
            let mut more = items.len() > limit as usize;
            items.truncate(limit as usize);
            if with_blobs && !items.is_empty() {
                let n = cut_by_bytes(items.iter().map(|i| i.size), max_blob_bytes);
                more |= n < items.len();
                items.truncate(n);
                let last = to_i64(items[n - 1].seq)?;
                let mut stmt = tx.prepare(
                    "SELECT seq, blob FROM items
                     WHERE account_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map(params![&account.0[..], since_i, last], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                attach_blobs(&mut items, rows)?;
            }
            Ok(ChangePage { items, more })
        })
        .await
    }

    async fn create_pairing(&self, slot: PairingSlot, max_pending: u64, now: i64) -> R<()> {
        self.write(move |tx| {
            if !account_exists(tx, &slot.account)? {
                return Err(StoreError::UnknownAccount);
            }
            tx.execute(
                "DELETE FROM pairing_slots WHERE expires_at < ?1",
                [now.saturating_sub(PAIRING_PURGE_AFTER_MS)],
            )?;
            let pending: i64 = tx.query_row(
                "SELECT COUNT(*) FROM pairing_slots WHERE account_id = ?1 AND expires_at > ?2
                 AND state IN ('requested', 'responded', 'confirmed', 'aborted')",
                params![&slot.account.0[..], now],
                |r| r.get(0),
            )?;
            if to_u64(pending)? >= max_pending {
                return Err(StoreError::TooManyPairings { limit: max_pending });
            }
            tx.execute(
                "INSERT INTO pairing_slots (id, account_id, public_key, name, request, state,
                 created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    &slot.id.0[..],
                    &slot.account.0[..],
                    slot.public_key,
                    slot.name,
                    slot.request,
                    slot.state.as_str(),
                    slot.created_at,
                    slot.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn pairing(&self, slot: PairingId) -> R<Option<PairingSlot>> {
        self.run(move |c| read_pairing(c, &slot)).await
    }

    async fn pairings(&self, account: AccountId, now: i64) -> R<Vec<PairingSlot>> {
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {PAIRING_COLUMNS} FROM pairing_slots
                 WHERE account_id = ?1 AND expires_at > ?2 ORDER BY created_at, id"
            ))?;
            let rows = stmt
                .query_map(params![&account.0[..], now], pairing_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(pairing_from_raw).collect()
        })
        .await
    }

    async fn advance_pairing(
        &self,
        slot: PairingId,
        update: PairingUpdate,
        now: i64,
    ) -> R<PairingSlot> {
        self.write(move |tx| {
            let current = read_pairing(tx, &slot)?.ok_or(StoreError::PairingNotFound)?;
            check_advance(&current, &update, now)?;
            let next = apply_update(current, update);
            tx.execute(
                "UPDATE pairing_slots SET state = ?2, responder_id = ?3, response = ?4,
                 confirm = ?5 WHERE id = ?1",
                params![
                    &slot.0[..],
                    next.state.as_str(),
                    next.responder.map(|r| r.0.to_vec()),
                    next.response,
                    next.confirm
                ],
            )?;
            Ok(next)
        })
        .await
    }
}
