//! Witness cosignatures (<https://c2sp.org/tlog-cosignature>, Ed25519 v1) and the client
//! policy "checkpoint signed by the log key and cosigned by at least N trusted witnesses".
//!
//! A cosignature is a note signature line by a key of type `0x04` whose key ID is
//! `SHA-256(name || 0x0A || 0x04 || public key)[:4]` and whose signature bytes are
//! `timestamp (u64, big-endian) || Ed25519 signature (64 bytes)` over
//!
//! ```text
//! cosignature/v1
//! time <timestamp in decimal, no leading zeroes>
//! <the whole checkpoint note text, including extension lines>
//! ```
//!
//! The timestamp is POSIX seconds and must not exceed `2^63 - 1`. Time is always passed in
//! by the caller.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use zeroize::Zeroizing;

use crate::LogError;
use crate::checkpoint::Checkpoint;
use crate::note::{
    ALG_COSIGNATURE_V1, KeySet, KeyType, Note, NoteLimits, NoteSignature, VerifierKey,
    is_valid_key_name, key_id,
};

/// Largest timestamp a cosignature may carry, `2^63 - 1`.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Length of an Ed25519 v1 cosignature's signature bytes: 8-byte timestamp + 64.
pub const COSIGNATURE_LEN: usize = 72;

/// The message an Ed25519 v1 cosignature signs.
pub fn cosigned_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(40 + checkpoint_text.len());
    m.extend_from_slice(b"cosignature/v1\ntime ");
    m.extend_from_slice(alloc::format!("{timestamp}").as_bytes());
    m.push(b'\n');
    m.extend_from_slice(checkpoint_text.as_bytes());
    m
}

/// Splits a `timestamped_signature` into timestamp and Ed25519 signature.
pub fn split_timestamped(sig: &[u8]) -> Result<(u64, [u8; 64]), LogError> {
    if sig.len() != COSIGNATURE_LEN {
        return Err(LogError::MalformedCosignature("not 8 + 64 bytes"));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&sig[..8]);
    let timestamp = u64::from_be_bytes(ts);
    if timestamp > MAX_TIMESTAMP {
        return Err(LogError::MalformedCosignature("timestamp above 2^63 - 1"));
    }
    let mut s = [0u8; 64];
    s.copy_from_slice(&sig[8..]);
    Ok((timestamp, s))
}

/// A witness's cosigning key (Ed25519, signature type `0x04`).
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cosigner({}+{:08x}, secret redacted)",
            self.name, self.id
        )
    }
}

impl Cosigner {
    /// A cosigner named `name` from a 32-byte Ed25519 seed supplied by the caller.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, LogError> {
        if !is_valid_key_name(name) {
            return Err(LogError::InvalidKeyName);
        }
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, ALG_COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Cosigner {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+name+hex8+base64(0x04 || seed)`.
    pub fn from_private_key(skey: &str) -> Result<Self, LogError> {
        let (name, key) = crate::note::parse_private_key(skey, KeyType::CosignatureV1)?;
        let id = key_id(&name, ALG_COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Cosigner { name, id, key })
    }

    /// The `PRIVATE+KEY+…` encoding (secret).
    pub fn to_private_key(&self) -> Zeroizing<String> {
        crate::note::private_key_string(&self.name, self.id, ALG_COSIGNATURE_V1, &self.key)
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The verifier key (type `0x04`) clients configure for this witness.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey::from_signing_key(&self.name, KeyType::CosignatureV1, &self.key)
    }

    /// Cosigns a checkpoint note text at `timestamp` (POSIX seconds).
    pub fn cosign_text(&self, text: &str, timestamp: u64) -> Result<NoteSignature, LogError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(LogError::MalformedCosignature("timestamp above 2^63 - 1"));
        }
        let sig = self.key.sign(&cosigned_message(text, timestamp));
        let mut bytes = Vec::with_capacity(COSIGNATURE_LEN);
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        NoteSignature::new(&self.name, self.id, bytes)
    }

    /// Cosigns a checkpoint at `timestamp`.
    pub fn cosign(
        &self,
        checkpoint: &Checkpoint,
        timestamp: u64,
    ) -> Result<NoteSignature, LogError> {
        self.cosign_text(&checkpoint.to_text(), timestamp)
    }
}

/// A trusted witness's cosignature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessCosignature {
    /// Witness key name.
    pub name: String,
    /// Witness key ID.
    pub id: u32,
    /// Cosignature timestamp (POSIX seconds).
    pub timestamp: u64,
}

/// A checkpoint accepted by a [`CheckpointPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The note as received (all signature lines).
    pub note: Note,
    /// The trusted witnesses whose cosignatures count towards the quorum.
    pub cosignatures: Vec<WitnessCosignature>,
}

/// What a client requires of a checkpoint: the origin, the log's key(s), the trusted
/// witnesses and how many of them must have cosigned.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    origin: String,
    log_keys: Vec<VerifierKey>,
    witnesses: Vec<VerifierKey>,
    quorum: usize,
    max_future_secs: Option<u64>,
    limits: NoteLimits,
}

