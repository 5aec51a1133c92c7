//! The storage trait and its two implementations.
//!
//! Both backends implement exactly the same semantics (the test suite runs every storage and
//! HTTP test against both):
//!
//! * Every item write or deletion of an account runs in one transaction that first takes the
//!   account row (SQLite: `BEGIN IMMEDIATE`, one writer at a time; PostgreSQL: the row lock of
//!   `UPDATE accounts … RETURNING`), so an account's writes are serialised, its sequence
//!   numbers are handed out in commit order without gaps, and the version check, the quota
//!   check, the item row and the usage counters change together or not at all.
//! * A write commits durably before it is acknowledged (SQLite `synchronous=FULL` in WAL mode;
//!   PostgreSQL `synchronous_commit=on`, forced per connection).
//! * Time is passed in (`now`, Unix milliseconds): the backends never read a clock.

mod migrations;
pub mod passkeys;
pub mod postgres;
pub mod sqlite;

use std::future::Future;

use crate::{
    AccountId, AccountUsage, Challenge, ChangePage, Credential, CredentialId, ItemId, ItemWrite,
    KeyId, KeyRecord, NewCredential, PairingId, PairingSlot, PairingUpdate, Quota, Session,
    StoreError, WriteOutcome,
};
use crate::{Item, model::CredentialKind};

pub use migrations::SCHEMA_VERSION;
pub use passkeys::PasskeyBackend;
pub use postgres::PostgresBackend;
pub use sqlite::SqliteBackend;

type R<T> = Result<T, StoreError>;

