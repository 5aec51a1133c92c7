//! Behaviour and negative tests for the channel state machines.

use sotto_wire::*;

fn entropy(tag: u8) -> [u8; 32] {
    let mut e = [0u8; 32];
    for (i, b) in e.iter_mut().enumerate() {
        *b = tag.wrapping_mul(31).wrapping_add(i as u8);
    }
    e
}

fn pair_with(limits: Limits, nonce: Option<[u8; 32]>) -> (Connection, Connection) {
    pair_full(limits.clone(), limits, nonce, 0)
}

fn pair_full(
    client_limits: Limits,
    server_limits: Limits,
    nonce: Option<[u8; 32]>,
    seed: u8,
) -> (Connection, Connection) {
    let server_key = StaticKeypair::from_entropy(entropy(1 + seed)).unwrap();
    let (client, m1) = ClientHandshake::start(entropy(2 + seed), nonce).unwrap();
    let server = ServerHandshake::read_client_hello(&server_key, entropy(3 + seed), &m1).unwrap();
    assert_eq!(server.client_nonce(), nonce.as_ref());
    let (m2, sconn) = server
        .finish(b"claims", b"evidence", server_limits)
        .unwrap();
    let hello = client.read_server_hello(&m2).unwrap();
    assert_eq!(hello.server_static(), server_key.public());
    assert_eq!(hello.claims(), b"claims");
    assert_eq!(hello.evidence(), b"evidence");
    (hello.accept(client_limits).unwrap(), sconn)
}

fn pair() -> (Connection, Connection) {
    pair_with(Limits::default(), None)
}

/// Moves every pending record from `from` to `to`, returning the first error.
fn pump(from: &mut Connection, to: &mut Connection) -> Result<usize, WireError> {
    let mut n = 0;
    while let Some(r) = from.poll_transmit() {
        to.handle_record(&r)?;
        n += 1;
    }
    Ok(n)
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

#[test]
fn request_response_round_trip() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    c.send_data(id, b"{\"hello\":1}").unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Request { id, head: req() },
            Event::Data {
                id,
                data: b"{\"hello\":1}".to_vec()
            },
            Event::End { id }
        ]
    );
    s.send_response(id, resp()).unwrap();
    s.send_data(id, b"data: a\n\n").unwrap();
    s.send_data(id, b"data: b\n\n").unwrap();
    s.finish(id).unwrap();
    pump(&mut s, &mut c).unwrap();
    let ev = events(&mut c);
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[0], Event::Response { id, head: resp() });
    assert_eq!(ev[3], Event::End { id });
    assert_eq!(c.open_streams(), 0);
    assert_eq!(s.open_streams(), 0);
}

#[test]
fn large_bodies_are_split_and_reassembled() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.send_data(id, &body).unwrap();
    c.finish(id).unwrap();
    let records = pump(&mut c, &mut s).unwrap();
    assert!(
        records >= 5,
        "body must span several records, got {records}"
    );
    let mut got = Vec::new();
    for e in events(&mut s) {
        if let Event::Data { data, .. } = e {
            got.extend(data);
        }
    }
    assert_eq!(got, body);
}

#[test]
fn multiplexed_streams_are_independent() {
    let (mut c, mut s) = pair();
    let a = c.open_stream(req()).unwrap();
    let b = c.open_stream(req()).unwrap();
    c.finish(b).unwrap();
    c.finish(a).unwrap();
    pump(&mut c, &mut s).unwrap();
    events(&mut s);
    s.send_response(b, resp()).unwrap();
    s.send_response(a, resp()).unwrap();
    s.send_data(a, b"A").unwrap();
    s.send_data(b, b"B").unwrap();
    s.finish(a).unwrap();
    pump(&mut s, &mut c).unwrap();
    let ev = events(&mut c);
    assert!(ev.contains(&Event::Data {
        id: a,
        data: b"A".to_vec()
    }));
    assert!(ev.contains(&Event::Data {
        id: b,
        data: b"B".to_vec()
    }));
    assert!(ev.contains(&Event::End { id: a }));
    assert!(!ev.contains(&Event::End { id: b }));
    assert_eq!(c.open_streams(), 1);
}

