//! JSON bodies of the HTTP API (shared with clients). Binary fields are standard base64 with
//! padding; account and credential ids are 32 lowercase hex digits; times are Unix
//! milliseconds. Request bodies reject unknown fields.

use serde::{Deserialize, Serialize};

/// A credential to register: `{"kind":"device-ed25519","public_key":"<base64, 32 bytes>"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewCredentialBody {
    /// Credential kind; only `device-ed25519` today.
    pub kind: String,
    /// The public key, base64.
    pub public_key: String,
    /// The credential id to use (32 lowercase hex digits), only when an approving device
    /// registers a paired device (whose id the client derives from its key; see
    /// `docs/history.md`). Omitted: the store picks a random id. Refused at account creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// `POST /v1/accounts` request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    /// The account's first credential.
    pub credential: NewCredentialBody,
}

/// `POST /v1/accounts` response (201).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateAccountResponse {
    /// The new account's id.
    pub account_id: String,
    /// The first credential's id.
    pub credential_id: String,
}

/// `POST /v1/auth/challenge` request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// Account id.
    pub account_id: String,
    /// Credential id.
    pub credential_id: String,
}

/// `POST /v1/auth/challenge` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChallengeResponse {
    /// 32 random bytes, base64.
    pub challenge: String,
    /// Answer before this time.
    pub expires_at: i64,
}

/// `POST /v1/auth/session` request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Account id.
    pub account_id: String,
    /// Credential id.
    pub credential_id: String,
    /// The challenge, base64, as received.
    pub challenge: String,
    /// Ed25519 signature (64 bytes, base64) of
    /// [`auth_message`](crate::auth_message)`(account, credential, challenge)`.
    pub signature: String,
}

/// `POST /v1/auth/session` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionResponse {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// The session ends at this time.
    pub expires_at: i64,
}

/// `GET /v1/accounts/{account}` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountInfo {
    /// Account id.
    pub account_id: String,
    /// Creation time.
    pub created_at: i64,
    /// Last sequence number handed out.
    pub last_seq: u64,
    /// Bytes of live items.
    pub used_bytes: u64,
    /// Number of live items.
    pub item_count: u64,
    /// Byte quota.
    pub quota_bytes: u64,
    /// Item quota.
    pub quota_items: u64,
    /// Largest item blob.
    pub max_blob_bytes: u64,
    /// Largest wrapped-key record.
    pub max_key_bytes: u64,
}

/// `POST /v1/accounts/{account}/credentials` response (201).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddCredentialResponse {
    /// The new credential's id.
    pub credential_id: String,
}

/// One credential in `GET /v1/accounts/{account}/credentials`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CredentialInfo {
    /// Credential id.
    pub credential_id: String,
    /// Kind.
    pub kind: String,
    /// Public key, base64.
    pub public_key: String,
    /// Creation time.
    pub created_at: i64,
    /// Removal time, `null` while active.
    pub revoked_at: Option<i64>,
}

/// `GET /v1/accounts/{account}/credentials` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CredentialList {
    /// Every credential, oldest first, removed ones included.
    pub credentials: Vec<CredentialInfo>,
}

/// Response to an item `PUT` or `DELETE`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemWriteResponse {
    /// The new version.
    pub version: u64,
    /// The change's sequence number.
    pub seq: u64,
}

/// Response to a wrapped-key `PUT`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyWriteResponse {
    /// The new version.
    pub version: u64,
}

/// One record in `GET /v1/accounts/{account}/keys`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key record id.
    pub key_id: String,
    /// Version.
    pub version: u64,
    /// The record, base64.
    pub blob: String,
    /// Last write.
    pub updated_at: i64,
}

/// `GET /v1/accounts/{account}/keys` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyList {
    /// Every record, by id.
    pub keys: Vec<KeyInfo>,
}

/// One change in `GET /v1/accounts/{account}/items`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangeInfo {
    /// Item id.
    pub item_id: String,
    /// Current version.
    pub version: u64,
    /// Sequence number of its last change.
    pub seq: u64,
    /// Whether the current version is a deletion.
    pub deleted: bool,
    /// Blob size in bytes (0 when deleted).
    pub size: u64,
    /// Last change.
    pub updated_at: i64,
    /// The blob, base64 — only with `blobs=true`, and never for deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// `GET /v1/accounts/{account}/items?since=…` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangesResponse {
    /// Changed items, in increasing `seq`.
    pub changes: Vec<ChangeInfo>,
    /// The cursor for the next request (`since=next_since`): the last `seq` in this page, or
    /// the request's `since` if the page is empty.
    pub next_since: u64,
    /// Whether more changes are waiting after this page.
    pub more: bool,
}

/// `POST /v1/accounts/{account}/pairing` request (unauthenticated: the new device is not a
/// credential yet).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PairingCreateRequest {
    /// The new device's Ed25519 store key (32 bytes, base64), registered on approval.
    pub public_key: String,
    /// The name the new device gives itself: 1–64 characters, no control characters.
    pub name: String,
    /// The vault's pairing request (base64, opaque to the store).
    pub request: String,
}

/// `POST /v1/accounts/{account}/pairing` response (201).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairingCreateResponse {
    /// The slot id (32 lowercase hex digits): the new device's handle on its slot.
    pub slot_id: String,
    /// The slot expires at this time.
    pub expires_at: i64,
}

/// A pairing slot, as `GET …/pairing/{slot}` and the list show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairingInfo {
    /// Slot id.
    pub slot_id: String,
    /// The account the new device asks to join.
    pub account_id: String,
    /// The new device's Ed25519 store key, base64.
    pub public_key: String,
    /// The name the new device gave itself (unauthenticated).
    pub name: String,
    /// The vault's pairing request, base64.
    pub request: String,
    /// `requested`, `responded`, `confirmed`, `aborted`, `approved` or `rejected`.
    pub state: String,
    /// The credential that responded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder_id: Option<String>,
    /// The vault's pairing response, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The vault's pairing confirmation, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// `GET /v1/accounts/{account}/pairing` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairingList {
    /// The account's unexpired slots (every state), oldest first.
    pub pairings: Vec<PairingInfo>,
}
