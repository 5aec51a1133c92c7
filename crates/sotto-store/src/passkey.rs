//! WebAuthn passkeys: registration and login ceremonies (`webauthn-rs`), see `docs/store.md`,
//! "Passkeys".
//!
//! A ceremony is two requests. `start` creates the relying party's state (it holds the
//! challenge), keeps it in the database under a random 16-byte ceremony id with an expiry,
//! and returns the options for `navigator.credentials.create/get`; `finish` takes the state
//! back out of the database (single use: it is deleted whatever the outcome), checks its kind
//! and expiry, and verifies the browser's response with `webauthn-rs`. User verification is
//! always required. Nothing is written unless the response verifies.
//!
//! The vault's root secret is the passkey's PRF output (`docs/vault.md` §2.1), computed by
//! the browser and never sent: a `finish` body whose `clientExtensionResults` carries PRF
//! `results` is refused before anything else happens.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder, WebauthnError,
};

use super::{Params, R, Store, read_json};
use crate::{
    AccountId, Backend, Ceremony, CeremonyKind, CredentialId, CredentialKind, NewCredential,
    PasskeyRejection, Session, StoreError, auth,
};

/// The WebAuthn relying party: who the store says it is to authenticators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyConfig {
    /// Relying-party id: the registrable domain passkeys are bound to (`example.com`).
    pub rp_id: String,
    /// The web origin the browser client runs on (`https://chat.example.com`); its host must
    /// be `rp_id` or a subdomain of it.
    pub rp_origin: String,
    /// Name shown by authenticators (defaults to `rp_id`).
    pub rp_name: Option<String>,
    /// How long a started ceremony may be finished (default 120 s).
    pub ceremony_ttl: Duration,
}

impl PasskeyConfig {
    /// A relying party with the default name and ceremony lifetime.
    pub fn new(rp_id: impl Into<String>, rp_origin: impl Into<String>) -> Self {
        Self {
            rp_id: rp_id.into(),
            rp_origin: rp_origin.into(),
            rp_name: None,
            ceremony_ttl: Duration::from_secs(120),
        }
    }

    pub(crate) fn build(&self) -> R<RelyingParty> {
        let bad = |m: String| StoreError::InvalidConfig(m);
        let origin = Url::parse(&self.rp_origin)
            .map_err(|e| bad(format!("--rp-origin is not a URL: {e}")))?;
        if self.ceremony_ttl.is_zero() || self.ceremony_ttl > Duration::from_secs(600) {
            return Err(bad("ceremony_ttl must be between 1 ms and 10 min".into()));
        }
        let mut builder = WebauthnBuilder::new(&self.rp_id, &origin)
            .map_err(|e| bad(format!("--rp-id/--rp-origin: {e}")))?
            .timeout(self.ceremony_ttl);
        if let Some(name) = &self.rp_name {
            builder = builder.rp_name(name);
        }
        let webauthn = builder
            .build()
            .map_err(|e| bad(format!("WebAuthn relying party: {e}")))?;
        Ok(RelyingParty {
            webauthn,
            ttl: self.ceremony_ttl,
        })
    }
}

/// A configured relying party.
pub(crate) struct RelyingParty {
    webauthn: Webauthn,
    ttl: Duration,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("ttl", &self.ttl)
            .finish()
    }
}

// ---- bodies -----------------------------------------------------------------------------------

/// Request of the registration `start` endpoints (both optional fields).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegisterStartRequest {
    /// The name the authenticator shows for this passkey (1–64 printable characters;
    /// default `sotto`). The store keeps it only inside the ceremony.
    #[serde(default)]
    pub user_name: Option<String>,
}

/// Response of every `start` endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CeremonyStartResponse<O> {
    /// Names the ceremony at `finish` (32 lowercase hex digits).
    pub ceremony_id: String,
    /// Pass to `navigator.credentials.create(options)` / `.get(options)` (base64url fields,
    /// the WebAuthn JSON encoding). For PRF, the client adds
    /// `extensions.prf.eval.first` itself (`docs/vault.md` §2.1).
    pub options: O,
    /// Finish before this time (Unix milliseconds).
    pub expires_at: i64,
}

/// Registration `start` response.
pub type RegisterStartResponse = CeremonyStartResponse<CreationChallengeResponse>;
/// Login `start` response.
pub type LoginStartResponse = CeremonyStartResponse<RequestChallengeResponse>;

