//! Unit tests for the record padding and the stream rules of `docs/protocol.md` §3–§5.
//!
//! The peer is a real [`Connection`] of the same session, but the tests make it send frames
//! it would never send on its own (`forge_frame`, `forge_plaintext`): records are correctly
//! encrypted, so they reach the padding check and the frame decoder of the receiving end.

use proptest::prelude::*;

use super::*;
use crate::frame::ty;
use crate::handshake::{ClientHandshake, ServerHandshake, StaticKeypair};

fn entropy(tag: u8) -> [u8; 32] {
    let mut e = [0u8; 32];
    for (i, b) in e.iter_mut().enumerate() {
        *b = tag.wrapping_mul(29).wrapping_add(i as u8);
    }
    e
}

/// A connected (client, server) pair.
fn pair_full(client_limits: Limits, server_limits: Limits) -> (Connection, Connection) {
    let key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    let (client, m1) = ClientHandshake::start(entropy(2), None).unwrap();
    let server = ServerHandshake::read_client_hello(&key, entropy(3), &m1).unwrap();
    let (m2, s) = server
        .finish(b"claims", b"evidence", server_limits)
        .unwrap();
    let c = client
        .read_server_hello(&m2)
        .unwrap()
        .accept(client_limits)
        .unwrap();
    (c, s)
}

fn pair() -> (Connection, Connection) {
    pair_full(Limits::default(), Limits::default())
}

fn pump(from: &mut Connection, to: &mut Connection) {
    while let Some(r) = from.poll_transmit() {
        to.handle_record(&r).unwrap();
    }
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn req() -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
    }
}

fn resp() -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
    }
}

/// The result of handing one record to a connection, with the streams it had open before.
struct Outcome {
    result: Result<(), WireError>,
    open_before: Vec<u32>,
}

impl Outcome {
    fn unwrap(self) {
        self.result.unwrap()
    }
}

impl PartialEq<Result<(), WireError>> for Outcome {
    fn eq(&self, other: &Result<(), WireError>) -> bool {
        self.result == *other
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.result.fmt(f)
    }
}

/// `to` handles one record; earlier events are discarded first.
fn handle(to: &mut Connection, record: &[u8]) -> Outcome {
    events(to);
    let open_before = to.streams.keys().copied().collect();
    Outcome {
        result: to.handle_record(record),
        open_before,
    }
}

/// `from` sends `frame` (padded as usual) regardless of its own state; `to` handles it.
fn inject(from: &mut Connection, to: &mut Connection, frame: Frame<'_>) -> Outcome {
    let r = from.forge_frame(&frame);
    handle(to, &r)
}

/// `from` encrypts raw frame bytes with an empty padding trailer; `to` handles the record.
fn inject_bytes(from: &mut Connection, to: &mut Connection, frame: &[u8]) -> Outcome {
    let mut plain = frame.to_vec();
    plain.extend_from_slice(&[0, 0]);
    let r = from.forge_plaintext(&plain);
    handle(to, &r)
}

/// Asserts the record failed with `code` and that the connection is now failed: every
/// stream open before was reset as lost, nothing is queued or accepted any more.
fn assert_fatal(to: &mut Connection, o: Outcome, code: &str) {
    let e = o.result.expect_err("expected a fatal error");
    assert_eq!(e.code(), code, "{e}");
    assert!(!to.is_open());
    assert_eq!(to.state, State::Failed);
    assert_eq!(to.open_streams(), 0);
    assert!(
        to.poll_transmit().is_none(),
        "nothing is sent after a failure"
    );
    let resets: Vec<Event> = o
        .open_before
        .iter()
        .map(|&id| Event::Reset {
            id,
            code: CancelCode::ConnectionLost,
        })
        .collect();
    assert_eq!(events(to), resets, "exactly the open streams are reset");
    assert_eq!(to.handle_record(&[0u8; 64]), Err(WireError::Closed));
    assert_eq!(to.send_data(1, b"x"), Err(WireError::Closed));
}

