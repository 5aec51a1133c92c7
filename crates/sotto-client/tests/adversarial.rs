//! Adversarial tests of the client path: a real enclave (simulated TEE, stories260K, the
//! OpenAI router) behind an in-test relay that tampers with, replays, drops, reorders,
//! truncates, oversizes and substitutes channel records, plus enclaves whose evidence is
//! broken. Every failure must carry its specific code, nothing may panic, and when
//! verification fails no application data may reach the enclave.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sotto_attester::{Attester, AttesterError, EvidenceBundle, Platform, SimulatedTee};
use sotto_client::{ApiFailure, ChatStream, Session, Trust};
use sotto_wire::StaticKeypair;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// After a rejected handshake: the relay saw only the client hello cross, and the enclave's
/// API saw no request at all.
async fn assert_nothing_sent(relay: &EvilRelay, stack: &Stack) {
    relay.wait_finished(1).await;
    assert_eq!(
        relay.c2e(),
        1,
        "only the client hello may reach the enclave"
    );
    assert_eq!(
        stack.api_requests(),
        0,
        "no request may reach the enclave API"
    );
}

/// Starts a greedy stream and reads it to the end, expecting a failure; returns the code and
/// the text delivered before the failure.
async fn stream_failure(session: &Session) -> (String, String) {
    let mut text = String::new();
    let mut stream = match ChatStream::start(session, greedy("", 30)).await {
        Ok(s) => s,
        Err(e) => return (failure_code(&e), text),
    };
    loop {
        match stream.next_delta().await {
            Ok(Some(d)) => text.push_str(&d),
            Ok(None) => panic!("tampered stream was accepted as complete: {text:?}"),
            Err(e) => return (failure_code(&e), text),
        }
    }
}

/// The channel is unusable after a fatal error: new requests fail instead of silently
/// continuing on a channel the relay has interfered with.
async fn assert_session_dead(session: &Session) {
    eventually("session to close", || !session.is_open()).await;
    let err = session
        .get("/v1/models")
        .await
        .expect_err("request on a failed channel");
    assert_eq!(err.code(), "CONNECTION_CLOSED");
}

/// Wraps the simulated TEE and post-processes (or replaces) its evidence.
struct EvilAttester<F> {
    inner: Arc<SimulatedTee>,
    f: F,
}

impl<F> Attester for EvilAttester<F>
where
    F: Fn(&SimulatedTee, &[u8; 64]) -> EvidenceBundle + Send + Sync,
{
    fn platform(&self) -> Platform {
        self.inner.platform()
    }
    fn evidence(&self, report_data: &[u8; 64]) -> Result<EvidenceBundle, AttesterError> {
        Ok((self.f)(&self.inner, report_data))
    }
}

fn evil_attester(
    f: impl Fn(&SimulatedTee, &[u8; 64]) -> EvidenceBundle + Send + Sync + 'static,
) -> Arc<dyn Attester> {
    Arc::new(EvilAttester { inner: tee(), f })
}

async fn stack_and_relay(opts: StackOpts) -> (Stack, EvilRelay) {
    let stack = Stack::start_with(opts).await;
    let relay = EvilRelay::start(RelayOpts::new(stack.addr)).await;
    (stack, relay)
}

