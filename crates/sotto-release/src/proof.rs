//! Signed releases and the proof that one is in the transparency log.
//!
//! A *signed release* is a C2SP signed note whose text is a canonical [`Manifest`] and
//! whose signature lines include the release key's. The log's entries are signed releases,
//! byte for byte. A [`ReleaseProof`] is what an enclave ships in its evidence bundle (tag
//! [`sotto_attest::tags::RELEASE_MANIFEST`]):
//!
//! ```text
//! "SOTR" | u8 version = 1
//! | u32 len | signed release (note bytes)
//! | u64 leaf index
//! | u8 n | n × 32-byte inclusion proof hashes
//! | u32 len | signed checkpoint (note bytes: log signature and witness cosignatures)
//! ```
//!
//! Integers are big-endian; no trailing bytes. Nothing in it is secret or trusted: the
//! client verifies every part ([`verify_release`]).

use sotto_log::{Checkpoint, CheckpointPolicy, Hash, KeySet, Note, VerifiedCheckpoint};

use crate::{Manifest, ReleaseError};

const MAGIC: &[u8; 4] = b"SOTR";
const VERSION: u8 = 1;
/// Largest signed release or signed checkpoint carried in a proof.
pub const MAX_NOTE_LEN: usize = 32 * 1024;
/// Longest inclusion proof (a tree of 2^63 leaves needs 63 hashes).
pub const MAX_PROOF_HASHES: usize = 64;

/// A signed release with its inclusion proof under a signed, cosigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseProof {
    /// The signed release (note bytes), exactly as logged.
    pub signed_release: Vec<u8>,
    /// Its index in the log.
    pub index: u64,
    /// Inclusion proof of leaf `index` in the tree of the checkpoint.
    pub inclusion: Vec<Hash>,
    /// The signed checkpoint (note bytes).
    pub checkpoint: Vec<u8>,
}

