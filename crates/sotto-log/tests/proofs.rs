//! Inclusion and consistency proofs against an independent, naive recursive RFC 6962
//! recomputation (written here from the RFC's definitions, sharing no code with the crate)
//! and against the `ct-merkle` crate.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sotto_log::proof::{
    HashReader, MemoryTree, consistency_proof, inclusion_proof, nodes_for_consistency_proof,
    nodes_for_inclusion_proof, verify_consistency, verify_inclusion,
};
use sotto_log::tiles::{TileBuilder, TileSet, tiles_for_nodes, tiles_for_size};
use sotto_log::{Hash, LogError};

/// Naive RFC 6962 definitions over raw entries, memoized on `(start, end)` (MTH of a range
/// depends only on the entries in it).
struct Naive {
    entries: Vec<Vec<u8>>,
    memo: HashMap<(usize, usize), [u8; 32]>,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn largest_pow2_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl Naive {
    fn new(n: usize) -> Naive {
        Naive {
            entries: (0..n).map(|i| format!("entry {i}").into_bytes()).collect(),
            memo: HashMap::new(),
        }
    }

    /// MTH(D[start:end]) per RFC 6962 section 2.1.
    fn mth(&mut self, start: usize, end: usize) -> [u8; 32] {
        if let Some(h) = self.memo.get(&(start, end)) {
            return *h;
        }
        let n = end - start;
        let h = if n == 0 {
            sha256(&[])
        } else if n == 1 {
            let e = self.entries[start].clone();
            sha256(&[&[0u8], &e])
        } else {
            let k = largest_pow2_below(n);
            let l = self.mth(start, start + k);
            let r = self.mth(start + k, end);
            sha256(&[&[1u8], &l, &r])
        };
        self.memo.insert((start, end), h);
        h
    }

    /// PATH(m, D[start:end]) per RFC 6962 section 2.1.1.
    fn path(&mut self, m: usize, start: usize, end: usize) -> Vec<[u8; 32]> {
        let n = end - start;
        if n == 1 {
            return vec![];
        }
        let k = largest_pow2_below(n);
        if m < k {
            let mut p = self.path(m, start, start + k);
            p.push(self.mth(start + k, end));
            p
        } else {
            let mut p = self.path(m - k, start + k, end);
            p.push(self.mth(start, start + k));
            p
        }
    }

    /// SUBPROOF(m, D[start:end], b) per RFC 6962 section 2.1.2.
    fn subproof(&mut self, m: usize, start: usize, end: usize, b: bool) -> Vec<[u8; 32]> {
        let n = end - start;
        if m == n {
            return if b {
                vec![]
            } else {
                vec![self.mth(start, end)]
            };
        }
        let k = largest_pow2_below(n);
        if m <= k {
            let mut p = self.subproof(m, start, start + k, b);
            p.push(self.mth(start + k, end));
            p
        } else {
            let mut p = self.subproof(m - k, start + k, end, false);
            p.push(self.mth(start, start + k));
            p
        }
    }

    fn leaf(&mut self, i: usize) -> Hash {
        Hash(self.mth(i, i + 1))
    }
}

fn hashes(v: &[[u8; 32]]) -> Vec<Hash> {
    v.iter().map(|h| Hash(*h)).collect()
}

fn memory_tree(naive: &mut Naive, n: usize) -> MemoryTree {
    let leaves: Vec<Hash> = (0..n).map(|i| naive.leaf(i)).collect();
    MemoryTree::from_leaves(&leaves)
}

fn flip(h: &Hash) -> Hash {
    let mut x = *h;
    x.0[7] ^= 0x40;
    x
}

#[test]
fn every_size_1_to_300_inclusion_and_consistency() {
    const N: usize = 300;
    let mut naive = Naive::new(N);
    let tree = memory_tree(&mut naive, N);
    for size in 1..=N {
        let root = Hash(naive.mth(0, size));
        assert_eq!(tree.root_at(size as u64).unwrap(), root, "root of {size}");
        for i in 0..size {
            let got = inclusion_proof(&tree, i as u64, size as u64).unwrap();
            let want = hashes(&naive.path(i, 0, size));
            assert_eq!(got, want, "inclusion proof {i} in {size}");
            let leaf = naive.leaf(i);
            verify_inclusion(&leaf, i as u64, size as u64, &got, &root).unwrap();
            // Rejections: altered leaf, root, proof element; wrong index; wrong size.
            assert!(verify_inclusion(&flip(&leaf), i as u64, size as u64, &got, &root).is_err());
            assert!(verify_inclusion(&leaf, i as u64, size as u64, &got, &flip(&root)).is_err());
            if !got.is_empty() {
                let mut bad = got.clone();
                let j = i % bad.len();
                bad[j] = flip(&bad[j]);
                assert!(verify_inclusion(&leaf, i as u64, size as u64, &bad, &root).is_err());
                assert!(verify_inclusion(&leaf, i as u64, size as u64, &got[1..], &root).is_err());
            }
            let mut longer = got.clone();
            longer.push(root);
            assert!(verify_inclusion(&leaf, i as u64, size as u64, &longer, &root).is_err());
            if size > 1 {
                let other = (i + 1) % size;
                assert!(
                    verify_inclusion(&leaf, other as u64, size as u64, &got, &root).is_err(),
                    "index {other} accepted for leaf {i} of {size}"
                );
            }
            assert!(verify_inclusion(&leaf, size as u64, size as u64, &got, &root).is_err());
        }
        for old in 0..=size {
            let got = consistency_proof(&tree, old as u64, size as u64).unwrap();
            let want = if old == 0 || old == size {
                vec![]
            } else {
                hashes(&naive.subproof(old, 0, size, true))
            };
            assert_eq!(got, want, "consistency proof {old} -> {size}");
            let old_root = Hash(naive.mth(0, old));
            verify_consistency(old as u64, size as u64, &got, &old_root, &root).unwrap();
            if old > 0 && old < size {
                assert!(
                    verify_consistency(old as u64, size as u64, &got, &flip(&old_root), &root)
                        .is_err()
                );
                assert!(
                    verify_consistency(old as u64, size as u64, &got, &old_root, &flip(&root))
                        .is_err()
                );
                let mut bad = got.clone();
                let j = old % bad.len();
                bad[j] = flip(&bad[j]);
                assert!(
                    verify_consistency(old as u64, size as u64, &bad, &old_root, &root).is_err()
                );
                assert!(
                    verify_consistency(old as u64, size as u64, &got[1..], &old_root, &root)
                        .is_err()
                );
                let mut longer = got.clone();
                longer.push(root);
                assert!(
                    verify_consistency(old as u64, size as u64, &longer, &old_root, &root).is_err()
                );
                // A wrong old size with the same proof and roots (would need a collision).
                assert!(
                    verify_consistency(old as u64 + 1, size as u64, &got, &old_root, &root)
                        .is_err()
                );
            }
        }
    }
}

#[test]
fn random_pairs_up_to_5000() {
    const N: usize = 5000;
    let mut naive = Naive::new(N);
    let tree = memory_tree(&mut naive, N);
    // Deterministic xorshift, no RNG dependency.
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as usize
    };
    for _ in 0..400 {
        let size = 1 + next(N);
        let old = next(size + 1);
        let i = next(size);
        let root = Hash(naive.mth(0, size));
        let p = inclusion_proof(&tree, i as u64, size as u64).unwrap();
        assert_eq!(p, hashes(&naive.path(i, 0, size)));
        verify_inclusion(&naive.leaf(i), i as u64, size as u64, &p, &root).unwrap();
        let c = consistency_proof(&tree, old as u64, size as u64).unwrap();
        if old > 0 && old < size {
            assert_eq!(c, hashes(&naive.subproof(old, 0, size, true)));
        }
        let old_root = Hash(naive.mth(0, old));
        verify_consistency(old as u64, size as u64, &c, &old_root, &root).unwrap();
    }
}

