//! Property tests: every parser and verifier takes arbitrary input without panicking, and
//! encoders round-trip.

use proptest::prelude::*;
use sotto_log::cosignature::split_timestamped;
use sotto_log::note::{NoteLimits, parse_signature_lines};
use sotto_log::proof::{MemoryTree, root_from_inclusion_proof};
use sotto_log::tiles::{
    Tile, TileSet, encode_entry_bundle, parse_entry_bundle, parse_hash_tile, tile_for_node,
};
use sotto_log::{
    AddCheckpointRequest, Checkpoint, CheckpointPolicy, Cosigner, Ed25519Signer, Hash, HashReader,
    KeySet, LogError, NodeId, Note, NoteSignature, VerifierKey, Witness, audit, consistency_proof,
    inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};

fn signer() -> Ed25519Signer {
    Ed25519Signer::from_seed("example.com/log", &[1; 32]).unwrap()
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

/// Strings biased towards the characters that matter to the formats.
fn texty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\n".to_string()),
            Just("\u{2014} ".to_string()),
            Just("+".to_string()),
            Just(" ".to_string()),
            Just("=".to_string()),
            Just("/".to_string()),
            Just("x".to_string()),
            Just(".p/".to_string()),
            Just("tile/".to_string()),
            "[a-zA-Z0-9]{1,8}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..40,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn note_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), s in texty()) {
        let _ = Note::parse(&bytes);
        let _ = Note::parse(s.as_bytes());
        let _ = parse_signature_lines(&bytes, &NoteLimits::default());
        let _ = parse_signature_lines(s.as_bytes(), &NoteLimits::default());
        let _ = NoteSignature::parse_line(&s);
        let _ = VerifierKey::parse(&s);
        let _ = Ed25519Signer::from_private_key(&s);
        let _ = Cosigner::from_private_key(&s);
        let _ = Checkpoint::parse(&s);
        let _ = split_timestamped(&bytes);
        let keys = KeySet::from_keys([&signer().verifier_key()]).unwrap();
        if let Ok(n) = Note::parse(s.as_bytes()) {
            let _ = n.verify(&keys);
            // Parsing is canonical: what parses re-encodes to the same bytes.
            prop_assert_eq!(n.to_bytes(), s.as_bytes());
        }
    }

    #[test]
    fn checkpoint_consumers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), s in texty(), old in any::<u64>(), now in any::<u64>()) {
        let policy = CheckpointPolicy::new("example.com/log", signer().verifier_key()).unwrap();
        let _ = policy.verify(&bytes, now);
        let _ = policy.verify(s.as_bytes(), now);
        let _ = sotto_log::open_checkpoint(&bytes, "example.com/log", &signer().verifier_key());
        let _ = AddCheckpointRequest::parse(&bytes);
        let mut w = Witness::new(Cosigner::from_seed("w", &[2; 32]).unwrap());
        w.add_log("example.com/log", &[signer().verifier_key()], None).unwrap();
        let req = AddCheckpointRequest { old_size: old, proof: vec![], checkpoint: bytes.clone() };
        let _ = w.add_checkpoint(&req, now);
        // A well-signed note whose text is arbitrary.
        if let Ok(mut n) = Note::new(&s) {
            n.sign(&signer());
            let _ = policy.verify(&n.to_bytes(), now);
            let req = AddCheckpointRequest { old_size: old, proof: vec![], checkpoint: n.to_bytes() };
            let _ = w.add_checkpoint(&req, now);
        }
    }

    #[test]
    fn tile_parsers_never_panic(s in texty(), bytes in prop::collection::vec(any::<u8>(), 0..2000), w in 1u16..=256, level in 0u8..=63, index in any::<u64>()) {
        if let Ok(t) = Tile::parse_path(&s) {
            prop_assert_eq!(t.path(), s.clone());
        }
        let t = Tile::entries(index, w).unwrap();
        let _ = parse_entry_bundle(&t, &bytes);
        let h = Tile::hashes(level, index, w).unwrap();
        prop_assert_eq!(Tile::parse_path(&h.path()).unwrap(), h);
        prop_assert_eq!(Tile::parse_path(&t.path()).unwrap(), t);
        let _ = parse_hash_tile(&h, &bytes);
        let mut set = TileSet::new();
        let _ = set.insert(&h, &bytes);
        let _ = set.read_node(NodeId { level: level.min(70), index });
        let _ = tile_for_node(NodeId { level, index }, index);
    }

    #[test]
    fn verifiers_never_panic(
        leaf in hash(), root in hash(), proof in prop::collection::vec(hash(), 0..70),
        index in any::<u64>(), size in any::<u64>(), old in any::<u64>()
    ) {
        let _ = verify_inclusion(&leaf, index, size, &proof, &root);
        let _ = root_from_inclusion_proof(&leaf, index, size, &proof);
        let _ = verify_consistency(old, size, &proof, &leaf, &root);
        // Proof generation over a small tree with arbitrary sizes fails cleanly.
        let t = MemoryTree::from_leaves(&[leaf, root]);
        let _ = inclusion_proof(&t, index, size);
        let _ = consistency_proof(&t, old, size);
        let _ = inclusion_proof(&t, index % 4, size % 4);
        let _ = consistency_proof(&t, old % 4, size % 4);
    }

    #[test]
    fn audit_never_panics(
        size in 0u64..700,
        root in hash(),
        junk in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8),
        seed in any::<u64>()
    ) {
        let cp = Checkpoint::new("o", size, root).unwrap();
        let mut n = seed;
        let mut fetch = |t: &Tile| -> Result<Option<Vec<u8>>, LogError> {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pick = (n >> 33) as usize;
            Ok(match pick % 4 {
                0 => None,
                1 => Some(junk[pick % junk.len()].clone()),
                2 => Some(vec![0u8; 32 * usize::from(t.width())]),
                _ => Some(encode_entry_bundle(&vec![b"e".to_vec(); usize::from(t.width())]).unwrap()),
            })
        };
        let r = audit(&mut fetch, &cp, |_, _| Err("no".into()));
        prop_assert!(size == 0 || !r.is_clean());
    }

    #[test]
    fn entry_bundles_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 1..=256)) {
        let data = encode_entry_bundle(&entries).unwrap();
        let t = Tile::entries(0, entries.len() as u16).unwrap();
        let parsed = parse_entry_bundle(&t, &data).unwrap();
        prop_assert_eq!(parsed.len(), entries.len());
        for (a, b) in parsed.iter().zip(entries.iter()) {
            prop_assert_eq!(*a, b.as_slice());
        }
    }

    #[test]
    fn notes_round_trip(lines in prop::collection::vec("[ -~]{1,30}", 1..5), ext in prop::collection::vec("[!-~]{1,10}", 0..3), size in any::<u64>(), root in hash()) {
        // Arbitrary printable text: sign, encode, parse, verify.
        let text = lines.join("\n") + "\n";
        let mut n = Note::new(&text).unwrap();
        n.sign(&signer());
        let p = Note::parse(&n.to_bytes()).unwrap();
        prop_assert_eq!(p.text(), text.as_str());
        p.verify(&KeySet::from_keys([&signer().verifier_key()]).unwrap()).unwrap();
        // Checkpoints with extension lines round-trip.
        let mut cp = Checkpoint::new("example.com/log", size, root).unwrap();
        for e in &ext {
            cp = cp.with_extension(e).unwrap();
        }
        prop_assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
    }

    #[test]
    fn small_trees_prove_and_verify(n in 1usize..80, a in any::<usize>(), b in any::<usize>()) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let t = MemoryTree::from_leaves(&leaves);
        let size = (a % n + 1) as u64;
        let old = (b as u64) % (size + 1);
        let i = (b as u64) % size;
        let root = t.root_at(size).unwrap();
        let p = inclusion_proof(&t, i, size).unwrap();
        prop_assert!(verify_inclusion(&leaves[i as usize], i, size, &p, &root).is_ok());
        let c = consistency_proof(&t, old, size).unwrap();
        prop_assert!(verify_consistency(old, size, &c, &t.root_at(old).unwrap(), &root).is_ok());
    }
}