#[test]
fn tampered_record_is_fatal() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    let mut r = c.poll_transmit().unwrap();
    r[7] ^= 0x01;
    assert_eq!(s.handle_record(&r), Err(WireError::Decrypt));
    assert!(!s.is_open());
    // Nothing further is accepted, even genuine records.
    c.finish(id).unwrap();
    let r2 = c.poll_transmit().unwrap();
    assert_eq!(s.handle_record(&r2), Err(WireError::Closed));
}

#[test]
fn replayed_record_is_rejected() {
    let (mut c, mut s) = pair();
    c.open_stream(req()).unwrap();
    let r = c.poll_transmit().unwrap();
    s.handle_record(&r).unwrap();
    assert_eq!(
        s.handle_record(&r).unwrap_err().code(),
        "RECORD_AUTH_FAILED"
    );
}

#[test]
fn reordered_and_dropped_records_are_rejected() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    c.send_data(id, b"x").unwrap();
    let r1 = c.poll_transmit().unwrap();
    let r2 = c.poll_transmit().unwrap();
    // Deliver the second before the first (reorder == drop of the first).
    assert_eq!(s.handle_record(&r2), Err(WireError::Decrypt));
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    c.send_data(id, b"x").unwrap();
    let _r1 = c.poll_transmit();
    let r2b = c.poll_transmit().unwrap();
    assert_eq!(s.handle_record(&r2b), Err(WireError::Decrypt));
    drop(r1);
}

#[test]
fn record_from_another_session_is_rejected() {
    let (mut c1, _s1) = pair();
    let (_c2, mut s2) = pair_full(Limits::default(), Limits::default(), None, 10);
    c1.open_stream(req()).unwrap();
    let r = c1.poll_transmit().unwrap();
    assert_eq!(s2.handle_record(&r), Err(WireError::Decrypt));
}

#[test]
fn truncated_stream_is_reported() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    events(&mut s);
    s.send_response(id, resp()).unwrap();
    s.send_data(id, b"partial").unwrap();
    pump(&mut s, &mut c).unwrap();
    events(&mut c);
    // The relay cuts the connection before END: the client must not take it as complete.
    let err = c.transport_closed().unwrap_err();
    assert_eq!(err.code(), "PROTOCOL_VIOLATION");
    assert_eq!(
        events(&mut c),
        vec![Event::Reset {
            id,
            code: CancelCode::ConnectionLost
        }]
    );
}

#[test]
fn graceful_close_then_eof_is_clean() {
    let (mut c, mut s) = pair();
    s.close(0).unwrap();
    pump(&mut s, &mut c).unwrap();
    assert_eq!(events(&mut c), vec![Event::Closed { code: 0 }]);
    assert!(c.transport_closed().is_ok());
}

#[test]
fn oversized_record_is_rejected() {
    let limits = Limits {
        max_record: 1024,
        ..Limits::default()
    };
    let (_c, mut s) = pair_with(limits, None);
    let big = vec![0u8; 2000];
    assert_eq!(
        s.handle_record(&big).unwrap_err().code(),
        "RECORD_TOO_LARGE"
    );
    let (_c, mut s) = pair();
    let huge = vec![0u8; 70_000];
    assert_eq!(
        s.handle_record(&huge).unwrap_err().code(),
        "RECORD_TOO_LARGE"
    );
}

#[test]
fn short_record_is_rejected() {
    let (_c, mut s) = pair();
    assert_eq!(s.handle_record(&[1, 2, 3]), Err(WireError::Decrypt));
}

#[test]
fn request_body_limit_resets_stream_not_connection() {
    let limits = Limits {
        max_request_body: 10,
        ..Limits::default()
    };
    let (mut c, mut s) = pair_with(limits, None);
    let id = c.open_stream(req()).unwrap();
    c.send_data(id, &[7u8; 11]).unwrap();
    pump(&mut c, &mut s).unwrap();
    let ev = events(&mut s);
    assert_eq!(
        ev.last(),
        Some(&Event::Reset {
            id,
            code: CancelCode::BodyTooLarge
        })
    );
    assert!(s.is_open());
    pump(&mut s, &mut c).unwrap();
    assert_eq!(
        events(&mut c),
        vec![Event::Reset {
            id,
            code: CancelCode::BodyTooLarge
        }]
    );
    // The connection still works for the next stream.
    let id2 = c.open_stream(req()).unwrap();
    c.finish(id2).unwrap();
    pump(&mut c, &mut s).unwrap();
    assert!(matches!(events(&mut s)[0], Event::Request { id, .. } if id == id2));
}

