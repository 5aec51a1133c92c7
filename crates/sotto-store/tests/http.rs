//! The HTTP API on both backends: auth, authorisation, optimistic concurrency, sync,
//! deletion, quotas and limits, malformed input. Every rejection is checked to change
//! nothing.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use base64ct::{Base64, Encoding};
use common::{Db, Device, TestServer, expect_error, failure, new_key, public_key_b64};
use reqwest::Method;
use serde_json::{Value, json};
use sotto_store::Limits;

both_backends!(
    account_auth_and_logout,
    blobs_round_trip_byte_for_byte,
    optimistic_concurrency,
    concurrent_http_writers,
    sync_cursor_pagination,
    sync_during_concurrent_writes,
    deletion,
    size_limits_and_quotas,
    malformed_requests,
    unknown_account_and_credential,
    bad_auth,
    replayed_signatures_are_refused,
    wrong_account_is_forbidden,
    device_removal_revokes_sessions,
    wrapped_key_records,
);

/// Usage and cursor of an account, to check that a rejected request changed nothing.
async fn snapshot(s: &TestServer, d: &Device) -> (Value, Value) {
    let info = s.account_info(d).await;
    let all = s.changes(d, "since=0&limit=1000&blobs=true").await;
    (info, all)
}

async fn account_auth_and_logout(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    assert_eq!(d.account.len(), 32);
    assert_eq!(d.token.len(), 43);
    let info = s.account_info(&d).await;
    assert_eq!(info["account_id"], d.account.as_str());
    assert_eq!(info["item_count"], 0);
    assert_eq!(info["quota_bytes"], Limits::default().quota_bytes);
    let resp = s.req(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Two sessions for one device are independent; logout ends only the one used.
    let second = Device {
        token: s.login(&d).await.unwrap(),
        ..d.clone()
    };
    let resp = s
        .authed(&d, Method::DELETE, "/v1/auth/session")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = s
        .authed(&d, Method::GET, &format!("/v1/accounts/{}", d.account))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_token").await;
    s.account_info(&second).await;
    // The database holds only the token's hash.
    let dump = db.dump().await;
    assert!(
        !dump
            .iter()
            .any(|(_, _, v)| contains(v, second.token.as_bytes())),
        "bearer token stored in clear"
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

async fn blobs_round_trip_byte_for_byte(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    let all: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("zeros", vec![0; 4096]),
        ("all-bytes", all),
        (
            "one-MiB",
            (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect(),
        ),
    ];
    for (id, blob) in &cases {
        s.put_ok(&d, id, 0, blob).await;
    }
    for (id, blob) in &cases {
        let (got, v) = s.get_item(&d, id).await.unwrap();
        assert_eq!(v, 1);
        assert!(got == *blob, "{id} differs");
    }
    let resp = s
        .authed(&d, Method::GET, &TestServer::item_path(&d, "zeros"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.headers()["etag"], "\"1\"");
    assert_eq!(resp.headers()["sotto-seq"], "2");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    // The sync feed returns the same bytes (base64).
    let page = s.changes(&d, "blobs=true&limit=10").await;
    for c in page["changes"].as_array().unwrap() {
        let id = c["item_id"].as_str().unwrap();
        let blob = Base64::decode_vec(c["blob"].as_str().unwrap()).unwrap();
        let expected = &cases.iter().find(|(i, _)| *i == id).unwrap().1;
        assert!(blob == *expected, "{id}");
        assert_eq!(c["size"], expected.len());
    }
}

async fn optimistic_concurrency(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    assert_eq!(s.put_ok(&d, "note", 0, b"v1").await, (1, 1));
    // Two writers both read version 1; one wins, the other gets 409 with the current version.
    let (a, b) = tokio::join!(
        s.put_item(&d, "note", 1, b"writer A".to_vec()),
        s.put_item(&d, "note", 1, b"writer B".to_vec()),
    );
    let (winner, loser, loser_blob) = match (a.status().as_u16(), b.status().as_u16()) {
        (200, 409) => (a, b, b"writer B"),
        (409, 200) => (b, a, b"writer A"),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    let won: Value = winner.json().await.unwrap();
    assert_eq!(won["version"], 2);
    assert_eq!(loser.headers()["etag"], "\"2\"");
    let f = expect_error(loser, 409, "version_conflict").await;
    assert_eq!(f.error["current_version"], 2);
    assert_eq!(f.error["deleted"], false);
    // The loser retries on top of the current version and succeeds.
    assert_eq!(s.put_ok(&d, "note", 2, loser_blob).await.0, 3);
    assert_eq!(
        s.get_item(&d, "note").await.unwrap(),
        (loser_blob.to_vec(), 3)
    );
    // Creating what exists is a conflict too, and changes nothing.
    let before = snapshot(&s, &d).await;
    let resp = s.put_item(&d, "note", 0, b"dup".to_vec()).await;
    let f = expect_error(resp, 409, "version_conflict").await;
    assert_eq!(f.error["current_version"], 3);
    let resp = s.put_item(&d, "fresh", 5, b"x".to_vec()).await;
    let f = expect_error(resp, 409, "version_conflict").await;
    assert_eq!(f.error["current_version"], 0);
    assert_eq!(snapshot(&s, &d).await, before);
}

async fn concurrent_http_writers(db: &Db) {
    let s = std::sync::Arc::new(TestServer::start(db).await);
    let d = s.new_account().await;
    s.put_ok(&d, "counter", 0, b"0").await;
    const TASKS: usize = 8;
    const ROUNDS: usize = 6;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (s, d) = (s.clone(), d.clone());
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut conflicts = 0;
            for r in 0..ROUNDS {
                loop {
                    let (blob, v) = s.get_item(&d, "counter").await.unwrap();
                    let n: u64 = String::from_utf8(blob).unwrap().parse().unwrap();
                    let resp = s
                        .put_item(&d, "counter", v, (n + 1).to_string().into_bytes())
                        .await;
                    match resp.status().as_u16() {
                        200 => {
                            let body: Value = resp.json().await.unwrap();
                            wins.push(body["version"].as_u64().unwrap());
                            break;
                        }
                        409 => conflicts += 1,
                        _ => panic!("{:?}", failure(resp).await),
                    }
                }
                s.put_ok(&d, &format!("own-{t}-{r}"), 0, &[t as u8; 32])
                    .await;
            }
            (wins, conflicts)
        }));
    }
    let mut versions = Vec::new();
    for h in handles {
        let (wins, _conflicts) = h.await.unwrap();
        versions.extend(wins);
    }
    versions.sort();
    assert_eq!(
        versions,
        (2..=(1 + TASKS * ROUNDS) as u64).collect::<Vec<_>>()
    );
    let (blob, v) = s.get_item(&d, "counter").await.unwrap();
    assert_eq!(blob, (TASKS * ROUNDS).to_string().into_bytes());
    assert_eq!(v, 1 + (TASKS * ROUNDS) as u64);
    let info = s.account_info(&d).await;
    assert_eq!(info["item_count"], 1 + TASKS * ROUNDS);
    assert_eq!(info["last_seq"], 1 + 2 * TASKS * ROUNDS);
}

/// Follows the cursor to the end; returns every change seen, in order.
async fn drain(s: &TestServer, d: &Device, since: u64, limit: u32) -> (Vec<Value>, u64) {
    let mut out = Vec::new();
    let mut since = since;
    loop {
        let page = s.changes(d, &format!("since={since}&limit={limit}")).await;
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= limit as usize);
        for c in changes {
            assert!(c["seq"].as_u64().unwrap() > since);
        }
        out.extend(changes.iter().cloned());
        let next = page["next_since"].as_u64().unwrap();
        if let Some(last) = changes.last() {
            assert_eq!(last["seq"].as_u64().unwrap(), next);
        } else {
            assert_eq!(next, since);
        }
        since = next;
        if !page["more"].as_bool().unwrap() {
            return (out, since);
        }
    }
}