/// Request of every `finish` endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFinishRequest {
    /// From `start`.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from the browser, in the WebAuthn JSON encoding
    /// (`credential.toJSON()`), without PRF results.
    pub credential: serde_json::Value,
}

/// `POST /v1/auth/passkey/start` request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginStartRequest {
    /// Account id.
    pub account_id: String,
}

/// `POST /v1/auth/passkey/finish` response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasskeySessionResponse {
    /// Bearer token.
    pub token: String,
    /// The session ends at this time.
    pub expires_at: i64,
    /// The store's id of the passkey that logged in.
    pub credential_id: String,
}

// ---- routes -----------------------------------------------------------------------------------

pub(crate) fn routes<B: Backend>() -> Router<Store<B>> {
    Router::new()
        .route("/v1/accounts/passkey/start", post(new_account_start::<B>))
        .route("/v1/accounts/passkey/finish", post(new_account_finish::<B>))
        .route(
            "/v1/accounts/{account}/passkeys/register/start",
            post(register_start::<B>),
        )
        .route(
            "/v1/accounts/{account}/passkeys/register/finish",
            post(register_finish::<B>),
        )
        .route("/v1/auth/passkey/start", post(login_start::<B>))
        .route("/v1/auth/passkey/finish", post(login_finish::<B>))
}

impl<B: Backend> Store<B> {
    fn relying_party(&self) -> R<&RelyingParty> {
        self.inner
            .passkeys
            .as_deref()
            .ok_or(StoreError::PasskeysDisabled)
    }

    /// Keeps a ceremony's state and answers `start`.
    async fn start_ceremony<O: Serialize, S: Serialize>(
        &self,
        kind: CeremonyKind,
        account: AccountId,
        options: O,
        state: &S,
    ) -> R<Response> {
        let rp = self.relying_party()?;
        let mut id = [0u8; 16];
        auth::fill_random(&mut id)?;
        let now = self.now();
        let expires_at = now.saturating_add(rp.ttl.as_millis() as i64);
        let state = serde_json::to_string(state).map_err(StoreError::storage)?;
        self.backend()
            .insert_ceremony(
                Ceremony {
                    id,
                    kind,
                    account,
                    state,
                    expires_at,
                },
                self.limits().max_outstanding_challenges,
                now,
            )
            .await?;
        tracing::debug!(%account, kind = kind.as_str(), "webauthn ceremony started");
        Ok(Json(CeremonyStartResponse {
            ceremony_id: hex::encode(id),
            options,
            expires_at,
        })
        .into_response())
    }

    /// Takes (deletes) the named ceremony and checks it is of `kind` and not expired.
    async fn take_ceremony(&self, id: &str, kinds: &[CeremonyKind]) -> R<Ceremony> {
        let mut raw = [0u8; 16];
        if id.len() != 32
            || !id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            || hex::decode_to_slice(id, &mut raw).is_err()
        {
            return Err(StoreError::InvalidId("ceremony"));
        }
        let ceremony = self
            .backend()
            .take_ceremony(raw)
            .await?
            .ok_or(StoreError::InvalidCeremony)?;
        if !kinds.contains(&ceremony.kind) {
            return Err(StoreError::InvalidCeremony);
        }
        if ceremony.expires_at <= self.now() {
            return Err(StoreError::CeremonyExpired);
        }
        Ok(ceremony)
    }

    async fn open_passkey_session(
        &self,
        account: AccountId,
        credential: CredentialId,
    ) -> R<Response> {
        let now = self.now();
        let (token, token_hash) = auth::new_token()?;
        let expires_at = now.saturating_add(self.limits().session_ttl.as_millis() as i64);
        self.backend()
            .insert_session(
                Session {
                    token_hash,
                    account,
                    credential,
                    expires_at,
                },
                now,
            )
            .await?;
        tracing::debug!(%account, %credential, "passkey session opened");
        Ok(Json(PasskeySessionResponse {
            token,
            expires_at,
            credential_id: credential.to_string(),
        })
        .into_response())
    }
}

