//! The witness, sans-I/O (<https://c2sp.org/tlog-witness>, cosignatures per
//! <https://c2sp.org/tlog-cosignature>).
//!
//! A witness remembers, per log origin, the latest checkpoint it cosigned. Given a new
//! checkpoint signed by the log and a consistency proof from the size it remembers, it
//! verifies and cosigns; it refuses (each with its own error):
//!
//! | refusal | error | HTTP |
//! |---|---|---|
//! | origin not configured | `UNKNOWN_ORIGIN` | 404 |
//! | no valid log signature / bad log signature | `CHECKPOINT_SIGNATURE_MISSING` / `CHECKPOINT_SIGNATURE_INVALID` | 403 |
//! | checkpoint smaller than the cosigned one (rollback) | `CHECKPOINT_ROLLBACK` | 409 (400 if `old` > size) |
//! | request's `old` size is not the witness's size | `OLD_SIZE_MISMATCH` | 409 |
//! | same size, different root (split view) | `FORK_DETECTED` | 409 |
//! | consistency proof does not verify | `CONSISTENCY_PROOF_INVALID` | 422 |
//! | malformed request or checkpoint | `MALFORMED_*` | 400 |
//!
//! Cosigning is two-phase so the new state is durable before a cosignature leaves the
//! witness: [`Witness::add_checkpoint`] verifies and prepares a [`PendingCosignature`]; the
//! caller persists [`PendingCosignature::head`], then [`Witness::commit`] (which re-checks
//! that the state did not move in between) releases the signature lines. Time is a
//! parameter.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::LogError;
use crate::checkpoint::{Checkpoint, parse_decimal};
use crate::cosignature::Cosigner;
use crate::hash::{Hash, empty_root};
use crate::note::{KeySet, KeyType, Note, NoteLimits, NoteSignature, VerifierKey};
use crate::proof::verify_consistency;

/// Most consistency proof lines in an `add-checkpoint` request.
pub const MAX_PROOF_LINES: usize = 63;

/// A tree size and root: the state a witness (or client) keeps per log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeHead {
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
}

impl TreeHead {
    /// The empty tree.
    pub fn empty() -> TreeHead {
        TreeHead {
            size: 0,
            root: empty_root(),
        }
    }
}

impl TreeHead {
    /// Client-side check of a newly presented tree head against the one stored from an
    /// earlier, verified checkpoint:
    ///
    /// - same size: the roots must be equal, else `FORK_DETECTED` (a split view);
    /// - larger: `proof` must be a consistency proof from `self` to `new`;
    /// - smaller (an older view, e.g. a lagging mirror): `proof` must be a consistency
    ///   proof from `new` to `self`. The caller keeps the larger head.
    pub fn verify_consistent(&self, new: &TreeHead, proof: &[Hash]) -> Result<(), LogError> {
        if new.size == self.size {
            if new.root != self.root {
                return Err(LogError::ForkDetected { size: self.size });
            }
            if !proof.is_empty() {
                return Err(LogError::ConsistencyProofInvalid(
                    "proof between equal sizes must be empty",
                ));
            }
            return Ok(());
        }
        if new.size > self.size {
            verify_consistency(self.size, new.size, proof, &self.root, &new.root)
        } else {
            verify_consistency(new.size, self.size, proof, &new.root, &self.root)
        }
    }
}

impl From<&Checkpoint> for TreeHead {
    fn from(c: &Checkpoint) -> TreeHead {
        TreeHead {
            size: c.size(),
            root: *c.root(),
        }
    }
}

/// An `add-checkpoint` request: old size, consistency proof, signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// Size of the checkpoint the client believes the witness last cosigned.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpointRequest {
    /// Parses a request body: `old <size>\n`, up to 63 base64 hash lines, an empty line,
    /// then the signed checkpoint.
    pub fn parse(body: &[u8]) -> Result<Self, LogError> {
        let max = NoteLimits::default().max_note_bytes + 64 * (MAX_PROOF_LINES + 1);
        if body.len() > max {
            return Err(LogError::MalformedWitnessRequest("request too large"));
        }
        let mut rest = body;
        let old_line = next_line(&mut rest)?;
        let old_size = old_line
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or(LogError::MalformedWitnessRequest("bad old size line"))?;
        let mut proof = Vec::new();
        loop {
            let line = next_line(&mut rest)?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(LogError::MalformedWitnessRequest(
                    "more than 63 proof lines",
                ));
            }
            proof.push(
                Hash::from_base64(line)
                    .ok_or(LogError::MalformedWitnessRequest("bad proof hash"))?,
            );
        }
        Ok(AddCheckpointRequest {
            old_size,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// Encodes the request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = alloc::format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(h.to_base64().as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

#[derive(Clone, Debug)]
struct WitnessedLog {
    keys: KeySet,
    head: Option<TreeHead>,
}

/// A verified checkpoint, cosigned, waiting for the new state to be persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCosignature {
    origin: String,
    previous: Option<TreeHead>,
    head: TreeHead,
    checkpoint: Checkpoint,
    signature: NoteSignature,
}

impl PendingCosignature {
    /// The log origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The new state to persist before [`Witness::commit`].
    pub fn head(&self) -> TreeHead {
        self.head
    }

    /// The cosigned checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
}

/// Splits off the next newline-terminated line.
fn next_line<'a>(rest: &mut &'a [u8]) -> Result<&'a str, LogError> {
    let i = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(LogError::MalformedWitnessRequest("line without newline"))?;
    let line = core::str::from_utf8(&rest[..i])
        .map_err(|_| LogError::MalformedWitnessRequest("not UTF-8"))?;
    *rest = &rest[i + 1..];
    Ok(line)
}

