//! Checkpoints, cosignatures, the client policy and the witness state machine.

use sotto_log::cosignature::{COSIGNATURE_LEN, cosigned_message, split_timestamped};
use sotto_log::note::{Note, NoteSignature, parse_signature_lines};
use sotto_log::proof::{MemoryTree, consistency_proof};
use sotto_log::{
    AddCheckpointRequest, Checkpoint, CheckpointPolicy, Cosigner, Ed25519Signer, Hash, LogError,
    TreeHead, VerifierKey, Witness, leaf_hash,
};

const ORIGIN: &str = "example.com/sotto-log";
const NOW: u64 = 1_700_000_000;

fn log_signer() -> Ed25519Signer {
    Ed25519Signer::from_seed(ORIGIN, &[1; 32]).unwrap()
}

fn witnesses() -> Vec<Cosigner> {
    (0..3u8)
        .map(|i| Cosigner::from_seed(&format!("witness{i}.example"), &[10 + i; 32]).unwrap())
        .collect()
}

struct Fixture {
    tree: MemoryTree,
    signer: Ed25519Signer,
}

impl Fixture {
    fn new(n: u64) -> Fixture {
        let mut tree = MemoryTree::new();
        for i in 0..n {
            tree.push(leaf_hash(format!("release {i}").as_bytes()));
        }
        Fixture {
            tree,
            signer: log_signer(),
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint::new(ORIGIN, size, self.tree.root_at(size).unwrap()).unwrap()
    }

    fn signed(&self, size: u64) -> Note {
        self.checkpoint(size).sign(&self.signer).unwrap()
    }

    fn request(&self, old: u64, size: u64) -> AddCheckpointRequest {
        AddCheckpointRequest {
            old_size: old,
            proof: consistency_proof(&self.tree, old, size).unwrap(),
            checkpoint: self.signed(size).to_bytes(),
        }
    }
}

#[test]
fn cosignature_format() {
    // The signed message of c2sp.org/tlog-cosignature's example.
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    assert_eq!(
        cosigned_message(text, 1679315147),
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
    // The spec's example cosignature line: key ID, 8-byte timestamp, 64-byte signature.
    let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
    let sig = NoteSignature::parse_line(line).unwrap();
    assert_eq!(sig.name(), "witness.example.com/w1");
    assert_eq!(sig.signature().len(), COSIGNATURE_LEN);
    let (ts, _) = split_timestamped(sig.signature()).unwrap();
    assert_eq!(ts, 1679315147);
    assert_eq!(sig.to_line(), line);

    // Our cosignature: key type 0x04, ID over 0x04, 72 bytes, verifies; timestamps above
    // 2^63-1 are refused.
    let w = &witnesses()[0];
    let vk = w.verifier_key();
    assert_eq!(vk.key_type(), sotto_log::KeyType::CosignatureV1);
    assert!(vk.to_vkey().starts_with("witness0.example+"));
    assert_eq!(VerifierKey::parse(&vk.to_vkey()).unwrap(), vk);
    let cp = Fixture::new(3).checkpoint(3);
    let s = w.cosign(&cp, NOW).unwrap();
    assert_eq!(s.signature().len(), 72);
    assert_eq!(split_timestamped(s.signature()).unwrap().0, NOW);
    assert_eq!(
        w.cosign(&cp, 1 << 63).unwrap_err().code(),
        "MALFORMED_COSIGNATURE"
    );
    let mut big = s.signature().to_vec();
    big[0] = 0x80;
    assert!(split_timestamped(&big).is_err());
    let back = Cosigner::from_private_key(&w.to_private_key()).unwrap();
    assert_eq!(back.verifier_key(), vk);
    // A log key string is not a cosigner key and vice versa.
    assert!(Cosigner::from_private_key(&log_signer().to_private_key()).is_err());
    assert!(Ed25519Signer::from_private_key(&w.to_private_key()).is_err());
}

#[test]
fn policy_accepts_and_rejects() {
    let f = Fixture::new(20);
    let ws = witnesses();
    let wkeys: Vec<VerifierKey> = ws.iter().map(|w| w.verifier_key()).collect();
    let policy = CheckpointPolicy::new(ORIGIN, f.signer.verifier_key())
        .unwrap()
        .with_witnesses(wkeys.clone(), 2)
        .unwrap()
        .with_max_future_secs(600);
    let cp = f.checkpoint(20);
    let mut note = f.signed(20);

    // Only the log: not enough witnesses.
    assert_eq!(
        policy.verify(&note.to_bytes(), NOW).unwrap_err(),
        LogError::NotEnoughWitnesses { have: 0, need: 2 }
    );
    // One witness, then the same witness twice (counts once).
    note.add_signature(ws[0].cosign(&cp, NOW).unwrap());
    let mut twice = note.to_bytes();
    twice.extend_from_slice(ws[0].cosign(&cp, NOW - 5).unwrap().to_line().as_bytes());
    assert_eq!(
        policy.verify(&twice, NOW).unwrap_err(),
        LogError::NotEnoughWitnesses { have: 1, need: 2 }
    );
    // An unknown witness does not count.
    let stranger = Cosigner::from_seed("stranger.example", &[99; 32]).unwrap();
    note.add_signature(stranger.cosign(&cp, NOW).unwrap());
    assert_eq!(
        policy.verify(&note.to_bytes(), NOW).unwrap_err().code(),
        "NOT_ENOUGH_WITNESSES"
    );
    // A cosignature timestamped too far in the future does not count.
    let mut future = note.clone();
    future.add_signature(ws[1].cosign(&cp, NOW + 3600).unwrap());
    assert_eq!(
        policy.verify(&future.to_bytes(), NOW).unwrap_err().code(),
        "NOT_ENOUGH_WITNESSES"
    );
    // Second trusted witness: accepted.
    note.add_signature(ws[1].cosign(&cp, NOW).unwrap());
    let ok = policy.verify(&note.to_bytes(), NOW).unwrap();
    assert_eq!(ok.checkpoint, cp);
    assert_eq!(ok.cosignatures.len(), 2);
    assert!(ok.cosignatures.iter().all(|c| c.timestamp == NOW));

    // A tampered cosignature by a trusted witness rejects the checkpoint.
    let mut bad_cos = ws[2].cosign(&cp, NOW).unwrap().signature().to_vec();
    bad_cos[20] ^= 1;
    let mut bad = note.clone();
    bad.add_signature(NoteSignature::new(ws[2].name(), ws[2].id(), bad_cos).unwrap());
    assert_eq!(
        policy.verify(&bad.to_bytes(), NOW).unwrap_err().code(),
        "COSIGNATURE_INVALID"
    );
    // A cosignature over a different checkpoint does not verify.
    let other = f.checkpoint(19);
    let mut bad = note.clone();
    bad.add_signature(ws[2].cosign(&other, NOW).unwrap());
    assert_eq!(
        policy.verify(&bad.to_bytes(), NOW).unwrap_err().code(),
        "COSIGNATURE_INVALID"
    );

    // The log signature altered.
    let mut tampered = note.clone();
    let log_sig = f.signer.sign_text("something else\n");
    tampered.add_signature(log_sig);
    assert_eq!(
        policy.verify(&tampered.to_bytes(), NOW).unwrap_err(),
        LogError::CheckpointSignatureInvalid
    );
    // Signed by another key (same name): unknown key, so no log signature.
    let impostor = Ed25519Signer::from_seed(ORIGIN, &[2; 32]).unwrap();
    let mut forged = cp.sign(&impostor).unwrap();
    forged.add_signature(ws[0].cosign(&cp, NOW).unwrap());
    forged.add_signature(ws[1].cosign(&cp, NOW).unwrap());
    assert_eq!(
        policy.verify(&forged.to_bytes(), NOW).unwrap_err(),
        LogError::CheckpointSignatureMissing
    );
    // Wrong origin.
    let elsewhere = Checkpoint::new("other.example/log", 20, *cp.root()).unwrap();
    let signer_other = Ed25519Signer::from_seed(ORIGIN, &[1; 32]).unwrap();
    let n = elsewhere.sign(&signer_other).unwrap();
    let p0 = CheckpointPolicy::new(ORIGIN, f.signer.verifier_key()).unwrap();
    assert_eq!(
        p0.verify(&n.to_bytes(), NOW).unwrap_err().code(),
        "ORIGIN_MISMATCH"
    );
    // Malformed body.
    let mut junk = Note::new("not a checkpoint\n").unwrap();
    junk.sign(&f.signer);
    assert_eq!(
        p0.verify(&junk.to_bytes(), NOW).unwrap_err().code(),
        "MALFORMED_CHECKPOINT"
    );

    // Policy construction errors.
    assert!(CheckpointPolicy::new(ORIGIN, wkeys[0].clone()).is_err());
    assert!(
        CheckpointPolicy::new(ORIGIN, f.signer.verifier_key())
            .unwrap()
            .with_witnesses(wkeys.clone(), 4)
            .is_err()
    );
    assert!(
        CheckpointPolicy::new(ORIGIN, f.signer.verifier_key())
            .unwrap()
            .with_witnesses(vec![f.signer.verifier_key()], 1)
            .is_err()
    );
}

#[test]
fn witness_cosigns_and_refuses() {
    let f = Fixture::new(40);
    let w0 = witnesses().remove(0);
    let wkey = w0.verifier_key();
    let mut w = Witness::new(w0);
    w.add_log(ORIGIN, &[f.signer.verifier_key()], None).unwrap();
    let policy = CheckpointPolicy::new(ORIGIN, f.signer.verifier_key())
        .unwrap()
        .with_witnesses(vec![wkey], 1)
        .unwrap();

    // First contact: old size 0, empty proof.
    let req = f.request(0, 10);
    let pending = w.add_checkpoint(&req, NOW).unwrap();
    assert_eq!(w.head(ORIGIN), None, "state changes only on commit");
    assert_eq!(pending.head().size, 10);
    let body = w.commit(pending).unwrap();
    assert_eq!(w.head(ORIGIN).unwrap().size, 10);
    // The response lines, appended to the checkpoint, satisfy the client policy.
    let mut note = Note::parse(&req.checkpoint).unwrap();
    for s in parse_signature_lines(&body, &Default::default()).unwrap() {
        note.add_signature(s);
    }
    policy.verify(&note.to_bytes(), NOW).unwrap();

    // Growth with a valid consistency proof.
    let p = w.add_checkpoint(&f.request(10, 25), NOW + 1).unwrap();
    w.commit(p).unwrap();
    assert_eq!(w.head(ORIGIN).unwrap().size, 25);
    // Same checkpoint again: cosigned again (no change).
    let p = w.add_checkpoint(&f.request(25, 25), NOW + 2).unwrap();
    w.commit(p).unwrap();

    let head = w.head(ORIGIN).unwrap();
    let refuse = |req: &AddCheckpointRequest| w.add_checkpoint(req, NOW + 3).unwrap_err();

    // Rollback: a smaller checkpoint.
    let e = refuse(&f.request(20, 20));
    assert_eq!(
        e,
        LogError::CheckpointRollback {
            known_size: 25,
            checkpoint_size: 20,
            old_size: Some(20)
        }
    );
    assert_eq!(e.witness_http_status(), 409);
    assert_eq!(e.witness_conflict_size(), Some(25));
    let mut r = f.request(20, 20);
    r.old_size = 25;
    assert_eq!(refuse(&r).witness_http_status(), 400);

    // Fork: same size, different root.
    let forked_root = Hash([7; 32]);
    let fork = Checkpoint::new(ORIGIN, 25, forked_root).unwrap();
    let req = AddCheckpointRequest {
        old_size: 25,
        proof: vec![],
        checkpoint: fork.sign(&f.signer).unwrap().to_bytes(),
    };
    let e = refuse(&req);
    assert_eq!(e, LogError::ForkDetected { size: 25 });
    assert_eq!(e.code(), "FORK_DETECTED");
    assert_eq!(e.witness_http_status(), 409);

    // Fork at a larger size: the consistency proof cannot verify.
    let mut alt = MemoryTree::new();
    for i in 0..30u64 {
        alt.push(leaf_hash(format!("evil {i}").as_bytes()));
    }
    let alt_cp = Checkpoint::new(ORIGIN, 30, alt.root()).unwrap();
    let req = AddCheckpointRequest {
        old_size: 25,
        proof: consistency_proof(&alt, 25, 30).unwrap(),
        checkpoint: alt_cp.sign(&f.signer).unwrap().to_bytes(),
    };
    let e = refuse(&req);
    assert_eq!(e.code(), "CONSISTENCY_PROOF_INVALID");
    assert_eq!(e.witness_http_status(), 422);

    // Bad proof: a flipped bit, a missing element.
    let mut req = f.request(25, 40);
    req.proof[0].0[0] ^= 1;
    assert_eq!(refuse(&req).code(), "CONSISTENCY_PROOF_INVALID");
    let mut req = f.request(25, 40);
    req.proof.pop();
    assert_eq!(refuse(&req).code(), "CONSISTENCY_PROOF_INVALID");

    // Old size not the witness's size: 409 with the witness's size.
    let e = refuse(&f.request(20, 40));
    assert_eq!(
        e,
        LogError::OldSizeMismatch {
            old_size: 20,
            witness_size: 25
        }
    );
    assert_eq!(e.witness_http_status(), 409);
    assert_eq!(e.witness_conflict_size(), Some(25));
    // Old size above the checkpoint size.
    let mut req = f.request(25, 30);
    req.old_size = 31;
    assert_eq!(refuse(&req).witness_http_status(), 400);

    // Wrong log signature: another key (unknown, ignored) then a corrupted signature.
    let impostor = Ed25519Signer::from_seed(ORIGIN, &[2; 32]).unwrap();
    let mut req = f.request(25, 40);
    req.checkpoint = f.checkpoint(40).sign(&impostor).unwrap().to_bytes();
    let e = refuse(&req);
    assert_eq!(e, LogError::CheckpointSignatureMissing);
    assert_eq!(e.witness_http_status(), 403);
    let mut note = f.signed(40);
    let good = note.signatures()[0].clone();
    let mut bytes = good.signature().to_vec();
    bytes[5] ^= 1;
    note.add_signature(NoteSignature::new(good.name(), good.id(), bytes).unwrap());
    let mut req = f.request(25, 40);
    req.checkpoint = note.to_bytes();
    let e = refuse(&req);
    assert_eq!(e, LogError::CheckpointSignatureInvalid);
    assert_eq!(e.witness_http_status(), 403);

    // Unknown origin: 404.
    let other = Checkpoint::new("unknown.example/log", 40, *f.checkpoint(40).root()).unwrap();
    let mut req = f.request(25, 40);
    req.checkpoint = other.sign(&f.signer).unwrap().to_bytes();
    let e = refuse(&req);
    assert_eq!(e.code(), "UNKNOWN_ORIGIN");
    assert_eq!(e.witness_http_status(), 404);

    // Nothing above moved the state.
    assert_eq!(w.head(ORIGIN), Some(head));

    // Two requests prepared from the same state: the second commit loses the race.
    let a = w.add_checkpoint(&f.request(25, 30), NOW + 4).unwrap();
    let b = w.add_checkpoint(&f.request(25, 40), NOW + 4).unwrap();
    w.commit(b).unwrap();
    assert_eq!(w.commit(a).unwrap_err().code(), "OLD_SIZE_MISMATCH");
    assert_eq!(w.head(ORIGIN).unwrap().size, 40);
}

#[test]
fn witness_first_contact_requires_empty_proof() {
    let f = Fixture::new(8);
    let mut w = Witness::new(witnesses().remove(1));
    w.add_log(ORIGIN, &[f.signer.verifier_key()], None).unwrap();
    let mut req = f.request(0, 8);
    req.proof.push(Hash([1; 32]));
    assert_eq!(
        w.add_checkpoint(&req, NOW).unwrap_err().code(),
        "CONSISTENCY_PROOF_INVALID"
    );
    // Restored state: the witness resumes from a persisted head.
    let mut w2 = Witness::new(witnesses().remove(1));
    let head = TreeHead {
        size: 4,
        root: f.tree.root_at(4).unwrap(),
    };
    w2.add_log(ORIGIN, &[f.signer.verifier_key()], Some(head))
        .unwrap();
    let p = w2.add_checkpoint(&f.request(4, 8), NOW).unwrap();
    assert_eq!(p.checkpoint().size(), 8);
    assert!(
        w2.add_log(
            ORIGIN,
            &[f.signer.verifier_key()],
            Some(TreeHead {
                size: 0,
                root: Hash([1; 32])
            })
        )
        .is_err()
    );
}

#[test]
fn add_checkpoint_request_encoding() {
    let f = Fixture::new(16);
    let req = f.request(5, 16);
    let bytes = req.to_bytes();
    assert!(bytes.starts_with(b"old 5\n"));
    assert_eq!(AddCheckpointRequest::parse(&bytes).unwrap(), req);

    let cp = f.signed(16).to_bytes();
    let mut many = b"old 1\n".to_vec();
    for _ in 0..64 {
        many.extend_from_slice(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
    }
    many.push(b'\n');
    many.extend_from_slice(&cp);
    assert_eq!(
        AddCheckpointRequest::parse(&many).unwrap_err().code(),
        "MALFORMED_WITNESS_REQUEST"
    );
    for bad in [
        b"old 01\n\n".to_vec(),
        b"old -1\n\n".to_vec(),
        b"new 1\n\n".to_vec(),
        b"old 1\nnot base64\n\n".to_vec(),
        b"old 1".to_vec(),
    ] {
        assert!(AddCheckpointRequest::parse(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn open_checkpoint_checks_log_signature() {
    let f = Fixture::new(5);
    let note = f.signed(5);
    let (cp, _) =
        sotto_log::open_checkpoint(&note.to_bytes(), ORIGIN, &f.signer.verifier_key()).unwrap();
    assert_eq!(cp.size(), 5);
    let other = Ed25519Signer::from_seed("someone", &[5; 32]).unwrap();
    assert_eq!(
        sotto_log::open_checkpoint(&note.to_bytes(), ORIGIN, &other.verifier_key())
            .unwrap_err()
            .code(),
        "CHECKPOINT_SIGNATURE_MISSING"
    );
}

#[test]
fn client_side_consistency_with_stored_head() {
    let f = Fixture::new(30);
    let head = |n: u64| TreeHead {
        size: n,
        root: f.tree.root_at(n).unwrap(),
    };
    let stored = head(12);
    stored
        .verify_consistent(&head(30), &consistency_proof(&f.tree, 12, 30).unwrap())
        .unwrap();
    // An older view is fine if consistent (proof from it to the stored head).
    stored
        .verify_consistent(&head(5), &consistency_proof(&f.tree, 5, 12).unwrap())
        .unwrap();
    stored.verify_consistent(&head(12), &[]).unwrap();
    // Split view at the same size.
    let forked = TreeHead {
        size: 12,
        root: Hash([9; 32]),
    };
    assert_eq!(
        stored.verify_consistent(&forked, &[]).unwrap_err(),
        LogError::ForkDetected { size: 12 }
    );
    // A different tree at a larger size.
    let mut alt = MemoryTree::new();
    for i in 0..30u64 {
        alt.push(leaf_hash(format!("other {i}").as_bytes()));
    }
    let alt_head = TreeHead {
        size: 30,
        root: alt.root(),
    };
    assert_eq!(
        stored
            .verify_consistent(&alt_head, &consistency_proof(&alt, 12, 30).unwrap())
            .unwrap_err()
            .code(),
        "CONSISTENCY_PROOF_INVALID"
    );
}
