//! The HTTP API (axum). See `docs/store.md` for the reference.
//!
//! Blobs travel as raw `application/octet-stream` bodies; everything else is JSON. Bodies are
//! read through a hard size limit before anything is parsed, ids and versions are validated
//! before the database is touched, and every rejection is a [`StoreError`] rendered as
//! `{"error":{"code","message"}}`. Logging: one access line per request with the route
//! *template*, status, body sizes and latency; handlers log ids, versions and sizes at
//! `debug`. Blob bytes are never logged.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::{Body, Bytes, HttpBody},
    extract::{FromRequestParts, MatchedPath, Path, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64ct::{Base64, Encoding};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::{
    AccountId, Backend, Clock, CredentialId, CredentialKind, ItemId, ItemWrite, KeyId, Limits,
    NewCredential, PairingId, PairingSlot, PairingState, PairingUpdate, Quota, Session, StoreError,
    api, auth,
};

#[path = "passkey.rs"]
pub(crate) mod passkey;
/// Largest pairing confirmation body.
pub const MAX_PAIRING_CONFIRM_BYTES: u64 = 256;
/// Longest device name in a pairing request, in characters.
pub const MAX_PAIRING_NAME_CHARS: usize = 64;

type R<T> = Result<T, StoreError>;

/// Header carrying an item's or key's version on `GET` (also in `ETag` as `"N"`).
pub const VERSION_HEADER: &str = "sotto-version";
/// Header carrying an item's sequence number on `GET`.
pub const SEQ_HEADER: &str = "sotto-seq";

/// The store service: a backend, its limits and a clock. Cheap to clone.
pub struct Store<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Store<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B> {
    backend: B,
    limits: Limits,
    clock: Arc<dyn Clock>,
    /// The WebAuthn relying party; `None`: passkey endpoints answer `passkeys_disabled`.
    passkeys: Option<Arc<passkey::RelyingParty>>,
}

impl<B: std::fmt::Debug> std::fmt::Debug for Store<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

impl<B: Backend> Store<B> {
    /// A store over `backend` with the system clock.
    pub fn new(backend: B, limits: Limits) -> R<Self> {
        Self::with_clock(backend, limits, Arc::new(crate::SystemClock))
    }

    /// A store with an explicit clock (tests).
    pub fn with_clock(backend: B, limits: Limits, clock: Arc<dyn Clock>) -> R<Self> {
        limits.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                limits,
                clock,
                passkeys: None,
            }),
        })
    }

    /// Enables WebAuthn passkeys (registration and login ceremonies) with this relying
    /// party. Call before the store is cloned or served.
    pub fn with_passkeys(mut self, config: &passkey::PasskeyConfig) -> R<Self> {
        let rp = passkey::relying_party(config)?;
        let inner = Arc::get_mut(&mut self.inner).ok_or_else(|| {
            StoreError::InvalidConfig("with_passkeys on a store already in use".into())
        })?;
        inner.passkeys = Some(rp);
        Ok(self)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn quota(&self) -> Quota {
        Quota {
            max_bytes: self.inner.limits.quota_bytes,
            max_items: self.inner.limits.quota_items,
        }
    }

    /// The HTTP routes (see `docs/store.md`).
    pub fn router(&self) -> Router {
        let accounts = "/v1/accounts/{account}";
        Router::new()
            .route("/healthz", get(healthz))
            .route("/v1/accounts", post(create_account::<B>))
            .route(accounts, get(account_info::<B>))
            .route("/v1/auth/challenge", post(issue_challenge::<B>))
            .route(
                "/v1/auth/session",
                post(open_session::<B>).delete(close_session::<B>),
            )
            .route(
                &format!("{accounts}/credentials"),
                get(list_credentials::<B>).post(add_credential::<B>),
            )
            .route(
                &format!("{accounts}/credentials/{{credential}}"),
                axum::routing::delete(remove_credential::<B>),
            )
            .route(&format!("{accounts}/keys"), get(list_keys::<B>))
            .route(
                &format!("{accounts}/keys/{{key}}"),
                get(get_key::<B>).put(put_key::<B>).delete(delete_key::<B>),
            )
            .route(&format!("{accounts}/items"), get(list_changes::<B>))
            .route(
                &format!("{accounts}/items/{{item}}"),
                get(get_item::<B>)
                    .put(put_item::<B>)
                    .delete(delete_item::<B>),
            )
            .merge(passkey::routes::<B>())
            .route(
                &format!("{accounts}/pairing"),
                get(list_pairings::<B>).post(create_pairing::<B>),
            )
            .route(
                &format!("{accounts}/pairing/{{slot}}"),
                get(approver_get_pairing::<B>),
            )
            .route(
                &format!("{accounts}/pairing/{{slot}}/response"),
                axum::routing::put(respond_pairing::<B>),
            )
            .route(
                &format!("{accounts}/pairing/{{slot}}/approve"),
                post(approve_pairing::<B>),
            )
            .route(
                &format!("{accounts}/pairing/{{slot}}/reject"),
                post(reject_pairing::<B>),
            )
            .route("/v1/pairing/{slot}", get(requester_get_pairing::<B>))
            .route(
                "/v1/pairing/{slot}/confirm",
                axum::routing::put(confirm_pairing::<B>),
            )
            .route("/v1/pairing/{slot}/abort", post(abort_pairing::<B>))
            .fallback(|| async { StoreError::NotFound })
            .method_not_allowed_fallback(|| async { StoreError::MethodNotAllowed })
            .layer(middleware::from_fn(access_log))
            .with_state(self.clone())
    }

    /// Checks the bearer token and that the session may touch `account`.
    async fn authenticate(&self, headers: &HeaderMap, account: &AccountId) -> R<Session> {
        let session = self.session_from_headers(headers).await?;
        if session.account != *account {
            return Err(StoreError::Forbidden);
        }
        Ok(session)
    }

    async fn session_from_headers(&self, headers: &HeaderMap) -> R<Session> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(StoreError::MissingToken)?;
        let value = value.to_str().map_err(|_| StoreError::InvalidToken)?;
        let (scheme, token) = value.split_once(' ').ok_or(StoreError::InvalidToken)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(StoreError::InvalidToken);
        }
        let hash = auth::token_hash(token.trim()).ok_or(StoreError::InvalidToken)?;
        let session = self
            .inner
            .backend
            .session(hash)
            .await?
            .ok_or(StoreError::InvalidToken)?;
        if session.expires_at <= self.now() {
            return Err(StoreError::TokenExpired);
        }
        Ok(session)
    }
}

