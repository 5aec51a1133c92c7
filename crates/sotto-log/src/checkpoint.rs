//! Checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed tree head, as the text of a
//! signed note.
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeroes>
//! <root hash, base64>
//! [<extension line>...]
//! ```
//!
//! Parsing is strict: every line ends in a newline, the origin is non-empty, the size is
//! canonical decimal that fits in a `u64`, the root is the canonical base64 of 32 bytes,
//! extension lines are non-empty (at most [`MAX_EXTENSION_LINES`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::LogError;
use crate::hash::Hash;
use crate::note::{Ed25519Signer, KeySet, Note, VerifierKey};

/// Most extension lines accepted after the root hash.
pub const MAX_EXTENSION_LINES: usize = 32;

/// A checkpoint body: origin, tree size, root hash and optional extension lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn check_line(s: &str, what: &'static str) -> Result<(), LogError> {
    if s.is_empty() {
        return Err(LogError::MalformedCheckpoint(what));
    }
    if s.bytes().any(|b| b < 0x20) {
        return Err(LogError::MalformedCheckpoint("control character in a line"));
    }
    Ok(())
}

/// Parses a decimal tree size with no leading zeroes (`0` for the empty tree).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

impl Checkpoint {
    /// A checkpoint without extension lines. The origin must be a non-empty line.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, LogError> {
        check_line(origin, "empty origin")?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Adds an extension line (non-empty, no control characters). Extension lines are NOT
    /// RECOMMENDED by the spec; monitors cannot audit them.
    pub fn with_extension(mut self, line: &str) -> Result<Self, LogError> {
        check_line(line, "empty extension line")?;
        if self.extensions.len() >= MAX_EXTENSION_LINES {
            return Err(LogError::MalformedCheckpoint("too many extension lines"));
        }
        self.extensions.push(line.to_string());
        Ok(self)
    }

    /// Parses a checkpoint body (a note text).
    pub fn parse(text: &str) -> Result<Self, LogError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(LogError::MalformedCheckpoint("text must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or("");
        check_line(origin, "empty origin")?;
        let size_line = lines
            .next()
            .ok_or(LogError::MalformedCheckpoint("missing size line"))?;
        let size = parse_decimal(size_line).ok_or(LogError::MalformedCheckpoint(
            "size is not canonical decimal",
        ))?;
        let root_line = lines
            .next()
            .ok_or(LogError::MalformedCheckpoint("missing root hash line"))?;
        let root = Hash::from_base64(root_line).ok_or(LogError::MalformedCheckpoint(
            "root hash is not canonical base64 of 32 bytes",
        ))?;
        let mut extensions = Vec::new();
        for l in lines {
            check_line(l, "empty extension line")?;
            if extensions.len() >= MAX_EXTENSION_LINES {
                return Err(LogError::MalformedCheckpoint("too many extension lines"));
            }
            extensions.push(l.to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The note text: the lines above, each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = alloc::format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// The origin line (the log's identity).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tree size (number of entries).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root hash of the tree at that size.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// Signs the checkpoint as the log, producing a signed note.
    pub fn sign(&self, signer: &Ed25519Signer) -> Result<Note, LogError> {
        let mut n = Note::new(&self.to_text())?;
        n.sign(signer);
        Ok(n)
    }
}

/// Parses a signed checkpoint and verifies the log's signature only (witness cosignatures
/// are ignored here; see [`crate::CheckpointPolicy`] for quorum checks). The origin must
/// be `origin`.
pub fn open_checkpoint(
    signed: &[u8],
    origin: &str,
    log_key: &VerifierKey,
) -> Result<(Checkpoint, Note), LogError> {
    let note = Note::parse(signed)?;
    let keys = KeySet::from_keys([log_key])?;
    let v = note.check_signatures(&keys).map_err(|e| match e {
        LogError::NoteSignatureInvalid { .. } => LogError::CheckpointSignatureInvalid,
        other => other,
    })?;
    if !v.has(log_key.name(), log_key.id()) {
        return Err(LogError::CheckpointSignatureMissing);
    }
    let cp = Checkpoint::parse(note.text())?;
    if cp.origin() != origin {
        return Err(LogError::OriginMismatch {
            expected: origin.to_string(),
            got: cp.origin().to_string(),
        });
    }
    Ok((cp, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.origin(), "example.com/behind-the-sofa");
        assert_eq!(cp.size(), 20852163);
        assert_eq!(cp.to_text(), text);
    }

    #[test]
    fn strictness() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for bad in [
            alloc::format!("o\n01\n{root}\n"),
            alloc::format!("o\n+1\n{root}\n"),
            alloc::format!("o\n1\n{root}"),
            alloc::format!("\n1\n{root}\n"),
            alloc::format!("o\n1\n{root}\n\n"),
            alloc::format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            "o\n1\n".to_string(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(Checkpoint::parse(&alloc::format!("o\n0\n{root}\next\n")).is_ok());
    }
}