impl ReleaseProof {
    /// The wire encoding.
    pub fn encode(&self) -> Result<Vec<u8>, ReleaseError> {
        if self.signed_release.len() > MAX_NOTE_LEN || self.checkpoint.len() > MAX_NOTE_LEN {
            return Err(ReleaseError::MalformedProof("note too large".into()));
        }
        if self.inclusion.len() > MAX_PROOF_HASHES {
            return Err(ReleaseError::MalformedProof(
                "inclusion proof too long".into(),
            ));
        }
        let mut out = Vec::with_capacity(
            24 + self.signed_release.len() + 32 * self.inclusion.len() + self.checkpoint.len(),
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        // Lengths were bounded above, so these casts do not truncate.
        out.extend_from_slice(&(self.signed_release.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.signed_release);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.push(self.inclusion.len() as u8);
        for h in &self.inclusion {
            out.extend_from_slice(&h.0);
        }
        out.extend_from_slice(&(self.checkpoint.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.checkpoint);
        Ok(out)
    }

    /// Decodes the wire encoding (structure only; see [`verify_release`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, ReleaseError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(ReleaseError::MalformedProof("bad magic".into()));
        }
        let v = r.take(1)?[0];
        if v != VERSION {
            return Err(ReleaseError::MalformedProof(format!(
                "unsupported version {v}"
            )));
        }
        let signed_release = r.note()?.to_vec();
        let index = u64::from_be_bytes(r.array()?);
        let n = r.take(1)?[0] as usize;
        if n > MAX_PROOF_HASHES {
            return Err(ReleaseError::MalformedProof(
                "inclusion proof too long".into(),
            ));
        }
        let mut inclusion = Vec::with_capacity(n);
        for _ in 0..n {
            inclusion.push(Hash(r.array()?));
        }
        let checkpoint = r.note()?.to_vec();
        if !r.0.is_empty() {
            return Err(ReleaseError::MalformedProof("trailing bytes".into()));
        }
        Ok(ReleaseProof {
            signed_release,
            index,
            inclusion,
            checkpoint,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReleaseError> {
        if self.0.len() < n {
            return Err(ReleaseError::MalformedProof("truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReleaseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn note(&mut self) -> Result<&'a [u8], ReleaseError> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        if len > MAX_NOTE_LEN {
            return Err(ReleaseError::MalformedProof("note too large".into()));
        }
        self.take(len)
    }
}

/// Signs `manifest` with the release key: the signed release to append to the log.
pub fn sign_release(
    manifest: &Manifest,
    signer: &sotto_log::Ed25519Signer,
) -> Result<Vec<u8>, ReleaseError> {
    let mut note = Note::new(&manifest.encode()?)
        .map_err(|e| ReleaseError::Invalid(format!("manifest is not a valid note: {e}")))?;
    note.sign(signer);
    Ok(note.to_bytes())
}

/// Verifies that a signed release is signed by one of `release_keys` and carries a
/// canonical manifest. Returns the manifest and the name of the key that signed it.
pub fn open_release(
    signed_release: &[u8],
    release_keys: &KeySet,
) -> Result<(Manifest, String), ReleaseError> {
    let note = Note::parse(signed_release)
        .map_err(|e| ReleaseError::SignatureInvalid(format!("not a signed note: {e}")))?;
    let v = note
        .verify(release_keys)
        .map_err(|e| ReleaseError::SignatureInvalid(e.to_string()))?;
    let signer = v
        .verified
        .first()
        .map(|s| s.name.clone())
        .ok_or_else(|| ReleaseError::SignatureInvalid("no trusted signature".into()))?;
    let manifest = Manifest::parse(note.text().as_bytes())?;
    Ok((manifest, signer))
}

/// What the client trusts about releases: who signs them and which log (and witnesses)
/// must have published them.
#[derive(Debug, Clone)]
pub struct ReleaseTrust {
    /// Release signing keys (Ed25519 note keys).
    pub release_keys: KeySet,
    /// The log's origin and key, the trusted witnesses and the quorum.
    pub checkpoint_policy: CheckpointPolicy,
}

/// A release that passed [`verify_release`].
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    /// The manifest.
    pub manifest: Manifest,
    /// SHA-256 of the canonical manifest text.
    pub manifest_digest: [u8; 32],
    /// Name of the release key that signed it.
    pub signer: String,
    /// Index of the signed release in the log.
    pub index: u64,
    /// The verified checkpoint that includes it.
    pub checkpoint: VerifiedCheckpoint,
    /// The signed checkpoint bytes (to store as the client's latest view).
    pub signed_checkpoint: Vec<u8>,
}

/// Verifies a release proof, in order: the signed release is signed by a trusted release
/// key (`RELEASE_SIGNATURE_INVALID`) and its manifest is canonical (`MANIFEST_MALFORMED`);
/// the checkpoint is signed by the log and cosigned by the quorum of trusted witnesses
/// (the log's codes, e.g. `CHECKPOINT_SIGNATURE_INVALID`, `NOT_ENOUGH_WITNESSES`); the
/// signed release is leaf `index` of the checkpoint's tree (`RELEASE_NOT_IN_LOG`).
///
/// Consistency with checkpoints seen earlier is a separate step ([`check_consistency`]):
/// it needs a proof fetched from the log.
pub fn verify_release(
    proof: &ReleaseProof,
    trust: &ReleaseTrust,
    now_unix: u64,
) -> Result<VerifiedRelease, ReleaseError> {
    let (manifest, signer) = open_release(&proof.signed_release, &trust.release_keys)?;
    let manifest_digest = manifest.digest()?;
    let checkpoint = trust
        .checkpoint_policy
        .verify(&proof.checkpoint, now_unix)
        .map_err(ReleaseError::Checkpoint)?;
    let leaf = sotto_log::leaf_hash(&proof.signed_release);
    sotto_log::verify_inclusion(
        &leaf,
        proof.index,
        checkpoint.checkpoint.size(),
        &proof.inclusion,
        checkpoint.checkpoint.root(),
    )
    .map_err(|e| ReleaseError::NotInLog(e.to_string()))?;
    Ok(VerifiedRelease {
        manifest,
        manifest_digest,
        signer,
        index: proof.index,
        checkpoint,
        signed_checkpoint: proof.checkpoint.clone(),
    })
}

/// Which consistency proof the client needs before accepting `new` after having seen
/// `seen`: `None` if none is needed (same tree), `Some((old, new))` sizes otherwise.
/// Fails with `LOG_FORK` at once when the two are the same size with different roots,
/// and with `LOG_FORK` for a different origin (a log cannot change its name).
pub fn consistency_needed(
    seen: &Checkpoint,
    new: &Checkpoint,
) -> Result<Option<(u64, u64)>, ReleaseError> {
    if seen.origin() != new.origin() {
        return Err(ReleaseError::LogFork(format!(
            "checkpoint origin {:?} differs from the {:?} seen before",
            new.origin(),
            seen.origin()
        )));
    }
    if seen.size() == new.size() {
        if seen.root() != new.root() {
            return Err(ReleaseError::LogFork(format!(
                "two different trees of size {} were signed by the log",
                new.size()
            )));
        }
        return Ok(None);
    }
    Ok(Some((
        seen.size().min(new.size()),
        seen.size().max(new.size()),
    )))
}

/// Checks a consistency proof between the checkpoint seen before and a new one (in
/// either order of size). A proof that does not verify means the log signed two trees
/// where neither extends the other, or served bad proof data: either way the client
/// refuses (`LOG_FORK`).
pub fn check_consistency(
    seen: &Checkpoint,
    new: &Checkpoint,
    proof: &[Hash],
) -> Result<(), ReleaseError> {
    let Some(_) = consistency_needed(seen, new)? else {
        return Ok(());
    };
    let (old, newer) = if seen.size() < new.size() {
        (seen, new)
    } else {
        (new, seen)
    };
    sotto_log::verify_consistency(old.size(), newer.size(), proof, old.root(), newer.root())
        .map_err(|e| {
            ReleaseError::LogFork(format!(
                "checkpoint of size {} is not consistent with the checkpoint of size {}: {e}",
                newer.size(),
                old.size()
            ))
        })
}
