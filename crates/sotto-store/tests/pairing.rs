//! Pairing slots over HTTP, on SQLite and PostgreSQL: the full state machine, single use of
//! every step, expiry, the per-account pending limit, size limits, another account's slot,
//! and registration of a client-chosen credential id.

mod common;

use base64ct::{Base64, Encoding};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sotto_store::Limits;

fn new_slot_body(name: &str, request_len: usize) -> Value {
    json!({
        "public_key": public_key_b64(&new_key()),
        "name": name,
        "request": Base64::encode_string(&vec![7u8; request_len]),
    })
}

async fn create_slot(s: &TestServer, account: &str, body: &Value) -> reqwest::Response {
    s.req(Method::POST, &format!("/v1/accounts/{account}/pairing"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn new_slot(s: &TestServer, account: &str) -> String {
    let resp = create_slot(s, account, &new_slot_body("phone", 100)).await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    let id = v["slot_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "128-bit slot id");
    id
}

async fn respond(s: &TestServer, d: &Device, slot: &str, body: Vec<u8>) -> reqwest::Response {
    s.authed(
        d,
        Method::PUT,
        &format!("/v1/accounts/{}/pairing/{slot}/response", d.account),
    )
    .body(body)
    .send()
    .await
    .unwrap()
}

async fn confirm(s: &TestServer, slot: &str, body: Vec<u8>) -> reqwest::Response {
    s.req(Method::PUT, &format!("/v1/pairing/{slot}/confirm"))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn verdict(s: &TestServer, d: &Device, slot: &str, v: &str) -> reqwest::Response {
    s.authed(
        d,
        Method::POST,
        &format!("/v1/accounts/{}/pairing/{slot}/{v}", d.account),
    )
    .send()
    .await
    .unwrap()
}

async fn requester_view(s: &TestServer, slot: &str) -> reqwest::Response {
    s.req(Method::GET, &format!("/v1/pairing/{slot}"))
        .send()
        .await
        .unwrap()
}

async fn state_of(s: &TestServer, slot: &str) -> String {
    let resp = requester_view(s, slot).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["state"].as_str().unwrap().to_owned()
}

async fn full_exchange(db: &Db) {
    let s = TestServer::start(db).await;
    let a = s.new_account().await;
    let paired_key = new_key();
    let body = json!({
        "public_key": public_key_b64(&paired_key),
        "name": "phone",
        "request": Base64::encode_string(b"request bytes"),
    });
    let resp = create_slot(&s, &a.account, &body).await;
    assert_eq!(resp.status(), 201);
    let slot = resp.json::<Value>().await.unwrap()["slot_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Listed to the account's devices with the request, the key and the name.
    let list: Value = s
        .authed(
            &a,
            Method::GET,
            &format!("/v1/accounts/{}/pairing", a.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = &list["pairings"][0];
    assert_eq!(p["slot_id"], slot.as_str());
    assert_eq!(p["name"], "phone");
    assert_eq!(p["state"], "requested");
    assert_eq!(p["public_key"], public_key_b64(&paired_key).as_str());
    assert_eq!(
        p["request"],
        Base64::encode_string(b"request bytes").as_str()
    );

    // Steps out of order are refused and change nothing.
    expect_error(
        confirm(&s, &slot, b"c".to_vec()).await,
        409,
        "pairing_state",
    )
    .await;
    expect_error(
        verdict(&s, &a, &slot, "approve").await,
        409,
        "pairing_state",
    )
    .await;

    assert_eq!(respond(&s, &a, &slot, b"resp".to_vec()).await.status(), 200);
    // A response is single use: a second (replayed) one is refused.
    let f = expect_error(
        respond(&s, &a, &slot, b"other".to_vec()).await,
        409,
        "pairing_state",
    )
    .await;
    assert_eq!(f.error["state"], "responded");
    let v: Value = requester_view(&s, &slot).await.json().await.unwrap();
    assert_eq!(v["response"], Base64::encode_string(b"resp").as_str());
    assert_eq!(v["responder_id"], a.credential.as_str());

    assert_eq!(confirm(&s, &slot, b"conf".to_vec()).await.status(), 200);
    expect_error(
        confirm(&s, &slot, b"again".to_vec()).await,
        409,
        "pairing_state",
    )
    .await;
    let v: Value = s
        .authed(
            &a,
            Method::GET,
            &format!("/v1/accounts/{}/pairing/{slot}", a.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["confirm"], Base64::encode_string(b"conf").as_str());

    // The approver registers the key under a chosen id, then approves.
    let chosen = hex::encode(random_bytes::<16>());
    let resp = s
        .authed(
            &a,
            Method::POST,
            &format!("/v1/accounts/{}/credentials", a.account),
        )
        .json(
            &json!({"kind": "device-ed25519", "public_key": public_key_b64(&paired_key),
            "credential_id": chosen}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["credential_id"],
        chosen.as_str()
    );
    assert_eq!(verdict(&s, &a, &slot, "approve").await.status(), 200);
    assert_eq!(state_of(&s, &slot).await, "approved");
    expect_error(verdict(&s, &a, &slot, "reject").await, 409, "pairing_state").await;
    // The new device logs in with its id.
    let b = Device {
        key: paired_key,
        account: a.account.clone(),
        credential: chosen.clone(),
        token: String::new(),
    };
    s.login(&b).await.expect("paired device logs in");

    // A chosen id already taken (by any account) is a duplicate.
    let other = s.new_account().await;
    let resp = s
        .authed(
            &other,
            Method::POST,
            &format!("/v1/accounts/{}/credentials", other.account),
        )
        .json(
            &json!({"kind": "device-ed25519", "public_key": public_key_b64(&new_key()),
            "credential_id": chosen}),
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, 409, "duplicate_credential").await;
    // And it may not be chosen at account creation.
    let resp = s
        .req(Method::POST, "/v1/accounts")
        .json(&json!({"credential": {"kind": "device-ed25519",
            "public_key": public_key_b64(&new_key()), "credential_id": hex::encode([1u8; 16])}}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "malformed_request").await;
}

async fn abort_and_reject(db: &Db) {
    let s = TestServer::start(db).await;
    let a = s.new_account().await;
    let slot = new_slot(&s, &a.account).await;
    assert_eq!(respond(&s, &a, &slot, b"r".to_vec()).await.status(), 200);
    let resp = s
        .req(Method::POST, &format!("/v1/pairing/{slot}/abort"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(state_of(&s, &slot).await, "aborted");
    expect_error(
        confirm(&s, &slot, b"c".to_vec()).await,
        409,
        "pairing_state",
    )
    .await;
    assert_eq!(verdict(&s, &a, &slot, "reject").await.status(), 200);
    assert_eq!(state_of(&s, &slot).await, "rejected");
    expect_error(
        verdict(&s, &a, &slot, "approve").await,
        409,
        "pairing_state",
    )
    .await;
}

async fn expiry(db: &Db) {
    let s = TestServer::start(db).await;
    let a = s.new_account().await;
    let slot = new_slot(&s, &a.account).await;
    s.clock.advance(10 * 60 * 1000 + 1);
    expect_error(requester_view(&s, &slot).await, 410, "pairing_expired").await;
    expect_error(
        respond(&s, &a, &slot, b"r".to_vec()).await,
        410,
        "pairing_expired",
    )
    .await;
    expect_error(
        confirm(&s, &slot, b"c".to_vec()).await,
        410,
        "pairing_expired",
    )
    .await;
    // Expired slots are not listed and do not count toward the pending limit.
    let list: Value = s
        .authed(
            &a,
            Method::GET,
            &format!("/v1/accounts/{}/pairing", a.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["pairings"].as_array().unwrap().len(), 0);
    for _ in 0..4 {
        new_slot(&s, &a.account).await;
    }
    // An hour later still, the expired slot is purged: not found.
    s.clock.advance(61 * 60 * 1000);
    new_slot(&s, &a.account).await;
    expect_error(requester_view(&s, &slot).await, 404, "pairing_not_found").await;
}

async fn pending_limit(db: &Db) {
    let s = TestServer::start(db).await;
    let a = s.new_account().await;
    let mut slots = Vec::new();
    for _ in 0..4 {
        slots.push(new_slot(&s, &a.account).await);
    }
    let resp = create_slot(&s, &a.account, &new_slot_body("fifth", 10)).await;
    expect_error(resp, 429, "too_many_pairings").await;
    // Another account is not affected.
    let b = s.new_account().await;
    new_slot(&s, &b.account).await;
    // A finished slot frees its place.
    assert_eq!(verdict(&s, &a, &slots[0], "reject").await.status(), 200);
    new_slot(&s, &a.account).await;
}

async fn other_accounts_slot(db: &Db) {
    let s = TestServer::start(db).await;
    let a = s.new_account().await;
    let b = s.new_account().await;
    let slot = new_slot(&s, &a.account).await;
    // B's session on B's path does not see A's slot.
    expect_error(
        respond(&s, &b, &slot, b"r".to_vec()).await,
        404,
        "pairing_not_found",
    )
    .await;
    expect_error(
        verdict(&s, &b, &slot, "reject").await,
        404,
        "pairing_not_found",
    )
    .await;
    let resp = s
        .authed(
            &b,
            Method::GET,
            &format!("/v1/accounts/{}/pairing/{slot}", b.account),
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "pairing_not_found").await;
    // B's session on A's path: forbidden.
    let resp = s
        .authed(
            &b,
            Method::PUT,
            &format!("/v1/accounts/{}/pairing/{slot}/response", a.account),
        )
        .body(b"r".to_vec())
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "forbidden").await;
    // Without a session: listing and responding need one.
    let resp = s
        .req(Method::GET, &format!("/v1/accounts/{}/pairing", a.account))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "missing_token").await;
    assert_eq!(state_of(&s, &slot).await, "requested");
    // Unknown slot and account, malformed ids.
    let unknown = hex::encode(random_bytes::<16>());
    expect_error(requester_view(&s, &unknown).await, 404, "pairing_not_found").await;
    expect_error(requester_view(&s, "xyz").await, 400, "invalid_id").await;
    let resp = create_slot(&s, &unknown, &new_slot_body("phone", 10)).await;
    expect_error(resp, 404, "unknown_account").await;
}

async fn bounded_bodies(db: &Db) {
    let limits = Limits::default();
    let s = TestServer::start_with(db, limits.clone()).await;
    let a = s.new_account().await;
    let big = create_slot(&s, &a.account, &new_slot_body("phone", 1025)).await;
    expect_error(big, 413, "blob_too_large").await;
    let huge = create_slot(&s, &a.account, &new_slot_body("phone", 20_000)).await;
    expect_error(huge, 413, "request_too_large").await;
    for name in ["", &"x".repeat(65), "bad\nname"] {
        let resp = create_slot(&s, &a.account, &new_slot_body(name, 10)).await;
        expect_error(resp, 400, "malformed_request").await;
    }
    let mut bad_key = new_slot_body("phone", 10);
    bad_key["public_key"] = Base64::encode_string(&[0u8; 31]).into();
    expect_error(
        create_slot(&s, &a.account, &bad_key).await,
        400,
        "invalid_public_key",
    )
    .await;
    let mut extra = new_slot_body("phone", 10);
    extra["more"] = 1.into();
    expect_error(
        create_slot(&s, &a.account, &extra).await,
        400,
        "malformed_request",
    )
    .await;
    let slot = new_slot(&s, &a.account).await;
    expect_error(
        respond(&s, &a, &slot, vec![0u8; 64 * 1024 + 1]).await,
        413,
        "blob_too_large",
    )
    .await;
    expect_error(
        respond(&s, &a, &slot, Vec::new()).await,
        400,
        "malformed_request",
    )
    .await;
    assert_eq!(state_of(&s, &slot).await, "requested");
    assert_eq!(
        respond(&s, &a, &slot, vec![1u8; 64 * 1024]).await.status(),
        200
    );
    expect_error(
        confirm(&s, &slot, vec![0u8; 257]).await,
        413,
        "blob_too_large",
    )
    .await;
    assert_eq!(state_of(&s, &slot).await, "responded");
    // Nothing refused was stored: none of the slots above but the one created.
    let list: Value = s
        .authed(
            &a,
            Method::GET,
            &format!("/v1/accounts/{}/pairing", a.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["pairings"].as_array().unwrap().len(), 1);
}

both_backends!(
    full_exchange,
    abort_and_reject,
    expiry,
    pending_limit,
    other_accounts_slot,
    bounded_bodies
);
