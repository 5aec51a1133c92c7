//! `sotto-history`: the async client shell of Sotto's encrypted history.
//!
//! [`HistoryClient`] keeps a device's state in a local directory (see [`state`]), logs in to
//! the blob store (`sotto-store`, docs/store.md) by challenge–response, unlocks the account's
//! vault (`sotto-vault`, docs/vault.md) from this device's wrapped keys, and reads and writes
//! conversations, folders and the device directory as encrypted items. Every item read goes
//! through `open_item` + `expect_version` + `SeenVersions::accept` (rollback, equivocation,
//! swapped and truncated blobs), every full listing through `check_listing` (withheld
//! items, listed rollbacks), and the seen state is persisted after every accepted item.
//! Writes use optimistic concurrency: on a version conflict the client fetches the other
//! device's version, merges (`merge_conversation`, `merge_folder`) and retries.
//!
//! Ids: the vault's account and credential ids are the store's 16 raw bytes; item ids are
//! 32 random hex digits (conversations, folders) or `devices` (the directory), and the
//! vault binds the ASCII bytes of the item id. Wrapped-key records are stored under key id
//! `{credential hex}-e{epoch}`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod error;
pub mod pairing;
pub mod state;
pub mod store;

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::Serialize;
use sotto_vault::{
    Conversation, CredentialKeys, CredentialKind, DeviceDirectory, DeviceEntry, Folder, ItemKind,
    Message, Payload, Role, SeenVersions, Settings, SyncFinding, Vault, key_between,
    merge_conversation, merge_folder,
};

pub use error::{HistoryError, Result};
pub use pairing::{PairingRequest, PendingPairing, paired_credential_id};
pub use state::{DeviceState, store_signing_key};
use state::{fill_random, random};
use store::{Put, StoreClient};

/// Item id of the device directory.
pub const DEVICES_ITEM: &str = "devices";
/// Item id of the account's settings.
pub const SETTINGS_ITEM: &str = "settings";
/// How many times a conflicting write is merged and retried.
pub const MAX_WRITE_ATTEMPTS: usize = 8;

/// A decrypted item with its id and version.
#[derive(Clone, Debug, Serialize)]
pub struct Entry<T> {
    /// Item id.
    pub id: String,
    /// Version (the store's and the vault's: they are equal).
    pub version: u64,
    /// The decrypted value.
    pub value: T,
}

/// Everything of an account, decrypted and checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Folders, by order key.
    pub folders: Vec<Entry<Folder>>,
    /// Conversations, by (folder, order key).
    pub conversations: Vec<Entry<Conversation>>,
    /// The device directory.
    pub devices: Option<Entry<DeviceDirectory>>,
    /// The account's settings, if any were saved.
    pub settings: Option<Entry<Settings>>,
    /// Ids of deleted items (tombstones).
    pub deleted: Vec<String>,
}

impl Snapshot {
    fn add(&mut self, id: String, version: u64, payload: Option<Payload>) {
        match payload {
            None => self.deleted.push(id),
            Some(Payload::Conversation(value)) => {
                self.conversations.push(Entry { id, version, value })
            }
            Some(Payload::Folder(value)) => self.folders.push(Entry { id, version, value }),
            Some(Payload::Devices(value)) if id == DEVICES_ITEM => {
                self.devices = Some(Entry { id, version, value })
            }
            Some(Payload::Settings(value)) if id == SETTINGS_ITEM => {
                self.settings = Some(Entry { id, version, value })
            }
            Some(_) => {}
        }
    }

    fn sort(&mut self) {
        self.folders
            .sort_by(|a, b| (&a.value.order_key, &a.id).cmp(&(&b.value.order_key, &b.id)));
        self.conversations.sort_by(|a, b| {
            (&a.value.folder_id, &a.value.order_key, &a.id).cmp(&(
                &b.value.folder_id,
                &b.value.order_key,
                &b.id,
            ))
        });
    }

    /// A folder by id or by exact name.
    pub fn folder(&self, id_or_name: &str) -> Option<&Entry<Folder>> {
        self.folders
            .iter()
            .find(|f| f.id == id_or_name)
            .or_else(|| self.folders.iter().find(|f| f.value.name == id_or_name))
    }

    /// A conversation by id.
    pub fn conversation(&self, id: &str) -> Option<&Entry<Conversation>> {
        self.conversations.iter().find(|c| c.id == id)
    }
}

/// A device of the account.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    /// Store credential id (hex).
    pub credential_id: String,
    /// Name from the encrypted directory (empty if not in it).
    pub name: String,
    /// Whether it is this device.
    pub this_device: bool,
    /// Whether the store still accepts it.
    pub active: bool,
    /// Whether it is in the encrypted device directory.
    pub in_directory: bool,
}

/// How the last [`HistoryClient::sync`] ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// The complete listing (first sync, `sync_full`, or a cache that lagged behind).
    Full,
    /// Only the changes after the saved cursor; `changes` of them.
    Incremental {
        /// Changes fetched.
        changes: usize,
    },
}