/// Client opened stream 1 and sent its head; the server has taken the request event.
fn with_request(finish_request: bool) -> (Connection, Connection, u32) {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    if finish_request {
        c.finish(id).unwrap();
    }
    pump(&mut c, &mut s);
    events(&mut s);
    (c, s, id)
}

/// As [`with_request`], and the client has received the response head.
fn with_response(finish_request: bool) -> (Connection, Connection, u32) {
    let (mut c, mut s, id) = with_request(finish_request);
    s.send_response(id, resp()).unwrap();
    pump(&mut s, &mut c);
    events(&mut c);
    (c, s, id)
}

// ---------------------------------------------------------------------------------------
// Padding (§3)

#[test]
fn padded_records_round_trip_and_have_bucketed_sizes() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    let r = c.poll_transmit().unwrap();
    assert_eq!((r.len() - TAG_LEN) % DEFAULT_PAD_TO, 0);
    s.handle_record(&r).unwrap();
    for n in [1usize, 40, 248, 249, 250, 600] {
        c.send_data(id, &vec![b'a'; n]).unwrap();
        let r = c.poll_transmit().unwrap();
        let plain = n + FRAME_HEADER + PAD_TRAILER;
        assert_eq!(r.len() - TAG_LEN, plain.div_ceil(256) * 256, "{n} bytes");
        s.handle_record(&r).unwrap();
    }
    assert_eq!(events(&mut s).len(), 7);
}

#[test]
fn padded_plaintext_layout() {
    // The exact plaintext of an END for stream 1 with the default pad_to (docs §3, §8).
    let (c, _s) = pair();
    let plain = c.padded(&Frame::End(1)).unwrap();
    let mut want = vec![ty::END, 0, 0, 0, 1];
    want.extend_from_slice(&[0u8; 249]);
    want.extend_from_slice(&[0x00, 0xf9]);
    assert_eq!(plain, want);
    assert_eq!(unpad(&plain).unwrap(), &[ty::END, 0, 0, 0, 1]);
    // Exactly a multiple already: p = 0.
    let data = [9u8; 256 - FRAME_HEADER - PAD_TRAILER];
    let plain = c.padded(&Frame::Data(1, &data)).unwrap();
    assert_eq!(plain.len(), 256);
    assert_eq!(&plain[254..], &[0, 0]);
    // One byte more: the next bucket, p = 255.
    let data = [9u8; 256 - FRAME_HEADER - PAD_TRAILER + 1];
    let plain = c.padded(&Frame::Data(1, &data)).unwrap();
    assert_eq!(plain.len(), 512);
    assert_eq!(&plain[510..], &[0x00, 0xff]);
}

#[test]
fn non_zero_padding_is_malformed() {
    for pos in [0usize, 5, 9] {
        let (mut c, mut s, id) = with_request(false);
        // DATA "x" then ten padding bytes, one of them non-zero, then p = 10.
        let mut plain = Frame::Data(id, b"x").encode();
        let mut padding = [0u8; 10];
        padding[pos] = 0x01;
        plain.extend_from_slice(&padding);
        plain.extend_from_slice(&10u16.to_be_bytes());
        let r = c.forge_plaintext(&plain);
        let res = handle(&mut s, &r);
        assert_fatal(&mut s, res, "MALFORMED_FRAME");
    }
}

#[test]
fn padding_length_too_large_is_malformed() {
    let (mut c, mut s, id) = with_request(false);
    let frame = Frame::Data(id, b"xyz").encode(); // 8 bytes
    // p counts more bytes than precede the trailer.
    for p in [9u16, 100, u16::MAX] {
        let (mut c2, mut s2, _) = with_request(false);
        let mut plain = frame.clone();
        plain.extend_from_slice(&p.to_be_bytes());
        let r = c2.forge_plaintext(&plain);
        let res = handle(&mut s2, &r);
        assert_fatal(&mut s2, res, "MALFORMED_FRAME");
    }
    // p = 8: all padding, no frame left.
    let mut plain = vec![0u8; 8];
    plain.extend_from_slice(&8u16.to_be_bytes());
    let r = c.forge_plaintext(&plain);
    let res = handle(&mut s, &r);
    assert_fatal(&mut s, res, "MALFORMED_FRAME");
}

