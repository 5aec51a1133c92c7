//! Release transparency, end to end: a real enclave (simulated TEE, stories260K) behind a
//! relay, a real on-disk transparency log published over HTTP, a witness key, and the
//! client's persistent view of the log. The logged, signed, witnessed release verifies;
//! each way an operator could present a release the client must not trust is refused
//! with its own code, and nothing reaches the enclave's API.

mod common;

use std::path::Path;

use common::*;
use sotto_client::{ClientConfig, ReleaseConfig};
use sotto_log::{CheckpointPolicy, Cosigner, Ed25519Signer, KeySet, Log};
use sotto_release::{Manifest, Measurement, ModelRef, ReleaseProof, ReleaseTrust, sign_release};

const ORIGIN: &str = "log.sotto.test/releases";

fn release_key() -> Ed25519Signer {
    Ed25519Signer::from_seed("release.sotto.test", &[1; 32]).unwrap()
}
fn log_key() -> Ed25519Signer {
    Ed25519Signer::from_seed(ORIGIN, &[2; 32]).unwrap()
}
fn witness_key() -> Cosigner {
    Cosigner::from_seed("witness.sotto.test", &[3; 32]).unwrap()
}

/// The release the test enclave really is: the shared simulated TEE's measurement and
/// the stories260K digests.
fn manifest(version: &str) -> Manifest {
    let c = claims();
    Manifest {
        version: version.into(),
        source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        enclave_sha256: [7; 32],
        model: ModelRef {
            name: c.model_id,
            weights_sha256: c.weights_sha256,
            tokenizer_sha256: c.tokenizer_sha256,
        },
        measurements: vec![Measurement::Simulated(tee().measurement())],
        min_tcb: None,
        tdx_tcb_statuses: vec![],
    }
}

