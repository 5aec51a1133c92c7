//! Signed releases in a log: every check of `verify_release` and of the consistency step
//! has a test that makes it fail.

use proptest::prelude::*;
use sotto_log::{
    Checkpoint, CheckpointPolicy, Cosigner, Ed25519Signer, KeySet, MemoryTree, Note,
    consistency_proof, inclusion_proof, leaf_hash,
};
use sotto_release::{
    Manifest, Measurement, ModelRef, ReleaseError, ReleaseProof, ReleaseTrust, check_consistency,
    consistency_needed, sign_release, verify_release,
};

const ORIGIN: &str = "log.sotto.test/releases";
const NOW: u64 = 1_800_000_000;

struct Fixture {
    release: Ed25519Signer,
    log: Ed25519Signer,
    witness: Cosigner,
    tree: MemoryTree,
    entries: Vec<Vec<u8>>,
}

fn manifest(version: &str) -> Manifest {
    Manifest {
        version: version.into(),
        source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        enclave_sha256: [7; 32],
        model: ModelRef {
            name: "stories260K".into(),
            weights_sha256: [1; 32],
            tokenizer_sha256: [2; 32],
        },
        measurements: vec![Measurement::Simulated([3; 48])],
        min_tcb: None,
        tdx_tcb_statuses: vec![],
    }
}

impl Fixture {
    fn new(n: usize) -> Fixture {
        let mut f = Fixture {
            release: Ed25519Signer::from_seed("release.sotto.test", &[1; 32]).unwrap(),
            log: Ed25519Signer::from_seed(ORIGIN, &[2; 32]).unwrap(),
            witness: Cosigner::from_seed("witness.sotto.test", &[3; 32]).unwrap(),
            tree: MemoryTree::new(),
            entries: vec![],
        };
        for i in 0..n {
            f.append(&sign_release(&manifest(&format!("0.{i}.0")), &f.release).unwrap());
        }
        f
    }

    fn append(&mut self, entry: &[u8]) {
        self.tree.push(leaf_hash(entry));
        self.entries.push(entry.to_vec());
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint::new(ORIGIN, size, self.tree.root_at(size).unwrap()).unwrap()
    }

    fn signed_checkpoint(&self, size: u64, cosigned: bool) -> Vec<u8> {
        let cp = self.checkpoint(size);
        let mut note: Note = cp.sign(&self.log).unwrap();
        if cosigned {
            note.add_signature(self.witness.cosign(&cp, NOW - 10).unwrap());
        }
        note.to_bytes()
    }

    fn proof(&self, index: u64, size: u64) -> ReleaseProof {
        ReleaseProof {
            signed_release: self.entries[index as usize].clone(),
            index,
            inclusion: inclusion_proof(&self.tree, index, size).unwrap(),
            checkpoint: self.signed_checkpoint(size, true),
        }
    }

    fn trust(&self, quorum: usize) -> ReleaseTrust {
        let mut release_keys = KeySet::new();
        release_keys.insert(self.release.verifier_key()).unwrap();
        ReleaseTrust {
            release_keys,
            checkpoint_policy: CheckpointPolicy::new(ORIGIN, self.log.verifier_key())
                .unwrap()
                .with_witnesses(vec![self.witness.verifier_key()], quorum)
                .unwrap(),
        }
    }
}

fn code(r: Result<impl Sized, ReleaseError>) -> &'static str {
    match r {
        Ok(_) => "ACCEPTED",
        Err(e) => e.code(),
    }
}

#[test]
fn accepts_a_logged_signed_cosigned_release_at_every_position() {
    let f = Fixture::new(13);
    for size in 1..=13u64 {
        for index in 0..size {
            let p = f.proof(index, size);
            let p = ReleaseProof::decode(&p.encode().unwrap()).unwrap();
            let v = verify_release(&p, &f.trust(1), NOW).unwrap();
            assert_eq!(v.manifest.version, format!("0.{index}.0"));
            assert_eq!(v.signer, "release.sotto.test");
            assert_eq!(v.checkpoint.checkpoint.size(), size);
            assert_eq!(v.checkpoint.cosignatures.len(), 1);
        }
    }
}

#[test]
fn release_signed_by_an_unknown_key_is_refused() {
    let mut f = Fixture::new(2);
    let rogue = Ed25519Signer::from_seed("release.sotto.test", &[9; 32]).unwrap();
    f.append(&sign_release(&manifest("6.6.6"), &rogue).unwrap());
    // Logged, cosigned, but not signed by the trusted release key.
    assert_eq!(
        code(verify_release(&f.proof(2, 3), &f.trust(1), NOW)),
        "RELEASE_SIGNATURE_INVALID"
    );
    let other = Ed25519Signer::from_seed("someone.else", &[9; 32]).unwrap();
    f.append(&sign_release(&manifest("6.6.7"), &other).unwrap());
    assert_eq!(
        code(verify_release(&f.proof(3, 4), &f.trust(1), NOW)),
        "RELEASE_SIGNATURE_INVALID"
    );
}

