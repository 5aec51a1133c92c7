//! Item blobs: per-item keys, padded plaintext, and the authenticated clear header.
//! Byte layout: `docs/vault.md` §4.

use core::fmt;
use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::codec::{Reader, check_id, labelled, put_id};
use crate::crypto::{NONCE_LEN, TAG_LEN, aead_open, aead_seal, hkdf32};
use crate::error::{Result, VaultError};
use crate::keys::{AccountKey, CredentialKeys, CredentialPublic, seal_account_key};

/// Magic of an item blob.
pub const ITEM_MAGIC: &[u8; 4] = b"SVIT";
/// Item blob format version.
pub const ITEM_FORMAT: u8 = 1;
/// Length of the clear header (magic, format, kind, flags, epoch, version), before the nonce.
pub const ITEM_HEADER_LEN: usize = 19;
/// Smallest padded plaintext.
pub const MIN_BUCKET: usize = 256;
/// Largest padded plaintext (16 MiB).
pub const MAX_BUCKET: usize = 1 << 24;
/// Largest item body: the largest bucket less the 4-byte length prefix.
pub const MAX_BODY_LEN: usize = MAX_BUCKET - 4;

/// HKDF salt for item keys.
pub const LABEL_ITEM_SALT: &[u8] = b"sotto-vault/v1/item";
/// HKDF info label for item keys.
pub const LABEL_ITEM_KEY: &[u8] = b"sotto-vault/v1/item-key";
/// Associated-data label of item blobs.
pub const LABEL_ITEM_AD: &[u8] = b"sotto-vault/v1/item-ad";

const FLAG_DELETED: u8 = 0x01;

/// What an item is. The kind is in the clear header (the store learns it) and bound into
/// the associated data, so a blob relabelled with another kind fails to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    /// 1: a conversation (title, messages, …).
    Conversation,
    /// 2: a folder (name, instructions, order key).
    Folder,
    /// 3: the account's settings (one per account).
    Settings,
    /// 4: an opaque client-defined index (e.g. a search index).
    Index,
    /// 5: the device directory (credentials' wrapping public keys).
    Devices,
}

impl ItemKind {
    /// The kind byte.
    pub fn byte(self) -> u8 {
        match self {
            ItemKind::Conversation => 1,
            ItemKind::Folder => 2,
            ItemKind::Settings => 3,
            ItemKind::Index => 4,
            ItemKind::Devices => 5,
        }
    }

    /// From a kind byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        Ok(match b {
            1 => ItemKind::Conversation,
            2 => ItemKind::Folder,
            3 => ItemKind::Settings,
            4 => ItemKind::Index,
            5 => ItemKind::Devices,
            _ => return Err(VaultError::UnknownItemKind(b)),
        })
    }
}

/// An item blob's clear header. From [`parse_item_header`] it is **unauthenticated**; the
/// one inside an [`OpenedItem`] has been authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemHeader {
    /// Item kind.
    pub kind: ItemKind,
    /// Whether this version is a tombstone.
    pub deleted: bool,
    /// Account-key epoch the item key was derived from.
    pub epoch: u32,
    /// Item version (≥ 1; the store's optimistic-concurrency counter).
    pub version: u64,
}

