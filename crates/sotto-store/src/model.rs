//! Identifiers and records shared by the storage trait and the HTTP API.

use std::fmt;

use crate::StoreError;

/// Generates a 16-byte random id type shown as 32 lowercase hex digits.
macro_rules! random_id {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh id from the operating system's random number generator.
            pub fn random() -> Result<Self, StoreError> {
                let mut b = [0u8; 16];
                crate::auth::fill_random(&mut b)?;
                Ok(Self(b))
            }

            /// Parses 32 lowercase hex digits.
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                let mut b = [0u8; 16];
                if s.len() != 32
                    || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                    || hex::decode_to_slice(s, &mut b).is_err()
                {
                    return Err(StoreError::InvalidId($what));
                }
                Ok(Self(b))
            }

            /// From the 16 raw bytes stored in the database.
            pub(crate) fn from_slice(b: &[u8]) -> Result<Self, StoreError> {
                <[u8; 16]>::try_from(b)
                    .map(Self)
                    .map_err(|_| StoreError::storage(concat!("stored ", $what, " id is not 16 bytes")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

random_id!(
    /// An account: 16 random bytes chosen by the store at creation.
    AccountId,
    "account"
);

random_id!(
    /// A pairing slot: 16 random bytes chosen by the store. It is the new device's only
    /// handle on its slot (unguessable; shown to authenticated devices of the account only).
    PairingId,
    "pairing"
);
random_id!(
    /// A credential (device key or, later, passkey): 16 random bytes chosen by the store.
    CredentialId,
    "credential"
);

/// Longest item or key id, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Generates a client-chosen opaque name type: 1..=128 characters of `[A-Za-z0-9_-]`.
macro_rules! client_name {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates a client-chosen id: 1 to 128 characters of `A-Z a-z 0-9 _ -`.
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                if s.is_empty()
                    || s.len() > MAX_NAME_LEN
                    || !s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                {
                    return Err(StoreError::InvalidId($what));
                }
                Ok(Self(s.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

client_name!(
    /// An item's id, chosen by the client (opaque to the store; a random id is expected, so
    /// that ids say nothing about content).
    ItemId,
    "item"
);
client_name!(
    /// A wrapped-key record's id, chosen by the client (e.g. the credential id it is wrapped
    /// for).
    KeyId,
    "key"
);

/// What a credential is: a device key or a WebAuthn passkey (see `docs/store.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialKind {
    /// An Ed25519 device key (32-byte public key) that signs auth challenges. Wire name
    /// `device-ed25519`.
    DeviceEd25519,
    /// A WebAuthn passkey, registered and used only through the WebAuthn ceremonies
    /// (`/v1/accounts/{a}/passkeys/register/*`, `/v1/auth/passkey/*`). Its `public_key` is the
    /// WebAuthn credential id (raw bytes); the verified COSE key and signature counter are
    /// kept beside it. Wire name `webauthn-passkey`.
    WebauthnPasskey,
}

impl CredentialKind {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeviceEd25519 => "device-ed25519",
            Self::WebauthnPasskey => "webauthn-passkey",
        }
    }

    /// Parses a wire/database name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "device-ed25519" => Ok(Self::DeviceEd25519),
            "webauthn-passkey" => Ok(Self::WebauthnPasskey),
            _ => Err(StoreError::UnsupportedCredentialKind),
        }
    }

    /// Checks that `public_key` is acceptable for this kind. Passkeys are refused here
    /// (`unsupported_credential_kind`): they can only be added by a verified WebAuthn
    /// registration ceremony, never by naming a key.
    pub fn validate_public_key(self, public_key: &[u8]) -> Result<(), StoreError> {
        match self {
            Self::DeviceEd25519 => crate::auth::device_key(public_key).map(|_| ()),
            Self::WebauthnPasskey => Err(StoreError::UnsupportedCredentialKind),
        }
    }
}

/// A credential to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    /// Its id (chosen by the store).
    pub id: CredentialId,
    /// Its kind.
    pub kind: CredentialKind,
    /// Its public key (validated for the kind).
    pub public_key: Vec<u8>,
}

