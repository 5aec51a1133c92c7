//! Storage for WebAuthn passkeys and pending WebAuthn ceremonies (see `docs/store.md`,
//! "Passkeys"). A separate trait so the device-key storage API stays as it was; every
//! [`Backend`](super::Backend) implements it.

use std::future::Future;

use super::{AnyBackend, R};
use crate::{AccountId, Ceremony, CredentialId, NewCredential, StoredPasskey};

/// Passkey credentials and WebAuthn ceremony state.
pub trait PasskeyBackend: Send + Sync + 'static {
    /// Adds a passkey credential (`credential.kind` is `webauthn-passkey`, its `public_key`
    /// the WebAuthn credential id) with webauthn-rs's serialized `Passkey`, in one
    /// transaction. With `new_account` the account is created first (it must not exist);
    /// otherwise it must exist. Errors as [`Backend::add_credential`](super::Backend::add_credential):
    /// [`StoreError::UnknownAccount`](crate::StoreError::UnknownAccount),
    /// [`StoreError::DuplicateCredential`](crate::StoreError::DuplicateCredential),
    /// [`StoreError::TooManyCredentials`](crate::StoreError::TooManyCredentials).
    fn add_passkey(
        &self,
        account: AccountId,
        credential: NewCredential,
        passkey: String,
        new_account: bool,
        max_active: u64,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// The account's active (not removed) passkeys, oldest first.
    fn passkeys(&self, account: AccountId) -> impl Future<Output = R<Vec<StoredPasskey>>> + Send;

    /// Replaces a passkey's serialized state (its signature counter moved on).
    fn update_passkey(
        &self,
        account: AccountId,
        credential: CredentialId,
        passkey: String,
    ) -> impl Future<Output = R<()>> + Send;

    /// Stores a pending ceremony. Purges expired ones and keeps at most `max_outstanding`
    /// per account (the oldest are dropped).
    fn insert_ceremony(
        &self,
        ceremony: Ceremony,
        max_outstanding: u64,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// Removes and returns a ceremony (single use: a second call returns `None`), whatever
    /// the caller then decides about it.
    fn take_ceremony(&self, id: [u8; 16]) -> impl Future<Output = R<Option<Ceremony>>> + Send;
}

macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            AnyBackend::Sqlite(b) => b.$method($($arg),*).await,
            AnyBackend::Postgres(b) => b.$method($($arg),*).await,
        }
    };
}

impl PasskeyBackend for AnyBackend {
    async fn add_passkey(
        &self,
        a: AccountId,
        c: NewCredential,
        p: String,
        new: bool,
        m: u64,
        now: i64,
    ) -> R<()> {
        delegate!(self.add_passkey(a, c, p, new, m, now))
    }
    async fn passkeys(&self, a: AccountId) -> R<Vec<StoredPasskey>> {
        delegate!(self.passkeys(a))
    }
    async fn update_passkey(&self, a: AccountId, c: CredentialId, p: String) -> R<()> {
        delegate!(self.update_passkey(a, c, p))
    }
    async fn insert_ceremony(&self, c: Ceremony, m: u64, now: i64) -> R<()> {
        delegate!(self.insert_ceremony(c, m, now))
    }
    async fn take_ceremony(&self, id: [u8; 16]) -> R<Option<Ceremony>> {
        delegate!(self.take_ceremony(id))
    }
}