/// A decrypted, authenticated item.
pub struct OpenedItem {
    /// The authenticated header.
    pub header: ItemHeader,
    /// The body (empty for a tombstone). Zeroized on drop.
    pub body: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for OpenedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedItem")
            .field("header", &self.header)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The padded plaintext size for a body of `body_len` bytes: the smallest power of two
/// that is ≥ 256 and ≥ `4 + body_len`.
pub fn padded_len(body_len: usize) -> Result<usize> {
    if body_len > MAX_BODY_LEN {
        return Err(VaultError::ItemTooLarge(body_len));
    }
    Ok((4 + body_len).next_power_of_two().max(MIN_BUCKET))
}

fn is_bucket(n: usize) -> bool {
    n.is_power_of_two() && (MIN_BUCKET..=MAX_BUCKET).contains(&n)
}

/// The size of a sealed item blob for a body of `body_len` bytes.
pub fn blob_len(body_len: usize) -> Result<usize> {
    Ok(ITEM_HEADER_LEN + NONCE_LEN + padded_len(body_len)? + TAG_LEN)
}

/// Parses an item blob's header without authenticating it (for routing and listing only).
pub fn parse_item_header(blob: &[u8]) -> Result<ItemHeader> {
    Ok(parse_blob(blob)?.0)
}

fn parse_blob(blob: &[u8]) -> Result<(ItemHeader, [u8; NONCE_LEN], &[u8])> {
    let mut r = Reader::new(blob, "item blob");
    if r.take(4)? != ITEM_MAGIC {
        return Err(VaultError::Malformed("not an item blob"));
    }
    let format = r.u8()?;
    if format != ITEM_FORMAT {
        return Err(VaultError::UnsupportedFormat(format));
    }
    let kind = ItemKind::from_byte(r.u8()?)?;
    let flags = r.u8()?;
    if flags & !FLAG_DELETED != 0 {
        return Err(VaultError::Malformed("unknown item flags"));
    }
    let epoch = r.u32()?;
    if epoch == 0 || epoch == u32::MAX {
        return Err(VaultError::InvalidEpoch(epoch));
    }
    let version = r.u64()?;
    if version == 0 {
        return Err(VaultError::ReservedVersion);
    }
    debug_assert_eq!(r.pos(), ITEM_HEADER_LEN);
    let nonce = r.array::<NONCE_LEN>()?;
    let ct = r.rest();
    if ct.len() < MIN_BUCKET + TAG_LEN {
        return Err(VaultError::Truncated("item ciphertext"));
    }
    if !is_bucket(ct.len() - TAG_LEN) {
        return Err(VaultError::BadLength(blob.len()));
    }
    let header = ItemHeader {
        kind,
        deleted: flags & FLAG_DELETED != 0,
        epoch,
        version,
    };
    Ok((header, nonce, ct))
}

fn encode_header(h: &ItemHeader) -> [u8; ITEM_HEADER_LEN] {
    let mut out = [0u8; ITEM_HEADER_LEN];
    out[..4].copy_from_slice(ITEM_MAGIC);
    out[4] = ITEM_FORMAT;
    out[5] = h.kind.byte();
    out[6] = if h.deleted { FLAG_DELETED } else { 0 };
    out[7..11].copy_from_slice(&h.epoch.to_be_bytes());
    out[11..19].copy_from_slice(&h.version.to_be_bytes());
    out
}

/// `"sotto-vault/v1/item-ad" || 0x00 || header(19) || id(account) || id(item)`.
fn item_aad(header: &[u8; ITEM_HEADER_LEN], account_id: &[u8], item_id: &[u8]) -> Vec<u8> {
    let mut aad = labelled(LABEL_ITEM_AD);
    aad.extend_from_slice(header);
    put_id(&mut aad, account_id);
    put_id(&mut aad, item_id);
    aad
}

/// `HKDF-SHA256(salt = "sotto-vault/v1/item", ikm = account key,
/// info = "sotto-vault/v1/item-key" || 0x00 || u32 epoch || id(account) || id(item))`.
pub(crate) fn item_key(key: &AccountKey, account_id: &[u8], item_id: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut info = labelled(LABEL_ITEM_KEY);
    info.extend_from_slice(&key.epoch().to_be_bytes());
    put_id(&mut info, account_id);
    put_id(&mut info, item_id);
    hkdf32(LABEL_ITEM_SALT, key.bytes(), &info)
}

/// An account's key ring: the account id and every epoch's account key this client holds.
/// New items are sealed under the newest epoch; old items open with their own epoch.
pub struct Vault {
    account_id: Vec<u8>,
    keys: BTreeMap<u32, AccountKey>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("account_id", &hex::encode(&self.account_id))
            .field("epochs", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Result of [`Vault::rotate_and_wrap`]: the new epoch and one wrapped-key record per
/// credential (the caller uploads them, then deletes the removed credential's records).
#[derive(Debug)]
pub struct Rotation {
    /// The new (current) epoch.
    pub epoch: u32,
    /// `(credential id, wrapped-key record)` for the rotating credential and each remaining one.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Vault {
    /// A new account: `account_key` (32 random bytes from the caller) becomes epoch 1.
    pub fn create(account_id: &[u8], account_key: [u8; 32]) -> Result<Self> {
        Self::from_keys(account_id, [AccountKey::new(1, account_key)?])
    }

    /// A vault from unwrapped account keys (at least one).
    pub fn from_keys(
        account_id: &[u8],
        keys: impl IntoIterator<Item = AccountKey>,
    ) -> Result<Self> {
        check_id(account_id, "account id")?;
        let mut v = Vault {
            account_id: account_id.to_vec(),
            keys: BTreeMap::new(),
        };
        for k in keys {
            v.add_key(k)?;
        }
        if v.keys.is_empty() {
            return Err(VaultError::Malformed("no account key"));
        }
        Ok(v)
    }

    /// Unwraps every record with `credential` and builds the vault. The credential must be
    /// for this account; records for other accounts, credentials or epochs are errors.
    pub fn unlock<'a>(
        credential: &CredentialKeys,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self> {
        let keys = records
            .into_iter()
            .map(|r| credential.unwrap(r, None))
            .collect::<Result<Vec<_>>>()?;
        Self::from_keys(credential.account_id(), keys)
    }

    /// Adds an unwrapped key. The same key twice is fine; a different key for a held epoch
    /// is [`VaultError::EpochKeyConflict`].
    pub fn add_key(&mut self, key: AccountKey) -> Result<()> {
        match self.keys.get(&key.epoch()) {
            Some(k) if k.same_as(&key) => Ok(()),
            Some(_) => Err(VaultError::EpochKeyConflict(key.epoch())),
            None => {
                self.keys.insert(key.epoch(), key);
                Ok(())
            }
        }
    }

    /// The account id.
    pub fn account_id(&self) -> &[u8] {
        &self.account_id
    }

    /// The newest epoch (new items are sealed under it).
    pub fn current_epoch(&self) -> u32 {
        *self
            .keys
            .keys()
            .next_back()
            .expect("a vault holds at least one key")
    }

    /// Every held epoch, ascending.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// The key of an epoch.
    pub fn key(&self, epoch: u32) -> Option<&AccountKey> {
        self.keys.get(&epoch)
    }

    /// Every held key, ascending by epoch.
    pub fn keys(&self) -> impl Iterator<Item = &AccountKey> + '_ {
        self.keys.values()
    }

    /// Starts a new epoch with `new_key` (32 fresh random bytes); returns the epoch.
    /// Old epochs stay (old items remain readable).
    pub fn rotate(&mut self, new_key: [u8; 32]) -> Result<u32> {
        let epoch = self.current_epoch() + 1;
        self.add_key(AccountKey::new(epoch, new_key)?)?;
        Ok(epoch)
    }

    /// Wraps every held epoch's key for a credential of this account (a new passkey or
    /// device): returns one record per epoch. `random` fills nonces.
    pub fn wrap_all(
        &self,
        credential: &CredentialKeys,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<Vec<u8>>> {
        if credential.account_id() != self.account_id {
            return Err(VaultError::WrappedKeyWrongAccount);
        }
        Ok(self
            .keys
            .values()
            .map(|k| {
                let mut nonce = [0u8; NONCE_LEN];
                random(&mut nonce);
                credential.wrap(k, nonce)
            })
            .collect())
    }

    /// Device removal: starts a new epoch with `new_key` and wraps it for the rotating
    /// credential (`own`, KEK) and for each of `remaining` (sealed to its X25519 key).
    /// `remaining` must come from the authenticated device directory, without the removed
    /// credential. `random` fills ephemeral keys and nonces.
    pub fn rotate_and_wrap(
        &mut self,
        new_key: [u8; 32],
        own: &CredentialKeys,
        remaining: &[CredentialPublic],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Rotation> {
        if own.account_id() != self.account_id
            || remaining.iter().any(|c| c.account_id != self.account_id)
        {
            return Err(VaultError::WrappedKeyWrongAccount);
        }
        let epoch = self.rotate(new_key)?;
        let key = &self.keys[&epoch];
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce);
        let mut records = vec![(own.credential_id().to_vec(), own.wrap(key, nonce))];
        for c in remaining
            .iter()
            .filter(|c| c.credential_id != own.credential_id())
        {
            let mut eph = Zeroizing::new([0u8; 32]);
            random(eph.as_mut());
            random(&mut nonce);
            records.push((
                c.credential_id.clone(),
                seal_account_key(c, key, *eph, nonce)?,
            ));
        }
        Ok(Rotation { epoch, records })
    }

    /// Seals an item body under the newest epoch. `nonce`: 24 fresh random bytes.
    pub fn seal_item(
        &self,
        item_id: &[u8],
        kind: ItemKind,
        version: u64,
        body: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>> {
        self.seal_inner(item_id, kind, version, false, body, nonce)
    }

    /// Seals a tombstone: the version that deletes an item (empty body, `deleted` set).
    pub fn seal_tombstone(
        &self,
        item_id: &[u8],
        kind: ItemKind,
        version: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>> {
        self.seal_inner(item_id, kind, version, true, &[], nonce)
    }

    fn seal_inner(
        &self,
        item_id: &[u8],
        kind: ItemKind,
        version: u64,
        deleted: bool,
        body: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>> {
        check_id(item_id, "item id")?;
        if version == 0 {
            return Err(VaultError::ReservedVersion);
        }
        let padded = padded_len(body.len())?;
        let epoch = self.current_epoch();
        let key = &self.keys[&epoch];
        let header = encode_header(&ItemHeader {
            kind,
            deleted,
            epoch,
            version,
        });
        let mut pt = Zeroizing::new(vec![0u8; padded]);
        pt[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
        pt[4..4 + body.len()].copy_from_slice(body);
        let ik = item_key(key, &self.account_id, item_id);
        let aad = item_aad(&header, &self.account_id, item_id);
        let ct = aead_seal(&ik, &nonce, &aad, &pt);
        let mut blob = Vec::with_capacity(ITEM_HEADER_LEN + NONCE_LEN + ct.len());
        blob.extend_from_slice(&header);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(blob)
    }

    /// Opens an item blob fetched for `item_id`. If `expected_kind` is given, a blob of
    /// another kind is [`VaultError::ItemKindMismatch`]. Authentication binds the account
    /// id, item id, kind, version, epoch and deleted flag: a blob moved to another id,
    /// account, kind or version, or altered in any bit, is [`VaultError::ItemAuthFailed`].
    ///
    /// This does not check freshness: pass the result to
    /// [`SeenVersions::accept`](crate::SeenVersions::accept).
    pub fn open_item(
        &self,
        item_id: &[u8],
        expected_kind: Option<ItemKind>,
        blob: &[u8],
    ) -> Result<OpenedItem> {
        check_id(item_id, "item id")?;
        let (header, nonce, ct) = parse_blob(blob)?;
        if let Some(k) = expected_kind
            && k != header.kind
        {
            return Err(VaultError::ItemKindMismatch {
                expected: k.byte(),
                found: header.kind.byte(),
            });
        }
        let key = self
            .keys
            .get(&header.epoch)
            .ok_or(VaultError::UnknownEpoch(header.epoch))?;
        let ik = item_key(key, &self.account_id, item_id);
        let aad = item_aad(&encode_header(&header), &self.account_id, item_id);
        let pt = aead_open(&ik, &nonce, &aad, ct).ok_or(VaultError::ItemAuthFailed)?;
        let body = unpad(&pt)?;
        if header.deleted && !body.is_empty() {
            return Err(VaultError::Malformed("tombstone with a body"));
        }
        Ok(OpenedItem { header, body })
    }
}

fn unpad(pt: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if pt.len() < 4 {
        return Err(VaultError::PaddingInvalid);
    }
    let n = u32::from_be_bytes(pt[..4].try_into().expect("4 bytes")) as usize;
    if n > pt.len() - 4 || padded_len(n)? != pt.len() {
        return Err(VaultError::PaddingInvalid);
    }
    if pt[4 + n..].iter().any(|&b| b != 0) {
        return Err(VaultError::PaddingInvalid);
    }
    Ok(Zeroizing::new(pt[4..4 + n].to_vec()))
}
