//! [`PasskeyBackend`] for PostgreSQL: the same transactions as the device-credential writes
//! (the account row lock serialises an account's credential changes).

use super::{PostgresBackend, lock_account};
use crate::backend::{R, passkeys::PasskeyBackend, to_i64, to_u64};
use crate::{
    AccountId, Ceremony, CeremonyKind, CredentialId, NewCredential, StoreError, StoredPasskey,
};

impl PasskeyBackend for PostgresBackend {
    async fn add_passkey(
        &self,
        account: AccountId,
        credential: NewCredential,
        passkey: String,
        new_account: bool,
        max_active: u64,
        now: i64,
    ) -> R<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if new_account {
            tx.execute(
                "INSERT INTO accounts (id, created_at) VALUES ($1, $2)",
                &[&&account.0[..], &now],
            )
            .await?;
        } else {
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
            if duplicate {
                return Err(StoreError::DuplicateCredential);
            }
            let active: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM credentials
                     WHERE account_id = $1 AND revoked_at IS NULL",
                    &[&&account.0[..]],
                )
                .await?
                .try_get(0)?;
            if to_u64(active)? >= max_active {
                return Err(StoreError::TooManyCredentials { limit: max_active });
            }
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
        tx.execute(
            "INSERT INTO passkeys (credential_id, account_id, passkey) VALUES ($1, $2, $3)",
            &[&&credential.id.0[..], &&account.0[..], &passkey],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn passkeys(&self, account: AccountId) -> R<Vec<StoredPasskey>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT p.credential_id, p.passkey FROM passkeys p
                 JOIN credentials c ON c.id = p.credential_id
                 WHERE p.account_id = $1 AND c.account_id = $1 AND c.revoked_at IS NULL
                 ORDER BY c.created_at, c.id",
                &[&&account.0[..]],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredPasskey {
                    credential: CredentialId::from_slice(r.try_get::<_, &[u8]>(0)?)?,
                    passkey: r.try_get(1)?,
                })
            })
            .collect()
    }

    async fn update_passkey(
        &self,
        account: AccountId,
        credential: CredentialId,
        passkey: String,
    ) -> R<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE passkeys SET passkey = $3 WHERE credential_id = $1 AND account_id = $2",
                &[&&credential.0[..], &&account.0[..], &passkey],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::UnknownCredential);
        }
        Ok(())
    }

    async fn insert_ceremony(&self, ceremony: Ceremony, max_outstanding: u64, now: i64) -> R<()> {
        let keep = to_i64(max_outstanding.max(1) - 1)?;
        let client = self.client().await?;
        // Housekeeping is best effort and outside the insert (as for challenges): concurrent
        // purges on several relays must never fail a ceremony.
        if let Err(e) = client
            .execute(
                "DELETE FROM webauthn_ceremonies WHERE expires_at <= $1",
                &[&now],
            )
            .await
        {
            tracing::warn!(error = %e, "postgres: purging expired ceremonies failed");
        }
        if let Err(e) = client
            .execute(
                "DELETE FROM webauthn_ceremonies WHERE account_id = $1 AND id NOT IN (
                     SELECT id FROM webauthn_ceremonies WHERE account_id = $1
                     ORDER BY expires_at DESC, id LIMIT $2)",
                &[&&ceremony.account.0[..], &keep],
            )
            .await
        {
            tracing::warn!(error = %e, "postgres: trimming outstanding ceremonies failed");
        }
        client
            .execute(
                "INSERT INTO webauthn_ceremonies (id, kind, account_id, state, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &&ceremony.id[..],
                    &ceremony.kind.as_str(),
                    &&ceremony.account.0[..],
                    &ceremony.state,
                    &ceremony.expires_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn take_ceremony(&self, id: [u8; 16]) -> R<Option<Ceremony>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM webauthn_ceremonies WHERE id = $1
                 RETURNING kind, account_id, state, expires_at",
                &[&&id[..]],
            )
            .await?;
        row.map(|r| {
            Ok(Ceremony {
                id,
                kind: CeremonyKind::parse(r.try_get::<_, &str>(0)?)?,
                account: AccountId::from_slice(r.try_get::<_, &[u8]>(1)?)?,
                state: r.try_get(2)?,
                expires_at: r.try_get(3)?,
            })
        })
        .transpose()
    }
}
