//! Inclusion and consistency proofs.
//!
//! Generation follows RFC 6962 section 2.1.1 (`PATH`) and 2.1.2 (`PROOF`/`SUBPROOF`),
//! reading the hashes of perfect subtrees through a [`HashReader`] (an in-memory tree, the
//! on-disk tiles, or tiles a client fetched). Verification follows the algorithms of
//! RFC 9162 sections 2.1.3.2 and 2.1.4.2, which need only the proof, the sizes and the
//! roots.
//!
//! A client that has a trusted checkpoint but only untrusted tiles computes a proof from
//! the tiles and then verifies it against the checkpoint root: a tampered tile yields a
//! proof that does not verify, so the tiles need no separate authentication.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::LogError;
use crate::hash::{Hash, empty_root, node_hash};

/// A perfect subtree of the Merkle tree: the `2^level` leaves starting at leaf
/// `index * 2^level`. Level 0 nodes are leaf hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height of the subtree (0 = leaf).
    pub level: u8,
    /// Index of the subtree among those of the same level.
    pub index: u64,
}

/// Source of the hashes of perfect subtrees.
pub trait HashReader {
    /// The Merkle Tree Hash of the perfect subtree `node`.
    ///
    /// Implementations fail (typically with [`LogError::TileMissing`]) when they do not
    /// have the data; they never need to answer for a subtree beyond the tree they hold.
    fn read_node(&self, node: NodeId) -> Result<Hash, LogError>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_node(&self, node: NodeId) -> Result<Hash, LogError> {
        (**self).read_node(node)
    }
}

/// A whole tree in memory: every perfect-subtree hash, level by level.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree { levels: Vec::new() }
    }

    /// A tree over these leaf hashes.
    pub fn from_leaves(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let n = self.levels[level].len();
            if n % 2 == 1 {
                break;
            }
            hash = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], |l| l.as_slice())
    }

    /// Root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        if size > self.size() {
            return Err(LogError::InvalidTreeSize("size beyond the tree"));
        }
        tree_root(self, size)
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        tree_root(self, self.size()).unwrap_or_else(|_| empty_root())
    }
}

