//! The store's error type: one enum, a stable machine-readable code per variant, one HTTP
//! status per variant.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Every error the store produces. [`code`](Self::code) is stable and is what HTTP clients see
/// in the JSON error body `{"error":{"code":"…","message":"…"}}`; [`status`](Self::status) is
/// the HTTP status. A request answered with any 4xx error changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    // ---- 400: the request itself is wrong -------------------------------------------------
    /// The body is not the JSON the endpoint expects, or a query parameter is malformed.
    /// HTTP 400, code `malformed_request`.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// An account, credential, item or key id is not of the documented form. HTTP 400, code
    /// `invalid_id`.
    #[error("invalid {0} id")]
    InvalidId(&'static str),
    /// The `If-Match` header is not a version number (`"N"` or `N`). HTTP 400, code
    /// `invalid_version`.
    #[error("If-Match must be a version number (\"N\"; \"0\" creates)")]
    InvalidVersion,
    /// A credential's public key is not a valid (non-weak) Ed25519 point. HTTP 400, code
    /// `invalid_public_key`.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The credential kind is unknown to this store. HTTP 400, code
    /// `unsupported_credential_kind`.
    #[error("unsupported credential kind")]
    UnsupportedCredentialKind,

    // ---- 401 / 403: authentication and authorisation ---------------------------------------
    /// No `Authorization: Bearer …` header. HTTP 401, code `missing_token`.
    #[error("missing bearer token")]
    MissingToken,
    /// The bearer token is malformed, unknown, logged out or belongs to a removed device.
    /// HTTP 401, code `invalid_token`.
    #[error("invalid bearer token")]
    InvalidToken,
    /// The session has expired; authenticate again. HTTP 401, code `token_expired`.
    #[error("session expired")]
    TokenExpired,
    /// The challenge is unknown or was already used (challenges are single use). HTTP 401,
    /// code `invalid_challenge`.
    #[error("unknown or already used challenge")]
    InvalidChallenge,
    /// The challenge has expired. HTTP 401, code `challenge_expired`.
    #[error("challenge expired")]
    ChallengeExpired,
    /// The signature over the challenge does not verify. HTTP 401, code `bad_signature`.
    #[error("signature does not verify")]
    BadSignature,
    /// The credential has been removed from the account. HTTP 401, code `credential_revoked`.
    #[error("credential revoked")]
    CredentialRevoked,
    /// The WebAuthn ceremony id is unknown, was already used (ceremonies are single use), or
    /// is of another kind than the endpoint. HTTP 401, code `invalid_ceremony`.
    #[error("unknown or already used WebAuthn ceremony")]
    InvalidCeremony,
    /// The WebAuthn ceremony has expired; start again. HTTP 401, code `ceremony_expired`.
    #[error("WebAuthn ceremony expired")]
    CeremonyExpired,
    /// The WebAuthn response did not verify; the variant says why. HTTP 401, code
    /// [`PasskeyRejection::code`].
    #[error("passkey rejected: {0}")]
    PasskeyRejected(PasskeyRejection),
    /// The session is valid but belongs to another account. HTTP 403, code `forbidden`.
    #[error("this session may not access that account")]
    Forbidden,

    // ---- 404 / 405 / 410: not there ---------------------------------------------------------
    /// No such account. HTTP 404, code `unknown_account`.
    #[error("unknown account")]
    UnknownAccount,
    /// No such credential in this account. HTTP 404, code `unknown_credential`.
    #[error("unknown credential")]
    UnknownCredential,
    /// No such item (never written). HTTP 404, code `item_not_found`.
    #[error("item not found")]
    ItemNotFound,
    /// The item was deleted; `version` is the version of the deletion. HTTP 410, code
    /// `item_deleted`.
    #[error("item deleted at version {version}")]
    ItemDeleted {
        /// Version of the deletion (the current version).
        version: u64,
    },
    /// The store was started without a WebAuthn relying party (`--rp-id`/`--rp-origin`).
    /// HTTP 404, code `passkeys_disabled`.
    #[error("passkeys are not enabled on this store")]
    PasskeysDisabled,
    /// No such wrapped-key record. HTTP 404, code `key_not_found`.
    #[error("wrapped key not found")]
    KeyNotFound,
    /// No such pairing slot (or not this account's). HTTP 404, code `pairing_not_found`.
    #[error("pairing slot not found")]
    PairingNotFound,
    /// The pairing slot has expired. HTTP 410, code `pairing_expired`.
    #[error("pairing slot expired")]
    PairingExpired,
    /// The pairing slot is not in a state that allows this step (each step happens once).
    /// HTTP 409, code `pairing_state`; the error object carries `state`.
    #[error("pairing slot is {state}")]
    PairingState {
        /// The slot's current state.
        state: &'static str,
    },
    /// The account already has the maximum number of pending pairing slots. HTTP 429, code
    /// `too_many_pairings`.
    #[error("at most {limit} pending pairing requests per account")]
    TooManyPairings {
        /// The limit.
        limit: u64,
    },
    /// No such endpoint. HTTP 404, code `not_found`.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not with this method. HTTP 405, code `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,

    // ---- 409 / 428: concurrency -------------------------------------------------------------
    /// The write named a version that is not the current one. The body's `error` object also
    /// carries `current_version` (0: the item does not exist) and `deleted`; the `ETag`
    /// header carries the current version. HTTP 409, code `version_conflict`.
    #[error("version conflict: current version is {current}")]
    VersionConflict {
        /// The current version (0 when there is no such item or key).
        current: u64,
        /// Whether the current version is a deletion.
        deleted: bool,
    },
    /// A write or delete without `If-Match`. HTTP 428, code `version_required`.
    #[error("If-Match with the version being replaced is required (\"0\" creates)")]
    VersionRequired,
    /// Removing this credential would leave the account with none. HTTP 409, code
    /// `last_credential`.
    #[error("cannot remove the account's last credential")]
    LastCredential,
    /// This public key is already a credential of the account. HTTP 409, code
    /// `duplicate_credential`.
    #[error("this public key is already registered")]
    DuplicateCredential,

    // ---- 413: limits and quotas -------------------------------------------------------------
    /// The blob is larger than the per-blob limit. HTTP 413, code `blob_too_large`.
    #[error("blob larger than {limit} bytes")]
    BlobTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request body is larger than the per-request limit. HTTP 413, code
    /// `request_too_large`.
    #[error("request body larger than {limit} bytes")]
    RequestTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The write would exceed the account's byte quota. HTTP 413, code
    /// `quota_bytes_exceeded`.
    #[error("account byte quota of {limit} bytes exceeded")]
    QuotaBytesExceeded {
        /// The quota in bytes.
        limit: u64,
    },
    /// The write would exceed the account's item-count quota. HTTP 413, code
    /// `quota_items_exceeded`.
    #[error("account item quota of {limit} items exceeded")]
    QuotaItemsExceeded {
        /// The quota in items.
        limit: u64,
    },
    /// The account already has the maximum number of wrapped-key records. HTTP 413, code
    /// `too_many_keys`.
    #[error("at most {limit} wrapped-key records per account")]
    TooManyKeys {
        /// The limit.
        limit: u64,
    },
    /// The account already has the maximum number of active credentials. HTTP 413, code
    /// `too_many_credentials`.
    #[error("at most {limit} credentials per account")]
    TooManyCredentials {
        /// The limit.
        limit: u64,
    },

    // ---- 5xx / startup ----------------------------------------------------------------------
    /// The database failed. The detail is logged, never sent: clients see "internal storage
    /// error". HTTP 500, code `storage_error`.
    #[error("storage error: {0}")]
    Storage(String),
    /// The database's schema is newer than this binary understands. Startup only. Code
    /// `schema_too_new`.
    #[error("database schema version {found} is newer than this binary's {supported}")]
    SchemaTooNew {
        /// Version found in `schema_version`.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// The configuration is unusable. Startup only. Code `invalid_config`.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Binding or serving the listener failed. Code `io`.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a WebAuthn registration or assertion was refused (the detail of
/// [`StoreError::PasskeyRejected`]). Each has its own stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasskeyRejection {
    /// `clientDataJSON.origin` is not the configured origin (or is cross-origin). Code
    /// `passkey_origin_mismatch`.
    #[error("origin mismatch")]
    OriginMismatch,
    /// The authenticator data is for another relying-party id. Code
    /// `passkey_rp_id_mismatch`.
    #[error("relying-party id mismatch")]
    RpIdMismatch,
    /// The authenticator did not verify the user (the UV flag is required). Code
    /// `passkey_user_not_verified`.
    #[error("user not verified")]
    UserNotVerified,
    /// `clientDataJSON.challenge` is not this ceremony's challenge. Code
    /// `passkey_challenge_mismatch`.
    #[error("challenge mismatch")]
    ChallengeMismatch,
    /// The assertion is from a credential that is not an active passkey of the account. Code
    /// `passkey_unknown_credential`.
    #[error("unknown passkey")]
    UnknownCredential,
    /// The signature counter did not increase (a cloned authenticator?). Code
    /// `passkey_counter_regression`.
    #[error("signature counter did not increase")]
    CounterRegression,
    /// The signature does not verify. Code `passkey_bad_signature`.
    #[error("signature does not verify")]
    BadSignature,
    /// Any other malformed or unacceptable WebAuthn response (client data type, CBOR,
    /// algorithm, attestation). Code `passkey_invalid`.
    #[error("invalid WebAuthn response")]
    Invalid,
}

impl PasskeyRejection {
    /// Stable, machine-readable error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::OriginMismatch => "passkey_origin_mismatch",
            Self::RpIdMismatch => "passkey_rp_id_mismatch",
            Self::UserNotVerified => "passkey_user_not_verified",
            Self::ChallengeMismatch => "passkey_challenge_mismatch",
            Self::UnknownCredential => "passkey_unknown_credential",
            Self::CounterRegression => "passkey_counter_regression",
            Self::BadSignature => "passkey_bad_signature",
            Self::Invalid => "passkey_invalid",
        }
    }
}