// ---------------------------------------------------------------------------------------
// 1. Happy path
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_through_pass_through_relay_matches_reference() {
    within(async {
        let (stack, relay) = stack_and_relay(StackOpts::default()).await;
        let (session, v) = sotto_client::connect(&client_config(relay.url()))
            .await
            .expect("connect");
        assert!(v.is_simulated());
        assert!(v.fresh);
        assert_eq!(&v.server_key, stack.enclave.public_key());
        assert_eq!(v.claims, claims());
        assert_eq!(v.attestation.measurement, tee().measurement());

        let text = greedy_30(&session).await.expect("greedy stream");
        let reference = reference_text();
        assert!(text.len() > 60, "30 tokens of text, got {text:?}");
        assert!(
            reference.starts_with(&text),
            "greedy output {text:?} is not a prefix of the reference"
        );
        assert_eq!(stack.api_requests(), 1);
        assert_eq!(stack.backend.finished_generations(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2-4. Evidence that must not verify: nothing is sent
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_report_signature_is_rejected_before_sending() {
    within(async {
        // 0x050: a bit of REPORT_DATA (signed); 0x2A0: a bit of the signature's r.
        for offset in [0x050usize, 0x2A0] {
            let attester = evil_attester(move |tee, rd| {
                let mut b = tee.evidence(rd).expect("evidence");
                b.report[offset] ^= 0x01;
                b
            });
            let (stack, relay) = stack_and_relay(StackOpts {
                attester: Some(attester),
                ..Default::default()
            })
            .await;
            let err = connect_err(&client_config(relay.url())).await;
            assert_eq!(
                err.code(),
                "REPORT_SIGNATURE_INVALID",
                "offset {offset:#x}: {err}"
            );
            assert_nothing_sent(&relay, &stack).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_data_binding_another_key_is_rejected_before_sending() {
    within(async {
        // Correctly signed evidence whose REPORT_DATA binds another (real) static key with
        // the same claims: what a relay holding evidence of some other enclave could offer.
        let other = StaticKeypair::from_entropy([9; 32]).expect("key");
        let other_pub = *other.public();
        let claims_bytes = claims().encode().expect("claims");
        let attester = evil_attester(move |tee, _requested| {
            let rd = sotto_wire::report_data(&other_pub, None, &claims_bytes);
            tee.evidence(&rd).expect("evidence")
        });
        let (stack, relay) = stack_and_relay(StackOpts {
            attester: Some(attester),
            ..Default::default()
        })
        .await;
        for fresh in [true, false] {
            let mut cfg = client_config(relay.url());
            cfg.fresh_evidence = fresh;
            let err = connect_err(&cfg).await;
            assert_eq!(err.code(), "REPORT_DATA_MISMATCH", "fresh={fresh}: {err}");
        }
        relay.wait_finished(2).await;
        assert_eq!(relay.c2e(), 2, "only the two client hellos may cross");
        assert_eq!(stack.api_requests(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_evidence_needs_opt_in_and_the_pinned_root() {
    within(async {
        let cases: [(Trust, &str); 4] = [
            (Trust::default(), "SIMULATION_NOT_ALLOWED"),
            (
                Trust {
                    simulation_root: Some([0x42; 32]),
                    ..Trust::default()
                },
                "ROOT_NOT_TRUSTED",
            ),
            (
                Trust {
                    simulation_root: Some(tee().root_fingerprint()),
                    expected_measurement: Some([0xA5; 48]),
                    ..Trust::default()
                },
                "MEASUREMENT_MISMATCH",
            ),
            (
                Trust {
                    simulation_root: Some(tee().root_fingerprint()),
                    expected_weights_sha256: Some([0x5A; 32]),
                    ..Trust::default()
                },
                "MODEL_DIGEST_MISMATCH",
            ),
        ];
        for (trust, code) in cases {
            let (stack, relay) = stack_and_relay(StackOpts::default()).await;
            let mut cfg = client_config(relay.url());
            cfg.trust = trust;
            let err = connect_err(&cfg).await;
            assert_eq!(err.code(), code, "{err}");
            assert!(err.is_rejection(), "{err}");
            assert_nothing_sent(&relay, &stack).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Handshake substitution
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_reply_from_another_enclave_is_rejected() {
    within(async {
        let a = Stack::start().await;
        let b = Stack::start().await;
        assert_ne!(a.enclave.public_key(), b.enclave.public_key());

        // The relay runs its own handshake with enclave B (copying the client's nonce, so
        // B's evidence is fresh, genuine and bound to that nonce and B's key) and hands B's
        // reply to the client. The reply is for the relay's ephemeral key, so it cannot
        // authenticate against the client's: the `ee`/`es` DH results differ.
        let mut opts = RelayOpts::new(a.addr);
        opts.hello_from = Some(b.addr);
        let relay = EvilRelay::start(opts).await;
        let err = connect_err(&client_config(relay.url())).await;
        assert_eq!(err.code(), "HANDSHAKE_FAILED", "{err}");
        assert_nothing_sent(&relay, &a).await;
        assert_eq!(b.api_requests(), 0);

        // A reply recorded from an earlier, genuine session with A, replayed to a new
        // client: bound to that session's ephemeral key, so it fails the same way.
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut opts = RelayOpts::new(a.addr);
        opts.e2c = record(log.clone());
        let recorder = EvilRelay::start(opts).await;
        let earlier = connect(recorder.url()).await;
        earlier.close();
        let old_reply = log.lock().expect("lock")[0].clone();
        let mut opts = RelayOpts::new(a.addr);
        opts.e2c = replace(0, old_reply);
        let replayer = EvilRelay::start(opts).await;
        let err = connect_err(&client_config(replayer.url())).await;
        assert_eq!(err.code(), "HANDSHAKE_FAILED", "{err}");
        replayer.wait_finished(1).await;
        assert_eq!(replayer.c2e(), 1);

        // A single flipped bit in the (encrypted) reply.
        let mut opts = RelayOpts::new(a.addr);
        opts.e2c = flip_bit(0, 200);
        let flipper = EvilRelay::start(opts).await;
        let err = connect_err(&client_config(flipper.url())).await;
        assert_eq!(err.code(), "HANDSHAKE_FAILED", "{err}");
        flipper.wait_finished(1).await;
        assert_eq!(flipper.c2e(), 1);
        assert_eq!(a.api_requests(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_routing_to_another_genuine_enclave_is_visible_to_the_client() {
    // Not an attack the channel can stop: the relay chooses the replica. What the client
    // must get is the truth about whom it talks to: the key B proved and B's evidence,
    // with the conversation ending up at B only.
    within(async {
        let a = Stack::start().await;
        let b = Stack::start().await;
        let relay = EvilRelay::start(RelayOpts::new(b.addr)).await;
        let (session, v) = sotto_client::connect(&client_config(relay.url()))
            .await
            .expect("B is a genuine enclave");
        assert_eq!(&v.server_key, b.enclave.public_key());
        assert_ne!(&v.server_key, a.enclave.public_key());
        let text = greedy_30(&session).await.expect("stream");
        assert!(reference_text().starts_with(&text));
        assert_eq!((a.api_requests(), b.api_requests()), (0, 1));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 6. Record tampering after the handshake
// ---------------------------------------------------------------------------------------

/// Enclave→client message indices for one request: 0 handshake reply, 1 response head,
/// 2.. body records, last the end of stream.
const HEAD: usize = 1;
const MID_BODY: usize = 6;

async fn expect_record_auth_failure(e2c: TamperFactory, expect_text_before: bool) {
    let (stack, _) = stack_and_relay(StackOpts::default()).await;
    let mut opts = RelayOpts::new(stack.addr);
    opts.e2c = e2c;
    let relay = EvilRelay::start(opts).await;
    let session = connect(relay.url()).await;
    let (code, text) = stream_failure(&session).await;
    assert_eq!(code, "RECORD_AUTH_FAILED");
    if expect_text_before {
        assert!(!text.is_empty(), "some deltas precede the tampered record");
    }
    assert!(
        reference_text().starts_with(&text),
        "only authentic text may be delivered, got {text:?}"
    );
    assert_session_dead(&session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bit_in_a_record_fails_authentication() {
    within(async {
        expect_record_auth_failure(flip_bit(HEAD, 20), false).await;
        expect_record_auth_failure(flip_bit(MID_BODY, 20), true).await;
        // The 16-byte Poly1305 tag at the end.
        expect_record_auth_failure(flip_bit(MID_BODY, usize::MAX), true).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dropped_and_reordered_records_fail_authentication() {
    within(async {
        expect_record_auth_failure(duplicate(MID_BODY), true).await;
        expect_record_auth_failure(duplicate(HEAD), false).await;
        expect_record_auth_failure(drop_msg(MID_BODY), true).await;
        expect_record_auth_failure(drop_msg(HEAD), false).await;
        expect_record_auth_failure(swap(MID_BODY), true).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_from_another_session_fails_authentication() {
    within(async {
        let stack = Stack::start().await;
        // Session 1: the same request; record its (authentic) records.
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = record(log.clone());
        let recorder = EvilRelay::start(opts).await;
        let s1 = connect(recorder.url()).await;
        greedy_30(&s1).await.expect("session 1");
        let foreign = log.lock().expect("lock")[MID_BODY].clone();

        // Session 2: the relay substitutes session 1's record at the same position (same
        // enclave, same request, same length: only the keys differ).
        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = replace(MID_BODY, foreign);
        let relay = EvilRelay::start(opts).await;
        let s2 = connect(relay.url()).await;
        let (code, text) = stream_failure(&s2).await;
        assert_eq!(code, "RECORD_AUTH_FAILED");
        assert!(!text.is_empty());
        assert_session_dead(&s2).await;
        // Session 1 is unaffected.
        assert!(reference_text().starts_with(&greedy_30(&s1).await.expect("session 1 again")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_request_never_reaches_the_enclave_api() {
    within(async {
        let stack = Stack::start().await;
        let mut opts = RelayOpts::new(stack.addr);
        // Client→enclave message 1 is the request head.
        opts.c2e = flip_bit(1, 20);
        let relay = EvilRelay::start(opts).await;
        let session = connect(relay.url()).await;
        let (code, _) = stream_failure(&session).await;
        // The enclave cannot tell the client why (the channel is gone); it drops it.
        assert_eq!(code, "STREAM_TRUNCATED");
        relay.wait_finished(1).await;
        assert_eq!(stack.api_requests(), 0);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 7. Truncation
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_stream_is_truncation_not_completion() {
    within(async {
        let stack = Stack::start().await;
        for abort in [false, true] {
            let mut opts = RelayOpts::new(stack.addr);
            opts.e2c = cut_at(MID_BODY, abort);
            let relay = EvilRelay::start(opts).await;
            let session = connect(relay.url()).await;
            let (code, text) = stream_failure(&session).await;
            assert_eq!(code, "STREAM_TRUNCATED", "abort={abort}");
            assert!(!text.is_empty());
            assert!(reference_text().starts_with(&text));
        }
    })
    .await;
}

/// A relay that stalls (keeps the connection, forwards nothing) cannot hang the client:
/// waiting for a head and waiting between chunks both time out, and a timed-out body
/// never turns into a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_relay_times_out() {
    within(async {
        let stack = Stack::start().await;
        // Stall after the handshake reply: no response head ever comes.
        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = stall_from(1);
        let relay = EvilRelay::start(opts).await;
        let mut cfg = client_config(relay.url());
        cfg.response_timeout = Duration::from_millis(300);
        let (session, _) = sotto_client::connect(&cfg).await.expect("connect");
        let err = session
            .post_json("/v1/chat/completions", &greedy("", 30))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "TIMEOUT");

        // Stall in the middle of the body.
        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = stall_from(MID_BODY);
        let relay = EvilRelay::start(opts).await;
        let mut cfg = client_config(relay.url());
        cfg.read_timeout = Duration::from_millis(300);
        let (session, _) = sotto_client::connect(&cfg).await.expect("connect");
        let mut request = greedy("", 30);
        request["stream"] = true.into();
        let mut resp = session
            .post_json("/v1/chat/completions", &request)
            .await
            .expect("head");
        let err = loop {
            match resp.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a stalled stream was taken as complete"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.code(), "TIMEOUT");
        assert!(resp.chunk().await.is_err(), "the failure must be sticky");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_just_before_end_of_stream_is_truncation() {
    within(async {
        let stack = Stack::start().await;
        // Count this request's records on a clean run (deterministic under greedy decoding).
        let counter = EvilRelay::start(RelayOpts::new(stack.addr)).await;
        let s = connect(counter.url()).await;
        greedy_30(&s).await.expect("clean run");
        let total = counter.e2c();
        assert!(total > MID_BODY);

        // Everything except the final end-of-stream record, then a close. The body has
        // already carried `[DONE]`; the answer must still not count as complete.
        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = cut_at(total - 1, false);
        let relay = EvilRelay::start(opts).await;
        let session = connect(relay.url()).await;
        let mut stream = ChatStream::start(&session, greedy("", 30))
            .await
            .expect("head");
        let mut text = String::new();
        let err = loop {
            match stream.next_delta().await {
                Ok(Some(d)) => text.push_str(&d),
                Ok(None) => panic!("truncated stream accepted as complete"),
                Err(e) => break e,
            }
        };
        assert_eq!(failure_code(&err), "STREAM_TRUNCATED");
        assert_eq!(stream.finish_reason.as_deref(), Some("length"));
        assert!(reference_text().starts_with(&text) && text.len() > 60);
        // The failure is sticky: asking again must not turn into a clean end.
        let again = stream.next_delta().await;
        assert!(again.is_err(), "second read after truncation: {again:?}");
    })
    .await;
}

/// An API whose streaming body puts the last delta and `[DONE]` in one frame (as a
/// coalescing upstream server may), so they arrive in one channel record.
fn coalescing_api() -> axum::Router {
    axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            (
                [("content-type", "text/event-stream")],
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
            )
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_before_end_is_caught_even_when_done_shares_a_record_with_text() {
    within(async {
        let stack = Stack::start_with(StackOpts {
            api: Some(coalescing_api()),
            ..Default::default()
        })
        .await;
        // Control: with the end-of-stream record, "Hi" then a clean end.
        let clean = EvilRelay::start(RelayOpts::new(stack.addr)).await;
        let s = connect(clean.url()).await;
        let mut stream = ChatStream::start(&s, greedy("", 1)).await.expect("start");
        assert_eq!(collect(&mut stream).await.expect("clean"), "Hi");
        // Records: 0 hello, 1 head, 2 the single body record, 3 end of stream.
        assert_eq!(clean.e2c(), 4);

        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = cut_at(3, false);
        let relay = EvilRelay::start(opts).await;
        let s = connect(relay.url()).await;
        let mut stream = ChatStream::start(&s, greedy("", 1)).await.expect("start");
        assert_eq!(
            stream.next_delta().await.expect("delta").as_deref(),
            Some("Hi")
        );
        let end = stream.next_delta().await;
        match end {
            Err(e) => assert_eq!(failure_code(&e), "STREAM_TRUNCATED"),
            Ok(v) => panic!("missing end of stream accepted: {v:?}"),
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 8. Oversized messages
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_from_the_relay_are_errors_not_panics() {
    within(async {
        let stack = Stack::start().await;
        for size in [65_536usize, 1 << 20] {
            // Mid-stream.
            let mut opts = RelayOpts::new(stack.addr);
            opts.e2c = replace(MID_BODY, vec![0xAB; size]);
            let relay = EvilRelay::start(opts).await;
            let session = connect(relay.url()).await;
            let (code, text) = stream_failure(&session).await;
            assert_eq!(code, "STREAM_TRUNCATED", "size {size}");
            assert!(reference_text().starts_with(&text));
            assert_session_dead(&session).await;

            // As the handshake reply: rejected, nothing sent.
            let mut opts = RelayOpts::new(stack.addr);
            opts.e2c = replace(0, vec![0xAB; size]);
            let relay = EvilRelay::start(opts).await;
            let err = connect_err(&client_config(relay.url())).await;
            assert_eq!(err.code(), "RELAY_UNREACHABLE", "size {size}: {err}");
            relay.wait_finished(1).await;
            assert_eq!(relay.c2e(), 1);
        }
        // Toward the enclave: an oversized message after the request. The enclave drops the
        // connection (the client sees truncation) and keeps serving others.
        let mut opts = RelayOpts::new(stack.addr);
        opts.c2e = Arc::new(|| {
            Box::new(|i, b: Vec<u8>| {
                if i == 1 {
                    vec![Out::Send(vec![0xCD; 70_000]), Out::Send(b)]
                } else {
                    vec![Out::Send(b)]
                }
            })
        });
        let relay = EvilRelay::start(opts).await;
        let session = connect(relay.url()).await;
        let before = stack.api_requests();
        let (code, _) = stream_failure(&session).await;
        assert_eq!(code, "STREAM_TRUNCATED");
        assert_eq!(stack.api_requests(), before, "the request was not served");
        let ok = EvilRelay::start(RelayOpts::new(stack.addr)).await;
        let session = connect(ok.url()).await;
        assert!(reference_text().starts_with(&greedy_30(&session).await.expect("still serving")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_message_from_the_relay_is_a_protocol_violation() {
    within(async {
        let (stack, _) = stack_and_relay(StackOpts::default()).await;
        let mut opts = RelayOpts::new(stack.addr);
        opts.e2c = Arc::new(|| {
            Box::new(|i, b: Vec<u8>| {
                if i == MID_BODY {
                    vec![Out::Text("{\"choices\":[]}".into()), Out::Send(b)]
                } else {
                    vec![Out::Send(b)]
                }
            })
        });
        let relay = EvilRelay::start(opts).await;
        let session = connect(relay.url()).await;
        let (code, text) = stream_failure(&session).await;
        assert_eq!(code, "PROTOCOL_VIOLATION");
        assert!(!text.is_empty() && reference_text().starts_with(&text));
        assert_session_dead(&session).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 9. Cancel
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_generation_in_the_enclave_and_the_session_survives() {
    within(async {
        // 10 ms per body frame: without a working cancel the 400 tokens take over 4 s, so
        // the generation would end as "finished", not "cancelled", and the test fail.
        let (stack, relay) = stack_and_relay(StackOpts {
            throttle: Some(Duration::from_millis(10)),
            ..Default::default()
        })
        .await;
        let session = connect(relay.url()).await;
        let request = serde_json::json!({
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "Once upon a time"}],
            "temperature": 1,
            "seed": 7,
            "max_tokens": 400,
        });
        let mut stream = ChatStream::start(&session, request).await.expect("start");
        let first = stream
            .next_delta()
            .await
            .expect("delta")
            .expect("one delta");
        assert!(!first.is_empty());
        stream.cancel();

        let b = stack.backend.clone();
        eventually("the enclave to cancel the generation", || {
            b.cancelled_generations() == 1 && b.active_generations() == 0
        })
        .await;
        assert_eq!(b.finished_generations(), 0);
        let tokens = b.generated_tokens();
        assert!(tokens < 100, "generation went on for {tokens} tokens");

        // The same session carries a new request.
        let text = greedy_30(&session).await.expect("after cancel");
        assert!(reference_text().starts_with(&text) && text.len() > 60);
        assert_eq!(b.finished_generations(), 1);
        assert_eq!(stack.api_requests(), 2);
    })
    .await;
}

/// A caller that gives up before the response head arrives (its `request` future is
/// dropped) must not leave the enclave generating.
#[tokio::test]
async fn abandoned_request_is_cancelled_in_the_enclave() {
    within(async {
        let (stack, relay) = stack_and_relay(StackOpts {
            throttle: Some(Duration::from_millis(10)),
            ..Default::default()
        })
        .await;
        let session = connect(relay.url()).await;
        let request = serde_json::json!({
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "Once upon a time"}],
            "temperature": 1, "seed": 7, "max_tokens": 400, "stream": true,
        });
        // The first poll sends the request; the zero timeout then drops the future. The
        // cancel reaches the enclave before its generation starts or just after, depending
        // on timing: either way none may be left running, let alone run to its end (400
        // throttled tokens take over 4 s).
        let r = tokio::time::timeout(
            Duration::ZERO,
            session.post_json("/v1/chat/completions", &request),
        )
        .await;
        assert!(r.is_err(), "the request future must have been abandoned");
        let b = stack.backend.clone();
        tokio::time::sleep(Duration::from_millis(500)).await;
        eventually("no generation left running", || b.active_generations() == 0).await;
        assert_eq!(b.finished_generations(), 0);
        assert!(b.cancelled_generations() <= 1);
        let text = greedy_30(&session).await.expect("session still usable");
        assert!(reference_text().starts_with(&text));
    })
    .await;
}

/// A non-streamed answer's head comes only when the work is done: a caller that stops
/// waiting for it (here a timeout; in `sotto gateway`, an HTTP client that disconnects) must
/// still stop the work in the enclave at once, not when it would have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_request_is_cancelled_before_its_head_arrives() {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    within(async {
        let dropped = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let (d, f) = (dropped.clone(), finished.clone());
        let api = axum::Router::new()
            .route(
                "/slow",
                axum::routing::get(move || {
                    let (d, f) = (d.clone(), f.clone());
                    async move {
                        let _guard = SetOnDrop(d);
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        f.store(true, Ordering::SeqCst);
                        "done"
                    }
                }),
            )
            .route("/fast", axum::routing::get(|| async { "ok" }));
        let (_stack, relay) = stack_and_relay(StackOpts {
            api: Some(api),
            ..Default::default()
        })
        .await;
        let session = connect(relay.url()).await;
        let r = tokio::time::timeout(Duration::from_millis(300), session.get("/slow")).await;
        assert!(r.is_err(), "the request future must have been abandoned");
        eventually("the enclave to drop the abandoned request", || {
            dropped.load(Ordering::SeqCst)
        })
        .await;
        assert!(!finished.load(Ordering::SeqCst));
        let resp = session.get("/fast").await.expect("session still usable");
        assert_eq!(resp.bytes().await.expect("body"), b"ok");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 10. API errors through the channel
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_an_openai_404_and_the_session_survives() {
    within(async {
        let (stack, relay) = stack_and_relay(StackOpts::default()).await;
        let session = connect(relay.url()).await;
        let resp = session.get("/v1/nope").await.expect("response");
        assert_eq!(resp.head.status, 404);
        let body: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
        assert_eq!(body["error"]["code"], "unknown_url", "{body}");
        assert!(body["error"]["message"].is_string());
        assert!(body["error"]["type"].is_string());

        // An API error on the chat endpoint surfaces as ApiFailure::Api.
        let mut bad = greedy("", 5);
        bad["model"] = "no-such-model".into();
        match ChatStream::start(&session, bad).await {
            Err(ApiFailure::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (404, "model_not_found"));
            }
            other => panic!("expected an API error, got {other:?}"),
        }

        let resp = session.get("/v1/models").await.expect("models");
        assert_eq!(resp.head.status, 200);
        let body: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
        assert_eq!(body["data"][0]["id"], MODEL_ID);
        assert!(reference_text().starts_with(&greedy_30(&session).await.expect("chat")));
        assert_eq!(stack.api_requests(), 4);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 11. Concurrency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_streams_on_one_session_complete_independently() {
    within(async {
        let (stack, relay) = stack_and_relay(StackOpts::default()).await;
        let session = connect(relay.url()).await;
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let s = session.clone();
                tokio::spawn(async move { greedy_30(&s).await })
            })
            .collect();
        let mut texts = Vec::new();
        for t in tasks {
            texts.push(t.await.expect("task").expect("stream"));
        }
        let reference = reference_text();
        for t in &texts {
            assert_eq!(t, &texts[0]);
            assert!(reference.starts_with(t.as_str()) && t.len() > 60);
        }
        assert_eq!(stack.api_requests(), 10);
        assert_eq!(stack.backend.finished_generations(), 10);
        assert_eq!(
            relay
                .stats
                .connections
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Resource hygiene
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_session_closes_the_channel() {
    within(async {
        let (_stack, relay) = stack_and_relay(StackOpts::default()).await;
        let session = connect(relay.url()).await;
        greedy_30(&session).await.expect("chat");
        drop(session);
        // The client says goodbye (a Close record, then the WebSocket close) instead of
        // leaving the connection to the enclave's idle timeout.
        relay.wait_finished(1).await;
        // Hello; request head, body, end; the Close record.
        assert_eq!(relay.c2e(), 5);
    })
    .await;
}