#[test]
fn response_body_limit_on_client() {
    let limits = Limits {
        max_response_body: 4,
        ..Limits::default()
    };
    let (mut c, mut s) = pair_with(limits, None);
    let id = c.open_stream(req()).unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    s.send_response(id, resp()).unwrap();
    s.send_data(id, b"12345").unwrap();
    pump(&mut s, &mut c).unwrap();
    assert_eq!(
        events(&mut c).last(),
        Some(&Event::Reset {
            id,
            code: CancelCode::BodyTooLarge
        })
    );
}

#[test]
fn concurrent_stream_limit() {
    let limits = Limits {
        max_concurrent_streams: 2,
        ..Limits::default()
    };
    let (mut c, mut s) = pair_with(limits.clone(), None);
    c.open_stream(req()).unwrap();
    c.open_stream(req()).unwrap();
    assert_eq!(c.open_stream(req()).unwrap_err().code(), "TOO_MANY_STREAMS");
    pump(&mut c, &mut s).unwrap();
    // A client with a higher limit than the server gets its extra stream refused.
    let (mut c, mut s) = pair_full(
        Limits {
            max_concurrent_streams: 5,
            ..limits.clone()
        },
        limits,
        None,
        0,
    );
    let ids: Vec<u32> = (0..3).map(|_| c.open_stream(req()).unwrap()).collect();
    pump(&mut c, &mut s).unwrap();
    assert_eq!(events(&mut s).len(), 2);
    pump(&mut s, &mut c).unwrap();
    assert_eq!(
        events(&mut c),
        vec![Event::Reset {
            id: ids[2],
            code: CancelCode::Refused
        }]
    );
}

#[test]
fn cancel_stops_stream_and_late_frames_are_ignored() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    events(&mut s);
    s.send_response(id, resp()).unwrap();
    s.send_data(id, b"tok").unwrap();
    // Client cancels while the server's frames are in flight.
    c.cancel(id, CancelCode::Cancelled).unwrap();
    pump(&mut s, &mut c).unwrap();
    assert!(
        events(&mut c).is_empty(),
        "late frames for a cancelled stream are dropped"
    );
    pump(&mut c, &mut s).unwrap();
    assert_eq!(
        events(&mut s),
        vec![Event::Reset {
            id,
            code: CancelCode::Cancelled
        }]
    );
    assert_eq!(s.send_data(id, b"more"), Err(WireError::UnknownStream(id)));
    assert!(c.is_open() && s.is_open());
}

#[test]
fn rekey_on_long_streams() {
    let limits = Limits {
        rekey_after_records: 10,
        ..Limits::default()
    };
    let (mut c, mut s) = pair_with(limits, None);
    let id = c.open_stream(req()).unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    s.send_response(id, resp()).unwrap();
    for i in 0..95u32 {
        s.send_data(id, format!("chunk {i}").as_bytes()).unwrap();
    }
    s.finish(id).unwrap();
    pump(&mut s, &mut c).unwrap();
    let ev = events(&mut c);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Data { .. }))
            .count(),
        95
    );
    assert_eq!(ev.last(), Some(&Event::End { id }));
    let (sent, _) = s.rekey_counts();
    let (_, received) = c.rekey_counts();
    assert!(sent >= 9, "expected rekeys, got {sent}");
    assert_eq!(sent, received);
}

#[test]
fn rekey_by_bytes() {
    let limits = Limits {
        rekey_after_bytes: 1000,
        ..Limits::default()
    };
    let (mut c, mut s) = pair_with(limits, None);
    let id = c.open_stream(req()).unwrap();
    c.send_data(id, &[1u8; 5000]).unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    assert!(c.rekey_counts().0 >= 1);
    assert_eq!(c.rekey_counts().0, s.rekey_counts().1);
}

#[test]
fn server_cannot_open_and_client_cannot_respond() {
    let (mut c, mut s) = pair();
    assert_eq!(
        s.open_stream(req()).unwrap_err().code(),
        "INVALID_OPERATION"
    );
    let id = c.open_stream(req()).unwrap();
    assert_eq!(
        c.send_response(id, resp()).unwrap_err().code(),
        "INVALID_OPERATION"
    );
}

