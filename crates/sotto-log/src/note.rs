//! C2SP signed notes (<https://c2sp.org/signed-note>): text signed by one or more keys.
//!
//! ```text
//! <text, ending in a newline>
//!
//! — <key name> base64(uint32 key ID || signature)
//! ```
//!
//! - The note is UTF-8 without ASCII control characters other than newline; the text is
//!   separated from the signature lines by the *last* blank line.
//! - A key is identified by its name and its 32-bit key ID,
//!   `SHA-256(name || 0x0A || type || public key)[:4]`; verifier keys are written
//!   `name+hex(key ID)+base64(type || public key)` (the "vkey" format of
//!   golang.org/x/mod/sumdb/note).
//! - Supported key types: `0x01` Ed25519 note signatures (the log's key) and `0x04`
//!   timestamped Ed25519 cosignatures (witness keys, c2sp.org/tlog-cosignature).
//! - Verification ([`Note::verify`]): signatures whose (name, key ID) is not a known key
//!   are ignored (reported as unknown, identical lines once); every signature from a known
//!   key must verify, or the whole note is rejected; duplicates from one key count once; a
//!   note with no valid signature from a known key is rejected.
//! - Parsing is bounded by [`NoteLimits`] (size, line length, number of signatures).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::LogError;
use crate::b64;

/// Signature type byte of Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature v1).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The signature line prefix: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Bounds applied while parsing a note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteLimits {
    /// Largest note in bytes.
    pub max_note_bytes: usize,
    /// Largest number of signature lines (the spec requires accepting at least 16).
    pub max_signatures: usize,
    /// Longest line in bytes, text or signature (newline excluded).
    pub max_line_bytes: usize,
}

impl Default for NoteLimits {
    /// 1 MiB, 100 signatures (as golang.org/x/mod/sumdb/note), 16 KiB lines (room for
    /// post-quantum signatures of ~5 kB).
    fn default() -> Self {
        NoteLimits {
            max_note_bytes: 1 << 20,
            max_signatures: 100,
            max_line_bytes: 16 << 10,
        }
    }
}

/// Key ID as recommended by c2sp.org/signed-note:
/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
pub fn key_id(name: &str, key_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([key_type]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Whether `name` is a valid key name: non-empty, no Unicode white space, no `+` (and no
/// ASCII control character, which a note cannot carry anyway).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || u32::from(c) < 0x20)
}

/// Checks the characters of a note or note text: no ASCII control character but newline.
/// (UTF-8 validity is guaranteed by `&str`.)
fn check_note_chars(s: &str) -> Result<(), LogError> {
    if s.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(LogError::MalformedNote("control character"));
    }
    Ok(())
}

/// The kind of a verifier key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// Ed25519 note signature over the note text (type `0x01`), used by logs.
    Ed25519,
    /// Timestamped Ed25519 cosignature v1 (type `0x04`), used by witnesses.
    CosignatureV1,
}

impl KeyType {
    /// The signature type byte.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => ALG_ED25519,
            KeyType::CosignatureV1 => ALG_COSIGNATURE_V1,
        }
    }

    fn from_byte(b: u8) -> Result<KeyType, LogError> {
        match b {
            ALG_ED25519 => Ok(KeyType::Ed25519),
            ALG_COSIGNATURE_V1 => Ok(KeyType::CosignatureV1),
            other => Err(LogError::UnsupportedKeyType(other)),
        }
    }
}