// ---- extraction helpers -----------------------------------------------------------------------

/// Path parameters with rejections rendered as [`StoreError`].
struct Params<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = StoreError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> R<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Params(t))
            .map_err(|e| StoreError::MalformedRequest(e.body_text()))
    }
}

/// Reads a body through a hard limit: a `Content-Length` over the limit is refused before
/// reading, a chunked body as soon as it passes the limit.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    too_large: impl Fn() -> StoreError,
) -> R<Bytes> {
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::MalformedRequest("bad Content-Length".into()))?;
        if len > limit {
            return Err(too_large());
        }
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(StoreError::MalformedRequest(
            "could not read the request body".into(),
        )),
    }
}

async fn read_json<B: Backend, T: DeserializeOwned>(
    store: &Store<B>,
    headers: &HeaderMap,
    body: Body,
) -> R<T> {
    let limit = store.limits().max_json_bytes;
    let bytes = read_body(headers, body, limit, || StoreError::RequestTooLarge {
        limit,
    })
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::MalformedRequest(e.to_string()))
}

/// The version named by `If-Match` (`"N"` or `N`; `0` = create).
fn expected_version(headers: &HeaderMap) -> R<u64> {
    let value = headers
        .get(header::IF_MATCH)
        .ok_or(StoreError::VersionRequired)?;
    let s = value
        .to_str()
        .map_err(|_| StoreError::InvalidVersion)?
        .trim();
    let digits = match s.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').ok_or(StoreError::InvalidVersion)?,
        None => s,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(StoreError::InvalidVersion);
    }
    let v: u64 = digits.parse().map_err(|_| StoreError::InvalidVersion)?;
    if v > i64::MAX as u64 {
        return Err(StoreError::InvalidVersion);
    }
    Ok(v)
}

fn decode_b64(what: &str, s: &str) -> R<Vec<u8>> {
    Base64::decode_vec(s).map_err(|_| StoreError::MalformedRequest(format!("{what}: not base64")))
}

fn decode_b64_array<const N: usize>(what: &str, s: &str) -> R<[u8; N]> {
    decode_b64(what, s)?
        .try_into()
        .map_err(|_| StoreError::MalformedRequest(format!("{what}: must be {N} bytes")))
}

