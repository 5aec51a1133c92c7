//! PostgreSQL backend, for deployments with more than one relay.
//!
//! * **Durability.** Every connection is opened with `-c synchronous_commit=on`, so a commit
//!   returns only after its WAL record is flushed to disk, whatever the server's default.
//!   At start the backend warns if the server runs with `fsync=off` (then nothing is
//!   durable).
//! * **Concurrency.** A pool of connections (deadpool). Every write transaction first locks
//!   the account's row (`UPDATE … RETURNING` or `SELECT … FOR UPDATE`), so an account's
//!   writes are serialised across connections and relays while different accounts proceed in
//!   parallel; READ COMMITTED is enough under that lock. Challenges are taken with
//!   `DELETE … RETURNING`, so each is used once even across relays.
//! * **No TLS.** Connect over loopback, a Unix socket or a private network; the database only
//!   ever holds ciphertext, but credentials and timing still deserve a private link.

#[path = "postgres_passkeys.rs"]
mod passkeys;

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::{
    Backend, CurrentItem, PAIRING_COLUMNS, PAIRING_PURGE_AFTER_MS, R, apply_update, attach_blobs,
    check_advance, cut_by_bytes, migrations, pairing_from_raw, parse_kind, plan_write, to_i64,
    to_u64,
};
use crate::{
    AccountId, AccountUsage, Challenge, ChangePage, Credential, CredentialId, Item, ItemId,
    ItemWrite, KeyId, KeyRecord, NewCredential, PairingId, PairingSlot, PairingUpdate, Quota,
    Session, StoreError, WriteOutcome,
};

/// Arbitrary constant for the advisory lock that serialises migrations across relays.
const MIGRATION_LOCK: i64 = 0x5077_0570_0000_0001;

/// The PostgreSQL backend. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Pool,
    schema: Option<String>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Checks a schema name: 1 to 63 characters of `a-z 0-9 _`, not starting with a digit.
pub fn validate_schema_name(schema: &str) -> R<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidConfig(format!(
            "PostgreSQL schema name {schema:?} must be 1-63 characters of [a-z0-9_], not starting with a digit"
        )))
    }
}

impl PostgresBackend {
    /// Connects to `url` (a libpq-style URL or `key=value` string, e.g.
    /// `postgresql://user@127.0.0.1:5432/sotto`), optionally inside `schema` (created if
    /// missing, for several stores in one database), with at most `pool_size` connections,
    /// and applies pending migrations.
    pub async fn connect(url: &str, schema: Option<&str>, pool_size: usize) -> R<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::InvalidConfig(format!("PostgreSQL URL: {e}")))?;
        let mut options = config.get_options().unwrap_or_default().to_owned();
        options.push_str(" -c synchronous_commit=on");
        if let Some(schema) = schema {
            validate_schema_name(schema)?;
            options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(options.trim());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::InvalidConfig(format!("PostgreSQL pool: {e}")))?;
        let backend = Self {
            pool,
            schema: schema.map(str::to_owned),
        };
        let mut client = backend.client().await?;
        migrate(&mut client, schema).await?;
        let fsync: String = client.query_one("SHOW fsync", &[]).await?.try_get(0)?;
        if fsync != "on" {
            tracing::warn!(
                fsync,
                "postgres: the server runs with fsync off; acknowledged writes are NOT durable"
            );
        }
        Ok(backend)
    }

    async fn client(&self) -> R<Object> {
        Ok(self.pool.get().await?)
    }
}

async fn migrate(client: &mut Object, schema: Option<&str>) -> R<()> {
    let tx = client.transaction().await?;
    // Several relays may start at once: one migrates, the others wait and then see it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    if let Some(schema) = schema {
        // The name was validated: [a-z0-9_] only.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    if current > migrations::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: migrations::SCHEMA_VERSION,
        });
    }
    for (version, sql) in migrations::POSTGRES.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::unix_ms_now()],
        )
        .await?;
        tracing::info!(version, "postgres: applied schema migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Locks the account row for the rest of the transaction; `false` if there is no such account.
async fn lock_account(tx: &impl GenericClient, account: &AccountId) -> R<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            &[&&account.0[..]],
        )
        .await?
        .is_some())
}