/// A public key that verifies note signatures: a name, a key ID, a type and an Ed25519
/// public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key_type: KeyType,
    key: VerifyingKey,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({})", self.to_vkey())
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl VerifierKey {
    /// Builds a key from its parts, computing the key ID.
    ///
    /// Rejects invalid names and weak (small-order) public keys.
    pub fn new(name: &str, key_type: KeyType, public_key: &[u8; 32]) -> Result<Self, LogError> {
        if !is_valid_key_name(name) {
            return Err(LogError::InvalidKeyName);
        }
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| LogError::MalformedKey("not an Ed25519 public key"))?;
        if key.is_weak() {
            return Err(LogError::MalformedKey("weak Ed25519 public key"));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            id: key_id(name, key_type.byte(), public_key),
            key_type,
            key,
        })
    }

    /// A key from an already valid name and a verifying key of our own (no weak-key check
    /// needed: it comes from a signing key).
    pub(crate) fn from_signing_key(name: &str, key_type: KeyType, key: &SigningKey) -> Self {
        let key = key.verifying_key();
        VerifierKey {
            name: name.to_string(),
            id: key_id(name, key_type.byte(), key.as_bytes()),
            key_type,
            key,
        }
    }

    /// Parses a verifier key `name+hex8(key ID)+base64(type || public key)`.
    pub fn parse(vkey: &str) -> Result<Self, LogError> {
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(LogError::MalformedKey("missing '+'"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(LogError::MalformedKey("missing second '+'"))?;
        if !is_valid_key_name(name) {
            return Err(LogError::InvalidKeyName);
        }
        let id = parse_key_id_hex(id_hex)?;
        let raw = b64::decode(key_b64).ok_or(LogError::MalformedKey("bad base64 key"))?;
        let (&ty, public) = raw
            .split_first()
            .ok_or(LogError::MalformedKey("empty key"))?;
        let key_type = KeyType::from_byte(ty)?;
        let public: &[u8; 32] = public
            .try_into()
            .map_err(|_| LogError::MalformedKey("Ed25519 public key is not 32 bytes"))?;
        if id != key_id(name, ty, public) {
            return Err(LogError::KeyIdMismatch);
        }
        VerifierKey::new(name, key_type, public)
    }

    /// The `name+hex8+base64` encoding.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.key_type.byte());
        raw.extend_from_slice(self.key.as_bytes());
        alloc::format!("{}+{:08x}+{}", self.name, self.id, b64::encode(&raw))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Verifies one signature (the bytes after the key ID) over the note `text`.
    ///
    /// For cosignature keys the signature is `timestamp (u64 BE) || Ed25519 signature` over
    /// `"cosignature/v1\ntime <timestamp>\n" || text`; the timestamp is returned.
    fn verify_text(&self, text: &str, sig: &[u8]) -> Result<Option<u64>, ()> {
        match self.key_type {
            KeyType::Ed25519 => {
                let sig = Signature::from_slice(sig).map_err(|_| ())?;
                self.key
                    .verify_strict(text.as_bytes(), &sig)
                    .map_err(|_| ())?;
                Ok(None)
            }
            KeyType::CosignatureV1 => {
                let (timestamp, sig) =
                    crate::cosignature::split_timestamped(sig).map_err(|_| ())?;
                let msg = crate::cosignature::cosigned_message(text, timestamp);
                self.key
                    .verify_strict(&msg, &Signature::from_bytes(&sig))
                    .map_err(|_| ())?;
                Ok(Some(timestamp))
            }
        }
    }
}

fn parse_key_id_hex(s: &str) -> Result<u32, LogError> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LogError::MalformedKey("key ID is not 8 hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| LogError::MalformedKey("key ID is not hex"))
}

/// Parses `PRIVATE+KEY+name+hex8+base64(type || 32-byte seed)` (the golang.org/x/mod
/// signer-key format) and checks the ID against the derived public key.
pub(crate) fn parse_private_key(
    skey: &str,
    expect: KeyType,
) -> Result<(String, SigningKey), LogError> {
    let rest = skey
        .strip_prefix("PRIVATE+KEY+")
        .ok_or(LogError::MalformedKey("missing PRIVATE+KEY+ prefix"))?;
    let (name, rest) = rest
        .split_once('+')
        .ok_or(LogError::MalformedKey("missing '+'"))?;
    let (id_hex, key_b64) = rest
        .split_once('+')
        .ok_or(LogError::MalformedKey("missing '+'"))?;
    if !is_valid_key_name(name) {
        return Err(LogError::InvalidKeyName);
    }
    let id = parse_key_id_hex(id_hex)?;
    let raw = Zeroizing::new(b64::decode(key_b64).ok_or(LogError::MalformedKey("bad base64"))?);
    let (&ty, seed) = raw
        .split_first()
        .ok_or(LogError::MalformedKey("empty key"))?;
    if KeyType::from_byte(ty)? != expect {
        return Err(LogError::UnsupportedKeyType(ty));
    }
    let mut seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| LogError::MalformedKey("Ed25519 seed is not 32 bytes"))?;
    let key = SigningKey::from_bytes(&seed);
    seed.zeroize();
    if id != key_id(name, ty, key.verifying_key().as_bytes()) {
        return Err(LogError::KeyIdMismatch);
    }
    Ok((name.to_string(), key))
}