fn new_credential(body: &api::NewCredentialBody) -> R<NewCredential> {
    let kind = CredentialKind::parse(&body.kind)?;
    let public_key =
        Base64::decode_vec(&body.public_key).map_err(|_| StoreError::InvalidPublicKey)?;
    kind.validate_public_key(&public_key)?;
    let id = match &body.credential_id {
        Some(id) => CredentialId::parse(id)?,
        None => CredentialId::random()?,
    };
    Ok(NewCredential {
        id,
        kind,
        public_key,
    })
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header value")
}

fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

fn blob_response(blob: Vec<u8>, version: u64, seq: Option<u64>) -> Response {
    let mut response = (StatusCode::OK, blob).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::ETAG, etag(version));
    h.insert(VERSION_HEADER, number(version));
    if let Some(seq) = seq {
        h.insert(SEQ_HEADER, number(seq));
    }
    response
}

fn json_with_etag<T: serde::Serialize>(status: StatusCode, body: &T, version: u64) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

// ---- access log -------------------------------------------------------------------------------

/// Logs one line per request (never bodies) and closes connections whose request body may
/// be unread.
async fn access_log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "-".to_owned());
    let request_bytes = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let has_body = request_bytes.is_some_and(|n| n > 0)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let start = Instant::now();
    let mut response = next.run(request).await;
    // An error may have been answered without reading the body (413, or auth refused before
    // reading): close the connection so the unread bytes are not taken for the next request.
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let response_bytes = response.body().size_hint().exact();
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        request_bytes,
        response_bytes,
        micros = start.elapsed().as_micros() as u64,
        "request"
    );
    response
}

// ---- handlers ---------------------------------------------------------------------------------

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn create_account<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let request: api::CreateAccountRequest = read_json(&store, &headers, body).await?;
    if request.credential.credential_id.is_some() {
        return Err(StoreError::MalformedRequest(
            "credential_id may not be chosen at account creation".into(),
        ));
    }
    let credential = new_credential(&request.credential)?;
    let account = AccountId::random()?;
    let credential_id = credential.id;
    store
        .backend()
        .create_account(account, credential, store.now())
        .await?;
    tracing::debug!(%account, credential = %credential_id, "account created");
    Ok((
        StatusCode::CREATED,
        Json(api::CreateAccountResponse {
            account_id: account.to_string(),
            credential_id: credential_id.to_string(),
        }),
    )
        .into_response())
}

async fn account_info<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let usage = store
        .backend()
        .account(account)
        .await?
        .ok_or(StoreError::UnknownAccount)?;
    let limits = store.limits();
    Ok(Json(api::AccountInfo {
        account_id: account.to_string(),
        created_at: usage.created_at,
        last_seq: usage.last_seq,
        used_bytes: usage.used_bytes,
        item_count: usage.item_count,
        quota_bytes: limits.quota_bytes,
        quota_items: limits.quota_items,
        max_blob_bytes: limits.max_blob_bytes,
        max_key_bytes: limits.max_key_bytes,
    })
    .into_response())
}

async fn issue_challenge<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let request: api::ChallengeRequest = read_json(&store, &headers, body).await?;
    let account = AccountId::parse(&request.account_id)?;
    let credential_id = CredentialId::parse(&request.credential_id)?;
    if store.backend().account(account).await?.is_none() {
        return Err(StoreError::UnknownAccount);
    }
    let credential = store
        .backend()
        .credential(account, credential_id)
        .await?
        .ok_or(StoreError::UnknownCredential)?;
    if credential.revoked_at.is_some() {
        return Err(StoreError::CredentialRevoked);
    }
    // Passkeys log in through the WebAuthn ceremony (`/v1/auth/passkey/*`), never here.
    if credential.kind != CredentialKind::DeviceEd25519 {
        return Err(StoreError::UnsupportedCredentialKind);
    }
    let now = store.now();
    let challenge = crate::Challenge {
        challenge: auth::new_challenge()?,
        account,
        credential: credential_id,
        expires_at: now.saturating_add(store.limits().challenge_ttl.as_millis() as i64),
    };
    let response = api::ChallengeResponse {
        challenge: Base64::encode_string(&challenge.challenge),
        expires_at: challenge.expires_at,
    };
    store
        .backend()
        .insert_challenge(challenge, store.limits().max_outstanding_challenges, now)
        .await?;
    Ok(Json(response).into_response())
}