#[test]
fn a_release_not_in_the_log_is_refused() {
    let f = Fixture::new(5);
    // Validly signed, but never appended: the proof of another entry does not fit it.
    let unlogged = sign_release(&manifest("9.9.9"), &f.release).unwrap();
    let mut p = f.proof(2, 5);
    p.signed_release = unlogged;
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "RELEASE_NOT_IN_LOG"
    );
    // A bundle whose proof does not match: wrong index, flipped hash, short proof.
    let mut p = f.proof(2, 5);
    p.index = 3;
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "RELEASE_NOT_IN_LOG"
    );
    let mut p = f.proof(2, 5);
    p.inclusion[0].0[0] ^= 1;
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "RELEASE_NOT_IN_LOG"
    );
    let mut p = f.proof(2, 5);
    p.inclusion.pop();
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "RELEASE_NOT_IN_LOG"
    );
    let mut p = f.proof(2, 5);
    p.index = 5;
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "RELEASE_NOT_IN_LOG"
    );
}

#[test]
fn checkpoint_must_be_signed_by_the_log_and_cosigned_by_the_quorum() {
    let f = Fixture::new(4);
    let mut p = f.proof(1, 4);
    p.checkpoint = f.signed_checkpoint(4, false);
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "NOT_ENOUGH_WITNESSES"
    );
    assert_eq!(code(verify_release(&p, &f.trust(0), NOW)), "ACCEPTED");

    // Signed by another key under the log's name: the signature fails.
    let impostor = Ed25519Signer::from_seed(ORIGIN, &[8; 32]).unwrap();
    let mut note = f.checkpoint(4).sign(&impostor).unwrap();
    note.add_signature(f.witness.cosign(&f.checkpoint(4), NOW).unwrap());
    p.checkpoint = note.to_bytes();
    assert!(matches!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "CHECKPOINT_SIGNATURE_INVALID" | "CHECKPOINT_SIGNATURE_MISSING"
    ));

    // A tampered body (root changed) invalidates the log signature.
    let good = String::from_utf8(f.signed_checkpoint(4, true)).unwrap();
    let root_b64 = f.checkpoint(4).root().to_base64();
    let other_b64 = f.checkpoint(3).root().to_base64();
    p.checkpoint = good.replace(&root_b64, &other_b64).into_bytes();
    assert_eq!(
        code(verify_release(&p, &f.trust(1), NOW)),
        "CHECKPOINT_SIGNATURE_INVALID"
    );
}

#[test]
fn consistency_with_the_checkpoint_seen_before() {
    let mut f = Fixture::new(6);
    let seen = f.checkpoint(3);
    // The log grew honestly.
    let proof = consistency_proof(&f.tree, 3, 6).unwrap();
    assert_eq!(
        consistency_needed(&seen, &f.checkpoint(6)).unwrap(),
        Some((3, 6))
    );
    check_consistency(&seen, &f.checkpoint(6), &proof).unwrap();
    // An older checkpoint than the one seen is fine too if consistent.
    check_consistency(&f.checkpoint(6), &seen, &proof).unwrap();
    assert_eq!(consistency_needed(&seen, &seen).unwrap(), None);

    // A fork: another tree of size 6 sharing the first 3 entries... and one not.
    let mut fork = Fixture::new(3);
    fork.append(b"evil entry");
    fork.append(b"more");
    fork.append(b"more still");
    let fork6 = fork.checkpoint(6);
    assert_eq!(
        code(consistency_needed(&f.checkpoint(6), &fork6)),
        "LOG_FORK"
    );
    // The fork's own proof from size 3 is consistent with the shared prefix...
    let fork_proof = consistency_proof(&fork.tree, 3, 6).unwrap();
    check_consistency(&seen, &fork6, &fork_proof).unwrap();
    // ...but a client that saw the honest size-5 tree detects it.
    let seen5 = f.checkpoint(5);
    let p = consistency_proof(&fork.tree, 5, 6).unwrap();
    assert_eq!(code(check_consistency(&seen5, &fork6, &p)), "LOG_FORK");
    let honest = consistency_proof(&f.tree, 5, 6).unwrap();
    assert_eq!(code(check_consistency(&seen5, &fork6, &honest)), "LOG_FORK");

    // Another origin is never "consistent".
    let other = Checkpoint::new("other.log", 6, *f.checkpoint(6).root()).unwrap();
    assert_eq!(code(consistency_needed(&seen, &other)), "LOG_FORK");
    f.append(b"x");
}

#[test]
fn decode_rejects_malformed_proofs() {
    let f = Fixture::new(3);
    let good = f.proof(1, 3).encode().unwrap();
    assert!(ReleaseProof::decode(&good).is_ok());
    for n in 0..good.len() {
        assert_eq!(
            code(ReleaseProof::decode(&good[..n])),
            "RELEASE_PROOF_MALFORMED",
            "truncated at {n}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        code(ReleaseProof::decode(&trailing)),
        "RELEASE_PROOF_MALFORMED"
    );
    let mut v2 = good.clone();
    v2[4] = 2;
    assert_eq!(code(ReleaseProof::decode(&v2)), "RELEASE_PROOF_MALFORMED");
    let mut magic = good;
    magic[0] = b'X';
    assert_eq!(
        code(ReleaseProof::decode(&magic)),
        "RELEASE_PROOF_MALFORMED"
    );
}

proptest! {
    #[test]
    fn decode_and_verify_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = Fixture::new(1);
        if let Ok(p) = ReleaseProof::decode(&bytes) {
            let _ = verify_release(&p, &f.trust(1), NOW);
        }
    }
}