/// A device's history client: logged in, vault unlocked.
pub struct HistoryClient {
    dir: PathBuf,
    state: DeviceState,
    cred: CredentialKeys,
    vault: Vault,
    seen: SeenVersions,
    store: StoreClient,
    cache: cache::Cache,
    last_sync: Option<SyncKind>,
}

impl std::fmt::Debug for HistoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryClient")
            .field("account_id", &self.state.account_id)
            .field("credential_id", &self.state.credential_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn new_item_id() -> String {
    hex::encode(random::<16>())
}

fn key_id(credential_hex: &str, epoch: u32) -> String {
    format!("{credential_hex}-e{epoch}")
}

fn valid_item_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(HistoryError::InvalidArgument("not an item id"));
    }
    Ok(())
}

impl HistoryClient {
    /// Whether `dir` holds an account.
    pub fn exists(dir: &Path) -> bool {
        state::exists(dir)
    }

    /// Creates a store account for a new device secret, a vault (epoch 1), this device's
    /// wrapped key and the device directory; persists the state under `dir`.
    pub async fn create_account(store_url: &str, dir: &Path, device_name: &str) -> Result<Self> {
        if state::exists(dir) {
            return Err(HistoryError::AccountExists);
        }
        let root = zeroize::Zeroizing::new(random::<32>());
        let signing = store_signing_key(&root);
        let (account_id, credential_id) = StoreClient::create_account(store_url, &signing).await?;
        let st = DeviceState {
            format: 1,
            store_url: store_url.trim_end_matches('/').to_string(),
            account_id,
            credential_id,
            device_name: device_name.to_string(),
        };
        Self::write_new_device(dir, &st, &root)?;
        let acct = store::decode16(&st.account_id)?;
        let vault = Vault::create(&acct, random())?;
        let mut client = Self::login(dir, st, &root, &signing, Some(vault)).await?;
        client.upload_wrapped_keys_for_self().await?;
        let entry = client.own_entry();
        let mut d = DeviceDirectory::default();
        d.upsert(entry);
        client
            .write_item(DEVICES_ITEM, None, Payload::Devices(d))
            .await?;
        Ok(client)
    }