/// Storage for accounts, credentials, auth challenges, sessions, wrapped keys and items.
///
/// Implementations hold no plaintext: blobs are the clients' ciphertext, stored and returned
/// byte for byte.
pub trait Backend: passkeys::PasskeyBackend + Send + Sync + 'static {
    /// Creates an account with its first credential. Fails with
    /// [`StoreError::Storage`] if the id exists (ids are random, 128 bits).
    fn create_account(
        &self,
        account: AccountId,
        credential: NewCredential,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// The account's usage and last sequence number; `None` for an unknown account.
    fn account(&self, account: AccountId) -> impl Future<Output = R<Option<AccountUsage>>> + Send;

    /// Adds a credential to an existing account. Errors: [`StoreError::UnknownAccount`],
    /// [`StoreError::DuplicateCredential`] (same kind and public key already present, even if
    /// removed), [`StoreError::TooManyCredentials`] (more than `max_active` active).
    fn add_credential(
        &self,
        account: AccountId,
        credential: NewCredential,
        max_active: u64,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// One credential of an account (active or removed).
    fn credential(
        &self,
        account: AccountId,
        credential: CredentialId,
    ) -> impl Future<Output = R<Option<Credential>>> + Send;

    /// Every credential of an account, oldest first.
    fn credentials(&self, account: AccountId) -> impl Future<Output = R<Vec<Credential>>> + Send;

    /// Removes (revokes) a credential and, in the same transaction, deletes its sessions and
    /// outstanding challenges. Errors: [`StoreError::UnknownCredential`],
    /// [`StoreError::CredentialRevoked`] (already removed), [`StoreError::LastCredential`].
    fn revoke_credential(
        &self,
        account: AccountId,
        credential: CredentialId,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// Stores a challenge. Purges expired challenges; keeps at most `max_outstanding` per
    /// credential (the oldest are dropped).
    fn insert_challenge(
        &self,
        challenge: Challenge,
        max_outstanding: u64,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// Removes and returns a challenge (single use: a second call returns `None`), whatever
    /// the caller then decides about it.
    fn take_challenge(
        &self,
        challenge: [u8; 32],
    ) -> impl Future<Output = R<Option<Challenge>>> + Send;

    /// Stores a session. Purges expired sessions.
    fn insert_session(&self, session: Session, now: i64) -> impl Future<Output = R<()>> + Send;

    /// The session with this token hash, if its credential is still active.
    fn session(&self, token_hash: [u8; 32]) -> impl Future<Output = R<Option<Session>>> + Send;

    /// Deletes a session (logout).
    fn delete_session(&self, token_hash: [u8; 32]) -> impl Future<Output = R<()>> + Send;

    /// Creates (`expected_version == 0`) or replaces a wrapped-key record. Errors:
    /// [`StoreError::UnknownAccount`], [`StoreError::VersionConflict`],
    /// [`StoreError::TooManyKeys`] (creating more than `max_keys`). Returns the new version.
    fn put_key(
        &self,
        account: AccountId,
        key: KeyId,
        expected_version: u64,
        blob: Vec<u8>,
        max_keys: u64,
        now: i64,
    ) -> impl Future<Output = R<u64>> + Send;

    /// One wrapped-key record.
    fn key(
        &self,
        account: AccountId,
        key: KeyId,
    ) -> impl Future<Output = R<Option<KeyRecord>>> + Send;

    /// Every wrapped-key record of an account, by id.
    fn keys(&self, account: AccountId) -> impl Future<Output = R<Vec<KeyRecord>>> + Send;

    /// Deletes a wrapped-key record at `expected_version`. Errors:
    /// [`StoreError::KeyNotFound`], [`StoreError::VersionConflict`].
    fn delete_key(
        &self,
        account: AccountId,
        key: KeyId,
        expected_version: u64,
    ) -> impl Future<Output = R<()>> + Send;

    /// Writes or deletes an item, replacing `expected_version` (0: the item must not exist, or
    /// — for a put — may not exist; a deleted item's tombstone version must be named to
    /// re-create it). Errors: [`StoreError::UnknownAccount`],
    /// [`StoreError::VersionConflict`] (with the current version),
    /// [`StoreError::ItemNotFound`] / [`StoreError::ItemDeleted`] (deleting what is not
    /// there), [`StoreError::QuotaBytesExceeded`], [`StoreError::QuotaItemsExceeded`].
    /// Nothing changes on error.
    fn write_item(
        &self,
        account: AccountId,
        item: ItemId,
        expected_version: u64,
        write: ItemWrite,
        quota: Quota,
        now: i64,
    ) -> impl Future<Output = R<WriteOutcome>> + Send;

    /// An item's current state, tombstones included.
    fn item(
        &self,
        account: AccountId,
        item: ItemId,
    ) -> impl Future<Output = R<Option<Item>>> + Send;

    /// Items whose last change has `seq > since`, in `seq` order, at most `limit` of them.
    /// With `with_blobs`, blobs are included and the page also stops once their total size
    /// passes `max_blob_bytes` (it always holds at least one item if any changed).
    fn changes(
        &self,
        account: AccountId,
        since: u64,
        limit: u32,
        with_blobs: bool,
        max_blob_bytes: u64,
    ) -> impl Future<Output = R<ChangePage>> + Send;

    /// Stores a new pairing slot (state `requested`). Purges slots expired for over an hour.
    /// Errors: [`StoreError::UnknownAccount`], [`StoreError::TooManyPairings`] (the account
    /// already has `max_pending` unexpired slots in a pending state).
    fn create_pairing(
        &self,
        slot: PairingSlot,
        max_pending: u64,
        now: i64,
    ) -> impl Future<Output = R<()>> + Send;

    /// One pairing slot, whatever its state or expiry.
    fn pairing(&self, slot: PairingId) -> impl Future<Output = R<Option<PairingSlot>>> + Send;

    /// The account's unexpired slots, oldest first.
    fn pairings(
        &self,
        account: AccountId,
        now: i64,
    ) -> impl Future<Output = R<Vec<PairingSlot>>> + Send;

    /// Applies `update` atomically if the slot is in one of
    /// [`PairingUpdate::allowed_from`] and unexpired; returns the updated slot. Errors:
    /// [`StoreError::PairingNotFound`], [`StoreError::PairingExpired`],
    /// [`StoreError::PairingState`]. Nothing changes on error.
    fn advance_pairing(
        &self,
        slot: PairingId,
        update: PairingUpdate,
        now: i64,
    ) -> impl Future<Output = R<PairingSlot>> + Send;
}

/// Either backend, chosen at run time (what [`crate::serve`] uses).
#[derive(Clone, Debug)]
pub enum AnyBackend {
    /// SQLite.
    Sqlite(SqliteBackend),
    /// PostgreSQL.
    Postgres(PostgresBackend),
}

macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            AnyBackend::Sqlite(b) => b.$method($($arg),*).await,
            AnyBackend::Postgres(b) => b.$method($($arg),*).await,
        }
    };
}