async fn open_session<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let request: api::SessionRequest = read_json(&store, &headers, body).await?;
    let account = AccountId::parse(&request.account_id)?;
    let credential_id = CredentialId::parse(&request.credential_id)?;
    let challenge: [u8; 32] = decode_b64_array("challenge", &request.challenge)?;
    let signature: [u8; 64] = decode_b64_array("signature", &request.signature)?;
    // Single use: the challenge is gone from here on, whether or not the answer verifies.
    let issued = store
        .backend()
        .take_challenge(challenge)
        .await?
        .ok_or(StoreError::InvalidChallenge)?;
    if issued.account != account || issued.credential != credential_id {
        return Err(StoreError::InvalidChallenge);
    }
    let now = store.now();
    if issued.expires_at <= now {
        return Err(StoreError::ChallengeExpired);
    }
    let credential = store
        .backend()
        .credential(account, credential_id)
        .await?
        .ok_or(StoreError::UnknownCredential)?;
    if credential.revoked_at.is_some() {
        return Err(StoreError::CredentialRevoked);
    }
    match credential.kind {
        CredentialKind::DeviceEd25519 => auth::verify_device_signature(
            &credential.public_key,
            &auth::auth_message(&account, &credential_id, &challenge),
            &signature,
        )?,
        // No challenge is ever issued to a passkey (see `issue_challenge`).
        CredentialKind::WebauthnPasskey => return Err(StoreError::UnsupportedCredentialKind),
    }
    let (token, token_hash) = auth::new_token()?;
    let expires_at = now.saturating_add(store.limits().session_ttl.as_millis() as i64);
    store
        .backend()
        .insert_session(
            Session {
                token_hash,
                account,
                credential: credential_id,
                expires_at,
            },
            now,
        )
        .await?;
    tracing::debug!(%account, credential = %credential_id, "session opened");
    Ok(Json(api::SessionResponse { token, expires_at }).into_response())
}

async fn close_session<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
) -> R<Response> {
    let session = store.session_from_headers(&headers).await?;
    store.backend().delete_session(session.token_hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_credentials<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let credentials = store.backend().credentials(account).await?;
    Ok(Json(api::CredentialList {
        credentials: credentials
            .into_iter()
            .map(|c| api::CredentialInfo {
                credential_id: c.id.to_string(),
                kind: c.kind.as_str().to_owned(),
                public_key: Base64::encode_string(&c.public_key),
                created_at: c.created_at,
                revoked_at: c.revoked_at,
            })
            .collect(),
    })
    .into_response())
}

async fn add_credential<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let request: api::NewCredentialBody = read_json(&store, &headers, body).await?;
    let credential = new_credential(&request)?;
    let id = credential.id;
    store
        .backend()
        .add_credential(
            account,
            credential,
            store.limits().max_credentials,
            store.now(),
        )
        .await?;
    tracing::debug!(%account, credential = %id, "credential added");
    Ok((
        StatusCode::CREATED,
        Json(api::AddCredentialResponse {
            credential_id: id.to_string(),
        }),
    )
        .into_response())
}

async fn remove_credential<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, credential)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let credential = CredentialId::parse(&credential)?;
    store.authenticate(&headers, &account).await?;
    match store
        .backend()
        .revoke_credential(account, credential, store.now())
        .await
    {
        // Idempotent: removing a removed device is a success.
        Ok(()) | Err(StoreError::CredentialRevoked) => {}
        Err(e) => return Err(e),
    }
    tracing::debug!(%account, %credential, "credential removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_keys<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let keys = store.backend().keys(account).await?;
    Ok(Json(api::KeyList {
        keys: keys
            .into_iter()
            .map(|k| api::KeyInfo {
                key_id: k.id.to_string(),
                version: k.version,
                blob: Base64::encode_string(&k.blob),
                updated_at: k.updated_at,
            })
            .collect(),
    })
    .into_response())
}

async fn get_key<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, key)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let key = KeyId::parse(&key)?;
    store.authenticate(&headers, &account).await?;
    let record = store
        .backend()
        .key(account, key)
        .await?
        .ok_or(StoreError::KeyNotFound)?;
    Ok(blob_response(record.blob, record.version, None))
}

