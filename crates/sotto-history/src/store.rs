//! The store's HTTP API (docs/store.md), as used by the client.

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::error::{HistoryError, Result};

/// Auth message label (docs/store.md).
pub const AUTH_LABEL: &[u8] = b"sotto-store-auth-v1";

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    #[serde(default)]
    current_version: Option<u64>,
}

/// One entry of the sync feed.
#[derive(Clone, Debug, Deserialize)]
pub struct Change {
    /// Item id.
    pub item_id: String,
    /// Store version.
    pub version: u64,
    /// Sequence number.
    pub seq: u64,
    /// Store-level deletion (never written by this client).
    pub deleted: bool,
    /// Blob (base64), with `blobs=true`.
    #[serde(default)]
    pub blob: Option<String>,
}

#[derive(Deserialize)]
struct ChangesResponse {
    changes: Vec<Change>,
    next_since: u64,
    more: bool,
}

/// A stored wrapped-key record.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyInfo {
    /// Key id.
    pub key_id: String,
    /// Version.
    pub version: u64,
    /// Record (base64).
    pub blob: String,
}

/// A store credential.
#[derive(Clone, Debug, Deserialize)]
pub struct CredentialInfo {
    /// Credential id (hex).
    pub credential_id: String,
    /// Kind.
    pub kind: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Removal time (ms), if removed.
    pub revoked_at: Option<i64>,
}

/// A pairing slot as the store shows it (docs/store.md, "Pairing slots"). Everything in it
/// is unauthenticated: the vault's pairing exchange is what authenticates.
#[derive(Clone, Debug, Deserialize)]
pub struct PairingSlotInfo {
    /// Slot id (hex).
    pub slot_id: String,
    /// Account id (hex).
    pub account_id: String,
    /// The new device's Ed25519 store key (base64).
    pub public_key: String,
    /// The name the new device gave itself.
    pub name: String,
    /// The vault pairing request (base64).
    pub request: String,
    /// `requested`, `responded`, `confirmed`, `aborted`, `approved` or `rejected`.
    pub state: String,
    /// The vault pairing response (base64).
    #[serde(default)]
    pub response: Option<String>,
    /// The vault pairing confirmation (base64).
    #[serde(default)]
    pub confirm: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms).
    pub expires_at: i64,
}

/// Outcome of a conditional write.
pub enum Put {
    /// Written; the new version.
    Ok(u64),
    /// The item is at another version (0: absent).
    Conflict(u64),
}

/// An HTTP client for one account.
pub struct StoreClient {
    http: reqwest::Client,
    base: String,
    account: String,
    token: Option<String>,
}

/// Largest error or small JSON response read from the store (the store's own are < 1 KiB).
const MAX_SMALL_BODY: usize = 64 << 10;
/// Largest item blob read from the store: the store's default blob limit (1 MiB) plus slack
/// for deployments that raise it a little. A larger answer is a protocol error, not an OOM.
pub const MAX_BLOB_BODY: usize = 4 << 20;
/// Largest pairing slot read (request ≤ 1 KiB, response ≤ 64 KiB, base64, JSON).
const MAX_SLOT_BODY: usize = 128 << 10;
/// Most pairing slots a listing may hold, and the largest listing read.
const MAX_SLOTS_LISTED: usize = 64;
const MAX_SLOT_LIST_BODY: usize = MAX_SLOTS_LISTED * MAX_SLOT_BODY;
/// Largest base64 blob accepted in the sync feed (a blob is at most [`MAX_BLOB_BODY`]).
const MAX_FEED_BLOB_B64: usize = MAX_BLOB_BODY / 3 * 4 + 4;
/// Most blob bytes (base64) one listing may bring into memory before it is processed.
const MAX_LISTING_BYTES: usize = 1 << 30;
/// Items per page of the sync feed asked of the store.
const PAGE_ITEMS: u32 = 200;
/// Largest sync page read: the store stops a page with blobs after 8 MiB (at least one item
/// always), base64 adds a third, JSON framing a little.
const MAX_PAGE_BODY: usize = 16 << 20;
/// Most items a listing may hold: the store's default quota is 100 000 items per account.
pub const MAX_LISTING_ITEMS: usize = 200_000;
/// Most pages one listing may take (each page holds at least one item).
const MAX_LISTING_PAGES: usize = 20_000;