impl Backend for AnyBackend {
    async fn create_account(&self, a: AccountId, c: NewCredential, now: i64) -> R<()> {
        delegate!(self.create_account(a, c, now))
    }
    async fn account(&self, a: AccountId) -> R<Option<AccountUsage>> {
        delegate!(self.account(a))
    }
    async fn add_credential(&self, a: AccountId, c: NewCredential, m: u64, now: i64) -> R<()> {
        delegate!(self.add_credential(a, c, m, now))
    }
    async fn credential(&self, a: AccountId, c: CredentialId) -> R<Option<Credential>> {
        delegate!(self.credential(a, c))
    }
    async fn credentials(&self, a: AccountId) -> R<Vec<Credential>> {
        delegate!(self.credentials(a))
    }
    async fn revoke_credential(&self, a: AccountId, c: CredentialId, now: i64) -> R<()> {
        delegate!(self.revoke_credential(a, c, now))
    }
    async fn insert_challenge(&self, c: Challenge, m: u64, now: i64) -> R<()> {
        delegate!(self.insert_challenge(c, m, now))
    }
    async fn take_challenge(&self, c: [u8; 32]) -> R<Option<Challenge>> {
        delegate!(self.take_challenge(c))
    }
    async fn insert_session(&self, s: Session, now: i64) -> R<()> {
        delegate!(self.insert_session(s, now))
    }
    async fn session(&self, h: [u8; 32]) -> R<Option<Session>> {
        delegate!(self.session(h))
    }
    async fn delete_session(&self, h: [u8; 32]) -> R<()> {
        delegate!(self.delete_session(h))
    }
    async fn put_key(
        &self,
        a: AccountId,
        k: KeyId,
        v: u64,
        blob: Vec<u8>,
        m: u64,
        now: i64,
    ) -> R<u64> {
        delegate!(self.put_key(a, k, v, blob, m, now))
    }
    async fn key(&self, a: AccountId, k: KeyId) -> R<Option<KeyRecord>> {
        delegate!(self.key(a, k))
    }
    async fn keys(&self, a: AccountId) -> R<Vec<KeyRecord>> {
        delegate!(self.keys(a))
    }
    async fn delete_key(&self, a: AccountId, k: KeyId, v: u64) -> R<()> {
        delegate!(self.delete_key(a, k, v))
    }
    async fn write_item(
        &self,
        a: AccountId,
        i: ItemId,
        v: u64,
        w: ItemWrite,
        q: Quota,
        now: i64,
    ) -> R<WriteOutcome> {
        delegate!(self.write_item(a, i, v, w, q, now))
    }
    async fn item(&self, a: AccountId, i: ItemId) -> R<Option<Item>> {
        delegate!(self.item(a, i))
    }
    async fn changes(&self, a: AccountId, s: u64, l: u32, b: bool, m: u64) -> R<ChangePage> {
        delegate!(self.changes(a, s, l, b, m))
    }
    async fn create_pairing(&self, s: PairingSlot, m: u64, now: i64) -> R<()> {
        delegate!(self.create_pairing(s, m, now))
    }
    async fn pairing(&self, s: PairingId) -> R<Option<PairingSlot>> {
        delegate!(self.pairing(s))
    }
    async fn pairings(&self, a: AccountId, now: i64) -> R<Vec<PairingSlot>> {
        delegate!(self.pairings(a, now))
    }
    async fn advance_pairing(&self, s: PairingId, u: PairingUpdate, now: i64) -> R<PairingSlot> {
        delegate!(self.advance_pairing(s, u, now))
    }
}

/// Slots this long past their expiry are deleted (until then they answer `pairing_expired`).
pub(crate) const PAIRING_PURGE_AFTER_MS: i64 = 60 * 60 * 1000;

/// The pure check of [`Backend::advance_pairing`], identical for both backends.
pub(crate) fn check_advance(slot: &PairingSlot, update: &PairingUpdate, now: i64) -> R<()> {
    if slot.expires_at <= now {
        return Err(StoreError::PairingExpired);
    }
    if !update.allowed_from().contains(&slot.state) {
        return Err(StoreError::PairingState {
            state: slot.state.as_str(),
        });
    }
    Ok(())
}

/// A slot row as stored: `(id, account_id, public_key, name, request, state, responder_id,
/// response, confirm, created_at, expires_at)`.
pub(crate) type RawPairing = (
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    String,
    Vec<u8>,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    i64,
);

pub(crate) const PAIRING_COLUMNS: &str = "id, account_id, public_key, name, request, state, \
    responder_id, response, confirm, created_at, expires_at";

pub(crate) fn pairing_from_raw(r: RawPairing) -> R<PairingSlot> {
    Ok(PairingSlot {
        id: PairingId::from_slice(&r.0)?,
        account: AccountId::from_slice(&r.1)?,
        public_key: r.2,
        name: r.3,
        request: r.4,
        state: crate::PairingState::parse(&r.5)?,
        responder: r.6.as_deref().map(CredentialId::from_slice).transpose()?,
        response: r.7,
        confirm: r.8,
        created_at: r.9,
        expires_at: r.10,
    })
}