impl StoreError {
    /// Stable, machine-readable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "malformed_request",
            Self::InvalidId(_) => "invalid_id",
            Self::InvalidVersion => "invalid_version",
            Self::InvalidPublicKey => "invalid_public_key",
            Self::UnsupportedCredentialKind => "unsupported_credential_kind",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::InvalidChallenge => "invalid_challenge",
            Self::ChallengeExpired => "challenge_expired",
            Self::BadSignature => "bad_signature",
            Self::CredentialRevoked => "credential_revoked",
            Self::InvalidCeremony => "invalid_ceremony",
            Self::CeremonyExpired => "ceremony_expired",
            Self::PasskeyRejected(r) => r.code(),
            Self::PasskeysDisabled => "passkeys_disabled",
            Self::Forbidden => "forbidden",
            Self::UnknownAccount => "unknown_account",
            Self::UnknownCredential => "unknown_credential",
            Self::ItemNotFound => "item_not_found",
            Self::ItemDeleted { .. } => "item_deleted",
            Self::KeyNotFound => "key_not_found",
            Self::PairingNotFound => "pairing_not_found",
            Self::PairingExpired => "pairing_expired",
            Self::PairingState { .. } => "pairing_state",
            Self::TooManyPairings { .. } => "too_many_pairings",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::VersionConflict { .. } => "version_conflict",
            Self::VersionRequired => "version_required",
            Self::LastCredential => "last_credential",
            Self::DuplicateCredential => "duplicate_credential",
            Self::BlobTooLarge { .. } => "blob_too_large",
            Self::RequestTooLarge { .. } => "request_too_large",
            Self::QuotaBytesExceeded { .. } => "quota_bytes_exceeded",
            Self::QuotaItemsExceeded { .. } => "quota_items_exceeded",
            Self::TooManyKeys { .. } => "too_many_keys",
            Self::TooManyCredentials { .. } => "too_many_credentials",
            Self::Storage(_) => "storage_error",
            Self::SchemaTooNew { .. } => "schema_too_new",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Io(_) => "io",
        }
    }

    /// HTTP status used when this error is returned to a client.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedRequest(_)
            | Self::InvalidId(_)
            | Self::InvalidVersion
            | Self::InvalidPublicKey
            | Self::UnsupportedCredentialKind => StatusCode::BAD_REQUEST,
            Self::MissingToken
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::InvalidChallenge
            | Self::ChallengeExpired
            | Self::BadSignature
            | Self::CredentialRevoked
            | Self::InvalidCeremony
            | Self::CeremonyExpired
            | Self::PasskeyRejected(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UnknownAccount
            | Self::UnknownCredential
            | Self::ItemNotFound
            | Self::KeyNotFound
            | Self::PasskeysDisabled
            | Self::PairingNotFound
            | Self::NotFound => StatusCode::NOT_FOUND,
            Self::ItemDeleted { .. } | Self::PairingExpired => StatusCode::GONE,
            Self::PairingState { .. } => StatusCode::CONFLICT,
            Self::TooManyPairings { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::VersionConflict { .. } | Self::LastCredential | Self::DuplicateCredential => {
                StatusCode::CONFLICT
            }
            Self::VersionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::BlobTooLarge { .. }
            | Self::RequestTooLarge { .. }
            | Self::QuotaBytesExceeded { .. }
            | Self::QuotaItemsExceeded { .. }
            | Self::TooManyKeys { .. }
            | Self::TooManyCredentials { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Storage(_) | Self::SchemaTooNew { .. } | Self::InvalidConfig(_) | Self::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::storage(format_args!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::storage(format_args!("postgres: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::storage(format_args!("postgres pool: {e}"))
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Server-side failures are logged with their detail; the client gets a fixed text so
        // database messages never leave the process.
        let message = if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
            "internal storage error".to_owned()
        } else {
            self.to_string()
        };
        let mut error = serde_json::json!({ "code": self.code(), "message": message });
        let mut etag = None;
        match &self {
            Self::VersionConflict { current, deleted } => {
                error["current_version"] = (*current).into();
                error["deleted"] = (*deleted).into();
                etag = Some(*current);
            }
            Self::ItemDeleted { version } => {
                error["current_version"] = (*version).into();
                error["deleted"] = true.into();
                etag = Some(*version);
            }
            Self::PairingState { state } => {
                error["state"] = (*state).into();
            }
            _ => {}
        }
        let mut response = (status, Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(v) = etag
            && let Ok(value) = HeaderValue::from_str(&format!("\"{v}\""))
        {
            response.headers_mut().insert(header::ETAG, value);
        }
        response
    }
}