#[test]
fn invalid_heads_are_refused_locally() {
    let (mut c, _s) = pair();
    let bad = [
        RequestHead {
            method: "post".into(),
            path: "/".into(),
            headers: vec![],
        },
        RequestHead {
            method: "GET".into(),
            path: "no-slash".into(),
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
            headers: vec![("X-Up".into(), "v".into())],
        },
        RequestHead {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![("x".into(), "a\r\nb".into())],
        },
    ];
    for h in bad {
        assert_eq!(c.open_stream(h).unwrap_err().code(), "MALFORMED_FRAME");
    }
}

#[test]
fn handshake_rejects_tampered_hello() {
    let server_key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    // Tamper with the client's cleartext nonce: the server reads it, but its reply is bound
    // to the tampered transcript, so the client cannot decrypt it.
    let (client, mut m1) = ClientHandshake::start(entropy(2), Some([5; 32])).unwrap();
    let last = m1.len() - 1;
    m1[last] ^= 1;
    let server = ServerHandshake::read_client_hello(&server_key, entropy(3), &m1).unwrap();
    let (m2, _) = server.finish(b"c", b"e", Limits::default()).unwrap();
    assert_eq!(
        client.read_server_hello(&m2).unwrap_err().code(),
        "HANDSHAKE_FAILED"
    );
}

#[test]
fn handshake_rejects_tampered_reply() {
    let server_key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    for pos in [0usize, 40, 70, 100] {
        let (client, m1) = ClientHandshake::start(entropy(2), None).unwrap();
        let server = ServerHandshake::read_client_hello(&server_key, entropy(3), &m1).unwrap();
        let (mut m2, _) = server
            .finish(b"claims", b"evidence", Limits::default())
            .unwrap();
        m2[pos] ^= 0x80;
        assert_eq!(
            client.read_server_hello(&m2).unwrap_err().code(),
            "HANDSHAKE_FAILED",
            "byte {pos}"
        );
    }
    let (client, _) = ClientHandshake::start(entropy(2), None).unwrap();
    assert!(client.read_server_hello(&[0u8; 10]).is_err());
}

#[test]
fn handshake_rejects_bad_client_hello() {
    let server_key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    assert!(ServerHandshake::read_client_hello(&server_key, entropy(3), &[1, 2]).is_err());
    assert_eq!(
        ServerHandshake::read_client_hello(&server_key, entropy(3), &[0u8; 500])
            .unwrap_err()
            .code(),
        "MALFORMED_HELLO"
    );
    // A valid ephemeral key with an unknown version.
    let mut m1 = ClientHandshake::start(entropy(2), None).unwrap().1;
    m1[32] = 9;
    assert_eq!(
        ServerHandshake::read_client_hello(&server_key, entropy(3), &m1).unwrap_err(),
        WireError::UnsupportedVersion(9)
    );
    m1[32] = 1;
    m1[33] = 0x80;
    assert_eq!(
        ServerHandshake::read_client_hello(&server_key, entropy(3), &m1)
            .unwrap_err()
            .code(),
        "MALFORMED_HELLO"
    );
}

#[test]
fn hello_codec_is_strict() {
    let h = ClientHello {
        version: 1,
        nonce: Some([3; 32]),
    };
    assert_eq!(ClientHello::decode(&h.encode()).unwrap(), h);
    assert!(ClientHello::decode(&[1, 1, 0]).is_err());
    assert!(ClientHello::decode(&[1, 0, 0]).is_err());
    assert!(ClientHello::decode(&[]).is_err());
}

#[test]
fn report_data_binds_key_nonce_and_claims() {
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let base = report_data(&k1, None, b"c");
    assert_ne!(base, report_data(&k2, None, b"c"));
    assert_ne!(base, report_data(&k1, Some(&[0; 32]), b"c"));
    assert_ne!(base, report_data(&k1, None, b"d"));
    assert_eq!(base, report_data(&k1, None, b"c"));
}

#[test]
fn expected_report_data_uses_the_proven_key() {
    let server_key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    let nonce = [7u8; 32];
    let (client, m1) = ClientHandshake::start(entropy(2), Some(nonce)).unwrap();
    let server = ServerHandshake::read_client_hello(&server_key, entropy(3), &m1).unwrap();
    let (m2, _) = server.finish(b"claims", b"ev", Limits::default()).unwrap();
    let hello = client.read_server_hello(&m2).unwrap();
    assert_eq!(
        hello.expected_report_data(),
        report_data(server_key.public(), Some(&nonce), b"claims")
    );
}