    fn write_new_device(dir: &Path, st: &DeviceState, root: &[u8; 32]) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        state::write_private(&dir.join(state::ROOT_FILE), root)?;
        let json = serde_json::to_vec_pretty(st).expect("state serialises");
        state::write_private(&dir.join(state::DEVICE_FILE), &json)
    }

    /// Opens the account in `dir`: challenge–response login, then unlocks the vault from
    /// this device's wrapped keys.
    pub async fn open(dir: &Path) -> Result<Self> {
        let (st, root) = state::load(dir)?;
        let root = zeroize::Zeroizing::new(root);
        let signing = store_signing_key(&root);
        Self::login(dir, st, &root, &signing, None).await
    }

    async fn login(
        dir: &Path,
        st: DeviceState,
        root: &[u8; 32],
        signing: &SigningKey,
        vault: Option<Vault>,
    ) -> Result<Self> {
        let acct = store::decode16(&st.account_id)?;
        let cred_raw = store::decode16(&st.credential_id)?;
        let cred = CredentialKeys::derive(&state::root_secret(root), &acct, &cred_raw)?;
        let mut store = StoreClient::new(&st.store_url, &st.account_id)?;
        store.login(&st.credential_id, signing).await?;
        let vault = match vault {
            Some(v) => v,
            None => {
                let prefix = format!("{}-e", st.credential_id);
                let mut keys = Vec::new();
                for k in store.keys().await? {
                    let Some(epoch) = k.key_id.strip_prefix(&prefix) else {
                        continue;
                    };
                    let epoch: u32 = epoch
                        .parse()
                        .map_err(|_| HistoryError::Protocol("bad key id"))?;
                    let rec = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&k.blob)
                        .map_err(|_| HistoryError::Protocol("bad key blob"))?;
                    keys.push(cred.unwrap(&rec, Some(epoch))?);
                }
                if keys.is_empty() {
                    return Err(HistoryError::WrappedKeyMissing);
                }
                Vault::from_keys(&acct, keys)?
            }
        };
        let seen = match std::fs::read(dir.join(state::SEEN_FILE)) {
            Ok(b) => SeenVersions::decode(&acct, &b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SeenVersions::new(&acct)?,
            Err(e) => return Err(e.into()),
        };
        Ok(HistoryClient {
            dir: dir.to_path_buf(),
            state: st,
            cred,
            vault,
            seen,
            store,
            cache: cache::Cache::new(dir),
            last_sync: None,
        })
    }

    fn own_entry(&self) -> DeviceEntry {
        DeviceEntry {
            credential: self.cred.public(),
            kind: CredentialKind::Device,
            name: self.state.device_name.clone(),
            added_at: now_ms(),
        }
    }

    async fn upload_wrapped_keys_for_self(&self) -> Result<()> {
        let records = self.vault.wrap_all(&self.cred, &mut fill_random)?;
        for (epoch, rec) in self.vault.epochs().zip(records) {
            self.put_key_record(&key_id(&self.state.credential_id, epoch), rec)
                .await?;
        }
        Ok(())
    }

    async fn put_key_record(&self, id: &str, rec: Vec<u8>) -> Result<()> {
        match self.store.put_key(id, 0, rec).await? {
            Put::Ok(_) => Ok(()),
            Put::Conflict(_) => Err(HistoryError::Store {
                status: 409,
                code: "version_conflict".into(),
            }),
        }
    }

    /// Store account id (hex).
    pub fn account_id(&self) -> &str {
        &self.state.account_id
    }

    /// This device's credential id (hex).
    pub fn credential_id(&self) -> &str {
        &self.state.credential_id
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The vault's current key epoch.
    pub fn current_epoch(&self) -> u32 {
        self.vault.current_epoch()
    }

    /// The logged-in store client (raw, unchecked access; for tests and tools).
    pub fn store(&self) -> &StoreClient {
        &self.store
    }

    /// The unlocked vault (read-only; for tests and tools).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// How the last sync ran (`None` before the first).
    pub fn last_sync(&self) -> Option<SyncKind> {
        self.last_sync
    }

    fn persist_seen(&self) -> Result<()> {
        state::write_private(&self.dir.join(state::SEEN_FILE), &self.seen.encode())
    }

    /// Opens a fetched blob: authenticated, at the version the store claimed, and fresh
    /// relative to this device's seen state (persisted on acceptance).
    fn accept(
        &mut self,
        id: &str,
        kind: Option<ItemKind>,
        version: u64,
        blob: &[u8],
    ) -> Result<Option<Payload>> {
        let opened = self.vault.open_item(id.as_bytes(), kind, blob)?;
        opened.expect_version(version)?;
        if self.seen.accept(id.as_bytes(), &opened, blob)? == sotto_vault::Freshness::New {
            self.persist_seen()?;
        }
        if opened.header.deleted {
            return Ok(None);
        }
        Ok(Some(Payload::decode(opened.header.kind, &opened.body)?))
    }

    /// Fetches one item: `None` if the store has none (an error if this device knows it).
    async fn fetch(
        &mut self,
        id: &str,
        kind: Option<ItemKind>,
    ) -> Result<Option<(u64, Option<Payload>)>> {
        match self.store.get_item(id).await? {
            None => {
                if let Some(v) = self.seen.highest(id.as_bytes())
                    && self.seen.is_deleted(id.as_bytes()) == Some(false)
                {
                    return Err(HistoryError::Sync(vec![SyncFinding::Withheld {
                        item_id: id.as_bytes().to_vec(),
                        last_version: v,
                    }]));
                }
                Ok(None)
            }
            Some((v, blob)) => Ok(Some((v, self.accept(id, kind, v, &blob)?))),
        }
    }

    /// Writes `ours` over `base` (the version it was derived from; `None` creates). On a
    /// conflict, fetches the store's version, merges three-way and retries. Returns the
    /// written version.
    async fn write_item(
        &mut self,
        id: &str,
        mut base: Option<(u64, Payload)>,
        mut ours: Payload,
    ) -> Result<u64> {
        let kind = ours.kind();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let replaces = base.as_ref().map(|b| b.0).unwrap_or(0);
            let blob = self
                .vault
                .seal_payload(id.as_bytes(), replaces + 1, &ours, random())?;
            match self.store.put_item(id, replaces, blob.clone()).await? {
                Put::Ok(v) => {
                    if v != replaces + 1 {
                        return Err(HistoryError::Protocol("store acknowledged another version"));
                    }
                    self.seen.record_own_write(id.as_bytes(), &blob)?;
                    self.persist_seen()?;
                    self.cache.put(id, v, &blob)?;
                    return Ok(v);
                }
                Put::Conflict(_) => {
                    let Some((v, theirs)) = self.fetch(id, Some(kind)).await? else {
                        base = None;
                        continue;
                    };
                    let theirs = theirs.ok_or(HistoryError::Deleted)?;
                    ours = merge(base.as_ref().map(|b| &b.1), &ours, &theirs);
                    base = Some((v, theirs));
                }
            }
        }
        Err(HistoryError::ConflictRetriesExhausted)
    }

    /// Brings this device up to date and returns the decrypted account.
    ///
    /// Incremental when the local cache is complete: only the changes after the saved
    /// cursor are fetched, each checked like any read, and the rest is opened from the
    /// cached (encrypted) blobs. A store-level deletion of an item this device holds is
    /// `ITEM_WITHHELD`. Falls back to [`HistoryClient::sync_full`] when there is no cursor
    /// or the cache lags behind `seen.json` (e.g. after a crash).
    pub async fn sync(&mut self) -> Result<Snapshot> {
        match self.sync_incremental().await? {
            Some(snap) => Ok(snap),
            None => self.sync_full().await,
        }
    }

    async fn sync_incremental(&mut self) -> Result<Option<Snapshot>> {
        use base64ct::{Base64, Encoding};
        let Some(cursor) = self.cache.cursor() else {
            return Ok(None);
        };
        let (changes, next) = self.store.changes_since(cursor).await?;
        let fetched = changes.len();
        for c in changes {
            valid_item_id(&c.item_id).map_err(|_| HistoryError::Protocol("bad item id"))?;
            match &c.blob {
                Some(b64) => {
                    let blob =
                        Base64::decode_vec(b64).map_err(|_| HistoryError::Protocol("bad blob"))?;
                    self.accept(&c.item_id, None, c.version, &blob)?;
                    self.cache.put(&c.item_id, c.version, &blob)?;
                }
                None if c.deleted => {
                    // A store-level deletion, which this client never writes.
                    let id = c.item_id.as_bytes();
                    if let Some(v) = self.seen.highest(id)
                        && self.seen.is_deleted(id) == Some(false)
                    {
                        return Err(HistoryError::Sync(vec![SyncFinding::Withheld {
                            item_id: id.to_vec(),
                            last_version: v,
                        }]));
                    }
                    self.cache.remove(&c.item_id)?;
                }
                None => return Err(HistoryError::Protocol("change without its blob")),
            }
        }
        // Every item this device accepted must be in the cache at the version it accepted;
        // otherwise the cache lags (a crash after seen.json was written) and is rebuilt.
        let mut snap = Snapshot::default();
        let known: Vec<Vec<u8>> = self.seen.known_items().collect();
        for id in known {
            let Ok(id) = String::from_utf8(id) else {
                return Ok(None);
            };
            let Some((version, blob)) = self.cache.get(&id) else {
                // A deleted item the store purged (its tombstone is gone from the feed and
                // the cache) stays deleted: no reason for a complete listing every time.
                if self.seen.is_deleted(id.as_bytes()) == Some(true) {
                    snap.deleted.push(id);
                    continue;
                }
                return Ok(None);
            };
            if self.seen.highest(id.as_bytes()) != Some(version) {
                return Ok(None);
            }
            // Opened and checked again: the cache is local but not trusted to be intact.
            let Ok(payload) = self.accept(&id, None, version, &blob) else {
                return Ok(None);
            };
            snap.add(id, version, payload);
        }
        self.cache.set_cursor(next)?;
        snap.sort();
        self.last_sync = Some(SyncKind::Incremental { changes: fetched });
        Ok(Some(snap))
    }

    /// Reads every item (complete listing), checks it against this device's history
    /// (`check_listing`: withheld items, listed rollbacks), rebuilds the local cache and
    /// returns the decrypted account.
    pub async fn sync_full(&mut self) -> Result<Snapshot> {
        use base64ct::{Base64, Encoding};
        let (listing, next) = self.store.changes_since(0).await?;
        for c in &listing {
            valid_item_id(&c.item_id).map_err(|_| HistoryError::Protocol("bad item id"))?;
        }
        let findings = self.seen.check_listing(
            listing
                .iter()
                .filter(|c| c.blob.is_some() || !c.deleted)
                .map(|c| (c.item_id.as_bytes(), c.version)),
        );
        if !findings.is_empty() {
            return Err(HistoryError::Sync(findings));
        }
        self.cache.clear()?;
        let mut snap = Snapshot::default();
        for c in listing {
            let Some(b64) = &c.blob else {
                if c.deleted {
                    continue; // a store-level deletion this client never writes
                }
                return Err(HistoryError::Protocol("change without its blob"));
            };
            let blob = Base64::decode_vec(b64).map_err(|_| HistoryError::Protocol("bad blob"))?;
            let payload = self.accept(&c.item_id, None, c.version, &blob)?;
            self.cache.put(&c.item_id, c.version, &blob)?;
            snap.add(c.item_id, c.version, payload);
        }
        self.cache.set_cursor(next)?;
        snap.sort();
        self.last_sync = Some(SyncKind::Full);
        Ok(snap)
    }

    /// The account's settings (defaults, at version 0, when none were ever saved).
    pub async fn settings(&mut self) -> Result<Entry<Settings>> {
        match self.fetch(SETTINGS_ITEM, Some(ItemKind::Settings)).await? {
            None => Ok(Entry {
                id: SETTINGS_ITEM.into(),
                version: 0,
                value: Settings::default(),
            }),
            Some((_, None)) => Err(HistoryError::Deleted),
            Some((version, Some(Payload::Settings(value)))) => Ok(Entry {
                id: SETTINGS_ITEM.into(),
                version,
                value,
            }),
            Some(_) => Err(HistoryError::Protocol("settings item of another kind")),
        }
    }

    /// Edits the account's settings; a concurrent edit by another device is merged field
    /// by field. Returns the settings as stored.
    pub async fn update_settings(
        &mut self,
        edit: impl FnOnce(&mut Settings) -> Result<()>,
    ) -> Result<Entry<Settings>> {
        let current = self.settings().await?;
        let mut ours = current.value.clone();
        edit(&mut ours)?;
        self.save_settings(&current, ours).await
    }

    /// Saves `ours`, derived from `base` (as returned by [`HistoryClient::settings`]). If
    /// another device saved in between, the two edits are merged field by field (a field
    /// only one side changed keeps that change). Returns the settings as stored.
    pub async fn save_settings(
        &mut self,
        base: &Entry<Settings>,
        mut ours: Settings,
    ) -> Result<Entry<Settings>> {
        ours.updated_at = now_ms();
        let base =
            (base.version > 0).then(|| (base.version, Payload::Settings(base.value.clone())));
        let version = self
            .write_item(SETTINGS_ITEM, base, Payload::Settings(ours))
            .await?;
        // Re-read: after a merge the stored value is not `ours`.
        let entry = self.settings().await?;
        if entry.version < version {
            return Err(HistoryError::Protocol("store lost an acknowledged write"));
        }
        Ok(entry)
    }

    /// One conversation, fetched and checked.
    pub async fn conversation(&mut self, id: &str) -> Result<Entry<Conversation>> {
        valid_item_id(id)?;
        match self.fetch(id, Some(ItemKind::Conversation)).await? {
            None => Err(HistoryError::NotFound("conversation")),
            Some((_, None)) => Err(HistoryError::Deleted),
            Some((v, Some(Payload::Conversation(c)))) => Ok(Entry {
                id: id.into(),
                version: v,
                value: c,
            }),
            Some(_) => Err(HistoryError::NotFound("conversation")),
        }
    }

    /// One folder, fetched and checked.
    pub async fn folder(&mut self, id: &str) -> Result<Entry<Folder>> {
        valid_item_id(id)?;
        match self.fetch(id, Some(ItemKind::Folder)).await? {
            None => Err(HistoryError::NotFound("folder")),
            Some((_, None)) => Err(HistoryError::Deleted),
            Some((v, Some(Payload::Folder(f)))) => Ok(Entry {
                id: id.into(),
                version: v,
                value: f,
            }),
            Some(_) => Err(HistoryError::NotFound("folder")),
        }
    }

    /// Saves a conversation: `base` is the version it was derived from (`None`: a new
    /// conversation). Concurrent edits by other devices are merged. Returns the version.
    pub async fn save_conversation(
        &mut self,
        id: &str,
        base: Option<(u64, Conversation)>,
        conversation: Conversation,
    ) -> Result<u64> {
        valid_item_id(id)?;
        self.write_item(
            id,
            base.map(|(v, c)| (v, Payload::Conversation(c))),
            Payload::Conversation(conversation),
        )
        .await
    }

    /// Appends finished turns to a conversation (a new one if `id` is `None`, titled after
    /// its first user message and placed last in `folder_id`). Returns the conversation id.
    pub async fn append_turns(
        &mut self,
        id: Option<&str>,
        folder_id: Option<&str>,
        model: &str,
        turns: &[(Role, String)],
    ) -> Result<String> {
        let now = now_ms();
        let device = self.state.credential_id.clone();
        let (id, base) = match id {
            Some(id) => {
                let e = self.conversation(id).await?;
                (id.to_string(), Some((e.version, e.value)))
            }
            None => (new_item_id(), None),
        };
        let mut conv = match &base {
            Some((_, c)) => c.clone(),
            None => {
                let snap = self.sync().await?;
                let last = snap
                    .conversations
                    .iter()
                    .filter(|c| c.value.folder_id.as_deref() == folder_id)
                    .map(|c| c.value.order_key.clone())
                    .max();
                let title = turns
                    .iter()
                    .find(|(r, _)| *r == Role::User)
                    .map(|(_, t)| t.chars().take(60).collect())
                    .unwrap_or_default();
                Conversation {
                    title,
                    messages: Vec::new(),
                    model: model.to_string(),
                    folder_id: folder_id.map(str::to_string),
                    order_key: key_between(last.as_deref(), None)?,
                    created_at: now,
                    updated_at: now,
                    updated_by: device.clone(),
                }
            }
        };
        for (i, (role, content)) in turns.iter().enumerate() {
            conv.messages.push(Message {
                id: hex::encode(random::<8>()),
                role: *role,
                content: content.clone(),
                created_at: now + i as u64,
                device: device.clone(),
            });
        }
        conv.updated_at = now;
        conv.updated_by = device;
        self.save_conversation(&id, base, conv).await?;
        Ok(id)
    }

    /// Renames a conversation.
    pub async fn rename_conversation(&mut self, id: &str, title: &str) -> Result<()> {
        let e = self.conversation(id).await?;
        let mut c = e.value.clone();
        c.title = title.to_string();
        c.updated_at = now_ms();
        c.updated_by = self.state.credential_id.clone();
        self.save_conversation(id, Some((e.version, e.value)), c)
            .await
            .map(drop)
    }

    /// Deletes an item (conversation or folder) by writing an encrypted tombstone as its
    /// next version, so a store restoring the old blob is caught as a rollback.
    pub async fn delete(&mut self, id: &str) -> Result<()> {
        valid_item_id(id)?;
        let Some((v, payload)) = self.fetch(id, None).await? else {
            return Err(HistoryError::NotFound("item"));
        };
        let payload = payload.ok_or(HistoryError::Deleted)?;
        let blob = self
            .vault
            .seal_tombstone(id.as_bytes(), payload.kind(), v + 1, random())?;
        match self.store.put_item(id, v, blob.clone()).await? {
            Put::Ok(_) => {
                self.seen.record_own_write(id.as_bytes(), &blob)?;
                self.persist_seen()
            }
            Put::Conflict(_) => Err(HistoryError::ConflictRetriesExhausted),
        }
    }

    /// Creates a folder, placed last. Returns its id.
    pub async fn create_folder(&mut self, name: &str, instructions: &str) -> Result<String> {
        let snap = self.sync().await?;
        let last = snap.folders.last().map(|f| f.value.order_key.clone());
        let id = new_item_id();
        let f = Folder {
            name: name.to_string(),
            instructions: instructions.to_string(),
            order_key: key_between(last.as_deref(), None)?,
            updated_at: now_ms(),
            updated_by: self.state.credential_id.clone(),
        };
        self.write_item(&id, None, Payload::Folder(f)).await?;
        Ok(id)
    }

    async fn edit_folder(&mut self, id: &str, edit: impl FnOnce(&mut Folder)) -> Result<()> {
        let e = self.folder(id).await?;
        let mut f = e.value.clone();
        edit(&mut f);
        f.updated_at = now_ms();
        f.updated_by = self.state.credential_id.clone();
        self.write_item(
            id,
            Some((e.version, Payload::Folder(e.value))),
            Payload::Folder(f),
        )
        .await
        .map(drop)
    }

    /// Renames a folder.
    pub async fn rename_folder(&mut self, id: &str, name: &str) -> Result<()> {
        self.edit_folder(id, |f| f.name = name.to_string()).await
    }

    /// Sets a folder's instructions (the system prompt of its conversations).
    pub async fn set_instructions(&mut self, id: &str, text: &str) -> Result<()> {
        self.edit_folder(id, |f| f.instructions = text.to_string())
            .await
    }

    /// Moves a folder among folders, or a conversation among the conversations of the
    /// target's folder, to just before `before` or just after `after`. Only the moved item
    /// is rewritten (fractional order keys).
    pub async fn move_item(
        &mut self,
        id: &str,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<()> {
        let (target, place_before) = match (before, after) {
            (Some(t), None) => (t, true),
            (None, Some(t)) => (t, false),
            _ => {
                return Err(HistoryError::InvalidArgument(
                    "give exactly one of before/after",
                ));
            }
        };
        if target == id {
            return Err(HistoryError::InvalidArgument(
                "cannot move an item next to itself",
            ));
        }
        let snap = self.sync().await?;
        if let Some(f) = snap.folders.iter().find(|f| f.id == id) {
            let keys: Vec<(String, String)> = snap
                .folders
                .iter()
                .filter(|x| x.id != id)
                .map(|x| (x.id.clone(), x.value.order_key.clone()))
                .collect();
            let key = place(&keys, target, place_before)?;
            let mut nf = f.value.clone();
            nf.order_key = key;
            nf.updated_at = now_ms();
            nf.updated_by = self.state.credential_id.clone();
            let base = Some((f.version, Payload::Folder(f.value.clone())));
            return self
                .write_item(id, base, Payload::Folder(nf))
                .await
                .map(drop);
        }
        let c = snap
            .conversation(id)
            .ok_or(HistoryError::NotFound("conversation or folder"))?;
        let t = snap
            .conversation(target)
            .ok_or(HistoryError::NotFound("conversation"))?;
        let folder = t.value.folder_id.clone();
        let keys: Vec<(String, String)> = snap
            .conversations
            .iter()
            .filter(|x| x.id != id && x.value.folder_id == folder)
            .map(|x| (x.id.clone(), x.value.order_key.clone()))
            .collect();
        let key = place(&keys, target, place_before)?;
        let mut nc = c.value.clone();
        nc.order_key = key;
        nc.folder_id = folder;
        nc.updated_at = now_ms();
        nc.updated_by = self.state.credential_id.clone();
        let base = Some((c.version, c.value.clone()));
        self.save_conversation(id, base, nc).await.map(drop)
    }

    /// Moves a conversation into a folder (`None`: out of every folder), placed last.
    pub async fn set_conversation_folder(&mut self, id: &str, folder: Option<&str>) -> Result<()> {
        let snap = self.sync().await?;
        let c = snap
            .conversation(id)
            .ok_or(HistoryError::NotFound("conversation"))?
            .clone();
        if let Some(f) = folder
            && snap.folders.iter().all(|x| x.id != f)
        {
            return Err(HistoryError::NotFound("folder"));
        }
        let last = snap
            .conversations
            .iter()
            .filter(|x| x.id != id && x.value.folder_id.as_deref() == folder)
            .map(|x| x.value.order_key.clone())
            .max();
        let mut nc = c.value.clone();
        nc.folder_id = folder.map(str::to_string);
        nc.order_key = key_between(last.as_deref(), None)?;
        nc.updated_at = now_ms();
        nc.updated_by = self.state.credential_id.clone();
        self.save_conversation(id, Some((c.version, c.value)), nc)
            .await
            .map(drop)
    }

    /// The decrypted history as JSON (folders, conversations, devices).
    pub async fn export(&mut self) -> Result<serde_json::Value> {
        let snap = self.sync().await?;
        Ok(serde_json::json!({
            "format": "sotto-history-export-v1",
            "account_id": self.state.account_id,
            "folders": snap.folders,
            "conversations": snap.conversations,
        }))
    }

    /// The account's devices: the encrypted directory joined with the store's credentials.
    pub async fn devices(&mut self) -> Result<Vec<DeviceInfo>> {
        let snap = self.sync().await?;
        let dir = snap.devices.map(|d| d.value).unwrap_or_default();
        let creds = self.store.credentials().await?;
        let mut out = Vec::new();
        for c in &creds {
            let entry = dir
                .devices
                .iter()
                .find(|e| hex::encode(&e.credential.credential_id) == c.credential_id);
            out.push(DeviceInfo {
                credential_id: c.credential_id.clone(),
                name: entry.map(|e| e.name.clone()).unwrap_or_default(),
                this_device: c.credential_id == self.state.credential_id,
                active: c.revoked_at.is_none(),
                in_directory: entry.is_some(),
            });
        }
        Ok(out)
    }

    /// Enrolls a second device **on this machine** (a new state directory `new_dir`): registers
    /// its store key, wraps every epoch key for it with its KEK, adds it to the encrypted
    /// directory. The new device's secret never leaves this process, so no pairing
    /// protocol is needed; across machines use [`HistoryClient::request_pairing`] and
    /// [`HistoryClient::approve_pairing`].
    pub async fn enroll_local_device(&mut self, new_dir: &Path, name: &str) -> Result<Self> {
        if state::exists(new_dir) {
            return Err(HistoryError::AccountExists);
        }
        let root = zeroize::Zeroizing::new(random::<32>());
        let signing = store_signing_key(&root);
        let credential_id = self
            .store
            .add_credential(signing.verifying_key().as_bytes())
            .await?;
        let st = DeviceState {
            format: 1,
            store_url: self.state.store_url.clone(),
            account_id: self.state.account_id.clone(),
            credential_id: credential_id.clone(),
            device_name: name.to_string(),
        };
        let acct = store::decode16(&st.account_id)?;
        let cred = CredentialKeys::derive(
            &state::root_secret(&root),
            &acct,
            &store::decode16(&credential_id)?,
        )?;
        let records = self.vault.wrap_all(&cred, &mut fill_random)?;
        let epochs: Vec<u32> = self.vault.epochs().collect();
        for (epoch, rec) in epochs.into_iter().zip(records) {
            self.put_key_record(&key_id(&credential_id, epoch), rec)
                .await?;
        }
        self.update_directory(|d| {
            d.upsert(DeviceEntry {
                credential: cred.public(),
                kind: CredentialKind::Device,
                name: name.to_string(),
                added_at: now_ms(),
            });
            true
        })
        .await?;
        Self::write_new_device(new_dir, &st, &root)?;
        Self::open(new_dir).await
    }

    async fn directory(&mut self) -> Result<(u64, DeviceDirectory)> {
        match self.fetch(DEVICES_ITEM, Some(ItemKind::Devices)).await? {
            Some((v, Some(Payload::Devices(d)))) => Ok((v, d)),
            _ => Err(HistoryError::NotFound("device directory")),
        }
    }

    async fn update_directory(
        &mut self,
        edit: impl Fn(&mut DeviceDirectory) -> bool,
    ) -> Result<()> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (v, d) = self.directory().await?;
            let mut nd = d.clone();
            if !edit(&mut nd) {
                return Err(HistoryError::NotFound("device"));
            }
            let blob = self.vault.seal_payload(
                DEVICES_ITEM.as_bytes(),
                v + 1,
                &Payload::Devices(nd),
                random(),
            )?;
            if let Put::Ok(_) = self.store.put_item(DEVICES_ITEM, v, blob.clone()).await? {
                self.seen.record_own_write(DEVICES_ITEM.as_bytes(), &blob)?;
                return self.persist_seen();
            }
        }
        Err(HistoryError::ConflictRetriesExhausted)
    }

    /// Removes another device: revokes its store credential, rotates the account key to a
    /// new epoch wrapped for this device and sealed to every remaining device of the
    /// encrypted directory, rewrites the directory under the new epoch and deletes the
    /// removed device's wrapped keys. It keeps what it already had; it cannot read anything
    /// written afterwards.
    pub async fn remove_device(&mut self, credential_id: &str) -> Result<()> {
        if credential_id == self.state.credential_id {
            return Err(HistoryError::InvalidArgument("cannot remove this device"));
        }
        let removed = store::decode16(credential_id)
            .map_err(|_| HistoryError::InvalidArgument("not a credential id"))?;
        let (_, dir) = self.directory().await?;
        let mut remaining = dir.clone();
        if !remaining.remove(&removed) {
            return Err(HistoryError::NotFound("device"));
        }
        self.store.remove_credential(credential_id).await?;
        let rotation = self.vault.rotate_and_wrap(
            random(),
            &self.cred,
            &remaining.credentials(),
            &mut fill_random,
        )?;
        for (cid, rec) in rotation.records {
            self.put_key_record(&key_id(&hex::encode(cid), rotation.epoch), rec)
                .await?;
        }
        self.update_directory(|d| {
            d.remove(&removed);
            true
        })
        .await?;
        let prefix = format!("{credential_id}-e");
        for k in self.store.keys().await? {
            if k.key_id.starts_with(&prefix) {
                self.store.delete_key(&k.key_id, k.version).await?;
            }
        }
        Ok(())
    }
}