#[test]
fn agrees_with_ct_merkle() {
    use ct_merkle::mem_backed_tree::MemoryBackedTree;
    type Sha256v11 = sha2_0_11::Sha256;

    const N: usize = 140;
    let mut naive = Naive::new(N);
    let mut ct = MemoryBackedTree::<Sha256v11, Vec<u8>>::new();
    let tree = memory_tree(&mut naive, N);
    for size in 1..=N {
        ct.push(naive.entries[size - 1].clone());
        let root = tree.root_at(size as u64).unwrap();
        assert_eq!(ct.root().as_bytes().as_slice(), root.0.as_slice());
        for i in 0..size {
            let ours = inclusion_proof(&tree, i as u64, size as u64).unwrap();
            let theirs = ct.prove_inclusion(i);
            let ours_bytes: Vec<u8> = ours.iter().flat_map(|h| h.0).collect();
            assert_eq!(
                theirs.as_bytes(),
                ours_bytes.as_slice(),
                "inclusion {i}/{size}"
            );
        }
        for old in 1..size {
            let ours = consistency_proof(&tree, old as u64, size as u64).unwrap();
            let theirs = ct.prove_consistency(size - old);
            let ours_bytes: Vec<u8> = ours.iter().flat_map(|h| h.0).collect();
            assert_eq!(
                theirs.as_bytes(),
                ours_bytes.as_slice(),
                "consistency {old}->{size}"
            );
        }
    }
}