fn user_name(request: &RegisterStartRequest) -> R<String> {
    let name = request.user_name.as_deref().unwrap_or("sotto");
    let ok = (1..=64).contains(&name.chars().count()) && !name.chars().any(char::is_control);
    if !ok {
        return Err(StoreError::MalformedRequest(
            "user_name: 1-64 characters, no control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// Reads a `finish` body: refuses PRF results (they are the user's root secret and must never
/// leave the browser), then parses the credential.
fn parse_finish<T: serde::de::DeserializeOwned>(request: CeremonyFinishRequest) -> R<(String, T)> {
    let prf_results = request
        .credential
        .get("clientExtensionResults")
        .and_then(|e| e.get("prf"))
        .and_then(|p| p.get("results"))
        .is_some_and(|r| !r.is_null());
    if prf_results {
        return Err(StoreError::MalformedRequest(
            "clientExtensionResults.prf.results must not be sent to the store".into(),
        ));
    }
    let credential = serde_json::from_value(request.credential).map_err(|e| {
        StoreError::MalformedRequest(format!("credential: not a WebAuthn response: {e}"))
    })?;
    Ok((request.ceremony_id, credential))
}

/// Maps a `webauthn-rs` verification failure to a rejection (the detail is logged at debug;
/// it holds no user secret).
fn rejected(e: WebauthnError) -> StoreError {
    tracing::debug!(error = ?e, "webauthn response rejected");
    let r = match e {
        WebauthnError::InvalidRPOrigin | WebauthnError::CredentialCrossOrigin => {
            PasskeyRejection::OriginMismatch
        }
        WebauthnError::InvalidRPIDHash => PasskeyRejection::RpIdMismatch,
        WebauthnError::UserNotVerified | WebauthnError::UserNotPresent => {
            PasskeyRejection::UserNotVerified
        }
        WebauthnError::MismatchedChallenge => PasskeyRejection::ChallengeMismatch,
        WebauthnError::CredentialNotFound => PasskeyRejection::UnknownCredential,
        WebauthnError::CredentialPossibleCompromise => PasskeyRejection::CounterRegression,
        WebauthnError::AuthenticationFailure | WebauthnError::SignatureInvalid => {
            PasskeyRejection::BadSignature
        }
        WebauthnError::CredentialAlreadyExists | WebauthnError::CredentialExcludedFromRequest => {
            return StoreError::DuplicateCredential;
        }
        _ => PasskeyRejection::Invalid,
    };
    StoreError::PasskeyRejected(r)
}

fn state_of<T: serde::de::DeserializeOwned>(ceremony: &Ceremony) -> R<T> {
    serde_json::from_str(&ceremony.state)
        .map_err(|e| StoreError::storage(format_args!("stored ceremony state: {e}")))
}

fn parse_passkey(stored: &str) -> R<Passkey> {
    serde_json::from_str(stored)
        .map_err(|e| StoreError::storage(format_args!("stored passkey: {e}")))
}

fn serialize_passkey(passkey: &Passkey) -> R<String> {
    serde_json::to_string(passkey).map_err(StoreError::storage)
}

/// A verified new passkey as a credential row.
fn new_passkey_credential(passkey: &Passkey) -> R<(NewCredential, String)> {
    let id: &[u8] = passkey.cred_id().as_ref();
    Ok((
        NewCredential {
            id: CredentialId::random()?,
            kind: CredentialKind::WebauthnPasskey,
            public_key: id.to_vec(),
        },
        serialize_passkey(passkey)?,
    ))
}

// ---- handlers ---------------------------------------------------------------------------------

async fn new_account_start<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let rp = store.relying_party()?;
    let request: RegisterStartRequest = read_json(&store, &headers, body).await?;
    let name = user_name(&request)?;
    // The new account's id is fixed now: it is the WebAuthn user handle.
    let account = AccountId::random()?;
    let (options, state) = rp
        .webauthn
        .start_passkey_registration(Uuid::from_bytes(account.0), &name, &name, None)
        .map_err(StoreError::storage)?;
    store
        .start_ceremony(CeremonyKind::RegisterNewAccount, account, options, &state)
        .await
}

async fn new_account_finish<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let rp = store.relying_party()?;
    let request: CeremonyFinishRequest = read_json(&store, &headers, body).await?;
    let (ceremony_id, credential): (_, RegisterPublicKeyCredential) = parse_finish(request)?;
    let ceremony = store
        .take_ceremony(&ceremony_id, &[CeremonyKind::RegisterNewAccount])
        .await?;
    let state: PasskeyRegistration = state_of(&ceremony)?;
    let passkey = rp
        .webauthn
        .finish_passkey_registration(&credential, &state)
        .map_err(rejected)?;
    let (new, serialized) = new_passkey_credential(&passkey)?;
    let credential_id = new.id;
    let account = ceremony.account;
    store
        .backend()
        .add_passkey(
            account,
            new,
            serialized,
            true,
            store.limits().max_credentials,
            store.now(),
        )
        .await?;
    tracing::debug!(%account, credential = %credential_id, "account created with a passkey");
    Ok((
        StatusCode::CREATED,
        Json(crate::api::CreateAccountResponse {
            account_id: account.to_string(),
            credential_id: credential_id.to_string(),
        }),
    )
        .into_response())
}

async fn register_start<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let rp = store.relying_party()?;
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let request: RegisterStartRequest = read_json(&store, &headers, body).await?;
    let name = user_name(&request)?;
    // Authenticators already registered to this account are excluded (no duplicates).
    let existing = store
        .backend()
        .passkeys(account)
        .await?
        .iter()
        .map(|p| parse_passkey(&p.passkey).map(|p| p.cred_id().clone()))
        .collect::<R<Vec<_>>>()?;
    let (options, state) = rp
        .webauthn
        .start_passkey_registration(
            Uuid::from_bytes(account.0),
            &name,
            &name,
            (!existing.is_empty()).then_some(existing),
        )
        .map_err(StoreError::storage)?;
    store
        .start_ceremony(CeremonyKind::Register, account, options, &state)
        .await
}

async fn register_finish<B: Backend>(
    State(store): State<Store<B>>,
    Params(account): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let rp = store.relying_party()?;
    let account = AccountId::parse(&account)?;
    store.authenticate(&headers, &account).await?;
    let request: CeremonyFinishRequest = read_json(&store, &headers, body).await?;
    let (ceremony_id, credential): (_, RegisterPublicKeyCredential) = parse_finish(request)?;
    let ceremony = store
        .take_ceremony(&ceremony_id, &[CeremonyKind::Register])
        .await?;
    if ceremony.account != account {
        return Err(StoreError::InvalidCeremony);
    }
    let state: PasskeyRegistration = state_of(&ceremony)?;
    let passkey = rp
        .webauthn
        .finish_passkey_registration(&credential, &state)
        .map_err(rejected)?;
    let (new, serialized) = new_passkey_credential(&passkey)?;
    let credential_id = new.id;
    store
        .backend()
        .add_passkey(
            account,
            new,
            serialized,
            false,
            store.limits().max_credentials,
            store.now(),
        )
        .await?;
    tracing::debug!(%account, credential = %credential_id, "passkey registered");
    Ok((
        StatusCode::CREATED,
        Json(crate::api::AddCredentialResponse {
            credential_id: credential_id.to_string(),
        }),
    )
        .into_response())
}

async fn login_start<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let rp = store.relying_party()?;
    let request: LoginStartRequest = read_json(&store, &headers, body).await?;
    let account = AccountId::parse(&request.account_id)?;
    if store.backend().account(account).await?.is_none() {
        return Err(StoreError::UnknownAccount);
    }
    let passkeys = store
        .backend()
        .passkeys(account)
        .await?
        .iter()
        .map(|p| parse_passkey(&p.passkey))
        .collect::<R<Vec<_>>>()?;
    if passkeys.is_empty() {
        return Err(StoreError::UnknownCredential);
    }
    let (options, state) = rp
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(StoreError::storage)?;
    store
        .start_ceremony(CeremonyKind::Authenticate, account, options, &state)
        .await
}

