//! RFC 6962 Merkle tree hashing (section 2.1) with SHA-256.
//!
//! - leaf hash: `SHA-256(0x00 || entry)`
//! - interior node: `SHA-256(0x01 || left || right)`
//! - the Merkle Tree Hash (MTH) of the empty tree: `SHA-256("")`
//! - `MTH(D[n])` for `n > 1`: `k` is the largest power of two smaller than `n`,
//!   `MTH = node(MTH(D[0:k]), MTH(D[k:n]))`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};

/// Size of a SHA-256 hash in bytes.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    /// Hash from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; HASH_SIZE]>::try_from(bytes).ok().map(Hash)
    }

    /// Standard padded base64 (RFC 4648 section 4), the encoding used in checkpoints and
    /// witness requests.
    pub fn to_base64(&self) -> String {
        crate::b64::encode(&self.0)
    }

    /// Parses canonical standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Option<Hash> {
        crate::b64::decode(s).and_then(|v| Hash::from_slice(&v))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(2 * HASH_SIZE);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        s
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// RFC 6962 leaf hash: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The Merkle Tree Hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// Root of a *complete* subtree given its `2^k` leaves (or lower-level node hashes) in
/// order. Used for tile hashes: a level-`L+1` tile hash is the root of a full level-`L`
/// tile's 256 hashes.
///
/// Returns `None` unless the length is a non-zero power of two.
pub fn complete_subtree_root(hashes: &[Hash]) -> Option<Hash> {
    if hashes.is_empty() || !hashes.len().is_power_of_two() {
        return None;
    }
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied()
}

/// The Merkle Tree Hash of a sequence of aligned complete subtrees, given left to right as
/// `(height, hash)` where a subtree of height `h` spans `2^h` leaves, heights never
/// increase, and each subtree starts at a multiple of its own width (the shape of the
/// right edge of a tiled tree, or of a compact range starting at 0).
///
/// Returns `None` for an empty list or a list that violates the shape.
pub fn root_from_subtrees(subtrees: &[(u8, Hash)]) -> Option<Hash> {
    // Merge equal heights (adjacent siblings), like binary addition.
    let mut stack: Vec<(u8, Hash)> = Vec::with_capacity(64);
    for &(height, hash) in subtrees {
        if height >= 64 {
            return None;
        }
        if let Some(&(top, _)) = stack.last()
            && top < height
        {
            return None;
        }
        stack.push((height, hash));
        while stack.len() >= 2 {
            let (h_right, right) = stack[stack.len() - 1];
            let (h_left, left) = stack[stack.len() - 2];
            if h_left != h_right {
                break;
            }
            stack.truncate(stack.len() - 2);
            stack.push((h_left + 1, node_hash(&left, &right)));
        }
    }
    // Heights are now strictly decreasing: fold from the right (RFC 6962 shape).
    let (_, mut acc) = *stack.last()?;
    for &(_, left) in stack.iter().rev().skip(1) {
        acc = node_hash(&left, &acc);
    }
    Some(acc)
}

/// The Merkle Tree Hash of a list of leaf hashes (`MTH(D[n])`), in `O(n)`.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    let mut acc = RootBuilder::new();
    for leaf in leaves {
        acc.push(*leaf);
    }
    acc.root()
}

/// Incremental Merkle Tree Hash: push leaf hashes in order, read the root at any time.
/// Keeps only the `O(log n)` roots of the perfect subtrees of the right edge.
#[derive(Clone, Debug, Default)]
pub struct RootBuilder {
    size: u64,
    /// `(height, hash)` of the perfect subtrees, strictly decreasing heights.
    stack: Vec<(u8, Hash)>,
}

impl RootBuilder {
    /// An empty tree.
    pub fn new() -> RootBuilder {
        RootBuilder::default()
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.size += 1;
        self.stack.push((0, leaf));
        while self.stack.len() >= 2 {
            let (h_right, right) = self.stack[self.stack.len() - 1];
            let (h_left, left) = self.stack[self.stack.len() - 2];
            if h_left != h_right {
                break;
            }
            self.stack.truncate(self.stack.len() - 2);
            self.stack.push((h_left + 1, node_hash(&left, &right)));
        }
    }

    /// Current root (`SHA-256("")` when empty).
    pub fn root(&self) -> Hash {
        root_from_subtrees(&self.stack).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6962_known_values() {
        // Empty tree root and a single leaf over the empty string (values used by the
        // Certificate Transparency test suites).
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn builder_matches_subtrees() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut b = RootBuilder::new();
        for (i, l) in leaves.iter().enumerate() {
            b.push(*l);
            assert_eq!(b.root(), root_from_leaves(&leaves[..=i]));
        }
        assert_eq!(
            complete_subtree_root(&leaves[..32]),
            Some(root_from_leaves(&leaves[..32]))
        );
        assert_eq!(complete_subtree_root(&leaves[..3]), None);
        assert_eq!(root_from_subtrees(&[(0, leaves[0]), (1, leaves[1])]), None);
    }
}
