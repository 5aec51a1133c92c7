//! The data model that lives only inside encrypted item bodies, and its versioned encoding:
//! `encoding byte || bytes`, where encoding `0x01` is UTF-8 JSON (conversation, folder,
//! settings, devices) and `0x00` raw bytes (index). Unknown JSON fields are ignored and
//! missing optional fields take defaults, so newer clients can add fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, VaultError};
use crate::item::{ItemHeader, ItemKind, Vault};
use crate::keys::CredentialPublic;

/// Body encoding byte: raw bytes.
pub const ENCODING_RAW: u8 = 0x00;
/// Body encoding byte: UTF-8 JSON.
pub const ENCODING_JSON: u8 = 0x01;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// One turn of a conversation. Messages are identified by `id` (random, chosen by the
/// device that created it) and treated as immutable once written; a regenerated answer is
/// a new message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Unique id within the conversation.
    pub id: String,
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Creation time, milliseconds since the Unix epoch (from the creating device's clock).
    pub created_at: u64,
    /// The device that created it (a tie-breaker for ordering and merging).
    #[serde(default)]
    pub device: String,
}

/// A conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Title.
    pub title: String,
    /// Messages, oldest first.
    pub messages: Vec<Message>,
    /// Model id used.
    #[serde(default)]
    pub model: String,
    /// The folder's item id (hex), or none.
    #[serde(default)]
    pub folder_id: Option<String>,
    /// Position within its folder (fractional index, see [`crate::order`]).
    #[serde(default)]
    pub order_key: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch (last-writer-wins stamp for metadata).
    pub updated_at: u64,
    /// The device that made the last update (tie-breaker for equal `updated_at`).
    #[serde(default)]
    pub updated_by: String,
}

/// A folder: its instructions are the system prompt of its conversations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    /// Name.
    pub name: String,
    /// Custom instructions (system prompt).
    #[serde(default)]
    pub instructions: String,
    /// Position among folders (fractional index).
    #[serde(default)]
    pub order_key: String,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub updated_at: u64,
    /// The device that made the last update.
    #[serde(default)]
    pub updated_by: String,
}

/// The account's settings (one item per account).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Default model id.
    #[serde(default)]
    pub default_model: Option<String>,
    /// Default sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Whether to save conversations automatically.
    #[serde(default)]
    pub save_history: Option<bool>,
    /// Further settings, by name (kept across clients that do not know them).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub updated_at: u64,
}

/// What kind of credential a device-directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A WebAuthn passkey (root secret = PRF output).
    Passkey,
    /// A command-line device (root secret = local device secret).
    Device,
}

/// One credential in the device directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// Ids and wrapping public key.
    pub credential: CredentialPublic,
    /// Passkey or device.
    pub kind: CredentialKind,
    /// Name the user gave it.
    #[serde(default)]
    pub name: String,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub added_at: u64,
}

/// The encrypted list of the account's credentials and their wrapping public keys: the
/// authenticated source a rotating device wraps the new epoch key for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDirectory {
    /// Entries, in the order added.
    pub devices: Vec<DeviceEntry>,
}

impl DeviceDirectory {
    /// Adds or replaces the entry with the same credential id.
    pub fn upsert(&mut self, entry: DeviceEntry) {
        match self
            .devices
            .iter_mut()
            .find(|e| e.credential.credential_id == entry.credential.credential_id)
        {
            Some(e) => *e = entry,
            None => self.devices.push(entry),
        }
    }

    /// Removes a credential; returns whether it was present.
    pub fn remove(&mut self, credential_id: &[u8]) -> bool {
        let before = self.devices.len();
        self.devices
            .retain(|e| e.credential.credential_id != credential_id);
        before != self.devices.len()
    }

    /// The credentials to wrap for.
    pub fn credentials(&self) -> Vec<CredentialPublic> {
        self.devices.iter().map(|e| e.credential.clone()).collect()
    }
}

/// A typed item body.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// A conversation.
    Conversation(Conversation),
    /// A folder.
    Folder(Folder),
    /// Settings.
    Settings(Settings),
    /// Opaque index bytes.
    Index(Vec<u8>),
    /// The device directory.
    Devices(DeviceDirectory),
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![ENCODING_JSON];
    serde_json::to_writer(&mut out, v).expect("model types serialise");
    out
}

fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T> {
    match body.split_first() {
        Some((&ENCODING_JSON, rest)) => serde_json::from_slice(rest)
            .map_err(|_| VaultError::PayloadInvalid("JSON does not match the item kind")),
        Some(_) => Err(VaultError::PayloadInvalid("unknown body encoding")),
        None => Err(VaultError::PayloadInvalid("empty body")),
    }
}

impl Payload {
    /// The item kind this payload is stored as.
    pub fn kind(&self) -> ItemKind {
        match self {
            Payload::Conversation(_) => ItemKind::Conversation,
            Payload::Folder(_) => ItemKind::Folder,
            Payload::Settings(_) => ItemKind::Settings,
            Payload::Index(_) => ItemKind::Index,
            Payload::Devices(_) => ItemKind::Devices,
        }
    }

    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Payload::Conversation(c) => json(c),
            Payload::Folder(f) => json(f),
            Payload::Settings(s) => json(s),
            Payload::Devices(d) => json(d),
            Payload::Index(b) => {
                let mut out = Vec::with_capacity(1 + b.len());
                out.push(ENCODING_RAW);
                out.extend_from_slice(b);
                out
            }
        }
    }

    /// Decodes a body of the given (authenticated) kind.
    pub fn decode(kind: ItemKind, body: &[u8]) -> Result<Self> {
        Ok(match kind {
            ItemKind::Conversation => Payload::Conversation(from_json(body)?),
            ItemKind::Folder => Payload::Folder(from_json(body)?),
            ItemKind::Settings => Payload::Settings(from_json(body)?),
            ItemKind::Devices => Payload::Devices(from_json(body)?),
            ItemKind::Index => match body.split_first() {
                Some((&ENCODING_RAW, rest)) => Payload::Index(rest.to_vec()),
                Some(_) => return Err(VaultError::PayloadInvalid("unknown body encoding")),
                None => return Err(VaultError::PayloadInvalid("empty body")),
            },
        })
    }
}

impl Vault {
    /// Seals a typed payload (its kind is the payload's) under the newest epoch.
    pub fn seal_payload(
        &self,
        item_id: &[u8],
        version: u64,
        payload: &Payload,
        nonce: [u8; 24],
    ) -> Result<Vec<u8>> {
        let body = zeroize::Zeroizing::new(payload.encode());
        self.seal_item(item_id, payload.kind(), version, &body, nonce)
    }

    /// Opens and decodes a typed item: `None` for a tombstone.
    pub fn open_payload(
        &self,
        item_id: &[u8],
        expected_kind: Option<ItemKind>,
        blob: &[u8],
    ) -> Result<(ItemHeader, Option<Payload>)> {
        let opened = self.open_item(item_id, expected_kind, blob)?;
        if opened.header.deleted {
            return Ok((opened.header, None));
        }
        let p = Payload::decode(opened.header.kind, &opened.body)?;
        Ok((opened.header, Some(p)))
    }
}

/// Serde helper: bytes as lowercase hex.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serde helper: 32 bytes as lowercase hex.
pub(crate) mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