#[test]
fn oversized_server_hello_is_refused() {
    let server_key = StaticKeypair::from_entropy(entropy(1)).unwrap();
    let (_client, m1) = ClientHandshake::start(entropy(2), None).unwrap();
    let server = ServerHandshake::read_client_hello(&server_key, entropy(3), &m1).unwrap();
    let ev = vec![0u8; 70_000];
    assert_eq!(
        server
            .finish(b"", &ev, Limits::default())
            .unwrap_err()
            .code(),
        "RECORD_TOO_LARGE"
    );
}

#[test]
fn operations_after_close_fail() {
    let (mut c, mut s) = pair();
    c.close(0).unwrap();
    assert_eq!(c.open_stream(req()), Err(WireError::Closed));
    pump(&mut c, &mut s).unwrap();
    assert_eq!(events(&mut s), vec![Event::Closed { code: 0 }]);
    assert!(!s.is_open());
}

// ---------------------------------------------------------------------------------------
// Record padding (docs/protocol.md §3)

const TAG: usize = 16;

/// Record length minus the AEAD tag: the padded plaintext length.
fn plain_len(r: &[u8]) -> usize {
    r.len() - TAG
}

#[test]
fn record_sizes_are_multiples_of_pad_to() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    for n in 1..=600usize {
        c.send_data(id, &vec![b'x'; n]).unwrap();
    }
    c.finish(id).unwrap();
    let mut sizes = Vec::new();
    while let Some(r) = c.poll_transmit() {
        assert_eq!(plain_len(&r) % 256, 0, "client record of {} bytes", r.len());
        sizes.push(r.len());
        s.handle_record(&r).unwrap();
    }
    assert_eq!(sizes.len(), 602);
    // head; DATA 1..=249 (frame + trailer <= 256); DATA 250..=505; DATA 506..=600; END.
    assert_eq!(sizes[0], 256 + TAG);
    assert!(sizes[1..=249].iter().all(|&n| n == 256 + TAG));
    assert!(sizes[250..=505].iter().all(|&n| n == 512 + TAG));
    assert!(sizes[506..=600].iter().all(|&n| n == 768 + TAG));
    assert_eq!(sizes[601], 256 + TAG);
    let ev = events(&mut s);
    assert_eq!(ev.len(), 602);
    for (i, e) in ev[1..601].iter().enumerate() {
        assert_eq!(
            e,
            &Event::Data {
                id,
                data: vec![b'x'; i + 1]
            }
        );
    }
    // Server side: response head, data, end, cancel, close.
    s.send_response(id, resp()).unwrap();
    s.send_data(id, b"data: {\"choices\":[]}\n\n").unwrap();
    s.finish(id).unwrap();
    let id2 = c.open_stream(req()).unwrap();
    pump(&mut c, &mut s).unwrap();
    s.cancel(id2, CancelCode::Internal).unwrap();
    s.close(0).unwrap();
    let mut n = 0;
    while let Some(r) = s.poll_transmit() {
        assert_eq!(r.len(), 256 + TAG, "server record {n}");
        c.handle_record(&r).unwrap();
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn token_lengths_are_hidden() {
    let (mut c, mut s) = pair();
    let id = c.open_stream(req()).unwrap();
    c.finish(id).unwrap();
    pump(&mut c, &mut s).unwrap();
    s.send_response(id, resp()).unwrap();
    s.poll_transmit().unwrap();
    s.send_data(id, &[b'a'; 1]).unwrap();
    s.send_data(id, &[b'b'; 40]).unwrap();
    let r1 = s.poll_transmit().unwrap();
    let r40 = s.poll_transmit().unwrap();
    assert_eq!(r1.len(), r40.len());
    assert_eq!(r1.len(), 256 + TAG);
    // Realistic SSE chunks (the OpenAI chunk format, as the enclave sends them) for tokens
    // of different lengths all make records of the same size.
    let sizes: Vec<usize> = ["a", " the", "ing", " extraordinary", "\\n\\n", " 1984"]
        .iter()
        .map(|tok| {
            let ev = format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{tok}\"}},\"finish_reason\":null,\
                 \"index\":0,\"logprobs\":null}}],\"created\":1700000000,\
                 \"id\":\"chatcmpl-0123456789abcdef01234567\",\"model\":\"stories260K\",\
                 \"object\":\"chat.completion.chunk\"}}\n\n"
            );
            s.send_data(id, ev.as_bytes()).unwrap();
            s.poll_transmit().unwrap().len()
        })
        .collect();
    assert!(sizes.iter().all(|&n| n == 272), "{sizes:?}");
}