/// Reads a response body through a hard limit: a declared `Content-Length` over the limit is
/// refused before reading, a streamed one as soon as it passes the limit. The store is not
/// trusted, so it must not be able to make the client buffer without bound.
pub(crate) async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    if let Some(len) = resp.content_length()
        && len > limit as u64
    {
        return Err(HistoryError::Protocol("store response too large"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(HistoryError::Protocol("store response too large"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads and parses a JSON response through a limit; `what` names it in the error.
async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    limit: usize,
    what: &'static str,
) -> Result<T> {
    let body = read_limited(resp, limit).await?;
    serde_json::from_slice(&body).map_err(|_| HistoryError::Protocol(what))
}

async fn fail(resp: reqwest::Response) -> HistoryError {
    let status = resp.status().as_u16();
    let code = match read_json::<ErrorBody>(resp, MAX_SMALL_BODY, "bad error body").await {
        Ok(b) => b.error.code,
        Err(_) => "unknown".into(),
    };
    HistoryError::Store { status, code }
}

impl StoreClient {
    /// A client for `base` (no session yet).
    pub fn new(base: &str, account: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(StoreClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            account: account.to_string(),
            token: None,
        })
    }

    /// `POST /v1/accounts`: returns `(account_id, credential_id)`.
    pub async fn create_account(base: &str, key: &SigningKey) -> Result<(String, String)> {
        let c = StoreClient::new(base, "")?;
        let resp = c
            .http
            .post(format!("{}/v1/accounts", c.base))
            .json(&json!({"credential": {"kind": "device-ed25519",
                "public_key": Base64::encode_string(key.verifying_key().as_bytes())}}))
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(fail(resp).await);
        }
        #[derive(Deserialize)]
        struct R {
            account_id: String,
            credential_id: String,
        }
        let r: R = read_json(resp, MAX_SMALL_BODY, "bad account response").await?;
        Ok((r.account_id, r.credential_id))
    }

    /// Challenge–response login.
    pub async fn login(&mut self, credential: &str, key: &SigningKey) -> Result<()> {
        let ids = json!({"account_id": self.account, "credential_id": credential});
        let resp = self
            .http
            .post(format!("{}/v1/auth/challenge", self.base))
            .json(&ids)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        #[derive(Deserialize)]
        struct Ch {
            challenge: String,
        }
        let ch: Ch = read_json(resp, MAX_SMALL_BODY, "bad challenge").await?;
        let challenge: [u8; 32] = Base64::decode_vec(&ch.challenge)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(HistoryError::Protocol("bad challenge"))?;
        let acct = decode16(&self.account)?;
        let cred = decode16(credential)?;
        let mut msg = AUTH_LABEL.to_vec();
        msg.extend_from_slice(&acct);
        msg.extend_from_slice(&cred);
        msg.extend_from_slice(&challenge);
        let sig = key.sign(&msg);
        let resp = self
            .http
            .post(format!("{}/v1/auth/session", self.base))
            .json(
                &json!({"account_id": self.account, "credential_id": credential,
                "challenge": ch.challenge, "signature": Base64::encode_string(&sig.to_bytes())}),
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        #[derive(Deserialize)]
        struct S {
            token: String,
        }
        let s: S = read_json(resp, MAX_SMALL_BODY, "bad session").await?;
        self.token = Some(s.token);
        Ok(())
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(
            method,
            format!("{}/v1/accounts/{}{}", self.base, self.account, path),
        );
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `GET …/items/{id}`: `None` if absent; `(version, blob)`.
    pub async fn get_item(&self, id: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let resp = self
            .req(Method::GET, &format!("/items/{id}"))
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        let version = resp
            .headers()
            .get("sotto-version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or(HistoryError::Protocol("missing Sotto-Version"))?;
        Ok(Some((version, read_limited(resp, MAX_BLOB_BODY).await?)))
    }

    /// `PUT …/items/{id}` with `If-Match: replaces`.
    pub async fn put_item(&self, id: &str, replaces: u64, blob: Vec<u8>) -> Result<Put> {
        self.put(&format!("/items/{id}"), replaces, blob).await
    }

    /// `PUT …/keys/{id}` with `If-Match: replaces`.
    pub async fn put_key(&self, id: &str, replaces: u64, blob: Vec<u8>) -> Result<Put> {
        self.put(&format!("/keys/{id}"), replaces, blob).await
    }

    async fn put(&self, path: &str, replaces: u64, blob: Vec<u8>) -> Result<Put> {
        let resp = self
            .req(Method::PUT, path)
            .header("If-Match", format!("\"{replaces}\""))
            .header("Content-Type", "application/octet-stream")
            .body(blob)
            .send()
            .await?;
        if resp.status() == StatusCode::CONFLICT {
            let status = resp.status().as_u16();
            let body: ErrorBody = read_json(resp, MAX_SMALL_BODY, "bad conflict").await?;
            return match body.error.current_version {
                Some(v) if body.error.code == "version_conflict" => Ok(Put::Conflict(v)),
                _ => Err(HistoryError::Store {
                    status,
                    code: body.error.code,
                }),
            };
        }
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        #[derive(Deserialize)]
        struct V {
            version: u64,
        }
        let v: V = read_json(resp, MAX_SMALL_BODY, "bad write response").await?;
        Ok(Put::Ok(v.version))
    }

    /// `DELETE …/keys/{id}` (any version; a missing key is fine).
    pub async fn delete_key(&self, id: &str, version: u64) -> Result<()> {
        let resp = self
            .req(Method::DELETE, &format!("/keys/{id}"))
            .header("If-Match", format!("\"{version}\""))
            .send()
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(fail(resp).await)
    }

    /// Every change since 0, with blobs (a complete listing of the account's items).
    pub async fn full_listing(&self) -> Result<Vec<Change>> {
        Ok(self.changes_since(0).await?.0)
    }

    /// Every change after sequence number `since`, with blobs, and the cursor to continue
    /// from. Bounded: at most [`MAX_LISTING_ITEMS`] changes and a fixed number of pages, each
    /// read through a size limit; the cursor must advance on every page.
    pub async fn changes_since(&self, mut since: u64) -> Result<(Vec<Change>, u64)> {
        let mut out = Vec::new();
        let mut total_bytes = 0usize;
        for _ in 0..MAX_LISTING_PAGES {
            let resp = self
                .req(
                    Method::GET,
                    &format!("/items?since={since}&limit={PAGE_ITEMS}&blobs=true"),
                )
                .send()
                .await?;
            if !resp.status().is_success() {
                return Err(fail(resp).await);
            }
            let page: ChangesResponse = read_json(resp, MAX_PAGE_BODY, "bad change feed").await?;
            if page.changes.len() > PAGE_ITEMS as usize {
                return Err(HistoryError::Protocol("change feed page too long"));
            }
            // Sequence numbers must increase, and stay within the page's cursor: otherwise a
            // store could make the client loop or skip changes it claims to have sent.
            let mut last = since;
            for c in &page.changes {
                if c.seq <= last || c.seq > page.next_since {
                    return Err(HistoryError::Protocol("change feed out of order"));
                }
                last = c.seq;
            }
            if out.len() + page.changes.len() > MAX_LISTING_ITEMS {
                return Err(HistoryError::Protocol("change feed too long"));
            }
            for c in &page.changes {
                let n = c.blob.as_ref().map_or(0, String::len);
                if n > MAX_FEED_BLOB_B64 {
                    return Err(HistoryError::Protocol("change feed blob too large"));
                }
                total_bytes += n;
            }
            if total_bytes > MAX_LISTING_BYTES {
                return Err(HistoryError::Protocol("change feed too large"));
            }
            out.extend(page.changes);
            if page.next_since < since {
                return Err(HistoryError::Protocol("change feed cursor went back"));
            }
            let advanced = page.next_since > since;
            since = page.next_since;
            if !page.more {
                return Ok((out, since));
            }
            if !advanced {
                return Err(HistoryError::Protocol("change feed cursor did not advance"));
            }
        }
        Err(HistoryError::Protocol("change feed too long"))
    }

    /// `GET …/keys`.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>> {
        #[derive(Deserialize)]
        struct L {
            keys: Vec<KeyInfo>,
        }
        let resp = self.req(Method::GET, "/keys").send().await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        let l: L = read_json(resp, MAX_BLOB_BODY, "bad key list").await?;
        Ok(l.keys)
    }

    /// `GET …/credentials`.
    pub async fn credentials(&self) -> Result<Vec<CredentialInfo>> {
        #[derive(Deserialize)]
        struct L {
            credentials: Vec<CredentialInfo>,
        }
        let resp = self.req(Method::GET, "/credentials").send().await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        let l: L = read_json(resp, MAX_BLOB_BODY, "bad credential list").await?;
        Ok(l.credentials)
    }

    /// `POST …/credentials`: registers another device's Ed25519 key.
    pub async fn add_credential(&self, key: &[u8; 32]) -> Result<String> {
        let resp = self
            .req(Method::POST, "/credentials")
            .json(&json!({"kind": "device-ed25519", "public_key": Base64::encode_string(key)}))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        #[derive(Deserialize)]
        struct R {
            credential_id: String,
        }
        let r: R = read_json(resp, MAX_SMALL_BODY, "bad credential response").await?;
        Ok(r.credential_id)
    }

    /// `POST …/credentials` with a chosen id (a paired device, whose id is derived from its
    /// key).
    pub async fn add_credential_with_id(&self, key: &[u8; 32], id: &str) -> Result<()> {
        let resp = self
            .req(Method::POST, "/credentials")
            .json(
                &json!({"kind": "device-ed25519", "public_key": Base64::encode_string(key),
                "credential_id": id}),
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        Ok(())
    }

    /// `POST …/pairing` (no session needed): opens a pairing slot; returns its id.
    pub async fn create_pairing(
        &self,
        key: &[u8; 32],
        name: &str,
        request: &[u8],
    ) -> Result<String> {
        let resp = self
            .req(Method::POST, "/pairing")
            .json(
                &json!({"public_key": Base64::encode_string(key), "name": name,
                "request": Base64::encode_string(request)}),
            )
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(fail(resp).await);
        }
        #[derive(Deserialize)]
        struct R {
            slot_id: String,
        }
        let r: R = read_json(resp, MAX_SMALL_BODY, "bad pairing response").await?;
        Ok(r.slot_id)
    }

    async fn slot_answer(resp: reqwest::Response) -> Result<PairingSlotInfo> {
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        // A slot holds at most a 1 KiB request, a 64 KiB response and a short confirmation,
        // base64-encoded.
        read_json(resp, MAX_SLOT_BODY, "bad pairing slot").await
    }

    fn slot_path(slot: &str) -> Result<&str> {
        if slot.len() != 32 || !slot.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HistoryError::InvalidArgument("not a pairing slot id"));
        }
        Ok(slot)
    }

    /// `GET /v1/pairing/{slot}` (the new device's view; no session).
    pub async fn requester_slot(&self, slot: &str) -> Result<PairingSlotInfo> {
        let slot = Self::slot_path(slot)?;
        let resp = self
            .http
            .get(format!("{}/v1/pairing/{slot}", self.base))
            .send()
            .await?;
        Self::slot_answer(resp).await
    }

    /// `PUT /v1/pairing/{slot}/confirm` (no session).
    pub async fn confirm_pairing(&self, slot: &str, confirm: Vec<u8>) -> Result<PairingSlotInfo> {
        let slot = Self::slot_path(slot)?;
        let resp = self
            .http
            .put(format!("{}/v1/pairing/{slot}/confirm", self.base))
            .header("Content-Type", "application/octet-stream")
            .body(confirm)
            .send()
            .await?;
        Self::slot_answer(resp).await
    }

    /// `POST /v1/pairing/{slot}/abort` (no session).
    pub async fn abort_pairing(&self, slot: &str) -> Result<PairingSlotInfo> {
        let slot = Self::slot_path(slot)?;
        let resp = self
            .http
            .post(format!("{}/v1/pairing/{slot}/abort", self.base))
            .send()
            .await?;
        Self::slot_answer(resp).await
    }

    /// `GET …/pairing`: the account's unexpired slots.
    pub async fn pairings(&self) -> Result<Vec<PairingSlotInfo>> {
        #[derive(Deserialize)]
        struct L {
            pairings: Vec<PairingSlotInfo>,
        }
        let resp = self.req(Method::GET, "/pairing").send().await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        let l: L = read_json(resp, MAX_SLOT_LIST_BODY, "bad pairing list").await?;
        if l.pairings.len() > MAX_SLOTS_LISTED {
            return Err(HistoryError::Protocol("pairing list too long"));
        }
        Ok(l.pairings)
    }

    /// `GET …/pairing/{slot}` (the approver's view).
    pub async fn approver_slot(&self, slot: &str) -> Result<PairingSlotInfo> {
        let slot = Self::slot_path(slot)?;
        let resp = self
            .req(Method::GET, &format!("/pairing/{slot}"))
            .send()
            .await?;
        Self::slot_answer(resp).await
    }

    /// `PUT …/pairing/{slot}/response`.
    pub async fn respond_pairing(&self, slot: &str, response: Vec<u8>) -> Result<PairingSlotInfo> {
        let slot = Self::slot_path(slot)?;
        let resp = self
            .req(Method::PUT, &format!("/pairing/{slot}/response"))
            .header("Content-Type", "application/octet-stream")
            .body(response)
            .send()
            .await?;
        Self::slot_answer(resp).await
    }

    /// `POST …/pairing/{slot}/approve` or `…/reject`.
    pub async fn finish_pairing(&self, slot: &str, approve: bool) -> Result<PairingSlotInfo> {
        let slot = Self::slot_path(slot)?;
        let verdict = if approve { "approve" } else { "reject" };
        let resp = self
            .req(Method::POST, &format!("/pairing/{slot}/{verdict}"))
            .send()
            .await?;
        Self::slot_answer(resp).await
    }

    /// `DELETE …/credentials/{id}`.
    pub async fn remove_credential(&self, id: &str) -> Result<()> {
        let resp = self
            .req(Method::DELETE, &format!("/credentials/{id}"))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        Ok(())
    }
}

pub(crate) fn decode16(hex_id: &str) -> Result<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut out)
        .map_err(|_| HistoryError::Protocol("id is not 32 hex digits"))?;
    Ok(out)
}