async fn login_finish<B: Backend>(
    State(store): State<Store<B>>,
    headers: HeaderMap,
    body: Body,
) -> R<Response> {
    let rp = store.relying_party()?;
    let request: CeremonyFinishRequest = read_json(&store, &headers, body).await?;
    let (ceremony_id, credential): (_, PublicKeyCredential) = parse_finish(request)?;
    let ceremony = store
        .take_ceremony(&ceremony_id, &[CeremonyKind::Authenticate])
        .await?;
    let account = ceremony.account;
    let state: PasskeyAuthentication = state_of(&ceremony)?;
    let result = rp
        .webauthn
        .finish_passkey_authentication(&credential, &state)
        .map_err(rejected)?;
    // The credential must still be an active passkey of the account (it may have been
    // removed since `start`).
    let mut found = None;
    for stored in store.backend().passkeys(account).await? {
        let passkey = parse_passkey(&stored.passkey)?;
        if passkey.cred_id() == result.cred_id() {
            found = Some((stored.credential, passkey));
            break;
        }
    }
    let (credential_id, mut passkey) = found.ok_or(StoreError::PasskeyRejected(
        PasskeyRejection::UnknownCredential,
    ))?;
    if passkey.update_credential(&result) == Some(true) {
        store
            .backend()
            .update_passkey(account, credential_id, serialize_passkey(&passkey)?)
            .await?;
    }
    store.open_passkey_session(account, credential_id).await
}