pub(crate) fn private_key_string(
    name: &str,
    id: u32,
    ty: u8,
    key: &SigningKey,
) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(33));
    raw.push(ty);
    raw.extend_from_slice(key.as_bytes());
    Zeroizing::new(alloc::format!(
        "PRIVATE+KEY+{}+{:08x}+{}",
        name,
        id,
        b64::encode(&raw)
    ))
}

/// An Ed25519 note signer (key type `0x01`): signs checkpoints as the log.
///
/// The key is made from a 32-byte seed supplied by the caller (this crate draws no
/// randomness). The secret is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Ed25519Signer {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ed25519Signer({}+{:08x}, secret redacted)",
            self.name, self.id
        )
    }
}

impl Ed25519Signer {
    /// A signer named `name` from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, LogError> {
        if !is_valid_key_name(name) {
            return Err(LogError::InvalidKeyName);
        }
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Ed25519Signer {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+name+hex8+base64(0x01 || seed)`.
    pub fn from_private_key(skey: &str) -> Result<Self, LogError> {
        let (name, key) = parse_private_key(skey, KeyType::Ed25519)?;
        let id = key_id(&name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Ed25519Signer { name, id, key })
    }

    /// The `PRIVATE+KEY+…` encoding (secret: store with care).
    pub fn to_private_key(&self) -> Zeroizing<String> {
        private_key_string(&self.name, self.id, ALG_ED25519, &self.key)
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The matching verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey::from_signing_key(&self.name, KeyType::Ed25519, &self.key)
    }

    /// Signs a note text, returning the signature line's content.
    pub fn sign_text(&self, text: &str) -> NoteSignature {
        let sig = self.key.sign(text.as_bytes());
        NoteSignature {
            name: self.name.clone(),
            id: self.id,
            sig: sig.to_bytes().to_vec(),
        }
    }
}

/// One signature line of a note: key name, key ID and the signature bytes (after the ID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoteSignature {
    name: String,
    id: u32,
    sig: Vec<u8>,
}

impl NoteSignature {
    /// A signature from its parts. The name must be a valid key name and the signature
    /// non-empty.
    pub fn new(name: &str, id: u32, sig: Vec<u8>) -> Result<Self, LogError> {
        if !is_valid_key_name(name) {
            return Err(LogError::InvalidKeyName);
        }
        if sig.is_empty() {
            return Err(LogError::MalformedNote("empty signature"));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            id,
            sig,
        })
    }

    /// Parses one signature line, with or without its final newline:
    /// `— <name> base64(id || sig)`.
    pub fn parse_line(line: &str) -> Result<Self, LogError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(LogError::MalformedNote(
                "signature line without em dash prefix",
            ))?;
        let (name, sig_b64) = rest
            .split_once(' ')
            .ok_or(LogError::MalformedNote("signature line without space"))?;
        if !is_valid_key_name(name) {
            return Err(LogError::MalformedNote(
                "invalid key name on signature line",
            ));
        }
        let raw = b64::decode(sig_b64).ok_or(LogError::MalformedNote("bad signature base64"))?;
        if raw.len() < 5 {
            return Err(LogError::MalformedNote("signature shorter than 5 bytes"));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            sig: raw[4..].to_vec(),
        })
    }

    /// The signature line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        alloc::format!("{SIG_PREFIX}{} {}\n", self.name, b64::encode(&raw))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Signature bytes (after the key ID).
    pub fn signature(&self) -> &[u8] {
        &self.sig
    }
}

/// Parses a block of signature lines (e.g. a witness response body), each ending in a
/// newline, within `limits`.
pub fn parse_signature_lines(
    block: &[u8],
    limits: &NoteLimits,
) -> Result<Vec<NoteSignature>, LogError> {
    if block.len() > limits.max_note_bytes {
        return Err(LogError::NoteLimitExceeded("signature block too large"));
    }
    let s = core::str::from_utf8(block).map_err(|_| LogError::MalformedNote("not UTF-8"))?;
    check_note_chars(s)?;
    let body = s.strip_suffix('\n').ok_or(LogError::MalformedNote(
        "signature block must end in a newline",
    ))?;
    let mut out = Vec::new();
    for line in body.split('\n') {
        if line.len() > limits.max_line_bytes {
            return Err(LogError::NoteLimitExceeded("signature line too long"));
        }
        if out.len() >= limits.max_signatures {
            return Err(LogError::NoteLimitExceeded("too many signatures"));
        }
        out.push(NoteSignature::parse_line(line)?);
    }
    Ok(out)
}

/// A signed note: text plus signature lines (not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<NoteSignature>,
}

/// A signature that verified against a known key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub id: u32,
    /// Key type.
    pub key_type: KeyType,
    /// For cosignatures, the cosigner's timestamp (POSIX seconds).
    pub timestamp: Option<u64>,
}

/// Outcome of [`Note::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerification {
    /// One entry per known key with a valid signature, in note order.
    pub verified: Vec<VerifiedSignature>,
    /// Signatures from unknown keys (ignored), identical lines once.
    pub unknown: Vec<NoteSignature>,
}

impl NoteVerification {
    /// Whether the key `name`/`id` signed validly.
    pub fn has(&self, name: &str, id: u32) -> bool {
        self.verified.iter().any(|v| v.name == name && v.id == id)
    }
}

impl Note {
    /// A note with `text` and no signatures. The text must end in a newline, and contain
    /// no ASCII control characters other than newline.
    pub fn new(text: &str) -> Result<Self, LogError> {
        check_note_chars(text)?;
        if !text.ends_with('\n') {
            return Err(LogError::MalformedNote("text must end in a newline"));
        }
        Ok(Note {
            text: text.to_string(),
            sigs: Vec::new(),
        })
    }

    /// Parses a signed note with the default [`NoteLimits`].
    pub fn parse(msg: &[u8]) -> Result<Self, LogError> {
        Note::parse_with_limits(msg, &NoteLimits::default())
    }

    /// Parses a signed note within `limits`. Only syntax is checked; call
    /// [`Note::verify`] before trusting the text.
    pub fn parse_with_limits(msg: &[u8], limits: &NoteLimits) -> Result<Self, LogError> {
        if msg.len() > limits.max_note_bytes {
            return Err(LogError::NoteLimitExceeded("note too large"));
        }
        let s = core::str::from_utf8(msg).map_err(|_| LogError::MalformedNote("not UTF-8"))?;
        check_note_chars(s)?;
        if s.split('\n').any(|l| l.len() > limits.max_line_bytes) {
            return Err(LogError::NoteLimitExceeded("line too long"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or(LogError::MalformedNote("no blank line before signatures"))?;
        let text = &s[..split + 1];
        let sig_block = &s[split + 2..];
        if sig_block.is_empty() {
            return Err(LogError::MalformedNote("no signature lines"));
        }
        let sigs = parse_signature_lines(sig_block.as_bytes(), limits)?;
        Ok(Note {
            text: text.to_string(),
            sigs,
        })
    }

    /// The note text (ends in a newline). Untrusted until verified.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.sigs
    }

    /// Adds a signature, replacing any existing one with the same name and key ID.
    pub fn add_signature(&mut self, sig: NoteSignature) {
        self.sigs
            .retain(|s| !(s.name == sig.name && s.id == sig.id));
        self.sigs.push(sig);
    }

    /// Signs the text with `signer` (replacing an earlier signature by the same key).
    pub fn sign(&mut self, signer: &Ed25519Signer) {
        let sig = signer.sign_text(&self.text);
        self.add_signature(sig);
    }

    /// The encoded signed note. A note without signatures encodes as its text followed by
    /// a blank line, which does not parse back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.sigs.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.sigs {
            out.push_str(&s.to_line());
        }
        out.into_bytes()
    }

    /// Checks the signatures against `keys` (see the module documentation for the rules)
    /// without requiring any to be present: the result may have no verified signature.
    ///
    /// Fails with [`LogError::NoteSignatureInvalid`] if a signature from a known key does
    /// not verify.
    pub fn check_signatures(&self, keys: &KeySet) -> Result<NoteVerification, LogError> {
        let mut verified: Vec<VerifiedSignature> = Vec::new();
        let mut seen: BTreeSet<(&str, u32)> = BTreeSet::new();
        let mut unknown: Vec<NoteSignature> = Vec::new();
        for sig in &self.sigs {
            match keys.get(&sig.name, sig.id) {
                None => {
                    if !unknown.contains(sig) {
                        unknown.push(sig.clone());
                    }
                }
                Some(key) => {
                    let ts = key.verify_text(&self.text, &sig.sig).map_err(|()| {
                        LogError::NoteSignatureInvalid {
                            name: sig.name.clone(),
                            id: sig.id,
                        }
                    })?;
                    if seen.insert((&sig.name, sig.id)) {
                        verified.push(VerifiedSignature {
                            name: sig.name.clone(),
                            id: sig.id,
                            key_type: key.key_type,
                            timestamp: ts,
                        });
                    }
                }
            }
        }
        Ok(NoteVerification { verified, unknown })
    }

    /// Verifies the note: like [`Note::check_signatures`], and fails with
    /// [`LogError::NoteUnverified`] unless at least one known key signed.
    pub fn verify(&self, keys: &KeySet) -> Result<NoteVerification, LogError> {
        let v = self.check_signatures(keys)?;
        if v.verified.is_empty() {
            return Err(LogError::NoteUnverified);
        }
        Ok(v)
    }
}

/// A set of known verifier keys, looked up by (name, key ID).
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: BTreeMap<(String, u32), VerifierKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// A set of these keys. The same key twice is kept once; two different keys with the
    /// same name and ID fail with [`LogError::AmbiguousKey`].
    pub fn from_keys<'a>(
        keys: impl IntoIterator<Item = &'a VerifierKey>,
    ) -> Result<Self, LogError> {
        let mut set = KeySet::new();
        for k in keys {
            set.insert(k.clone())?;
        }
        Ok(set)
    }