/// A stored credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Its id.
    pub id: CredentialId,
    /// The account it belongs to.
    pub account: AccountId,
    /// Its kind.
    pub kind: CredentialKind,
    /// Its public key.
    pub public_key: Vec<u8>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Removal time, Unix milliseconds; `None` while active.
    pub revoked_at: Option<i64>,
}

/// An account's usage and sequence counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountUsage {
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// The last sequence number handed out (0: no item change yet).
    pub last_seq: u64,
    /// Sum of the sizes of the account's live (not deleted) items.
    pub used_bytes: u64,
    /// Number of live items.
    pub item_count: u64,
}

/// An issued auth challenge (single use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The 32 random bytes the device signs.
    pub challenge: [u8; 32],
    /// Account it was issued for.
    pub account: AccountId,
    /// Credential it was issued for.
    pub credential: CredentialId,
    /// Expiry, Unix milliseconds.
    pub expires_at: i64,
}

/// A session, stored under the SHA-256 of its bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the bearer token (the token itself is never stored).
    pub token_hash: [u8; 32],
    /// The account it may access.
    pub account: AccountId,
    /// The credential that authenticated.
    pub credential: CredentialId,
    /// Expiry, Unix milliseconds.
    pub expires_at: i64,
}

/// A wrapped-key record: an opaque blob with a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// Its id.
    pub id: KeyId,
    /// Its version (1 after creation, +1 per write).
    pub version: u64,
    /// The client's bytes, exactly as sent.
    pub blob: Vec<u8>,
    /// Last write, Unix milliseconds.
    pub updated_at: i64,
}

/// An item as stored (the latest version only), or as listed by [`Backend::changes`].
///
/// [`Backend::changes`]: crate::Backend::changes
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Its id.
    pub id: ItemId,
    /// Current version (1 after creation, +1 per write or deletion).
    pub version: u64,
    /// The account sequence number of its last change.
    pub seq: u64,
    /// Whether the current version is a deletion (then `blob` is empty).
    pub deleted: bool,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The client's bytes, exactly as sent (empty when deleted, or when listed without
    /// blobs).
    pub blob: Vec<u8>,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
}

/// A versioned item write: what the write replaces, and the new content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemWrite {
    /// Store this blob as the next version.
    Put(Vec<u8>),
    /// Mark the item deleted (a tombstone that sync reports).
    Delete,
}

/// The result of an accepted item write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The new version.
    pub version: u64,
    /// The account sequence number of this change.
    pub seq: u64,
}

/// Per-account quotas, enforced inside the write transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Maximum sum of live item blob sizes.
    pub max_bytes: u64,
    /// Maximum number of live items.
    pub max_items: u64,
}

/// One page of [`Backend::changes`](crate::Backend::changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangePage {
    /// Items whose last change has `seq > since`, in increasing `seq` order.
    pub items: Vec<Item>,
    /// Whether more changes follow this page.
    pub more: bool,
}

/// What a pending WebAuthn ceremony is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Registering a passkey to an existing account (started by an authenticated session).
    Register,
    /// Creating a new account whose first credential is a passkey.
    RegisterNewAccount,
    /// Logging in with one of the account's passkeys.
    Authenticate,
}

impl CeremonyKind {
    /// The name kept in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::RegisterNewAccount => "register-new-account",
            Self::Authenticate => "authenticate",
        }
    }

    /// Parses a database name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "register" => Ok(Self::Register),
            "register-new-account" => Ok(Self::RegisterNewAccount),
            "authenticate" => Ok(Self::Authenticate),
            _ => Err(StoreError::storage("unknown ceremony kind stored")),
        }
    }
}