/// Builds the relying party for [`Store::with_passkeys`].
pub(crate) fn relying_party(config: &PasskeyConfig) -> R<Arc<RelyingParty>> {
    config.build().map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relying_party_config() {
        assert!(
            PasskeyConfig::new("example.com", "https://chat.example.com")
                .build()
                .is_ok()
        );
        for (id, origin) in [
            ("example.com", "https://chat.other.com"),
            ("example.com", "not a url"),
            ("chat.example.com", "https://example.com"),
        ] {
            assert!(
                matches!(
                    PasskeyConfig::new(id, origin).build(),
                    Err(StoreError::InvalidConfig(_))
                ),
                "{id} {origin}"
            );
        }
        let mut zero = PasskeyConfig::new("example.com", "https://example.com");
        zero.ceremony_ttl = Duration::ZERO;
        assert!(matches!(zero.build(), Err(StoreError::InvalidConfig(_))));
    }

    #[test]
    fn webauthn_errors_map_to_codes() {
        use PasskeyRejection as P;
        for (e, code) in [
            (WebauthnError::InvalidRPOrigin, P::OriginMismatch.code()),
            (
                WebauthnError::CredentialCrossOrigin,
                P::OriginMismatch.code(),
            ),
            (WebauthnError::InvalidRPIDHash, P::RpIdMismatch.code()),
            (WebauthnError::UserNotVerified, P::UserNotVerified.code()),
            (WebauthnError::UserNotPresent, P::UserNotVerified.code()),
            (
                WebauthnError::MismatchedChallenge,
                P::ChallengeMismatch.code(),
            ),
            (
                WebauthnError::CredentialNotFound,
                P::UnknownCredential.code(),
            ),
            (
                WebauthnError::CredentialPossibleCompromise,
                P::CounterRegression.code(),
            ),
            (WebauthnError::AuthenticationFailure, P::BadSignature.code()),
            (WebauthnError::InvalidClientDataType, P::Invalid.code()),
            (
                WebauthnError::CredentialExcludedFromRequest,
                "duplicate_credential",
            ),
            (
                WebauthnError::CredentialAlreadyExists,
                "duplicate_credential",
            ),
        ] {
            let mapped = rejected(e);
            assert_eq!(mapped.code(), code);
        }
        // Every rejection is a 401 with its own code.
        let all = [
            P::OriginMismatch,
            P::RpIdMismatch,
            P::UserNotVerified,
            P::ChallengeMismatch,
            P::UnknownCredential,
            P::CounterRegression,
            P::BadSignature,
            P::Invalid,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|p| p.code()).collect();
        assert_eq!(codes.len(), all.len());
        for p in all {
            assert_eq!(
                StoreError::PasskeyRejected(p).status(),
                StatusCode::UNAUTHORIZED
            );
        }
    }

    #[test]
    fn prf_results_are_refused() {
        let with = |ext: serde_json::Value| CeremonyFinishRequest {
            ceremony_id: "00".repeat(16),
            credential: serde_json::json!({"clientExtensionResults": ext}),
        };
        assert!(matches!(
            parse_finish::<serde_json::Value>(with(
                serde_json::json!({"prf": {"results": {"first": "AAAA"}}})
            )),
            Err(StoreError::MalformedRequest(m)) if m.contains("prf")
        ));
        // `prf.enabled` alone (registration) carries no secret and is accepted.
        assert!(
            parse_finish::<serde_json::Value>(with(serde_json::json!({"prf": {"enabled": true}})))
                .is_ok()
        );
    }
}