#[test]
fn unpadded_and_oddly_padded_records_are_accepted() {
    // The receiver does not enforce the sender's granularity: p = 0 and p = 3 are fine.
    let (mut c, mut s, id) = with_request(false);
    inject_bytes(&mut c, &mut s, &Frame::Data(id, b"ab").encode()).unwrap();
    let mut plain = Frame::Data(id, b"cd").encode();
    plain.extend_from_slice(&[0, 0, 0, 0, 3]);
    let r = c.forge_plaintext(&plain);
    s.handle_record(&r).unwrap();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Data {
                id,
                data: b"ab".to_vec()
            },
            Event::Data {
                id,
                data: b"cd".to_vec()
            }
        ]
    );
}

#[test]
fn short_plaintexts_are_rejected() {
    // A record shorter than header + trailer + tag is not even decrypted.
    let (mut c, mut s) = pair();
    let r = c.forge_plaintext(&[ty::END, 0, 0, 0, 1, 0]);
    assert_eq!(r.len(), MIN_RECORD - 1);
    let res = handle(&mut s, &r);
    assert_fatal(&mut s, res, "RECORD_AUTH_FAILED");
}

#[test]
fn padding_is_capped_by_max_record() {
    for (max_record, pad_to) in [
        (1000usize, 256usize),
        (300, 256),
        (65535, 4096),
        (512, 1 << 20),
    ] {
        let limits = Limits {
            max_record,
            pad_to,
            ..Limits::default()
        };
        let (mut c, mut s) = pair_full(limits.clone(), limits);
        let id = c.open_stream(req()).unwrap();
        c.send_data(id, &vec![7u8; 3 * max_record + 17]).unwrap();
        c.finish(id).unwrap();
        let mut got = 0;
        while let Some(r) = c.poll_transmit() {
            assert!(r.len() <= max_record, "{} > {max_record}", r.len());
            let plain = r.len() - TAG_LEN;
            assert!(
                plain.is_multiple_of(pad_to) || r.len() == max_record,
                "{plain} neither a multiple of {pad_to} nor the cap"
            );
            s.handle_record(&r).unwrap();
            got += 1;
        }
        assert!(got >= 5);
        let body: usize = events(&mut s)
            .iter()
            .map(|e| match e {
                Event::Data { data, .. } => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(body, 3 * max_record + 17);
    }
}

#[test]
fn head_that_fits_only_without_trailer_is_refused() {
    let limits = Limits {
        max_record: 64,
        ..Limits::default()
    };
    let (mut c, _s) = pair_full(limits.clone(), limits);
    // Frame of exactly 64 - 16 = 48 bytes: fits the old format, not with the 2-byte trailer.
    let head = RequestHead {
        method: "GET".into(),
        path: format!("/{}", "a".repeat(48 - FRAME_HEADER - 1 - 3 - 2 - 1 - 1)),
        headers: vec![],
    };
    assert_eq!(Frame::RequestHead(1, head.clone()).encode().len(), 48);
    assert_eq!(c.open_stream(head).unwrap_err().code(), "RECORD_TOO_LARGE");
    assert_eq!(c.open_streams(), 0);
}

#[test]
fn max_record_below_minimum_is_refused() {
    let key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    let (_client, m1) = ClientHandshake::start(entropy(2), None).unwrap();
    let server = ServerHandshake::read_client_hello(&key, entropy(3), &m1).unwrap();
    let limits = Limits {
        max_record: MIN_RECORD,
        ..Limits::default()
    };
    assert_eq!(
        server.finish(b"c", b"e", limits).unwrap_err().code(),
        "INVALID_OPERATION"
    );
}

// ---------------------------------------------------------------------------------------
// Stream ids (§5)

#[test]
fn request_head_id_not_increasing() {
    // Reusing the open stream's id.
    let (mut c, mut s, id) = with_request(false);
    let r = inject(&mut c, &mut s, Frame::RequestHead(id, req()));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
    // Skipping ahead is allowed; repeating or going back afterwards is not.
    for bad in [5u32, 3, 1] {
        let (mut c, mut s, _) = with_request(false);
        inject(&mut c, &mut s, Frame::RequestHead(5, req())).unwrap();
        let r = inject(&mut c, &mut s, Frame::RequestHead(bad, req()));
        assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
    }
    // An id at or below a refused one is also a reuse.
    let (mut c, mut s) = pair_full(
        Limits::default(),
        Limits {
            max_concurrent_streams: 1,
            ..Limits::default()
        },
    );
    inject(&mut c, &mut s, Frame::RequestHead(1, req())).unwrap();
    inject(&mut c, &mut s, Frame::RequestHead(2, req())).unwrap(); // refused
    let r = inject(&mut c, &mut s, Frame::RequestHead(2, req()));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
}

#[test]
fn client_rejects_frames_for_never_opened_ids() {
    let frames: [fn(u32) -> Frame<'static>; 4] = [
        |id| Frame::ResponseHead(id, resp()),
        |id| Frame::Data(id, b"tok"),
        |id| Frame::End(id),
        |id| Frame::Cancel(id, CancelCode::Cancelled),
    ];
    for make in frames {
        // No stream at all.
        let (mut c, mut s) = pair();
        let r = inject(&mut s, &mut c, make(1));
        assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
        // One stream open: the next id is still unknown, and the open one is reset.
        let (mut c, mut s, id) = with_response(false);
        let r = inject(&mut s, &mut c, make(id + 1));
        assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
        let (mut c, mut s, _) = with_response(false);
        let r = inject(&mut s, &mut c, make(u32::MAX));
        assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
    }
}

#[test]
fn server_rejects_frames_for_never_opened_ids() {
    let frames: [fn(u32) -> Frame<'static>; 3] = [
        |id| Frame::Data(id, b"body"),
        |id| Frame::End(id),
        |id| Frame::Cancel(id, CancelCode::Cancelled),
    ];
    for make in frames {
        let (mut c, mut s) = pair();
        let r = inject(&mut c, &mut s, make(1));
        assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
        let (mut c, mut s, id) = with_request(false);
        let r = inject(&mut c, &mut s, make(id + 1));
        assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
    }
}

#[test]
fn cancel_for_never_opened_id_is_a_violation_but_for_closed_id_is_ignored() {
    let (mut c, mut s, id) = with_request(true);
    s.send_response(id, resp()).unwrap();
    s.finish(id).unwrap();
    pump(&mut s, &mut c);
    events(&mut c);
    assert_eq!(c.open_streams(), 0);
    assert_eq!(s.open_streams(), 0);
    // A cancel that crossed the END in flight: ignored on both sides.
    inject(&mut s, &mut c, Frame::Cancel(id, CancelCode::Cancelled)).unwrap();
    inject(&mut c, &mut s, Frame::Cancel(id, CancelCode::Cancelled)).unwrap();
    assert!(events(&mut c).is_empty() && events(&mut s).is_empty());
    assert!(c.is_open() && s.is_open());
    let r = inject(&mut s, &mut c, Frame::Cancel(id + 1, CancelCode::Internal));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
    let r = inject(&mut c, &mut s, Frame::Cancel(id + 7, CancelCode::Other(99)));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
}

// ---------------------------------------------------------------------------------------
// Stream order (§5)

#[test]
fn data_after_end_on_server() {
    let (mut c, mut s, id) = with_request(true);
    let r = inject(&mut c, &mut s, Frame::Data(id, b"late"));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
}

#[test]
fn data_after_end_on_client_with_request_open() {
    // The client has not finished its request, so the stream is still open after the
    // response's END: more response DATA is a violation, not a late frame.
    let (mut c, mut s, id) = with_response(false);
    s.finish(id).unwrap();
    pump(&mut s, &mut c);
    assert_eq!(events(&mut c), vec![Event::End { id }]);
    assert_eq!(c.open_streams(), 1);
    let r = inject(&mut s, &mut c, Frame::Data(id, b"late"));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
}

#[test]
fn frames_after_both_ends_are_late_frames() {
    // Both directions ended: the stream is closed locally, and a frame for it can no longer
    // be told apart from one that was in flight, so it is dropped.
    let (mut c, mut s, id) = with_response(true);
    s.finish(id).unwrap();
    pump(&mut s, &mut c);
    events(&mut c);
    assert_eq!(c.open_streams(), 0);
    inject(&mut s, &mut c, Frame::Data(id, b"late")).unwrap();
    inject(&mut s, &mut c, Frame::End(id)).unwrap();
    inject(&mut s, &mut c, Frame::ResponseHead(id, resp())).unwrap();
    assert!(events(&mut c).is_empty());
    assert!(c.is_open());
}

#[test]
fn end_twice() {
    // Server receives the request END twice.
    let (mut c, mut s, id) = with_request(true);
    let r = inject(&mut c, &mut s, Frame::End(id));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
    // Client (request still open) receives the response END twice.
    let (mut c, mut s, id) = with_response(false);
    s.finish(id).unwrap();
    pump(&mut s, &mut c);
    let r = inject(&mut s, &mut c, Frame::End(id));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
}

#[test]
fn second_response_head() {
    let (mut c, mut s, id) = with_response(false);
    let r = inject(&mut s, &mut c, Frame::ResponseHead(id, resp()));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
    // Also after some data.
    let (mut c, mut s, id) = with_response(true);
    s.send_data(id, b"data: x\n\n").unwrap();
    pump(&mut s, &mut c);
    let r = inject(&mut s, &mut c, Frame::ResponseHead(id, resp()));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
}

#[test]
fn request_head_sent_to_a_client() {
    let (mut c, mut s) = pair();
    let r = inject(&mut s, &mut c, Frame::RequestHead(1, req()));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
    let (mut c, mut s, id) = with_response(false);
    let r = inject(&mut s, &mut c, Frame::RequestHead(id + 1, req()));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
}

#[test]
fn response_head_sent_to_a_server() {
    let (mut c, mut s, id) = with_request(false);
    let r = inject(&mut c, &mut s, Frame::ResponseHead(id, resp()));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
    let (mut c, mut s) = pair();
    let r = inject(&mut c, &mut s, Frame::ResponseHead(1, resp()));
    assert_fatal(&mut s, r, "PROTOCOL_VIOLATION");
}

#[test]
fn data_or_end_before_response_head_on_client() {
    let (mut c, mut s, id) = with_request(true);
    let r = inject(&mut s, &mut c, Frame::Data(id, b"data: x\n\n"));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
    let (mut c, mut s, id) = with_request(true);
    let r = inject(&mut s, &mut c, Frame::End(id));
    assert_fatal(&mut c, r, "PROTOCOL_VIOLATION");
}

#[test]
fn late_frames_on_a_refused_stream_are_ignored() {
    let (mut c, mut s) = pair_full(
        Limits::default(),
        Limits {
            max_concurrent_streams: 1,
            ..Limits::default()
        },
    );
    let a = c.open_stream(req()).unwrap();
    let b = c.open_stream(req()).unwrap();
    // The client keeps sending on b before it learns that b was refused.
    c.send_data(b, b"body").unwrap();
    c.finish(b).unwrap();
    pump(&mut c, &mut s);
    assert_eq!(
        events(&mut s),
        vec![Event::Request { id: a, head: req() }],
        "b is refused, its DATA and END are dropped"
    );
    assert!(s.is_open());
    assert_eq!(s.open_streams(), 1);
    // Even a CANCEL and a second END for the refused id are dropped, not fatal.
    inject(&mut c, &mut s, Frame::End(b)).unwrap();
    inject(&mut c, &mut s, Frame::Cancel(b, CancelCode::Cancelled)).unwrap();
    assert!(events(&mut s).is_empty() && s.is_open());
    pump(&mut s, &mut c);
    assert_eq!(
        events(&mut c),
        vec![Event::Reset {
            id: b,
            code: CancelCode::Refused
        }]
    );
    // Stream a still works.
    c.finish(a).unwrap();
    pump(&mut c, &mut s);
    assert_eq!(events(&mut s), vec![Event::End { id: a }]);
}

// ---------------------------------------------------------------------------------------
// Frame syntax (§4)

#[test]
fn connection_frame_with_stream_id() {
    for id in [1u32, 0x8000_0000] {
        for t in [ty::REKEY, ty::CLOSE] {
            let (mut c, mut s, _) = with_request(false);
            let mut f = vec![t];
            f.extend_from_slice(&id.to_be_bytes());
            if t == ty::CLOSE {
                f.extend_from_slice(&0u32.to_be_bytes());
            }
            let r = inject_bytes(&mut c, &mut s, &f);
            assert_fatal(&mut s, r, "MALFORMED_FRAME");
        }
    }
}

#[test]
fn stream_frame_with_id_zero() {
    let frames: [Frame<'static>; 5] = [
        Frame::RequestHead(0, req()),
        Frame::ResponseHead(0, resp()),
        Frame::Data(0, b"x"),
        Frame::End(0),
        Frame::Cancel(0, CancelCode::Cancelled),
    ];
    for f in frames {
        // Both directions.
        let (mut c, mut s, _) = with_response(false);
        let r = inject(&mut c, &mut s, f.clone());
        assert_fatal(&mut s, r, "MALFORMED_FRAME");
        let (mut c, mut s, _) = with_response(false);
        let r = inject(&mut s, &mut c, f);
        assert_fatal(&mut c, r, "MALFORMED_FRAME");
    }
}

#[test]
fn unknown_frame_type() {
    for t in [0x00u8, 0x08, 0x42, 0xff] {
        let (mut c, mut s, id) = with_request(false);
        let mut f = vec![t];
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(b"payload");
        let r = inject_bytes(&mut c, &mut s, &f);
        assert_fatal(&mut s, r, "MALFORMED_FRAME");
    }
}

#[test]
fn empty_data() {
    let (mut c, mut s, id) = with_request(false);
    let r = inject(&mut c, &mut s, Frame::Data(id, b""));
    assert_fatal(&mut s, r, "MALFORMED_FRAME");
    let (mut c, mut s, id) = with_response(false);
    let r = inject(&mut s, &mut c, Frame::Data(id, b""));
    assert_fatal(&mut c, r, "MALFORMED_FRAME");
}

#[test]
fn trailing_bytes_after_a_frame() {
    // Heads, and the fixed-size frames.
    let cases: Vec<(bool, Vec<u8>)> = vec![
        (true, Frame::RequestHead(2, req()).encode()),
        (false, Frame::ResponseHead(1, resp()).encode()),
        (true, Frame::End(1).encode()),
        (true, Frame::Cancel(1, CancelCode::Cancelled).encode()),
        (true, Frame::Rekey.encode()),
        (true, Frame::Close(0).encode()),
    ];
    for (to_server, mut f) in cases {
        f.push(0x00); // even a zero byte: padding is only what the trailer counts
        let (mut c, mut s, _) = with_request(false);
        if to_server {
            let r = inject_bytes(&mut c, &mut s, &f);
            assert_fatal(&mut s, r, "MALFORMED_FRAME");
        } else {
            let r = inject_bytes(&mut s, &mut c, &f);
            assert_fatal(&mut c, r, "MALFORMED_FRAME");
        }
    }
}

#[test]
fn truncated_frames() {
    let full = Frame::RequestHead(2, req()).encode();
    // From header only (the shortest plaintext that is decrypted) to one byte short.
    for cut in [FRAME_HEADER, 6, 10, full.len() - 1] {
        let (mut c, mut s, _) = with_request(false);
        let r = inject_bytes(&mut c, &mut s, &full[..cut]);
        assert_fatal(&mut s, r, "MALFORMED_FRAME");
    }
    let (mut c, mut s, id) = with_request(false);
    let mut f = Frame::Cancel(id, CancelCode::Cancelled).encode();
    f.pop();
    let r = inject_bytes(&mut c, &mut s, &f);
    assert_fatal(&mut s, r, "MALFORMED_FRAME");
}

#[test]
fn non_ascii_in_heads() {
    // Replace one byte of a known field of an encoded head with a non-ASCII byte.
    let req_frame = Frame::RequestHead(2, req()).encode();
    let text = |needle: &[u8], f: &[u8]| {
        f.windows(needle.len())
            .position(|w| w == needle)
            .expect("field present")
    };
    for (needle, byte) in [
        (&b"POST"[..], 0xC3u8),
        (b"/v1/chat", 0x80),
        (b"content-type", 0xE9),
        (b"application/json", 0xFF),
        (b"application/json", 0x7F), // DEL: ASCII but not allowed in a value
    ] {
        let mut f = req_frame.clone();
        let at = text(needle, &f) + 1;
        f[at] = byte;
        let (mut c, mut s, _) = with_request(false);
        let r = inject_bytes(&mut c, &mut s, &f);
        assert_fatal(&mut s, r, "MALFORMED_FRAME");
    }
    let resp_frame = Frame::ResponseHead(1, resp()).encode();
    for (needle, byte) in [(&b"content-type"[..], 0xC3u8), (b"event-stream", 0xA0)] {
        let mut f = resp_frame.clone();
        let at = text(needle, &f);
        f[at] = byte;
        let (mut c, mut s, _) = with_request(false);
        let r = inject_bytes(&mut s, &mut c, &f);
        assert_fatal(&mut c, r, "MALFORMED_FRAME");
    }
}

#[test]
fn invalid_heads_from_the_peer() {
    let bad_req = [
        RequestHead {
            method: "get".into(),
            path: "/".into(),
            headers: vec![],
        },
        RequestHead {
            method: "GET".into(),
            path: "/a b".into(),
            headers: vec![],
        },
        RequestHead {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![("x".into(), "a\r\nb".into())],
        },
        RequestHead {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![("X-Upper".into(), "v".into())],
        },
    ];
    for h in bad_req {
        let (mut c, mut s) = pair();
        let r = inject(&mut c, &mut s, Frame::RequestHead(1, h));
        assert_fatal(&mut s, r, "MALFORMED_FRAME");
    }
    for status in [0u16, 99, 600, u16::MAX] {
        let (mut c, mut s, id) = with_request(true);
        let r = inject(
            &mut s,
            &mut c,
            Frame::ResponseHead(
                id,
                ResponseHead {
                    status,
                    headers: vec![],
                },
            ),
        );
        assert_fatal(&mut c, r, "MALFORMED_FRAME");
    }
}

#[test]
fn rekey_and_close_from_the_peer() {
    // A forged REKEY switches the receiving key: the peer's next record under the old key
    // fails, as for any desynchronised sender.
    let (mut c, mut s, id) = with_request(false);
    inject(&mut c, &mut s, Frame::Rekey).unwrap();
    assert_eq!(s.rekey_counts(), (0, 1));
    c.send_data(id, b"x").unwrap();
    let r = c.poll_transmit().unwrap();
    let res = handle(&mut s, &r);
    assert_fatal(&mut s, res, "RECORD_AUTH_FAILED");
    // CLOSE resets open streams and ends the connection gracefully.
    let (mut c, mut s, id) = with_request(false);
    inject(&mut c, &mut s, Frame::Close(7)).unwrap();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Reset {
                id,
                code: CancelCode::ConnectionLost
            },
            Event::Closed { code: 7 }
        ]
    );
    assert!(!s.is_open());
    assert_eq!(
        inject(&mut c, &mut s, Frame::Data(id, b"x")),
        Err(WireError::Closed)
    );
}