fn merge(base: Option<&Payload>, ours: &Payload, theirs: &Payload) -> Payload {
    match (ours, theirs) {
        (Payload::Conversation(o), Payload::Conversation(t)) => {
            let b = match base {
                Some(Payload::Conversation(b)) => Some(b),
                _ => None,
            };
            Payload::Conversation(merge_conversation(b, o, t))
        }
        (Payload::Folder(o), Payload::Folder(t)) => {
            let b = match base {
                Some(Payload::Folder(b)) => Some(b),
                _ => None,
            };
            Payload::Folder(merge_folder(b, o, t))
        }
        (Payload::Settings(o), Payload::Settings(t)) => {
            let b = match base {
                Some(Payload::Settings(b)) => Some(b),
                _ => None,
            };
            Payload::Settings(merge_settings(b, o, t))
        }
        _ => ours.clone(),
    }
}

/// Three-way merge of settings, field by field: a field this device changed (relative to
/// the version its edit started from) keeps its value; every other field takes theirs.
fn merge_settings(base: Option<&Settings>, ours: &Settings, theirs: &Settings) -> Settings {
    let empty = Settings::default();
    let base = base.unwrap_or(&empty);
    fn pick<T: Clone + PartialEq>(b: &T, o: &T, t: &T) -> T {
        if o != b { o.clone() } else { t.clone() }
    }
    let mut extra = theirs.extra.clone();
    let names: std::collections::BTreeSet<&String> =
        base.extra.keys().chain(ours.extra.keys()).collect();
    for name in names {
        let (b, o) = (base.extra.get(name), ours.extra.get(name));
        if b != o {
            match o {
                Some(v) => extra.insert(name.clone(), v.clone()),
                None => extra.remove(name),
            };
        }
    }
    Settings {
        default_model: pick(
            &base.default_model,
            &ours.default_model,
            &theirs.default_model,
        ),
        temperature: pick(&base.temperature, &ours.temperature, &theirs.temperature),
        save_history: pick(&base.save_history, &ours.save_history, &theirs.save_history),
        extra,
        updated_at: ours.updated_at.max(theirs.updated_at),
    }
}