/// The slot after `update` (already checked).
pub(crate) fn apply_update(mut slot: PairingSlot, update: PairingUpdate) -> PairingSlot {
    slot.state = update.target();
    match update {
        PairingUpdate::Respond {
            responder,
            response,
        } => {
            slot.responder = Some(responder);
            slot.response = Some(response);
        }
        PairingUpdate::Confirm(c) => slot.confirm = Some(c),
        _ => {}
    }
    slot
}

// ---- helpers shared by both backends ----------------------------------------------------------

/// The state of an item row that a write must check.
pub(crate) struct CurrentItem {
    pub version: u64,
    pub deleted: bool,
    pub size: u64,
}

/// The pure decision of [`Backend::write_item`], identical for both backends: given the
/// current row and usage, either the new row's values and usage, or the error.
pub(crate) struct Planned {
    pub version: u64,
    pub deleted: bool,
    pub blob: Vec<u8>,
    pub used_bytes: u64,
    pub item_count: u64,
}

pub(crate) fn plan_write(
    current: Option<CurrentItem>,
    expected: u64,
    write: ItemWrite,
    used_bytes: u64,
    item_count: u64,
    quota: Quota,
) -> R<Planned> {
    let (cur_version, cur_deleted, cur_size) = match &current {
        Some(c) => (c.version, c.deleted, c.size),
        None => (0, false, 0),
    };
    if expected != cur_version {
        return Err(StoreError::VersionConflict {
            current: cur_version,
            deleted: cur_deleted,
        });
    }
    let live = current.is_some() && !cur_deleted;
    let version = cur_version
        .checked_add(1)
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| StoreError::storage("version overflow"))?;
    let base_bytes = used_bytes.saturating_sub(if live { cur_size } else { 0 });
    let base_count = item_count.saturating_sub(u64::from(live));
    match write {
        ItemWrite::Put(blob) => {
            let new_bytes = base_bytes.saturating_add(blob.len() as u64);
            let new_count = base_count + 1;
            // A write that does not increase usage is always allowed (so an account over a
            // lowered quota can still shrink or update items).
            if new_bytes > quota.max_bytes && new_bytes > used_bytes {
                return Err(StoreError::QuotaBytesExceeded {
                    limit: quota.max_bytes,
                });
            }
            if new_count > quota.max_items && new_count > item_count {
                return Err(StoreError::QuotaItemsExceeded {
                    limit: quota.max_items,
                });
            }
            Ok(Planned {
                version,
                deleted: false,
                blob,
                used_bytes: new_bytes,
                item_count: new_count,
            })
        }
        ItemWrite::Delete => {
            if current.is_none() {
                return Err(StoreError::ItemNotFound);
            }
            if cur_deleted {
                return Err(StoreError::ItemDeleted {
                    version: cur_version,
                });
            }
            Ok(Planned {
                version,
                deleted: true,
                blob: Vec::new(),
                used_bytes: base_bytes,
                item_count: base_count,
            })
        }
    }
}

/// Picks the prefix of a metadata page whose blobs fit `max_blob_bytes` (at least one).
pub(crate) fn cut_by_bytes(sizes: impl Iterator<Item = u64>, max_blob_bytes: u64) -> usize {
    let mut total = 0u64;
    let mut n = 0usize;
    for size in sizes {
        total = total.saturating_add(size);
        if n > 0 && total > max_blob_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// Fills in the blobs of a metadata page from `(seq, blob)` rows read in the same snapshot.
pub(crate) fn attach_blobs(items: &mut [Item], rows: Vec<(i64, Vec<u8>)>) -> R<()> {
    if rows.len() != items.len() {
        return Err(StoreError::storage("changes: snapshot mismatch"));
    }
    for (item, (seq, blob)) in items.iter_mut().zip(rows) {
        if to_u64(seq)? != item.seq || blob.len() as u64 != item.size {
            return Err(StoreError::storage("changes: snapshot mismatch"));
        }
        item.blob = blob;
    }
    Ok(())
}

pub(crate) fn to_u64(v: i64) -> R<u64> {
    u64::try_from(v).map_err(|_| StoreError::storage("negative counter in database"))
}

pub(crate) fn to_i64(v: u64) -> R<i64> {
    i64::try_from(v).map_err(|_| StoreError::storage("counter exceeds i64"))
}

pub(crate) fn parse_kind(s: &str) -> R<CredentialKind> {
    CredentialKind::parse(s).map_err(|_| StoreError::storage("unknown credential kind stored"))
}