/// A log directory with `entries` appended, cosigned by the witness if `cosign`.
fn log_with(dir: &Path, entries: &[Vec<u8>], cosign: bool) -> Log {
    let log = Log::open(dir, ORIGIN, log_key()).unwrap();
    if !entries.is_empty() {
        log.append_batch(entries).unwrap();
    }
    if cosign {
        let cp = log.checkpoint();
        let sig = witness_key().cosign(&cp, now() - 5).unwrap();
        log.add_cosignatures(cp.size(), &[sig], &[witness_key().verifier_key()])
            .unwrap();
    }
    log
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn proof_for(log: &Log, signed: &[u8], index: u64) -> Vec<u8> {
    let size = log.size();
    ReleaseProof {
        signed_release: signed.to_vec(),
        index,
        inclusion: log.inclusion_proof(index, size).unwrap(),
        checkpoint: log.signed_checkpoint(),
    }
    .encode()
    .unwrap()
}

/// Serves a log directory over HTTP (the relay's own log routes); returns its base URL.
async fn serve_log(dir: &Path) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sotto_relay::logfiles::router(dir.to_path_buf());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

fn config(relay_url: String, view_file: &Path, log_url: Option<String>) -> ClientConfig {
    let mut c = client_config(relay_url);
    let mut release_keys = KeySet::new();
    release_keys.insert(release_key().verifier_key()).unwrap();
    c.trust.release = Some(ReleaseConfig {
        trust: ReleaseTrust {
            release_keys,
            checkpoint_policy: CheckpointPolicy::new(ORIGIN, log_key().verifier_key())
                .unwrap()
                .with_witnesses(vec![witness_key().verifier_key()], 1)
                .unwrap(),
        },
        log_url,
        view_file: Some(view_file.to_path_buf()),
    });
    c
}

/// Starts an enclave presenting `proof`, and a pass-through relay.
async fn enclave_with(proof: Option<Vec<u8>>) -> (Stack, EvilRelay) {
    let stack = Stack::start().await;
    stack.enclave.set_release_proof(proof);
    let relay = EvilRelay::start(RelayOpts::new(stack.addr)).await;
    (stack, relay)
}

async fn refused(proof: Option<Vec<u8>>, view: &Path) -> String {
    let (stack, relay) = enclave_with(proof).await;
    let e = connect_err(&config(relay.url(), view, None)).await;
    assert!(e.is_rejection(), "{e}");
    relay.wait_finished(1).await;
    assert_eq!(stack.api_requests(), 0, "nothing may reach the enclave API");
    e.code().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_signed_witnessed_release_verifies_and_the_view_advances() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let view = tmp.path().join("view");
        let r1 = sign_release(&manifest("1.0.0"), &release_key()).unwrap();
        let r0 = sign_release(&manifest("0.9.0"), &release_key()).unwrap();
        let log = log_with(&dir, &[r0, r1.clone()], true);
        let (log_url, _srv) = serve_log(&dir).await;

        let (stack, relay) = enclave_with(Some(proof_for(&log, &r1, 1))).await;
        let cfg = config(relay.url(), &view, Some(log_url.clone()));
        let (session, v) = sotto_client::connect(&cfg).await.expect("verified");
        let r = v.release.as_ref().expect("release checked");
        assert_eq!(r.manifest.version, "1.0.0");
        assert_eq!(r.index, 1);
        assert_eq!(r.checkpoint.cosignatures.len(), 1);
        assert!(
            v.log_view
                .as_deref()
                .unwrap()
                .starts_with("first checkpoint seen")
        );
        assert!(view.exists(), "the client stores its view of the log");
        let text = greedy_30(&session).await.expect("chat works");
        assert!(reference_text().starts_with(&text));
        drop(session);

        // The log grows (a new release), the enclave presents the new checkpoint: the
        // client fetches tiles, proves consistency 2 -> 3 and moves its view forward.
        let r2 = sign_release(&manifest("1.1.0"), &release_key()).unwrap();
        log.append(&r2).unwrap();
        let cp = log.checkpoint();
        let sig = witness_key().cosign(&cp, now()).unwrap();
        log.add_cosignatures(cp.size(), &[sig], &[witness_key().verifier_key()])
            .unwrap();
        stack
            .enclave
            .set_release_proof(Some(proof_for(&log, &r1, 1)));
        let (_s, v) = sotto_client::connect(&cfg)
            .await
            .expect("consistent growth");
        assert_eq!(
            v.log_view.as_deref(),
            Some("consistent with the checkpoint seen before (size 2 -> 3)")
        );
        // An enclave still showing the older (size 2) checkpoint is fine too.
        let (_s, v) = sotto_client::connect(&config(relay.url(), &view, Some(log_url)))
            .await
            .expect("same view");
        assert!(v.log_view.is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_without_a_release_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            refused(None, &tmp.path().join("view")).await,
            "RELEASE_MISSING"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_not_in_the_log_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        let logged = sign_release(&manifest("1.0.0"), &release_key()).unwrap();
        let log = log_with(
            &tmp.path().join("log"),
            &[logged.clone(), b"x".to_vec()],
            true,
        );
        // Validly signed by the release key, never appended: shipped with the proof of
        // the entry at the same index.
        let unlogged = sign_release(&manifest("6.6.6"), &release_key()).unwrap();
        let mut p = ReleaseProof::decode(&proof_for(&log, &logged, 0)).unwrap();
        p.signed_release = unlogged;
        let code = refused(Some(p.encode().unwrap()), &tmp.path().join("view")).await;
        assert_eq!(code, "RELEASE_NOT_IN_LOG");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_signed_by_an_unknown_key_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        // Same name as the trusted key, different key: logged and witnessed all the same.
        let rogue = Ed25519Signer::from_seed("release.sotto.test", &[66; 32]).unwrap();
        let r = sign_release(&manifest("1.0.0"), &rogue).unwrap();
        let log = log_with(&tmp.path().join("log"), std::slice::from_ref(&r), true);
        let code = refused(Some(proof_for(&log, &r, 0)), &tmp.path().join("view")).await;
        assert_eq!(code, "RELEASE_SIGNATURE_INVALID");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_that_is_not_the_release_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        // A release of another build or model: its simulated measurement differs.
        let mut m = manifest("1.0.0");
        m.measurements = vec![Measurement::Simulated([0x77; 48])];
        let r = sign_release(&m, &release_key()).unwrap();
        let log = log_with(&tmp.path().join("log"), std::slice::from_ref(&r), true);
        let code = refused(Some(proof_for(&log, &r, 0)), &tmp.path().join("v1")).await;
        assert_eq!(code, "RELEASE_MEASUREMENT_MISMATCH");

        // Right measurement, other weights: the enclave serves a model the release
        // does not name.
        let mut m = manifest("1.0.1");
        m.model.weights_sha256 = [0x99; 32];
        let r = sign_release(&m, &release_key()).unwrap();
        let log = log_with(&tmp.path().join("log2"), std::slice::from_ref(&r), true);
        let code = refused(Some(proof_for(&log, &r, 0)), &tmp.path().join("v2")).await;
        assert_eq!(code, "RELEASE_MODEL_MISMATCH");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_without_the_witness_cosignature_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        let r = sign_release(&manifest("1.0.0"), &release_key()).unwrap();
        let log = log_with(&tmp.path().join("log"), std::slice::from_ref(&r), false);
        let code = refused(Some(proof_for(&log, &r, 0)), &tmp.path().join("view")).await;
        assert_eq!(code, "NOT_ENOUGH_WITNESSES");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_whose_proof_does_not_match_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        let r = sign_release(&manifest("1.0.0"), &release_key()).unwrap();
        let log = log_with(&tmp.path().join("log"), &[b"a".to_vec(), r.clone()], true);
        let mut p = ReleaseProof::decode(&proof_for(&log, &r, 1)).unwrap();
        p.inclusion[0].0[5] ^= 0x10;
        let code = refused(Some(p.encode().unwrap()), &tmp.path().join("v1")).await;
        assert_eq!(code, "RELEASE_NOT_IN_LOG");
        let mut p = ReleaseProof::decode(&proof_for(&log, &r, 1)).unwrap();
        p.index = 0;
        let code = refused(Some(p.encode().unwrap()), &tmp.path().join("v2")).await;
        assert_eq!(code, "RELEASE_NOT_IN_LOG");
        let mut bytes = proof_for(&log, &r, 1);
        bytes.truncate(bytes.len() - 3);
        let code = refused(Some(bytes), &tmp.path().join("v3")).await;
        assert_eq!(code, "RELEASE_PROOF_MALFORMED");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_view_is_refused() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        let view = tmp.path().join("view");
        let r = sign_release(&manifest("1.0.0"), &release_key()).unwrap();
        let a = log_with(
            &tmp.path().join("a"),
            &[r.clone(), b"honest".to_vec()],
            true,
        );
        let (a_url, _a_srv) = serve_log(&tmp.path().join("a")).await;
        let (_stack, relay) = enclave_with(Some(proof_for(&a, &r, 0))).await;
        sotto_client::connect(&config(relay.url(), &view, Some(a_url)))
            .await
            .expect("first view");

        // The same log key signs another history for this client: the same size with
        // another root, and a larger tree that does not extend the one seen.
        let b = log_with(&tmp.path().join("b"), &[r.clone(), b"evil".to_vec()], true);
        let (b_url, _b_srv) = serve_log(&tmp.path().join("b")).await;
        let (stack, relay) = enclave_with(Some(proof_for(&b, &r, 0))).await;
        let e = connect_err(&config(relay.url(), &view, Some(b_url.clone()))).await;
        assert_eq!(e.code(), "LOG_FORK", "{e}");
        relay.wait_finished(1).await;
        assert_eq!(stack.api_requests(), 0);

        b.append(b"more").unwrap();
        let cp = b.checkpoint();
        let sig = witness_key().cosign(&cp, now()).unwrap();
        b.add_cosignatures(cp.size(), &[sig], &[witness_key().verifier_key()])
            .unwrap();
        stack.enclave.set_release_proof(Some(proof_for(&b, &r, 0)));
        let e = connect_err(&config(relay.url(), &view, Some(b_url))).await;
        assert_eq!(e.code(), "LOG_FORK", "{e}");

        // Without a log URL the client cannot prove consistency and refuses too.
        let e = connect_err(&config(relay.url(), &view, None)).await;
        assert_eq!(e.code(), "LOG_CONSISTENCY_INVALID", "{e}");
        assert_eq!(stack.api_requests(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_foreign_log_view_is_refused_not_replaced() {
    within(async {
        let tmp = tempfile::tempdir().unwrap();
        let view = tmp.path().join("view");
        let r = sign_release(&manifest("1.0.0"), &release_key()).unwrap();
        let log = log_with(&tmp.path().join("log"), std::slice::from_ref(&r), true);
        let (log_url, _srv) = serve_log(&tmp.path().join("log")).await;
        let (stack, relay) = enclave_with(Some(proof_for(&log, &r, 0))).await;

        // Garbage in the view file: not a first sight (that would reset fork detection).
        std::fs::write(&view, b"not a checkpoint").unwrap();
        let e = connect_err(&config(relay.url(), &view, Some(log_url.clone()))).await;
        assert_eq!(e.code(), "LOG_VIEW_CORRUPT", "{e}");
        assert_eq!(std::fs::read(&view).unwrap(), b"not a checkpoint");

        // A valid checkpoint of another log in this log's view file.
        let other_key = Ed25519Signer::from_seed("other.example/log", &[9; 32]).unwrap();
        let other = Log::open(tmp.path().join("other"), "other.example/log", other_key).unwrap();
        other.append_batch(&[b"x".to_vec()]).unwrap();
        let foreign = std::fs::read(tmp.path().join("other/checkpoint")).unwrap();
        std::fs::write(&view, &foreign).unwrap();
        let e = connect_err(&config(relay.url(), &view, Some(log_url.clone()))).await;
        assert_eq!(e.code(), "LOG_VIEW_CORRUPT", "{e}");
        assert_eq!(std::fs::read(&view).unwrap(), foreign);
        assert_eq!(stack.api_requests(), 0, "nothing may reach the enclave API");

        // Once the user removes the file, the next connection is a first sight again.
        std::fs::remove_file(&view).unwrap();
        sotto_client::connect(&config(relay.url(), &view, Some(log_url)))
            .await
            .expect("first sight after the user removed the view");
    })
    .await;
}