/// Proofs computed from tiles only (as a client fetching tiles would) equal those from the
/// whole tree, and fetching only the planned tiles suffices.
#[test]
fn proofs_from_tiles() {
    // Past 65536 so level-2 tiles and partial tiles at three levels exist.
    const N: u64 = 66_000;
    let leaves: Vec<Hash> = (0..N)
        .map(|i| sotto_log::leaf_hash(&i.to_be_bytes()))
        .collect();
    let tree = MemoryTree::from_leaves(&leaves);
    let mut builder = TileBuilder::new();
    let mut all = TileSet::new();
    for l in &leaves {
        for (tile, hashes) in builder.push(*l).unwrap() {
            all.insert_hashes(&tile, hashes).unwrap();
        }
    }
    for (tile, hashes) in builder.partial_tiles() {
        all.insert_hashes(&tile, hashes.to_vec()).unwrap();
    }
    assert_eq!(builder.root(), tree.root());
    assert_eq!(all.len(), tiles_for_size(N).len());

    let cases: &[(u64, u64)] = &[
        (0, 1),
        (255, 256),
        (256, 257),
        (65_535, 65_536),
        (65_536, 66_000),
        (12_345, 65_999),
        (65_999, 66_000),
        (1, N),
        (300, 40_000),
    ];
    for &(a, b) in cases {
        for (index, size) in [(a, b), (b - 1, b)] {
            let want = inclusion_proof(&tree, index, size).unwrap();
            assert_eq!(inclusion_proof(&all, index, size).unwrap(), want);
            // Only the planned tiles, at the tree size the client has (N).
            let needed =
                tiles_for_nodes(&nodes_for_inclusion_proof(index, size).unwrap(), N).unwrap();
            let mut fetched = TileSet::new();
            for t in &needed {
                let h = all.get(t.level().unwrap(), t.index()).unwrap();
                fetched
                    .insert_hashes(t, h[..usize::from(t.width())].to_vec())
                    .unwrap();
            }
            assert_eq!(inclusion_proof(&fetched, index, size).unwrap(), want);
        }
        let want = consistency_proof(&tree, a, b).unwrap();
        assert_eq!(consistency_proof(&all, a, b).unwrap(), want);
        let needed = tiles_for_nodes(&nodes_for_consistency_proof(a, b).unwrap(), N).unwrap();
        let mut fetched = TileSet::new();
        for t in &needed {
            let h = all.get(t.level().unwrap(), t.index()).unwrap();
            fetched
                .insert_hashes(t, h[..usize::from(t.width())].to_vec())
                .unwrap();
        }
        assert_eq!(consistency_proof(&fetched, a, b).unwrap(), want);
        verify_consistency(
            a,
            b,
            &want,
            &tree.root_at(a).unwrap(),
            &tree.root_at(b).unwrap(),
        )
        .unwrap();
    }

    // A tampered tile yields a proof that does not verify against the trusted root.
    let (index, size) = (1000u64, N);
    let mut bad = TileSet::new();
    for t in tiles_for_size(N) {
        let mut h = all.get(t.level().unwrap(), t.index()).unwrap().to_vec();
        if t.level() == Some(1) && t.index() == 0 {
            h[9].0[0] ^= 1;
        }
        bad.insert_hashes(&t, h).unwrap();
    }
    let p = inclusion_proof(&bad, index, size).unwrap();
    assert!(matches!(
        verify_inclusion(&leaves[index as usize], index, size, &p, &tree.root()),
        Err(LogError::InclusionProofInvalid(_))
    ));

    // A missing tile is reported, not a panic.
    let empty = TileSet::new();
    assert!(matches!(
        empty.read_node(sotto_log::NodeId { level: 0, index: 3 }),
        Err(LogError::TileMissing(_))
    ));
}

#[test]
fn bad_requests() {
    let tree = MemoryTree::from_leaves(&[sotto_log::leaf_hash(b"a")]);
    assert_eq!(
        inclusion_proof(&tree, 1, 1).unwrap_err().code(),
        "INDEX_OUT_OF_RANGE"
    );
    assert_eq!(
        consistency_proof(&tree, 2, 1).unwrap_err().code(),
        "INVALID_TREE_SIZE"
    );
    let r = tree.root();
    assert_eq!(
        verify_consistency(1, 1, &[r], &r, &r).unwrap_err().code(),
        "CONSISTENCY_PROOF_INVALID"
    );
    assert!(verify_consistency(1, 1, &[], &r, &flip(&r)).is_err());
    assert!(verify_consistency(0, 1, &[], &sotto_log::empty_root(), &r).is_ok());
    assert!(verify_consistency(0, 1, &[r], &sotto_log::empty_root(), &r).is_err());
    assert!(verify_consistency(2, 1, &[], &r, &r).is_err());
    assert!(verify_inclusion(&r, 0, 0, &[], &r).is_err());
}