async fn put_key<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, key)): Params<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let key = KeyId::parse(&key)?;
    store.authenticate(&headers, &account).await?;
    let expected = expected_version(&headers)?;
    let limit = store.limits().max_key_bytes;
    let blob = read_body(&headers, body, limit, || StoreError::BlobTooLarge { limit }).await?;
    let size = blob.len();
    let version = store
        .backend()
        .put_key(
            account,
            key.clone(),
            expected,
            blob.to_vec(),
            store.limits().max_keys,
            store.now(),
        )
        .await?;
    tracing::debug!(%account, %key, version, size, "wrapped key written");
    Ok(json_with_etag(
        StatusCode::OK,
        &api::KeyWriteResponse { version },
        version,
    ))
}

async fn delete_key<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, key)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let key = KeyId::parse(&key)?;
    store.authenticate(&headers, &account).await?;
    let expected = expected_version(&headers)?;
    store
        .backend()
        .delete_key(account, key.clone(), expected)
        .await?;
    tracing::debug!(%account, %key, "wrapped key deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_item<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, item)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let item = ItemId::parse(&item)?;
    store.authenticate(&headers, &account).await?;
    let item = store
        .backend()
        .item(account, item)
        .await?
        .ok_or(StoreError::ItemNotFound)?;
    if item.deleted {
        return Err(StoreError::ItemDeleted {
            version: item.version,
        });
    }
    Ok(blob_response(item.blob, item.version, Some(item.seq)))
}

async fn put_item<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, item)): Params<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let item = ItemId::parse(&item)?;
    store.authenticate(&headers, &account).await?;
    let expected = expected_version(&headers)?;
    let limit = store.limits().max_blob_bytes;
    let blob = read_body(&headers, body, limit, || StoreError::BlobTooLarge { limit }).await?;
    let size = blob.len();
    let outcome = store
        .backend()
        .write_item(
            account,
            item.clone(),
            expected,
            ItemWrite::Put(blob.to_vec()),
            store.quota(),
            store.now(),
        )
        .await?;
    tracing::debug!(%account, %item, version = outcome.version, seq = outcome.seq, size, "item written");
    Ok(json_with_etag(
        StatusCode::OK,
        &api::ItemWriteResponse {
            version: outcome.version,
            seq: outcome.seq,
        },
        outcome.version,
    ))
}

async fn delete_item<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, item)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let item = ItemId::parse(&item)?;
    store.authenticate(&headers, &account).await?;
    let expected = expected_version(&headers)?;
    let outcome = store
        .backend()
        .write_item(
            account,
            item.clone(),
            expected,
            ItemWrite::Delete,
            store.quota(),
            store.now(),
        )
        .await?;
    tracing::debug!(%account, %item, version = outcome.version, seq = outcome.seq, "item deleted");
    Ok(json_with_etag(
        StatusCode::OK,
        &api::ItemWriteResponse {
            version: outcome.version,
            seq: outcome.seq,
        },
        outcome.version,
    ))
}

// ---- pairing slots ----------------------------------------------------------------------------

fn pairing_info(slot: &PairingSlot) -> api::PairingInfo {
    api::PairingInfo {
        slot_id: slot.id.to_string(),
        account_id: slot.account.to_string(),
        public_key: Base64::encode_string(&slot.public_key),
        name: slot.name.clone(),
        request: Base64::encode_string(&slot.request),
        state: slot.state.as_str().to_owned(),
        responder_id: slot.responder.map(|r| r.to_string()),
        response: slot.response.as_deref().map(Base64::encode_string),
        confirm: slot.confirm.as_deref().map(Base64::encode_string),
        created_at: slot.created_at,
        expires_at: slot.expires_at,
    }
}

/// A new device asks to join an account. Unauthenticated, so bounded: the account must
/// exist, the body is small, and an account has at most `max_pending_pairings` open slots.
async fn create_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let request: api::PairingCreateRequest = read_json(&store, &headers, body).await?;
    let public_key =
        Base64::decode_vec(&request.public_key).map_err(|_| StoreError::InvalidPublicKey)?;
    CredentialKind::DeviceEd25519.validate_public_key(&public_key)?;
    let chars = request.name.chars().count();
    if chars == 0 || chars > MAX_PAIRING_NAME_CHARS || request.name.chars().any(is_hidden_char) {
        return Err(StoreError::MalformedRequest(format!(
            "name: 1 to {MAX_PAIRING_NAME_CHARS} characters, no control characters"
        )));
    }
    let vault_request = decode_b64("request", &request.request)?;
    let limit = store.limits().max_pairing_request_bytes;
    if vault_request.len() as u64 > limit {
        return Err(StoreError::BlobTooLarge { limit });
    }
    if vault_request.is_empty() {
        return Err(StoreError::MalformedRequest("request: empty".into()));
    }
    let now = store.now();
    let slot = PairingSlot {
        id: PairingId::random()?,
        account,
        public_key,
        name: request.name,
        request: vault_request,
        state: PairingState::Requested,
        responder: None,
        response: None,
        confirm: None,
        created_at: now,
        expires_at: now.saturating_add(store.limits().pairing_ttl.as_millis() as i64),
    };
    let (id, expires_at) = (slot.id, slot.expires_at);
    store
        .backend()
        .create_pairing(slot, store.limits().max_pending_pairings, now)
        .await?;
    tracing::debug!(%account, slot = %id, "pairing slot created");
    Ok((
        StatusCode::CREATED,
        Json(api::PairingCreateResponse {
            slot_id: id.to_string(),
            expires_at,
        }),
    )
        .into_response())
}