#[test]
fn pad_to_one_disables_padding() {
    for pad_to in [0usize, 1] {
        let limits = Limits {
            pad_to,
            ..Limits::default()
        };
        let (mut c, mut s) = pair_with(limits, None);
        let id = c.open_stream(req()).unwrap();
        pump(&mut c, &mut s).unwrap();
        for n in [1usize, 40, 255, 1000] {
            c.send_data(id, &vec![1u8; n]).unwrap();
            let r = c.poll_transmit().unwrap();
            // type + id + data + u16 padding length + tag.
            assert_eq!(r.len(), 5 + n + 2 + TAG);
            s.handle_record(&r).unwrap();
        }
        c.finish(id).unwrap();
        let r = c.poll_transmit().unwrap();
        assert_eq!(r.len(), 5 + 2 + TAG);
        s.handle_record(&r).unwrap();
    }
}

#[test]
fn padded_peer_and_unpadded_peer_interoperate() {
    // Padding is the sender's choice: a receiver accepts any amount.
    let (mut c, mut s) = pair_full(
        Limits {
            pad_to: 1,
            ..Limits::default()
        },
        Limits {
            pad_to: 1024,
            ..Limits::default()
        },
        None,
        0,
    );
    let id = c.open_stream(req()).unwrap();
    c.send_data(id, b"ping").unwrap();
    c.finish(id).unwrap();
    assert_eq!(pump(&mut c, &mut s).unwrap(), 3);
    events(&mut s);
    s.send_response(id, resp()).unwrap();
    s.send_data(id, b"pong").unwrap();
    s.finish(id).unwrap();
    let mut n = 0;
    while let Some(r) = s.poll_transmit() {
        assert_eq!(r.len(), 1024 + TAG);
        c.handle_record(&r).unwrap();
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(
        events(&mut c)[1],
        Event::Data {
            id,
            data: b"pong".to_vec()
        }
    );
}

#[test]
fn max_size_chunks_fit_the_record_limit() {
    for max_record in [MAX_RECORD, 1024, 1000, 300] {
        let limits = Limits {
            max_record,
            ..Limits::default()
        };
        let (mut c, mut s) = pair_with(limits, None);
        let id = c.open_stream(req()).unwrap();
        pump(&mut c, &mut s).unwrap();
        let per_frame = max_record - TAG - 2 - 5;
        assert_eq!(
            per_frame,
            sotto_wire::conn::MAX_DATA_PER_FRAME - (MAX_RECORD - max_record)
        );
        let body: Vec<u8> = (0..3 * per_frame + 1).map(|i| (i % 253) as u8).collect();
        c.send_data(id, &body).unwrap();
        let records: Vec<Vec<u8>> = std::iter::from_fn(|| c.poll_transmit()).collect();
        assert_eq!(records.len(), 4, "max_record {max_record}");
        for r in &records[..3] {
            // A full chunk fills the record exactly, with no padding.
            assert_eq!(r.len(), max_record);
        }
        assert!(records[3].len() <= max_record);
        assert_eq!(plain_len(&records[3]) % 256, 0);
        for r in &records {
            s.handle_record(r).unwrap();
        }
        let mut got = Vec::new();
        for e in events(&mut s) {
            if let Event::Data { data, .. } = e {
                got.extend(data);
            }
        }
        assert_eq!(got, body);
    }
}

#[test]
fn debug_output_never_shows_user_data() {
    let head = RequestHead {
        method: "POST".into(),
        path: "/v1/secret-path".into(),
        headers: vec![("authorization".into(), "Bearer hunter2".into())],
    };
    let shown = format!("{head:?}");
    assert!(
        !shown.contains("secret-path") && !shown.contains("hunter2"),
        "{shown}"
    );
    let ev = Event::Data {
        id: 1,
        data: b"my private prompt".to_vec(),
    };
    let shown = format!("{ev:?}");
    assert!(
        !shown.contains("private") && shown.contains("17"),
        "{shown}"
    );
}