    /// Adds a key (see [`KeySet::from_keys`]).
    pub fn insert(&mut self, key: VerifierKey) -> Result<(), LogError> {
        let k = (key.name.clone(), key.id);
        match self.keys.get(&k) {
            Some(existing) if *existing == key => Ok(()),
            Some(_) => Err(LogError::AmbiguousKey {
                name: key.name,
                id: key.id,
            }),
            None => {
                self.keys.insert(k, key);
                Ok(())
            }
        }
    }

    /// The key with this name and ID.
    pub fn get(&self, name: &str, id: u32) -> Option<&VerifierKey> {
        // BTreeMap<(String, u32)> cannot be queried by (&str, u32) without allocating.
        self.keys
            .range((name.to_string(), id)..=(name.to_string(), id))
            .next()
            .map(|(_, v)| v)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &VerifierKey> {
        self.keys.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_name_rules() {
        assert!(is_valid_key_name("example.com/log"));
        assert!(!is_valid_key_name(""));
        assert!(!is_valid_key_name("a b"));
        assert!(!is_valid_key_name("a+b"));
        assert!(!is_valid_key_name("a\u{00a0}b"));
    }

    #[test]
    fn roundtrip_sign_verify() {
        let s = Ed25519Signer::from_seed("example.com/log", &[7; 32]).unwrap();
        let mut n = Note::new("hello\n").unwrap();
        n.sign(&s);
        let bytes = n.to_bytes();
        let p = Note::parse(&bytes).unwrap();
        assert_eq!(p, n);
        let keys = KeySet::from_keys([&s.verifier_key()]).unwrap();
        let v = p.verify(&keys).unwrap();
        assert!(v.has("example.com/log", s.id()));
        let back = VerifierKey::parse(&s.verifier_key().to_vkey()).unwrap();
        assert_eq!(back, s.verifier_key());
        let sk = Ed25519Signer::from_private_key(&s.to_private_key()).unwrap();
        assert_eq!(sk.verifier_key(), s.verifier_key());
    }
}