// ---------------------------------------------------------------------------------------
// Arbitrary plaintexts

/// Documented codes a connection may return from `handle_record` for a correctly encrypted
/// record (plus CONNECTION_CLOSED once it is no longer open).
const PEER_ERROR_CODES: [&str; 3] = ["MALFORMED_FRAME", "PROTOCOL_VIOLATION", "CONNECTION_CLOSED"];

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    // Mostly near-valid frames (a real type byte, small ids), sometimes pure noise, then a
    // padding that is usually well formed.
    let frame = (
        prop_oneof![1u8..=7, any::<u8>()],
        prop_oneof![0u32..4, any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(t, id, payload)| {
            let mut f = vec![t];
            f.extend_from_slice(&id.to_be_bytes());
            f.extend(payload);
            f
        });
    let valid = (0u32..4, 0usize..3).prop_map(|(id, which)| match which {
        0 => Frame::RequestHead(id, req()).encode(),
        1 => Frame::ResponseHead(id, resp()).encode(),
        _ => Frame::End(id).encode(),
    });
    let body = prop_oneof![
        3 => frame,
        2 => valid,
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ];
    (body, 0usize..20, any::<bool>(), any::<u16>()).prop_map(|(mut f, p, good, junk)| {
        if good {
            f.resize(f.len() + p, 0);
            f.extend_from_slice(&(p as u16).to_be_bytes());
        } else {
            f.extend_from_slice(&junk.to_be_bytes());
        }
        f
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_plaintexts_never_panic(
        server_side in any::<bool>(),
        open_first in any::<bool>(),
        plains in proptest::collection::vec(plaintext(), 1..12),
    ) {
        let (mut c, mut s) = pair_full(
            Limits::default(),
            Limits { max_concurrent_streams: 2, max_request_body: 64, ..Limits::default() },
        );
        if open_first {
            let id = c.open_stream(req()).unwrap();
            pump(&mut c, &mut s);
            s.send_response(id, resp()).unwrap();
            pump(&mut s, &mut c);
        }
        let (from, to) = if server_side { (&mut c, &mut s) } else { (&mut s, &mut c) };
        for plain in plains {
            if plain.len() + TAG_LEN < MIN_RECORD {
                continue;
            }
            let was_open = to.is_open();
            let before = to.rekeys_received;
            let rec = from.forge_plaintext(&plain);
            match to.handle_record(&rec) {
                Ok(()) => {
                    prop_assert!(was_open);
                    // Keep the forging sender in step when the plaintext was a REKEY.
                    if to.rekeys_received > before {
                        from.transport.rekey_outgoing();
                    }
                }
                Err(e) => {
                    prop_assert!(PEER_ERROR_CODES.contains(&e.code()), "{e:?}");
                    prop_assert!(!to.is_open());
                    if was_open {
                        prop_assert!(e.code() != "CONNECTION_CLOSED");
                        prop_assert_eq!(to.open_streams(), 0);
                    }
                }
            }
            while to.poll_event().is_some() {}
            while to.poll_transmit().is_some() {}
        }
    }

    #[test]
    fn padding_round_trips(pad_to in 1usize..2000, sizes in proptest::collection::vec(1usize..3000, 1..8)) {
        let limits = Limits { pad_to, ..Limits::default() };
        let (mut c, mut s) = pair_full(limits.clone(), limits);
        let id = c.open_stream(req()).unwrap();
        pump(&mut c, &mut s);
        events(&mut s);
        for n in sizes {
            let body = vec![0xA5u8; n];
            c.send_data(id, &body).unwrap();
            let r = c.poll_transmit().unwrap();
            let unpadded = FRAME_HEADER + n + PAD_TRAILER;
            prop_assert_eq!(r.len() - TAG_LEN, unpadded.div_ceil(pad_to) * pad_to);
            s.handle_record(&r).unwrap();
            prop_assert_eq!(events(&mut s), vec![Event::Data { id, data: body }]);
        }
    }
}