/// The witness state machine for one cosigning key and any number of logs.
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
    logs: BTreeMap<String, WitnessedLog>,
}

impl Witness {
    /// A witness cosigning with `cosigner`, configured for no log yet.
    pub fn new(cosigner: Cosigner) -> Witness {
        Witness {
            cosigner,
            logs: BTreeMap::new(),
        }
    }

    /// The cosigning key.
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// Configures a log: its origin, its Ed25519 key(s), and the last cosigned tree head
    /// (`None` if never cosigned).
    pub fn add_log(
        &mut self,
        origin: &str,
        log_keys: &[VerifierKey],
        head: Option<TreeHead>,
    ) -> Result<(), LogError> {
        if origin.is_empty() {
            return Err(LogError::InvalidPolicy("empty origin"));
        }
        if log_keys.is_empty() || log_keys.iter().any(|k| k.key_type() != KeyType::Ed25519) {
            return Err(LogError::InvalidPolicy(
                "a log needs at least one Ed25519 (0x01) key",
            ));
        }
        if let Some(h) = head
            && h.size == 0
            && h.root != empty_root()
        {
            return Err(LogError::InvalidPolicy("size 0 with a non-empty root"));
        }
        let keys = KeySet::from_keys(log_keys)?;
        self.logs
            .insert(origin.to_string(), WitnessedLog { keys, head });
        Ok(())
    }

    /// The last cosigned tree head for `origin`, if the log is known and was cosigned.
    pub fn head(&self, origin: &str) -> Option<TreeHead> {
        self.logs.get(origin).and_then(|l| l.head)
    }

    /// Configured origins.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(|s| s.as_str())
    }

    /// Verifies an `add-checkpoint` request at time `now` (POSIX seconds) and prepares the
    /// cosignature. Does not change the witness's state; see [`Witness::commit`].
    pub fn add_checkpoint(
        &self,
        req: &AddCheckpointRequest,
        now: u64,
    ) -> Result<PendingCosignature, LogError> {
        let note = Note::parse(&req.checkpoint)?;
        let checkpoint = Checkpoint::parse(note.text())?;
        let log = self
            .logs
            .get(checkpoint.origin())
            .ok_or_else(|| LogError::UnknownOrigin(checkpoint.origin().to_string()))?;
        let v = note.check_signatures(&log.keys).map_err(|e| match e {
            LogError::NoteSignatureInvalid { .. } => LogError::CheckpointSignatureInvalid,
            other => other,
        })?;
        if v.verified.is_empty() {
            return Err(LogError::CheckpointSignatureMissing);
        }
        let state = log.head.unwrap_or_else(TreeHead::empty);
        if checkpoint.size() < state.size {
            return Err(LogError::CheckpointRollback {
                known_size: state.size,
                checkpoint_size: checkpoint.size(),
                old_size: Some(req.old_size),
            });
        }
        if req.old_size > checkpoint.size() {
            return Err(LogError::InvalidTreeSize(
                "old size larger than the checkpoint",
            ));
        }
        if req.old_size != state.size {
            return Err(LogError::OldSizeMismatch {
                old_size: req.old_size,
                witness_size: state.size,
            });
        }
        if checkpoint.size() == state.size && *checkpoint.root() != state.root {
            return Err(LogError::ForkDetected { size: state.size });
        }
        verify_consistency(
            state.size,
            checkpoint.size(),
            &req.proof,
            &state.root,
            checkpoint.root(),
        )?;
        let signature = self.cosigner.cosign_text(note.text(), now)?;
        Ok(PendingCosignature {
            origin: checkpoint.origin().to_string(),
            previous: log.head,
            head: TreeHead::from(&checkpoint),
            checkpoint,
            signature,
        })
    }

    /// Records the pending cosignature's head as the log's state and returns the response
    /// body (signature lines). Fails with `OLD_SIZE_MISMATCH` if the state changed since
    /// [`Witness::add_checkpoint`] (a concurrent request won).
    pub fn commit(&mut self, pending: PendingCosignature) -> Result<Vec<u8>, LogError> {
        let log = self
            .logs
            .get_mut(&pending.origin)
            .ok_or_else(|| LogError::UnknownOrigin(pending.origin.clone()))?;
        if log.head != pending.previous {
            return Err(LogError::OldSizeMismatch {
                old_size: pending.previous.map_or(0, |h| h.size),
                witness_size: log.head.map_or(0, |h| h.size),
            });
        }
        log.head = Some(pending.head);
        Ok(pending.signature.to_line().into_bytes())
    }
}