/// A pending WebAuthn ceremony: the relying party's state between `start` and `finish`
/// (it holds the challenge). Single use and short-lived, like [`Challenge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceremony {
    /// 16 random bytes naming it (the client echoes them at `finish`).
    pub id: [u8; 16],
    /// What it is for.
    pub kind: CeremonyKind,
    /// The account: the one registering or logging in, or (for
    /// [`CeremonyKind::RegisterNewAccount`]) the id the new account will get.
    pub account: AccountId,
    /// `webauthn-rs`'s serialized ceremony state (JSON: challenge, policy, allowed
    /// credentials). It holds no secret of the user.
    pub state: String,
    /// Expiry, Unix milliseconds.
    pub expires_at: i64,
}

/// A registered passkey as the relying party keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The store's credential id.
    pub credential: CredentialId,
    /// `webauthn-rs`'s serialized `Passkey` (JSON: credential id, COSE public key, signature
    /// counter, backup flags).
    pub passkey: String,
}
/// Where a pairing slot is in the exchange (`docs/store.md`, "Pairing slots").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingState {
    /// The new device posted its request; waiting for an existing device.
    Requested,
    /// An existing device posted its response; waiting for the new device's confirmation.
    Responded,
    /// The new device posted its confirmation; waiting for the existing device's verdict.
    Confirmed,
    /// The new device gave up (its response did not authenticate).
    Aborted,
    /// The existing device verified the confirmation and registered the new device. Final.
    Approved,
    /// The existing device refused (confirmation failed, or the user said no). Final.
    Rejected,
}

impl PairingState {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Responded => "responded",
            Self::Confirmed => "confirmed",
            Self::Aborted => "aborted",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "requested" => Self::Requested,
            "responded" => Self::Responded,
            "confirmed" => Self::Confirmed,
            "aborted" => Self::Aborted,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            _ => return Err(StoreError::storage("unknown pairing state stored")),
        })
    }

    /// Whether the slot still counts toward the account's pending limit.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Requested | Self::Responded | Self::Confirmed)
    }
}

/// A state change of a pairing slot; each is allowed from the states listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingUpdate {
    /// From `requested`: an existing device's response.
    Respond {
        /// The responding credential.
        responder: CredentialId,
        /// The vault's pairing response, opaque.
        response: Vec<u8>,
    },
    /// From `responded`: the new device's confirmation, opaque.
    Confirm(Vec<u8>),
    /// From `requested` or `responded`: the new device gives up.
    Abort,
    /// From `confirmed`: the existing device accepted the confirmation.
    Approve,
    /// From any non-final state: the existing device refuses.
    Reject,
}

impl PairingUpdate {
    /// The states this update may start from.
    pub fn allowed_from(&self) -> &'static [PairingState] {
        use PairingState::*;
        match self {
            Self::Respond { .. } => &[Requested],
            Self::Confirm(_) => &[Responded],
            Self::Abort => &[Requested, Responded],
            Self::Approve => &[Confirmed],
            Self::Reject => &[Requested, Responded, Confirmed, Aborted],
        }
    }

    /// The state after the update.
    pub fn target(&self) -> PairingState {
        match self {
            Self::Respond { .. } => PairingState::Responded,
            Self::Confirm(_) => PairingState::Confirmed,
            Self::Abort => PairingState::Aborted,
            Self::Approve => PairingState::Approved,
            Self::Reject => PairingState::Rejected,
        }
    }
}

/// A pairing slot: the mailbox between a new device and an existing one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingSlot {
    /// Its id.
    pub id: PairingId,
    /// The account the new device asks to join.
    pub account: AccountId,
    /// The new device's Ed25519 store key (validated), to be registered on approval.
    pub public_key: Vec<u8>,
    /// The name the new device gave itself (shown to the approver; unauthenticated).
    pub name: String,
    /// The vault's pairing request, opaque.
    pub request: Vec<u8>,
    /// Current state.
    pub state: PairingState,
    /// The credential that responded.
    pub responder: Option<CredentialId>,
    /// The vault's pairing response, opaque.
    pub response: Option<Vec<u8>>,
    /// The vault's pairing confirmation, opaque.
    pub confirm: Option<Vec<u8>>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Expiry, Unix milliseconds: after it the slot answers `pairing_expired`.
    pub expires_at: i64,
}