async fn list_pairings<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let slots = store.backend().pairings(account, store.now()).await?;
    Ok(Json(api::PairingList {
        pairings: slots.iter().map(pairing_info).collect(),
    })
    .into_response())
}

/// The slot, if it exists, belongs to `account` (another account's slot is "not found") and
/// has not expired.
async fn account_slot<B: Backend>(
    store: &Store<B>,
    account: Option<AccountId>,
    slot: &str,
) -> R<PairingSlot> {
    let id = PairingId::parse(slot)?;
    let slot = store
        .backend()
        .pairing(id)
        .await?
        .filter(|s| account.is_none_or(|a| a == s.account))
        .ok_or(StoreError::PairingNotFound)?;
    if slot.expires_at <= store.now() {
        return Err(StoreError::PairingExpired);
    }
    Ok(slot)
}

async fn approver_get_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, slot)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let slot = account_slot(&store, Some(account), &slot).await?;
    Ok(Json(pairing_info(&slot)).into_response())
}

async fn respond_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, slot)): Params<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    let session = store.authenticate(&headers, &account).await?;
    let slot = account_slot(&store, Some(account), &slot).await?;
    let limit = store.limits().max_pairing_response_bytes;
    let response = read_body(&headers, body, limit, || StoreError::BlobTooLarge { limit }).await?;
    if response.is_empty() {
        return Err(StoreError::MalformedRequest("empty response".into()));
    }
    let update = PairingUpdate::Respond {
        responder: session.credential,
        response: response.to_vec(),
    };
    let slot = store
        .backend()
        .advance_pairing(slot.id, update, store.now())
        .await?;
    tracing::debug!(%account, slot = %slot.id, size = response.len(), "pairing response stored");
    Ok(Json(pairing_info(&slot)).into_response())
}

async fn finish_pairing<B: Backend>(
    store: Store<B>,
    account: String,
    slot: String,
    headers: HeaderMap,
    update: PairingUpdate,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let slot = account_slot(&store, Some(account), &slot).await?;
    let slot = store
        .backend()
        .advance_pairing(slot.id, update, store.now())
        .await?;
    tracing::debug!(%account, slot = %slot.id, state = slot.state.as_str(), "pairing finished");
    Ok(Json(pairing_info(&slot)).into_response())
}

async fn approve_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, slot)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    finish_pairing(store, account, slot, headers, PairingUpdate::Approve).await
}

async fn reject_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params((account, slot)): Params<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    finish_pairing(store, account, slot, headers, PairingUpdate::Reject).await
}

async fn requester_get_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params(slot): Params<String>,
) -> R<Response> {
    let slot = account_slot(&store, None, &slot).await?;
    Ok(Json(pairing_info(&slot)).into_response())
}

async fn confirm_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params(slot): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let id = PairingId::parse(&slot)?;
    let limit = MAX_PAIRING_CONFIRM_BYTES;
    let confirm = read_body(&headers, body, limit, || StoreError::BlobTooLarge { limit }).await?;
    if confirm.is_empty() {
        return Err(StoreError::MalformedRequest("empty confirmation".into()));
    }
    let slot = store
        .backend()
        .advance_pairing(id, PairingUpdate::Confirm(confirm.to_vec()), store.now())
        .await?;
    tracing::debug!(slot = %slot.id, "pairing confirmation stored");
    Ok(Json(pairing_info(&slot)).into_response())
}

