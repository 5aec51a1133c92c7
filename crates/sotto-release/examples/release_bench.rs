//! Cost of the client's release checks (signature, checkpoint + witness cosignature,
//! inclusion proof, consistency proof), for a log of N entries.
//!
//! `cargo run --release -p sotto-release --example release_bench -- [N] [ITERATIONS]`

use std::time::Instant;

use sotto_log::{
    Checkpoint, CheckpointPolicy, Cosigner, Ed25519Signer, KeySet, MemoryTree, consistency_proof,
    inclusion_proof, leaf_hash,
};
use sotto_release::{
    Manifest, Measurement, ModelRef, ReleaseProof, ReleaseTrust, check_consistency, sign_release,
    verify_release,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let release = Ed25519Signer::from_seed("release", &[1; 32]).expect("key");
    let log = Ed25519Signer::from_seed("log.example/sotto", &[2; 32]).expect("key");
    let witness = Cosigner::from_seed("witness", &[3; 32]).expect("key");
    let manifest = |i: u64| Manifest {
        version: format!("0.{i}.0"),
        source_commit: "0".repeat(40),
        enclave_sha256: [7; 32],
        model: ModelRef {
            name: "m".into(),
            weights_sha256: [1; 32],
            tokenizer_sha256: [2; 32],
        },
        measurements: vec![Measurement::Snp([3; 48])],
        min_tcb: None,
        tdx_tcb_statuses: vec![],
    };
    let target = sign_release(&manifest(n / 2), &release).expect("sign");
    let mut tree = MemoryTree::new();
    for i in 0..n {
        if i == n / 2 {
            tree.push(leaf_hash(&target));
        } else {
            tree.push(leaf_hash(format!("entry {i}").as_bytes()));
        }
    }
    let cp = Checkpoint::new("log.example/sotto", n, tree.root()).expect("cp");
    let mut note = cp.sign(&log).expect("sign cp");
    note.add_signature(witness.cosign(&cp, 1_800_000_000).expect("cosign"));
    let proof = ReleaseProof {
        signed_release: target.clone(),
        index: n / 2,
        inclusion: inclusion_proof(&tree, n / 2, n).expect("proof"),
        checkpoint: note.to_bytes(),
    };
    let mut keys = KeySet::new();
    keys.insert(release.verifier_key()).expect("key");
    let trust = ReleaseTrust {
        release_keys: keys,
        checkpoint_policy: CheckpointPolicy::new("log.example/sotto", log.verifier_key())
            .expect("policy")
            .with_witnesses(vec![witness.verifier_key()], 1)
            .expect("witnesses"),
    };
    let old = Checkpoint::new(
        "log.example/sotto",
        n - 7,
        tree.root_at(n - 7).expect("root"),
    )
    .expect("cp");
    let cproof = consistency_proof(&tree, n - 7, n).expect("consistency");

    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let v = verify_release(&proof, &trust, 1_800_000_100).expect("verify");
        check_consistency(&old, &v.checkpoint.checkpoint, &cproof).expect("consistent");
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "log of {n} entries: verify_release + consistency check: median {:.1} µs, p90 {:.1} µs ({} iterations; proof {} hashes, {} bytes encoded)",
        times[iters / 2],
        times[iters * 9 / 10],
        iters,
        proof.inclusion.len(),
        proof.encode().expect("encode").len()
    );
}