async fn sync_cursor_pagination(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    for i in 0..47 {
        s.put_ok(
            &d,
            &format!("item-{i:03}"),
            0,
            format!("blob {i}").as_bytes(),
        )
        .await;
    }
    for i in (0..47).step_by(5) {
        s.put_ok(&d, &format!("item-{i:03}"), 1, b"updated").await;
    }
    for i in (1..47usize).step_by(7) {
        let v = if i.is_multiple_of(5) { 2 } else { 1 };
        assert_eq!(
            s.delete_item(&d, &format!("item-{i:03}"), v).await.status(),
            200
        );
    }
    for limit in [1, 7, 10, 47, 1000] {
        let (all, end) = drain(&s, &d, 0, limit).await;
        // Every item exactly once, at its latest state, in increasing seq.
        let ids: Vec<&str> = all.iter().map(|c| c["item_id"].as_str().unwrap()).collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!((ids.len(), unique.len()), (47, 47), "limit {limit}");
        let seqs: Vec<u64> = all.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        for c in &all {
            let i: usize = c["item_id"].as_str().unwrap()[5..].parse().unwrap();
            let deleted = (1..47).step_by(7).any(|x| x == i);
            let updated = i.is_multiple_of(5);
            assert_eq!(c["deleted"], deleted, "{c}");
            let version = 1 + u64::from(updated) + u64::from(deleted);
            assert_eq!(c["version"], version, "{c}");
            assert!(c.get("blob").is_none());
        }
        assert_eq!(end, s.account_info(&d).await["last_seq"].as_u64().unwrap());
    }
    // Incremental: after the cursor, only the new changes.
    let (_, end) = drain(&s, &d, 0, 100).await;
    s.put_ok(&d, "item-002", 1, b"later").await;
    s.put_ok(&d, "new", 0, b"new").await;
    let (later, _) = drain(&s, &d, end, 100).await;
    let ids: Vec<&str> = later
        .iter()
        .map(|c| c["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["item-002", "new"]);
    // Clamped limit and byte-bounded pages with blobs.
    let page = s.changes(&d, "limit=5000").await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 48);
}

async fn sync_during_concurrent_writes(db: &Db) {
    let limits = Limits {
        max_page_blob_bytes: 3000,
        ..Limits::default()
    };
    let s = std::sync::Arc::new(TestServer::start_with(db, limits).await);
    let d = s.new_account().await;
    for i in 0..20 {
        s.put_ok(&d, &format!("k{i}"), 0, &[i as u8; 1000]).await;
    }
    // A writer keeps updating while a reader follows the cursor with blobs.
    let writer = {
        let (s, d) = (s.clone(), d.clone());
        tokio::spawn(async move {
            for round in 1..=3u8 {
                for i in 0..20 {
                    s.put_ok(
                        &d,
                        &format!("k{i}"),
                        u64::from(round),
                        &[round * 50 + i as u8; 1000],
                    )
                    .await;
                }
            }
        })
    };
    let mut state: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
    let mut since = 0;
    let mut seen_seqs = HashSet::new();
    loop {
        let page = s
            .changes(&d, &format!("since={since}&limit=50&blobs=true"))
            .await;
        let changes = page["changes"].as_array().unwrap();
        // 3000-byte budget: at most 3 blobs of 1000 bytes per page.
        assert!(changes.len() <= 3);
        for c in changes {
            assert!(seen_seqs.insert(c["seq"].as_u64().unwrap()), "seq twice");
            let blob = Base64::decode_vec(c["blob"].as_str().unwrap()).unwrap();
            state.insert(
                c["item_id"].as_str().unwrap().to_owned(),
                (c["version"].as_u64().unwrap(), blob),
            );
        }
        since = page["next_since"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            if writer.is_finished() {
                // One more pass after the writer is done catches its last changes.
                let tail = s.changes(&d, &format!("since={since}&limit=1000")).await;
                if tail["changes"].as_array().unwrap().is_empty() {
                    break;
                }
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
    writer.await.unwrap();
    // The replica built from the feed equals the server's state.
    assert_eq!(state.len(), 20);
    for (id, (version, blob)) in &state {
        let (got, v) = s.get_item(&d, id).await.unwrap();
        assert_eq!((&got, v), (blob, *version), "{id}");
        assert_eq!(v, 4);
    }
}

async fn deletion(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    s.put_ok(&d, "doomed", 0, &[9; 500]).await;
    s.put_ok(&d, "kept", 0, &[1; 100]).await;
    // Deleting needs the current version.
    let resp = s
        .authed(&d, Method::DELETE, &TestServer::item_path(&d, "doomed"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 428, "version_required").await;
    let resp = s.delete_item(&d, "doomed", 0).await;
    expect_error(resp, 409, "version_conflict").await;
    let resp = s.delete_item(&d, "doomed", 1).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"2\"");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["version"].as_u64(), body["seq"].as_u64()),
        (Some(2), Some(3))
    );
    // Reading it: 410 with the deletion's version.
    let f = expect_error(
        s.get_item(&d, "doomed").await.unwrap_err(),
        410,
        "item_deleted",
    )
    .await;
    assert_eq!(f.error["current_version"], 2);
    // Deleting again, or what never existed.
    expect_error(s.delete_item(&d, "doomed", 2).await, 410, "item_deleted").await;
    let f = expect_error(
        s.delete_item(&d, "doomed", 1).await,
        409,
        "version_conflict",
    )
    .await;
    assert_eq!(f.error["deleted"], true);
    expect_error(s.delete_item(&d, "never", 0).await, 404, "item_not_found").await;
    expect_error(
        s.get_item(&d, "never").await.unwrap_err(),
        404,
        "item_not_found",
    )
    .await;
    let info = s.account_info(&d).await;
    assert_eq!(
        (info["used_bytes"].as_u64(), info["item_count"].as_u64()),
        (Some(100), Some(1))
    );
    // The feed reports the tombstone; re-creation names its version.
    let page = s.changes(&d, "since=2").await;
    assert_eq!(page["changes"][0]["item_id"], "doomed");
    assert_eq!(page["changes"][0]["deleted"], true);
    assert_eq!(page["changes"][0]["size"], 0);
    expect_error(
        s.put_item(&d, "doomed", 0, b"back".to_vec()).await,
        409,
        "version_conflict",
    )
    .await;
    assert_eq!(s.put_ok(&d, "doomed", 2, b"back").await, (3, 4));
    assert_eq!(
        s.get_item(&d, "doomed").await.unwrap(),
        (b"back".to_vec(), 3)
    );
}

async fn size_limits_and_quotas(db: &Db) {
    let limits = Limits {
        max_blob_bytes: 1000,
        max_key_bytes: 100,
        max_json_bytes: 2048,
        quota_bytes: 2500,
        quota_items: 3,
        max_keys: 2,
        ..Limits::default()
    };
    let s = TestServer::start_with(db, limits).await;
    let d = s.new_account().await;
    s.put_ok(&d, "a", 0, &[1; 1000]).await;
    let before = snapshot(&s, &d).await;
    // Oversized blob, with Content-Length.
    let f = expect_error(
        s.put_item(&d, "big", 0, vec![0u8; 1001]).await,
        413,
        "blob_too_large",
    )
    .await;
    assert!(f.error["message"].as_str().unwrap().contains("1000"));
    // Oversized blob, chunked (no Content-Length): cut off while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..5).map(|_| Ok(vec![7u8; 300])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    expect_error(s.put_item(&d, "big", 0, body).await, 413, "blob_too_large").await;
    // Replacing an item with an oversized blob.
    expect_error(
        s.put_item(&d, "a", 1, vec![0u8; 5000]).await,
        413,
        "blob_too_large",
    )
    .await;
    // Oversized JSON body.
    let resp = s
        .req(Method::POST, "/v1/accounts")
        .header("content-type", "application/json")
        .body(format!(
            "{{\"credential\":{{\"kind\":\"{}\"}}}}",
            "x".repeat(3000)
        ))
        .send()
        .await
        .unwrap();
    expect_error(resp, 413, "request_too_large").await;
    assert_eq!(snapshot(&s, &d).await, before);
    // Byte quota: 1000 + 1000 fits, + 501 does not.
    s.put_ok(&d, "b", 0, &[2; 1000]).await;
    let before = snapshot(&s, &d).await;
    let f = expect_error(
        s.put_item(&d, "c", 0, vec![3u8; 501]).await,
        413,
        "quota_bytes_exceeded",
    )
    .await;
    assert!(f.error["message"].as_str().unwrap().contains("2500"));
    assert_eq!(snapshot(&s, &d).await, before);
    expect_error(
        s.get_item(&d, "c").await.unwrap_err(),
        404,
        "item_not_found",
    )
    .await;
    // Item quota: 3 live items.
    s.put_ok(&d, "c", 0, &[3; 500]).await;
    let before = snapshot(&s, &d).await;
    expect_error(
        s.put_item(&d, "d", 0, vec![]).await,
        413,
        "quota_items_exceeded",
    )
    .await;
    assert_eq!(snapshot(&s, &d).await, before);
    // Deleting frees both.
    assert_eq!(s.delete_item(&d, "a", 1).await.status(), 200);
    s.put_ok(&d, "d", 0, &[4; 1000]).await;
    // Wrapped keys: size and count limits.
    let key_path = |k: &str| format!("/v1/accounts/{}/keys/{k}", d.account);
    let put_key = |k: &str, blob: Vec<u8>| {
        s.authed(&d, Method::PUT, &key_path(k))
            .header("if-match", "0")
            .body(blob)
            .send()
    };
    expect_error(
        put_key("k1", vec![0; 101]).await.unwrap(),
        413,
        "blob_too_large",
    )
    .await;
    assert_eq!(put_key("k1", vec![0; 100]).await.unwrap().status(), 200);
    assert_eq!(put_key("k2", vec![0; 10]).await.unwrap().status(), 200);
    expect_error(
        put_key("k3", vec![0; 10]).await.unwrap(),
        413,
        "too_many_keys",
    )
    .await;
}

async fn malformed_requests(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    s.put_ok(&d, "x", 0, b"payload").await;
    let before = snapshot(&s, &d).await;
    let post = |path: &str, body: &str| {
        s.req(Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let pk = public_key_b64(&new_key());
    for (body, status, code) in [
        ("", 400, "malformed_request"),
        ("{", 400, "malformed_request"),
        ("[]", 400, "malformed_request"),
        ("{\"credential\":{}}", 400, "malformed_request"),
        (
            &format!(
                "{{\"credential\":{{\"kind\":\"device-ed25519\",\"public_key\":\"{pk}\"}},\"extra\":1}}"
            ),
            400,
            "malformed_request",
        ),
        (
            &format!("{{\"credential\":{{\"kind\":\"passkey\",\"public_key\":\"{pk}\"}}}}"),
            400,
            "unsupported_credential_kind",
        ),
        (
            "{\"credential\":{\"kind\":\"device-ed25519\",\"public_key\":\"not base64!\"}}",
            400,
            "invalid_public_key",
        ),
        (
            "{\"credential\":{\"kind\":\"device-ed25519\",\"public_key\":\"AAAA\"}}",
            400,
            "invalid_public_key",
        ),
    ] {
        expect_error(post("/v1/accounts", body).await.unwrap(), status, code).await;
    }
    for body in [
        "{}",
        "{\"account_id\":\"xyz\",\"credential_id\":\"abc\"}",
        &format!(
            "{{\"account_id\":\"{}\",\"credential_id\":\"{}\"}}",
            d.account.to_uppercase(),
            d.credential
        ),
    ] {
        let resp = post("/v1/auth/challenge", body).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
    }
    let resp = post(
        "/v1/auth/session",
        &json!({"account_id": d.account, "credential_id": d.credential, "challenge": "AAAA", "signature": "AAAA"}).to_string(),
    )
    .await
    .unwrap();
    expect_error(resp, 400, "malformed_request").await;
    // Ids in paths.
    for path in [
        "/v1/accounts/not-hex/items/x".to_owned(),
        format!("/v1/accounts/{}/items/has.dot", d.account),
        format!("/v1/accounts/{}/items/{}", d.account, "a".repeat(129)),
        format!("/v1/accounts/{}/items/%C3%A9", d.account),
        format!("/v1/accounts/{}/keys/sp%20ace", d.account),
        format!("/v1/accounts/{}/credentials/nothex", d.account),
    ] {
        let method = if path.contains("/credentials/") {
            Method::DELETE
        } else {
            Method::GET
        };
        let resp = s.authed(&d, method, &path).send().await.unwrap();
        expect_error(resp, 400, "invalid_id").await;
    }
    // Versions.
    let item = TestServer::item_path(&d, "x");
    let resp = s
        .authed(&d, Method::PUT, &item)
        .body("b")
        .send()
        .await
        .unwrap();
    expect_error(resp, 428, "version_required").await;
    for bad in ["abc", "-1", "W/\"1\"", "\"1", "1.5"] {
        let resp = s
            .authed(&d, Method::PUT, &item)
            .header("if-match", bad)
            .body("b")
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "invalid_version").await;
    }
    // Query strings.
    for q in [
        "since=-1",
        "limit=0",
        "limit=x",
        "since=1&since=2",
        "cursor=3",
        "blobs=maybe",
    ] {
        let resp = s
            .authed(
                &d,
                Method::GET,
                &format!("/v1/accounts/{}/items?{q}", d.account),
            )
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "malformed_request").await;
    }
    // Unknown endpoints and methods are JSON errors too.
    expect_error(
        s.req(Method::GET, "/v1/nothing").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        s.authed(&d, Method::POST, &item).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    assert_eq!(snapshot(&s, &d).await, before);
    assert_eq!(s.get_item(&d, "x").await.unwrap(), (b"payload".to_vec(), 1));
}

async fn unknown_account_and_credential(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    let nobody = "0123456789abcdef0123456789abcdef";
    expect_error(
        s.challenge(nobody, &d.credential).await.unwrap_err(),
        404,
        "unknown_account",
    )
    .await;
    expect_error(
        s.challenge(&d.account, nobody).await.unwrap_err(),
        404,
        "unknown_credential",
    )
    .await;
    // Another account's credential is unknown in this one.
    let e = s.new_account().await;
    expect_error(
        s.challenge(&d.account, &e.credential).await.unwrap_err(),
        404,
        "unknown_credential",
    )
    .await;
    // A session for an unknown account id is refused before any lookup of it (403).
    let resp = s
        .authed(&d, Method::GET, &format!("/v1/accounts/{nobody}/items"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "forbidden").await;
    let resp = s
        .authed(
            &d,
            Method::DELETE,
            &format!("/v1/accounts/{}/credentials/{nobody}", d.account),
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "unknown_credential").await;
}

async fn bad_auth(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    s.put_ok(&d, "x", 0, b"secret-ish").await;
    let item = TestServer::item_path(&d, "x");
    // Missing, malformed, unknown tokens.
    expect_error(
        s.req(Method::GET, &item).send().await.unwrap(),
        401,
        "missing_token",
    )
    .await;
    for auth in [
        "Bearer".to_owned(),
        "Basic abc".to_owned(),
        "Bearer short".to_owned(),
        format!("Bearer {}", "A".repeat(43)),
        format!("Bearer {}x", d.token),
    ] {
        let resp = s
            .req(Method::GET, &item)
            .header("authorization", auth.clone())
            .send()
            .await
            .unwrap();
        expect_error(resp, 401, "invalid_token").await;
    }
    let resp = s
        .req(Method::PUT, &item)
        .header("if-match", "1")
        .body("overwrite")
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "missing_token").await;
    // Refused before its 1 MiB body was read: the connection is closed, so the client's
    // next request (on a fresh connection) is not confused by the unread bytes. The close
    // can race the client's upload: the client then sees the 401 or a broken connection
    // (never a success), and either way the next request works.
    for _ in 0..3 {
        let sent = s
            .req(Method::PUT, &item)
            .header("if-match", "1")
            .body(vec![0u8; 1 << 20])
            .send()
            .await;
        match sent {
            Ok(resp) => {
                assert_eq!(resp.headers()["connection"], "close");
                expect_error(resp, 401, "missing_token").await;
            }
            Err(e) => assert!(e.is_request(), "unexpected error: {e}"),
        }
        s.get_item(&d, "x").await.unwrap();
    }
    // Bad signatures: wrong key, wrong challenge, garbage.
    let imposter = Device {
        key: new_key(),
        ..d.clone()
    };
    let c = s.challenge(&d.account, &d.credential).await.unwrap();
    let resp = s.answer(&d, &c, &TestServer::sign(&imposter, &c)).await;
    expect_error(resp, 401, "bad_signature").await;
    let c1 = s.challenge(&d.account, &d.credential).await.unwrap();
    let c2 = s.challenge(&d.account, &d.credential).await.unwrap();
    let resp = s.answer(&d, &c1, &TestServer::sign(&d, &c2)).await;
    expect_error(resp, 401, "bad_signature").await;
    let resp = s.answer(&d, &c2, &Base64::encode_string(&[0u8; 64])).await;
    expect_error(resp, 401, "bad_signature").await;
    // A challenge nobody issued.
    let resp = s
        .answer(&d, &[5; 32], &TestServer::sign(&d, &[5; 32]))
        .await;
    expect_error(resp, 401, "invalid_challenge").await;
    // Expired challenge.
    let c = s.challenge(&d.account, &d.credential).await.unwrap();
    s.clock.advance(61_000);
    let resp = s.answer(&d, &c, &TestServer::sign(&d, &c)).await;
    expect_error(resp, 401, "challenge_expired").await;
    // Expired session (15 min, and 61 s have passed already).
    s.get_item(&d, "x").await.unwrap();
    s.clock.advance(15 * 60_000);
    let resp = s.authed(&d, Method::GET, &item).send().await.unwrap();
    expect_error(resp, 401, "token_expired").await;
    let resp = s.put_item(&d, "x", 1, b"late".to_vec()).await;
    expect_error(resp, 401, "token_expired").await;
    // A fresh login works, and nothing was changed by the refused requests.
    let fresh = Device {
        token: s.login(&d).await.unwrap(),
        ..d.clone()
    };
    assert_eq!(
        s.get_item(&fresh, "x").await.unwrap(),
        (b"secret-ish".to_vec(), 1)
    );
}

async fn replayed_signatures_are_refused(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    let c = s.challenge(&d.account, &d.credential).await.unwrap();
    let sig = TestServer::sign(&d, &c);
    assert_eq!(s.answer(&d, &c, &sig).await.status(), 200);
    // The same signed answer again: the challenge is gone.
    expect_error(s.answer(&d, &c, &sig).await, 401, "invalid_challenge").await;
    // A failed answer also uses the challenge up (no guessing against one challenge).
    let c = s.challenge(&d.account, &d.credential).await.unwrap();
    let resp = s.answer(&d, &c, &Base64::encode_string(&[1u8; 64])).await;
    expect_error(resp, 401, "bad_signature").await;
    expect_error(
        s.answer(&d, &c, &TestServer::sign(&d, &c)).await,
        401,
        "invalid_challenge",
    )
    .await;
    // A challenge issued to one device cannot be answered by another of the same account.
    let d2 = s.add_device(&d).await;
    let c = s.challenge(&d.account, &d.credential).await.unwrap();
    let resp = s.answer(&d2, &c, &TestServer::sign(&d2, &c)).await;
    expect_error(resp, 401, "invalid_challenge").await;
    // Concurrent replays of one answer: exactly one session.
    let c = s.challenge(&d.account, &d.credential).await.unwrap();
    let sig = TestServer::sign(&d, &c);
    let results = futures_util::future::join_all((0..6).map(|_| s.answer(&d, &c, &sig))).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    assert_eq!(ok, 1);
}

async fn wrong_account_is_forbidden(db: &Db) {
    let s = TestServer::start(db).await;
    let alice = s.new_account().await;
    let bob = s.new_account().await;
    s.put_ok(&alice, "diary", 0, b"alice's ciphertext").await;
    let keys = format!("/v1/accounts/{}/keys/k", alice.account);
    s.authed(&alice, Method::PUT, &keys)
        .header("if-match", "0")
        .body("wrapped")
        .send()
        .await
        .unwrap();
    let before = snapshot(&s, &alice).await;
    let a = &alice.account;
    let requests: Vec<(Method, String)> = vec![
        (Method::GET, format!("/v1/accounts/{a}")),
        (Method::GET, format!("/v1/accounts/{a}/items")),
        (Method::GET, format!("/v1/accounts/{a}/items/diary")),
        (Method::PUT, format!("/v1/accounts/{a}/items/diary")),
        (Method::DELETE, format!("/v1/accounts/{a}/items/diary")),
        (Method::GET, format!("/v1/accounts/{a}/keys")),
        (Method::GET, keys.clone()),
        (Method::PUT, keys.clone()),
        (Method::DELETE, keys.clone()),
        (Method::GET, format!("/v1/accounts/{a}/credentials")),
        (Method::POST, format!("/v1/accounts/{a}/credentials")),
        (
            Method::DELETE,
            format!("/v1/accounts/{a}/credentials/{}", alice.credential),
        ),
    ];
    for (method, path) in requests {
        let resp = s
            .authed(&bob, method.clone(), &path)
            .header("if-match", "1")
            .header("content-type", "application/json")
            .body(
                json!({"kind": "device-ed25519", "public_key": public_key_b64(&bob.key)})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let f = failure(resp).await;
        assert_eq!(
            (f.status.as_u16(), f.code.as_str()),
            (403, "forbidden"),
            "{method} {path}"
        );
    }
    assert_eq!(snapshot(&s, &alice).await, before);
    // Bob's credential cannot log into Alice's account either.
    let resp = s
        .challenge(&alice.account, &bob.credential)
        .await
        .unwrap_err();
    expect_error(resp, 404, "unknown_credential").await;
}

async fn device_removal_revokes_sessions(db: &Db) {
    let s = TestServer::start(db).await;
    let laptop = s.new_account().await;
    let phone = s.add_device(&laptop).await;
    s.put_ok(&phone, "from-phone", 0, b"c1").await;
    let list: Value = s
        .authed(
            &phone,
            Method::GET,
            &format!("/v1/accounts/{}/credentials", phone.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["credentials"].as_array().unwrap().len(), 2);
    // The same key cannot be registered twice.
    let resp = s
        .authed(
            &laptop,
            Method::POST,
            &format!("/v1/accounts/{}/credentials", laptop.account),
        )
        .json(&json!({"kind": "device-ed25519", "public_key": public_key_b64(&phone.key)}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 409, "duplicate_credential").await;
    // A second session of the phone, and an outstanding challenge.
    let phone2 = Device {
        token: s.login(&phone).await.unwrap(),
        ..phone.clone()
    };
    let pending = s
        .challenge(&phone.account, &phone.credential)
        .await
        .unwrap();
    // The laptop removes the phone.
    let resp = s
        .authed(
            &laptop,
            Method::DELETE,
            &format!(
                "/v1/accounts/{}/credentials/{}",
                laptop.account, phone.credential
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    for p in [&phone, &phone2] {
        let resp = s
            .put_item(p, "from-phone", 1, b"after removal".to_vec())
            .await;
        expect_error(resp, 401, "invalid_token").await;
        expect_error(
            s.get_item(p, "from-phone").await.unwrap_err(),
            401,
            "invalid_token",
        )
        .await;
    }
    expect_error(
        s.answer(&phone, &pending, &TestServer::sign(&phone, &pending))
            .await,
        401,
        "invalid_challenge",
    )
    .await;
    expect_error(
        s.challenge(&phone.account, &phone.credential)
            .await
            .unwrap_err(),
        401,
        "credential_revoked",
    )
    .await;
    assert_eq!(s.get_item(&laptop, "from-phone").await.unwrap().0, b"c1");
    let list: Value = s
        .authed(
            &laptop,
            Method::GET,
            &format!("/v1/accounts/{}/credentials", laptop.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone_entry = list["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credential_id"] == phone.credential.as_str())
        .unwrap();
    assert!(phone_entry["revoked_at"].is_i64());
    // The last credential cannot be removed.
    let del = |cred: &str| {
        s.authed(
            &laptop,
            Method::DELETE,
            &format!("/v1/accounts/{}/credentials/{cred}", laptop.account),
        )
        .send()
    };
    expect_error(
        del(&laptop.credential).await.unwrap(),
        409,
        "last_credential",
    )
    .await;
    // Removing an already removed device is idempotent.
    assert_eq!(del(&phone.credential).await.unwrap().status(), 204);
    // A device may remove itself while another remains.
    let tablet = s.add_device(&laptop).await;
    let resp = s
        .authed(
            &tablet,
            Method::DELETE,
            &format!(
                "/v1/accounts/{}/credentials/{}",
                tablet.account, tablet.credential
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    expect_error(
        s.get_item(&tablet, "from-phone").await.unwrap_err(),
        401,
        "invalid_token",
    )
    .await;
}

async fn wrapped_key_records(db: &Db) {
    let s = TestServer::start(db).await;
    let d = s.new_account().await;
    let path = |k: &str| format!("/v1/accounts/{}/keys/{k}", d.account);
    let put = |k: &str, v: u64, blob: &'static [u8]| {
        s.authed(&d, Method::PUT, &path(k))
            .header("if-match", format!("\"{v}\""))
            .body(blob)
            .send()
    };
    let resp = put(&d.credential, 0, b"wrapped for laptop").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    expect_error(
        put(&d.credential, 0, b"again").await.unwrap(),
        409,
        "version_conflict",
    )
    .await;
    assert_eq!(
        put(&d.credential, 1, b"rotated").await.unwrap().status(),
        200
    );
    assert_eq!(
        put("phone", 0, b"wrapped for phone")
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = s
        .authed(&d, Method::GET, &path(&d.credential))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["sotto-version"], "2");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"rotated");
    let list: Value = s
        .authed(&d, Method::GET, &format!("/v1/accounts/{}/keys", d.account))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: HashMap<String, (u64, Vec<u8>)> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_owned(),
                (
                    k["version"].as_u64().unwrap(),
                    Base64::decode_vec(k["blob"].as_str().unwrap()).unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(keys["phone"], (1, b"wrapped for phone".to_vec()));
    assert_eq!(keys[&d.credential], (2, b"rotated".to_vec()));
    let del = |v: &str| {
        s.authed(&d, Method::DELETE, &path("phone"))
            .header("if-match", v.to_owned())
            .send()
    };
    expect_error(del("2").await.unwrap(), 409, "version_conflict").await;
    assert_eq!(del("1").await.unwrap().status(), 204);
    expect_error(del("1").await.unwrap(), 404, "key_not_found").await;
    let resp = s
        .authed(&d, Method::GET, &path("phone"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "key_not_found").await;
}