async fn abort_pairing<B: Backend>(
    State(store): State<Store<B>>,
    Params(slot): Params<String>,
) -> R<Response> {
    let id = PairingId::parse(&slot)?;
    let slot = store
        .backend()
        .advance_pairing(id, PairingUpdate::Abort, store.now())
        .await?;
    tracing::debug!(slot = %slot.id, "pairing aborted");
    Ok(Json(pairing_info(&slot)).into_response())
}

/// `since`, `limit` and `blobs` of a sync request.
struct ChangesQuery {
    since: u64,
    limit: u32,
    blobs: bool,
}

fn parse_changes_query(query: Option<&str>, limits: &Limits) -> R<ChangesQuery> {
    let mut q = ChangesQuery {
        since: 0,
        limit: limits.default_page_items,
        blobs: false,
    };
    let (mut seen_since, mut seen_limit, mut seen_blobs) = (false, false, false);
    let bad = |m: &str| StoreError::MalformedRequest(m.to_owned());
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let seen = match key {
            "since" => &mut seen_since,
            "limit" => &mut seen_limit,
            "blobs" => &mut seen_blobs,
            _ => {
                return Err(bad(
                    "unknown query parameter (allowed: since, limit, blobs)",
                ));
            }
        };
        if std::mem::replace(seen, true) {
            return Err(bad("repeated query parameter"));
        }
        let int = |max: u64| -> Option<u64> {
            if value.is_empty() || value.len() > 19 || !value.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            value.parse::<u64>().ok().filter(|v| *v <= max)
        };
        match key {
            "since" => {
                q.since = int(i64::MAX as u64)
                    .ok_or_else(|| bad("since must be a sequence number (0 or more)"))?;
            }
            "limit" => {
                let limit = int(u64::MAX)
                    .filter(|l| *l > 0)
                    .ok_or_else(|| bad("limit must be a positive integer"))?;
                q.limit = limit.min(u64::from(limits.max_page_items)) as u32;
            }
            _ => {
                q.blobs = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("blobs must be true or false")),
                };
            }
        }
    }
    Ok(q)
}

async fn list_changes<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> R<Response> {
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let q = parse_changes_query(query.as_deref(), store.limits())?;
    let page = store
        .backend()
        .changes(
            account,
            q.since,
            q.limit,
            q.blobs,
            store.limits().max_page_blob_bytes,
        )
        .await?;
    let next_since = page.items.last().map_or(q.since, |i| i.seq);
    let changes = page
        .items
        .into_iter()
        .map(|i| api::ChangeInfo {
            item_id: i.id.to_string(),
            version: i.version,
            seq: i.seq,
            deleted: i.deleted,
            size: i.size,
            updated_at: i.updated_at,
            blob: (q.blobs && !i.deleted).then(|| Base64::encode_string(&i.blob)),
        })
        .collect();
    Ok(Json(api::ChangesResponse {
        changes,
        next_since,
        more: page.more,
    })
    .into_response())
}

/// Control characters and invisible format characters (bidi overrides, zero-width) that
/// could disguise a pairing request's device name as another.
fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{FEFF}')
        || ('\u{200B}'..='\u{200F}').contains(&c)
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2060}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_match: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(if_match).unwrap());
        h
    }

    #[test]
    fn if_match() {
        assert_eq!(expected_version(&headers("\"0\"")).unwrap(), 0);
        assert_eq!(expected_version(&headers("17")).unwrap(), 17);
        for bad in [
            "",
            "\"\"",
            "W/\"1\"",
            "\"1",
            "-1",
            "1.0",
            "abc",
            "99999999999999999999",
        ] {
            assert!(
                matches!(
                    expected_version(&headers(bad)),
                    Err(StoreError::InvalidVersion)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            expected_version(&HeaderMap::new()),
            Err(StoreError::VersionRequired)
        ));
    }

    #[test]
    fn changes_query() {
        let l = Limits::default();
        let q = parse_changes_query(None, &l).unwrap();
        assert_eq!((q.since, q.limit, q.blobs), (0, 100, false));
        let q = parse_changes_query(Some("since=5&limit=100000&blobs=true"), &l).unwrap();
        assert_eq!((q.since, q.limit, q.blobs), (5, 1000, true));
        for bad in [
            "since=-1",
            "since=x",
            "limit=0",
            "since=1&since=2",
            "foo=1",
            "blobs=yes",
            "since=9223372036854775808",
        ] {
            assert!(parse_changes_query(Some(bad), &l).is_err(), "{bad}");
        }
    }
}