impl HashReader for MemoryTree {
    fn read_node(&self, node: NodeId) -> Result<Hash, LogError> {
        self.levels
            .get(usize::from(node.level))
            .and_then(|l| usize::try_from(node.index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(LogError::InvalidTreeSize("node beyond the tree"))
    }
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` for a range that occurs in the RFC 6962 recursion (`start` is a
/// multiple of the smallest power of two `>= end - start`), reading perfect subtrees.
pub fn subtree_hash<R: HashReader + ?Sized>(
    reader: &R,
    start: u64,
    end: u64,
) -> Result<Hash, LogError> {
    if end <= start {
        return Err(LogError::InvalidTreeSize("empty subtree range"));
    }
    let n = end - start;
    if n.is_power_of_two() {
        let level = n.trailing_zeros() as u8;
        if !start.is_multiple_of(n) {
            return Err(LogError::InvalidTreeSize("unaligned subtree range"));
        }
        return reader.read_node(NodeId {
            level,
            index: start >> level,
        });
    }
    let k = split_point(n);
    let left = subtree_hash(reader, start, start + k)?;
    let right = subtree_hash(reader, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of `size` leaves (`SHA-256("")` for 0).
pub fn tree_root<R: HashReader + ?Sized>(reader: &R, size: u64) -> Result<Hash, LogError> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(reader, 0, size)
}

/// RFC 6962 `PATH(m, D[start:end])`, appended to `out` (leaf-side first).
fn path<R: HashReader + ?Sized>(
    reader: &R,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(reader, m, start, start + k, out)?;
        out.push(subtree_hash(reader, start + k, end)?);
    } else {
        path(reader, m - k, start + k, end, out)?;
        out.push(subtree_hash(reader, start, start + k)?);
    }
    Ok(())
}

/// RFC 6962 `SUBPROOF(m, D[start:end], b)`, appended to `out`.
fn subproof<R: HashReader + ?Sized>(
    reader: &R,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_hash(reader, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(reader, m, start, start + k, complete, out)?;
        out.push(subtree_hash(reader, start + k, end)?);
    } else {
        subproof(reader, m - k, start + k, end, false, out)?;
        out.push(subtree_hash(reader, start, start + k)?);
    }
    Ok(())
}

/// Inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LogError> {
    if index >= size {
        return Err(LogError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(reader, index, 0, size, &mut out)?;
    Ok(out)
}

/// Consistency proof from the tree of `old_size` leaves to the tree of `new_size` leaves.
/// Empty when `old_size` is 0 or equal to `new_size`.
pub fn consistency_proof<R: HashReader + ?Sized>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, LogError> {
    if old_size > new_size {
        return Err(LogError::InvalidTreeSize("old size larger than new size"));
    }
    let mut out = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(out);
    }
    subproof(reader, old_size, 0, new_size, true, &mut out)?;
    Ok(out)
}

/// A [`HashReader`] that records which nodes are read and answers with zeros.
struct Recorder(RefCell<BTreeSet<NodeId>>);

impl HashReader for Recorder {
    fn read_node(&self, node: NodeId) -> Result<Hash, LogError> {
        self.0.borrow_mut().insert(node);
        Ok(Hash::default())
    }
}

/// The perfect subtrees an inclusion proof reads (to plan which tiles to fetch).
pub fn nodes_for_inclusion_proof(index: u64, size: u64) -> Result<Vec<NodeId>, LogError> {
    let r = Recorder(RefCell::new(BTreeSet::new()));
    inclusion_proof(&r, index, size)?;
    Ok(r.0.into_inner().into_iter().collect())
}

/// The perfect subtrees a consistency proof reads (to plan which tiles to fetch).
pub fn nodes_for_consistency_proof(old_size: u64, new_size: u64) -> Result<Vec<NodeId>, LogError> {
    let r = Recorder(RefCell::new(BTreeSet::new()));
    consistency_proof(&r, old_size, new_size)?;
    Ok(r.0.into_inner().into_iter().collect())
}

/// The perfect subtrees whose hashes make up the root of a tree of `size` leaves.
pub fn nodes_for_root(size: u64) -> Vec<NodeId> {
    let r = Recorder(RefCell::new(BTreeSet::new()));
    let _ = tree_root(&r, size);
    r.0.into_inner().into_iter().collect()
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2): `leaf` is leaf `index` of the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LogError> {
    if index >= size {
        return Err(LogError::InclusionProofInvalid(
            "leaf index not below tree size",
        ));
    }
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if computed != *root {
        return Err(LogError::InclusionProofInvalid(
            "computed root does not match the tree root",
        ));
    }
    Ok(())
}

/// The root implied by an inclusion proof (RFC 9162 section 2.1.3.2, steps 1-5 without
/// the final comparison). Fails if the proof has the wrong length for `index`/`size`.
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, LogError> {
    if index >= size {
        return Err(LogError::InclusionProofInvalid(
            "leaf index not below tree size",
        ));
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(LogError::InclusionProofInvalid("proof too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(LogError::InclusionProofInvalid("proof too short"));
    }
    Ok(r)
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2): the tree of `old_size` leaves
/// with root `old_root` is a prefix of the tree of `new_size` leaves with root `new_root`.
///
/// Edge cases: `old_size == new_size` requires an empty proof and equal roots;
/// `old_size == 0` requires an empty proof and `old_root` to be the empty-tree root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), LogError> {
    if old_size > new_size {
        return Err(LogError::ConsistencyProofInvalid(
            "old size larger than new size",
        ));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(LogError::ConsistencyProofInvalid(
                "proof between equal sizes must be empty",
            ));
        }
        if old_root != new_root {
            return Err(LogError::ConsistencyProofInvalid(
                "different roots for the same tree size",
            ));
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(LogError::ConsistencyProofInvalid(
                "proof from the empty tree must be empty",
            ));
        }
        if *old_root != empty_root() {
            return Err(LogError::ConsistencyProofInvalid(
                "old root is not the empty-tree root",
            ));
        }
        return Ok(());
    }
    // 1. An empty path fails.
    if proof.is_empty() {
        return Err(LogError::ConsistencyProofInvalid("empty proof"));
    }
    // 2. If first is an exact power of 2, prepend first_hash.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    // 3. fn = first - 1, sn = second - 1.
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    // 4. If LSB(fn) is set, right-shift both until it is not.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. fr = sr = first value.
    let mut fr = path[0];
    let mut sr = path[0];
    // 6. For each subsequent value c.
    for c in &path[1..] {
        if sn == 0 {
            return Err(LogError::ConsistencyProofInvalid("proof too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0 {
        return Err(LogError::ConsistencyProofInvalid("proof too short"));
    }
    if fr != *old_root {
        return Err(LogError::ConsistencyProofInvalid(
            "proof does not lead to the old root",
        ));
    }
    if sr != *new_root {
        return Err(LogError::ConsistencyProofInvalid(
            "proof does not lead to the new root",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn small_trees() {
        let leaves: Vec<Hash> = (0u8..9).map(|i| leaf_hash(&[i])).collect();
        let t = MemoryTree::from_leaves(&leaves);
        for size in 1..=9u64 {
            let root = t.root_at(size).unwrap();
            for i in 0..size {
                let p = inclusion_proof(&t, i, size).unwrap();
                verify_inclusion(&leaves[i as usize], i, size, &p, &root).unwrap();
            }
            for old in 0..=size {
                let p = consistency_proof(&t, old, size).unwrap();
                let old_root = t.root_at(old).unwrap();
                verify_consistency(old, size, &p, &old_root, &root).unwrap();
            }
        }
    }

    #[test]
    fn node_planning() {
        // Leaf 5 of 8: siblings are leaf 4, node (1,3), node (2,0).
        let nodes = nodes_for_inclusion_proof(5, 8).unwrap();
        assert_eq!(
            nodes,
            [
                NodeId { level: 0, index: 4 },
                NodeId { level: 1, index: 3 },
                NodeId { level: 2, index: 0 },
            ]
        );
        assert_eq!(nodes_for_root(8), [NodeId { level: 3, index: 0 }]);
    }
}