/// An order key just before or after `target` among `(id, key)` siblings.
fn place(siblings: &[(String, String)], target: &str, before: bool) -> Result<String> {
    let mut s = siblings.to_vec();
    s.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let i = s
        .iter()
        .position(|x| x.0 == target)
        .ok_or(HistoryError::NotFound("target"))?;
    let (lo, hi) = if before {
        (
            i.checked_sub(1).map(|j| s[j].1.as_str()),
            Some(s[i].1.as_str()),
        )
    } else {
        (Some(s[i].1.as_str()), s.get(i + 1).map(|x| x.1.as_str()))
    };
    Ok(key_between(lo, hi)?)
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn settings(t: Option<f64>, save: Option<bool>, extra: &[(&str, &str)]) -> Settings {
        Settings {
            temperature: t,
            save_history: save,
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect(),
            ..Settings::default()
        }
    }

    #[test]
    fn each_side_keeps_the_fields_it_changed() {
        let base = settings(Some(0.5), None, &[("theme", "dark"), ("lang", "en")]);
        let ours = settings(Some(0.5), Some(false), &[("theme", "dark")]);
        let theirs = settings(Some(1.0), None, &[("theme", "light"), ("lang", "en")]);
        let m = merge_settings(Some(&base), &ours, &theirs);
        assert_eq!(m.temperature, Some(1.0), "theirs changed it");
        assert_eq!(m.save_history, Some(false), "ours changed it");
        assert_eq!(m.extra.get("theme"), Some(&serde_json::json!("light")));
        assert!(!m.extra.contains_key("lang"), "ours removed it");
    }

    #[test]
    fn both_changed_the_same_field_ours_wins() {
        let base = settings(Some(0.5), None, &[]);
        let m = merge_settings(
            Some(&base),
            &settings(Some(0.1), None, &[]),
            &settings(Some(0.9), None, &[]),
        );
        assert_eq!(m.temperature, Some(0.1));
        // Without a base (both created it), ours wins where it set something.
        let m = merge_settings(
            None,
            &settings(None, Some(true), &[]),
            &settings(Some(0.9), None, &[("a", "b")]),
        );
        assert_eq!((m.temperature, m.save_history), (Some(0.9), Some(true)));
        assert_eq!(m.extra.len(), 1);
    }
}