fn pairing_row(row: &Row) -> R<PairingSlot> {
    pairing_from_raw((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
        row.try_get(7)?,
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
    ))
}

const CREDENTIAL_COLUMNS: &str = "id, account_id, kind, public_key, created_at, revoked_at";

fn credential_from_row(row: &Row) -> R<Credential> {
    Ok(Credential {
        id: CredentialId::from_slice(row.try_get::<_, &[u8]>(0)?)?,
        account: AccountId::from_slice(row.try_get::<_, &[u8]>(1)?)?,
        kind: parse_kind(row.try_get::<_, &str>(2)?)?,
        public_key: row.try_get(3)?,
        created_at: row.try_get(4)?,
        revoked_at: row.try_get(5)?,
    })
}

impl Backend for PostgresBackend {
    async fn create_account(
        &self,
        account: AccountId,
        credential: NewCredential,
        now: i64,
    ) -> R<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO accounts (id, created_at) VALUES ($1, $2)",
            &[&&account.0[..], &now],
        )
        .await?;
        tx.execute(
            "INSERT INTO credentials (id, account_id, kind, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &&credential.id.0[..],
                &&account.0[..],
                &credential.kind.as_str(),
                &credential.public_key,
                &now,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn account(&self, account: AccountId) -> R<Option<AccountUsage>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT created_at, last_seq, used_bytes, item_count FROM accounts WHERE id = $1",
                &[&&account.0[..]],
            )
            .await?;
        row.map(|r| {
            Ok(AccountUsage {
                created_at: r.try_get(0)?,
                last_seq: to_u64(r.try_get(1)?)?,
                used_bytes: to_u64(r.try_get(2)?)?,
                item_count: to_u64(r.try_get(3)?)?,
            })
        })
        .transpose()
    }

    async fn add_credential(
        &self,
        account: AccountId,
        credential: NewCredential,
        max_active: u64,
        now: i64,
    ) -> R<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !lock_account(&tx, &account).await? {
            return Err(StoreError::UnknownAccount);
        }
        let duplicate = tx
            .query_opt(
                "SELECT 1 FROM credentials
                 WHERE account_id = $1 AND kind = $2 AND public_key = $3",
                &[
                    &&account.0[..],
                    &credential.kind.as_str(),
                    &credential.public_key,
                ],
            )
            .await?
            .is_some();
        // A client-chosen id (pairing) may collide with any account's credential.
        let id_taken = tx
            .query_opt(
                "SELECT 1 FROM credentials WHERE id = $1",
                &[&&credential.id.0[..]],
            )
            .await?
            .is_some();
        if duplicate || id_taken {
            return Err(StoreError::DuplicateCredential);
        }
        let active: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM credentials WHERE account_id = $1 AND revoked_at IS NULL",
                &[&&account.0[..]],
            )
            .await?
            .try_get(0)?;
        if to_u64(active)? >= max_active {
            return Err(StoreError::TooManyCredentials { limit: max_active });
        }
        tx.execute(
            "INSERT INTO credentials (id, account_id, kind, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &&credential.id.0[..],
                &&account.0[..],
                &credential.kind.as_str(),
                &credential.public_key,
                &now,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn credential(
        &self,
        account: AccountId,
        credential: CredentialId,
    ) -> R<Option<Credential>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                     WHERE id = $1 AND account_id = $2"
                ),
                &[&&credential.0[..], &&account.0[..]],
            )
            .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn credentials(&self, account: AccountId) -> R<Vec<Credential>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE account_id = $1
                     ORDER BY created_at, id"
                ),
                &[&&account.0[..]],
            )
            .await?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn revoke_credential(
        &self,
        account: AccountId,
        credential: CredentialId,
        now: i64,
    ) -> R<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !lock_account(&tx, &account).await? {
            return Err(StoreError::UnknownCredential);
        }
        let row = tx
            .query_opt(
                "SELECT revoked_at FROM credentials WHERE id = $1 AND account_id = $2",
                &[&&credential.0[..], &&account.0[..]],
            )
            .await?;
        match row {
            None => return Err(StoreError::UnknownCredential),
            Some(r) if r.try_get::<_, Option<i64>>(0)?.is_some() => {
                return Err(StoreError::CredentialRevoked);
            }
            Some(_) => {}
        }
        let active: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM credentials WHERE account_id = $1 AND revoked_at IS NULL",
                &[&&account.0[..]],
            )
            .await?
            .try_get(0)?;
        if active <= 1 {
            return Err(StoreError::LastCredential);
        }
        tx.execute(
            "UPDATE credentials SET revoked_at = $1 WHERE id = $2",
            &[&now, &&credential.0[..]],
        )
        .await?;
        tx.execute(
            "DELETE FROM sessions WHERE credential_id = $1",
            &[&&credential.0[..]],
        )
        .await?;
        tx.execute(
            "DELETE FROM challenges WHERE credential_id = $1",
            &[&&credential.0[..]],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_challenge(
        &self,
        challenge: Challenge,
        max_outstanding: u64,
        now: i64,
    ) -> R<()> {
        let keep = to_i64(max_outstanding.max(1) - 1)?;
        let client = self.client().await?;
        // Housekeeping is best effort and outside the insert: concurrent purges on several
        // relays must never fail an auth request.
        if let Err(e) = client
            .execute("DELETE FROM challenges WHERE expires_at <= $1", &[&now])
            .await
        {
            tracing::warn!(error = %e, "postgres: purging expired challenges failed");
        }
        if let Err(e) = client
            .execute(
                "DELETE FROM challenges WHERE credential_id = $1 AND challenge NOT IN (
                     SELECT challenge FROM challenges WHERE credential_id = $1
                     ORDER BY expires_at DESC, challenge LIMIT $2)",
                &[&&challenge.credential.0[..], &keep],
            )
            .await
        {
            tracing::warn!(error = %e, "postgres: trimming outstanding challenges failed");
        }
        client
            .execute(
                "INSERT INTO challenges (challenge, account_id, credential_id, expires_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&challenge.challenge[..],
                    &&challenge.account.0[..],
                    &&challenge.credential.0[..],
                    &challenge.expires_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn take_challenge(&self, challenge: [u8; 32]) -> R<Option<Challenge>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM challenges WHERE challenge = $1
                 RETURNING account_id, credential_id, expires_at",
                &[&&challenge[..]],
            )
            .await?;
        row.map(|r| {
            Ok(Challenge {
                challenge,
                account: AccountId::from_slice(r.try_get::<_, &[u8]>(0)?)?,
                credential: CredentialId::from_slice(r.try_get::<_, &[u8]>(1)?)?,
                expires_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn insert_session(&self, session: Session, now: i64) -> R<()> {
        let client = self.client().await?;
        if let Err(e) = client
            .execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
            .await
        {
            tracing::warn!(error = %e, "postgres: purging expired sessions failed");
        }
        client
            .execute(
                "INSERT INTO sessions (token_hash, account_id, credential_id, expires_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&session.token_hash[..],
                    &&session.account.0[..],
                    &&session.credential.0[..],
                    &session.expires_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn session(&self, token_hash: [u8; 32]) -> R<Option<Session>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT s.account_id, s.credential_id, s.expires_at
                 FROM sessions s JOIN credentials c ON c.id = s.credential_id
                 WHERE s.token_hash = $1 AND c.revoked_at IS NULL",
                &[&&token_hash[..]],
            )
            .await?;
        row.map(|r| {
            Ok(Session {
                token_hash,
                account: AccountId::from_slice(r.try_get::<_, &[u8]>(0)?)?,
                credential: CredentialId::from_slice(r.try_get::<_, &[u8]>(1)?)?,
                expires_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> R<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sessions WHERE token_hash = $1",
                &[&&token_hash[..]],
            )
            .await?;
        Ok(())
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !lock_account(&tx, &account).await? {
            return Err(StoreError::UnknownAccount);
        }
        let current: Option<i64> = tx
            .query_opt(
                "SELECT version FROM wrapped_keys WHERE account_id = $1 AND key_id = $2",
                &[&&account.0[..], &key.as_str()],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let current_version = current.map(to_u64).transpose()?.unwrap_or(0);
        if expected_version != current_version {
            return Err(StoreError::VersionConflict {
                current: current_version,
                deleted: false,
            });
        }
        if current.is_none() {
            let count: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM wrapped_keys WHERE account_id = $1",
                    &[&&account.0[..]],
                )
                .await?
                .try_get(0)?;
            if to_u64(count)? >= max_keys {
                return Err(StoreError::TooManyKeys { limit: max_keys });
            }
        }
        let version = current_version + 1;
        tx.execute(
            "INSERT INTO wrapped_keys (account_id, key_id, version, blob, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account_id, key_id) DO UPDATE SET
                 version = EXCLUDED.version, blob = EXCLUDED.blob,
                 updated_at = EXCLUDED.updated_at",
            &[
                &&account.0[..],
                &key.as_str(),
                &to_i64(version)?,
                &blob,
                &now,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn key(&self, account: AccountId, key: KeyId) -> R<Option<KeyRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT version, blob, updated_at FROM wrapped_keys
                 WHERE account_id = $1 AND key_id = $2",
                &[&&account.0[..], &key.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(KeyRecord {
                id: key,
                version: to_u64(r.try_get(0)?)?,
                blob: r.try_get(1)?,
                updated_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn keys(&self, account: AccountId) -> R<Vec<KeyRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key_id, version, blob, updated_at FROM wrapped_keys
                 WHERE account_id = $1 ORDER BY key_id",
                &[&&account.0[..]],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyRecord {
                    id: KeyId::parse(r.try_get::<_, &str>(0)?)?,
                    version: to_u64(r.try_get(1)?)?,
                    blob: r.try_get(2)?,
                    updated_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn delete_key(&self, account: AccountId, key: KeyId, expected_version: u64) -> R<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !lock_account(&tx, &account).await? {
            return Err(StoreError::KeyNotFound);
        }
        let current: Option<i64> = tx
            .query_opt(
                "SELECT version FROM wrapped_keys WHERE account_id = $1 AND key_id = $2",
                &[&&account.0[..], &key.as_str()],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
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
            "DELETE FROM wrapped_keys WHERE account_id = $1 AND key_id = $2",
            &[&&account.0[..], &key.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Takes the account row lock: the account's writers queue here, one at a time.
        let Some(row) = tx
            .query_opt(
                "UPDATE accounts SET last_seq = last_seq + 1 WHERE id = $1
                 RETURNING last_seq, used_bytes, item_count",
                &[&&account.0[..]],
            )
            .await?
        else {
            return Err(StoreError::UnknownAccount);
        };
        let seq: i64 = row.try_get(0)?;
        let used_bytes: i64 = row.try_get(1)?;
        let item_count: i64 = row.try_get(2)?;
        let current = tx
            .query_opt(
                "SELECT version, deleted, size FROM items WHERE account_id = $1 AND item_id = $2",
                &[&&account.0[..], &item.as_str()],
            )
            .await?
            .map(|r| {
                Ok::<_, StoreError>(CurrentItem {
                    version: to_u64(r.try_get(0)?)?,
                    deleted: r.try_get(1)?,
                    size: to_u64(r.try_get(2)?)?,
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
            "INSERT INTO items (account_id, item_id, version, seq, deleted, size, blob, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (account_id, item_id) DO UPDATE SET
                 version = EXCLUDED.version, seq = EXCLUDED.seq, deleted = EXCLUDED.deleted,
                 size = EXCLUDED.size, blob = EXCLUDED.blob, updated_at = EXCLUDED.updated_at",
            &[
                &&account.0[..],
                &item.as_str(),
                &to_i64(plan.version)?,
                &seq,
                &plan.deleted,
                &to_i64(plan.blob.len() as u64)?,
                &plan.blob,
                &now,
            ],
        )
        .await?;
        tx.execute(
            "UPDATE accounts SET used_bytes = $1, item_count = $2 WHERE id = $3",
            &[
                &to_i64(plan.used_bytes)?,
                &to_i64(plan.item_count)?,
                &&account.0[..],
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(WriteOutcome {
            version: plan.version,
            seq: to_u64(seq)?,
        })
    }

    async fn item(&self, account: AccountId, item: ItemId) -> R<Option<Item>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT version, seq, deleted, size, blob, updated_at FROM items
                 WHERE account_id = $1 AND item_id = $2",
                &[&&account.0[..], &item.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(Item {
                id: item,
                version: to_u64(r.try_get(0)?)?,
                seq: to_u64(r.try_get(1)?)?,
                deleted: r.try_get(2)?,
                size: to_u64(r.try_get(3)?)?,
                blob: r.try_get(4)?,
                updated_at: r.try_get(5)?,
            })
        })
        .transpose()
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
        let mut client = self.client().await?;
        // One snapshot for the metadata and the blob query.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rows = tx
            .query(
                "SELECT item_id, version, seq, deleted, size, updated_at FROM items
                 WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&&account.0[..], &since_i, &(i64::from(limit) + 1)],
            )
            .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(Item {
                    id: ItemId::parse(r.try_get::<_, &str>(0)?)?,
                    version: to_u64(r.try_get(1)?)?,
                    seq: to_u64(r.try_get(2)?)?,
                    deleted: r.try_get(3)?,
                    size: to_u64(r.try_get(4)?)?,
                    blob: Vec::new(),
                    updated_at: r.try_get(5)?,
                })
            })
            .collect::<R<Vec<_>>>()?;
        let mut more = items.len() > limit as usize;
        items.truncate(limit as usize);
        if with_blobs && !items.is_empty() {
            let n = cut_by_bytes(items.iter().map(|i| i.size), max_blob_bytes);
            more |= n < items.len();
            items.truncate(n);
            let last = to_i64(items[n - 1].seq)?;
            let rows = tx
                .query(
                    "SELECT seq, blob FROM items
                     WHERE account_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                    &[&&account.0[..], &since_i, &last],
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<R<Vec<_>>>()?;
            attach_blobs(&mut items, rows)?;
        }
        tx.commit().await?;
        Ok(ChangePage { items, more })
    }

    async fn create_pairing(&self, slot: PairingSlot, max_pending: u64, now: i64) -> R<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The account's row lock serialises the pending count with the insert.
        if !lock_account(&tx, &slot.account).await? {
            return Err(StoreError::UnknownAccount);
        }
        tx.execute(
            "DELETE FROM pairing_slots WHERE expires_at < $1",
            &[&now.saturating_sub(PAIRING_PURGE_AFTER_MS)],
        )
        .await?;
        let pending: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM pairing_slots WHERE account_id = $1 AND expires_at > $2
                 AND state IN ('requested', 'responded', 'confirmed', 'aborted')",
                &[&&slot.account.0[..], &now],
            )
            .await?
            .try_get(0)?;
        if to_u64(pending)? >= max_pending {
            return Err(StoreError::TooManyPairings { limit: max_pending });
        }
        tx.execute(
            "INSERT INTO pairing_slots (id, account_id, public_key, name, request, state,
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &&slot.id.0[..],
                &&slot.account.0[..],
                &slot.public_key,
                &slot.name,
                &slot.request,
                &slot.state.as_str(),
                &slot.created_at,
                &slot.expires_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pairing(&self, slot: PairingId) -> R<Option<PairingSlot>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {PAIRING_COLUMNS} FROM pairing_slots WHERE id = $1"),
                &[&&slot.0[..]],
            )
            .await?
            .as_ref()
            .map(pairing_row)
            .transpose()
    }

    async fn pairings(&self, account: AccountId, now: i64) -> R<Vec<PairingSlot>> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "SELECT {PAIRING_COLUMNS} FROM pairing_slots
                     WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at, id"
                ),
                &[&&account.0[..], &now],
            )
            .await?
            .iter()
            .map(pairing_row)
            .collect()
    }

    async fn advance_pairing(
        &self,
        slot: PairingId,
        update: PairingUpdate,
        now: i64,
    ) -> R<PairingSlot> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The row lock makes each step happen at most once across relays.
        let current = tx
            .query_opt(
                &format!("SELECT {PAIRING_COLUMNS} FROM pairing_slots WHERE id = $1 FOR UPDATE"),
                &[&&slot.0[..]],
            )
            .await?
            .as_ref()
            .map(pairing_row)
            .transpose()?
            .ok_or(StoreError::PairingNotFound)?;
        check_advance(&current, &update, now)?;
        let next = apply_update(current, update);
        tx.execute(
            "UPDATE pairing_slots SET state = $2, responder_id = $3, response = $4, confirm = $5
             WHERE id = $1",
            &[
                &&slot.0[..],
                &next.state.as_str(),
                &next.responder.map(|r| r.0.to_vec()),
                &next.response,
                &next.confirm,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }
}