impl CheckpointPolicy {
    /// A policy for the log `origin` signed by `log_key` (an Ed25519 note key), with no
    /// witness requirement.
    pub fn new(origin: &str, log_key: VerifierKey) -> Result<Self, LogError> {
        if log_key.key_type() != KeyType::Ed25519 {
            return Err(LogError::InvalidPolicy(
                "log key must be an Ed25519 (0x01) key",
            ));
        }
        if origin.is_empty() {
            return Err(LogError::InvalidPolicy("empty origin"));
        }
        Ok(CheckpointPolicy {
            origin: origin.to_string(),
            log_keys: alloc::vec![log_key],
            witnesses: Vec::new(),
            quorum: 0,
            max_future_secs: None,
            limits: NoteLimits::default(),
        })
    }

    /// Requires `quorum` distinct witnesses among `witnesses` (cosignature keys, type
    /// `0x04`) to have validly cosigned.
    pub fn with_witnesses(
        mut self,
        witnesses: Vec<VerifierKey>,
        quorum: usize,
    ) -> Result<Self, LogError> {
        if witnesses
            .iter()
            .any(|w| w.key_type() != KeyType::CosignatureV1)
        {
            return Err(LogError::InvalidPolicy(
                "witness keys must be cosignature (0x04) keys",
            ));
        }
        // Reject ambiguous configurations (same name and ID, different keys).
        KeySet::from_keys(witnesses.iter().chain(self.log_keys.iter()))?;
        let mut distinct: Vec<&VerifierKey> = Vec::new();
        for w in &witnesses {
            if !distinct.contains(&w) {
                distinct.push(w);
            }
        }
        if quorum > distinct.len() {
            return Err(LogError::InvalidPolicy(
                "quorum larger than the number of witnesses",
            ));
        }
        self.witnesses = distinct.into_iter().cloned().collect();
        self.quorum = quorum;
        Ok(self)
    }

    /// Also accept checkpoints signed by this additional log key (key rotation).
    pub fn with_additional_log_key(mut self, key: VerifierKey) -> Result<Self, LogError> {
        if key.key_type() != KeyType::Ed25519 {
            return Err(LogError::InvalidPolicy(
                "log key must be an Ed25519 (0x01) key",
            ));
        }
        KeySet::from_keys(
            self.witnesses
                .iter()
                .chain(self.log_keys.iter())
                .chain([&key]),
        )?;
        self.log_keys.push(key);
        Ok(self)
    }

    /// Do not count cosignatures timestamped more than `secs` after `now`.
    pub fn with_max_future_secs(mut self, secs: u64) -> Self {
        self.max_future_secs = Some(secs);
        self
    }

    /// Note parsing limits.
    pub fn with_limits(mut self, limits: NoteLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The origin this policy expects.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Required number of witnesses.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Verifies a signed checkpoint note at time `now` (POSIX seconds).
    ///
    /// Checks, in order: note syntax and limits (`MALFORMED_NOTE`,
    /// `NOTE_LIMIT_EXCEEDED`); every signature by a configured key verifies
    /// (`CHECKPOINT_SIGNATURE_INVALID` for a log key, `COSIGNATURE_INVALID` for a witness);
    /// a log key signed (`CHECKPOINT_SIGNATURE_MISSING`); the body is a checkpoint
    /// (`MALFORMED_CHECKPOINT`) for the expected origin (`ORIGIN_MISMATCH`); at least
    /// `quorum` distinct trusted witnesses cosigned (`NOT_ENOUGH_WITNESSES`).
    /// Signatures from unknown keys are ignored.
    pub fn verify(
        &self,
        signed_checkpoint: &[u8],
        now: u64,
    ) -> Result<VerifiedCheckpoint, LogError> {
        let note = Note::parse_with_limits(signed_checkpoint, &self.limits)?;
        self.verify_note(note, now)
    }

    /// Like [`CheckpointPolicy::verify`], for an already parsed note.
    pub fn verify_note(&self, note: Note, now: u64) -> Result<VerifiedCheckpoint, LogError> {
        let keys = KeySet::from_keys(self.log_keys.iter().chain(self.witnesses.iter()))?;
        let v = note.check_signatures(&keys).map_err(|e| match e {
            LogError::NoteSignatureInvalid { name, id } => {
                if self
                    .log_keys
                    .iter()
                    .any(|k| k.name() == name && k.id() == id)
                {
                    LogError::CheckpointSignatureInvalid
                } else {
                    LogError::CosignatureInvalid { name, id }
                }
            }
            other => other,
        })?;
        if !self.log_keys.iter().any(|k| v.has(k.name(), k.id())) {
            return Err(LogError::CheckpointSignatureMissing);
        }
        let checkpoint = Checkpoint::parse(note.text())?;
        if checkpoint.origin() != self.origin {
            return Err(LogError::OriginMismatch {
                expected: self.origin.clone(),
                got: checkpoint.origin().to_string(),
            });
        }
        let mut cosignatures = Vec::new();
        for s in &v.verified {
            let Some(ts) = s.timestamp else { continue };
            if !self
                .witnesses
                .iter()
                .any(|w| w.name() == s.name && w.id() == s.id)
            {
                continue;
            }
            if let Some(max) = self.max_future_secs
                && ts > now.saturating_add(max)
            {
                continue;
            }
            cosignatures.push(WitnessCosignature {
                name: s.name.clone(),
                id: s.id,
                timestamp: ts,
            });
        }
        if cosignatures.len() < self.quorum {
            return Err(LogError::NotEnoughWitnesses {
                have: cosignatures.len(),
                need: self.quorum,
            });
        }
        Ok(VerifiedCheckpoint {
            checkpoint,
            note,
            cosignatures,
        })
    }
}
