//! [`PasskeyBackend`] for SQLite: the same transactions as the device-credential writes.

use rusqlite::{OptionalExtension, params};

use super::{SqliteBackend, account_exists};
use crate::backend::{R, passkeys::PasskeyBackend, to_i64, to_u64};
use crate::{
    AccountId, Ceremony, CeremonyKind, CredentialId, NewCredential, StoreError, StoredPasskey,
};

impl PasskeyBackend for SqliteBackend {
    async fn add_passkey(
        &self,
        account: AccountId,
        credential: NewCredential,
        passkey: String,
        new_account: bool,
        max_active: u64,
        now: i64,
    ) -> R<()> {
        self.write(move |tx| {
            if new_account {
                tx.execute(
                    "INSERT INTO accounts (id, created_at) VALUES (?1, ?2)",
                    params![&account.0[..], now],
                )?;
            } else {
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
                if duplicate {
                    return Err(StoreError::DuplicateCredential);
                }
                let active: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM credentials
                     WHERE account_id = ?1 AND revoked_at IS NULL",
                    [&account.0[..]],
                    |r| r.get(0),
                )?;
                if to_u64(active)? >= max_active {
                    return Err(StoreError::TooManyCredentials { limit: max_active });
                }
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
            tx.execute(
                "INSERT INTO passkeys (credential_id, account_id, passkey) VALUES (?1, ?2, ?3)",
                params![&credential.id.0[..], &account.0[..], passkey],
            )?;
            Ok(())
        })
        .await
    }

    async fn passkeys(&self, account: AccountId) -> R<Vec<StoredPasskey>> {
        self.run(move |c| {
            let mut stmt = c.prepare(
                "SELECT p.credential_id, p.passkey FROM passkeys p
                 JOIN credentials c ON c.id = p.credential_id
                 WHERE p.account_id = ?1 AND c.account_id = ?1 AND c.revoked_at IS NULL
                 ORDER BY c.created_at, c.id",
            )?;
            let rows = stmt
                .query_map([&account.0[..]], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(id, passkey)| {
                    Ok(StoredPasskey {
                        credential: CredentialId::from_slice(&id)?,
                        passkey,
                    })
                })
                .collect()
        })
        .await
    }

    async fn update_passkey(
        &self,
        account: AccountId,
        credential: CredentialId,
        passkey: String,
    ) -> R<()> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE passkeys SET passkey = ?3 WHERE credential_id = ?1 AND account_id = ?2",
                params![&credential.0[..], &account.0[..], passkey],
            )?;
            if n == 0 {
                return Err(StoreError::UnknownCredential);
            }
            Ok(())
        })
        .await
    }

    async fn insert_ceremony(&self, ceremony: Ceremony, max_outstanding: u64, now: i64) -> R<()> {
        let keep = to_i64(max_outstanding.max(1) - 1)?;
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM webauthn_ceremonies WHERE expires_at <= ?1",
                [now],
            )?;
            tx.execute(
                "DELETE FROM webauthn_ceremonies WHERE account_id = ?1 AND id NOT IN (
                     SELECT id FROM webauthn_ceremonies WHERE account_id = ?1
                     ORDER BY expires_at DESC, id LIMIT ?2)",
                params![&ceremony.account.0[..], keep],
            )?;
            tx.execute(
                "INSERT INTO webauthn_ceremonies (id, kind, account_id, state, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &ceremony.id[..],
                    ceremony.kind.as_str(),
                    &ceremony.account.0[..],
                    ceremony.state,
                    ceremony.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_ceremony(&self, id: [u8; 16]) -> R<Option<Ceremony>> {
        self.write(move |tx| {
            let row = tx
                .query_row(
                    "DELETE FROM webauthn_ceremonies WHERE id = ?1
                     RETURNING kind, account_id, state, expires_at",
                    [&id[..]],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(kind, account, state, expires_at)| {
                Ok(Ceremony {
                    id,
                    kind: CeremonyKind::parse(&kind)?,
                    account: AccountId::from_slice(&account)?,
                    state,
                    expires_at,
                })
            })
            .transpose()
        })
        .await
    }
}
