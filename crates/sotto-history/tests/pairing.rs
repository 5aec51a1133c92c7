//! Pairing a device through the store's pairing slots, on SQLite and PostgreSQL: the round
//! trip, a wrong code, and a store that substitutes the key or the request, forges the
//! confirmation, replays an old response or serves an expired slot. After every failure
//! the account still has exactly its original credentials and the new device has no state.

mod common;

use std::time::Duration;

use base64ct::{Base64, Encoding};
use common::Env;
use sotto_history::{HistoryClient, HistoryError, store::StoreClient};
use sotto_vault::Role;

const WAIT: Duration = Duration::from_secs(20);

fn turns(user: &str) -> Vec<(Role, String)> {
    vec![
        (Role::User, user.into()),
        (Role::Assistant, "answer".into()),
    ]
}

fn code_of(e: &HistoryError) -> &'static str {
    e.code()
}

/// A code that is not `shown` (8 digits).
fn other_code(shown: &str) -> String {
    let n: u64 = shown.parse().unwrap();
    format!("{:08}", (n + 1) % 100_000_000)
}

async fn active_credentials(a: &HistoryClient) -> usize {
    a.store()
        .credentials()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .count()
}

async fn slot_bytes(env: &Env, account: &str, slot: &str, field: &str) -> Vec<u8> {
    let s = StoreClient::new(&env.url, account)
        .unwrap()
        .requester_slot(slot)
        .await
        .unwrap();
    let v = match field {
        "request" => Some(s.request),
        "public_key" => Some(s.public_key),
        "response" => s.response,
        _ => s.confirm,
    };
    Base64::decode_vec(&v.expect("field present")).unwrap()
}

async fn round_trip(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let conv = a
        .append_turns(None, None, "m", &turns("hello from A"))
        .await
        .unwrap();
    let req = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let code = req.code().as_str().to_string();
    let pending = a.list_pairing_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].name, "phone");
    assert!(pending[0].key_matches);
    assert_eq!(pending[0].credential_id, req.credential_id());
    let waiting = tokio::spawn(req.await_approval(WAIT));
    let b_id = a
        .approve_pairing(&pending[0].slot_id, &code, WAIT)
        .await
        .unwrap();
    let mut b = waiting.await.unwrap().unwrap();
    assert_eq!(b.credential_id(), b_id);
    assert_eq!(b.account_id(), a.account_id());
    let c = b.conversation(&conv).await.unwrap();
    assert_eq!(c.value.messages[0].content, "hello from A");
    // B writes, A reads; both see each other in the directory.
    let from_b = b
        .append_turns(None, None, "m", &turns("hello from B"))
        .await
        .unwrap();
    assert_eq!(
        a.conversation(&from_b).await.unwrap().value.messages[0].content,
        "hello from B"
    );
    let devices = a.devices().await.unwrap();
    assert!(
        devices
            .iter()
            .any(|d| d.credential_id == b_id && d.name == "phone" && d.in_directory && d.active)
    );
    // B reopens from disk.
    drop(b);
    let mut b = HistoryClient::open(&env.dir("b")).await.unwrap();
    b.sync().await.unwrap();
    // The slot is finished: approving it again is refused.
    let e = a.approve_pairing(&pending[0].slot_id, &code, WAIT).await;
    assert_eq!(e.unwrap_err().store_code(), Some("pairing_state"));
    // A removes B: B can no longer log in.
    a.remove_device(&b_id).await.unwrap();
    let e = HistoryClient::open(&env.dir("b")).await.unwrap_err();
    assert_eq!(e.store_code(), Some("credential_revoked"));
}

async fn wrong_code(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let req = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let wrong = other_code(req.code().as_str());
    let slot = req.slot().to_string();
    let waiting = tokio::spawn(req.await_approval(WAIT));
    let e = a.approve_pairing(&slot, &wrong, WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_CONFIRM_FAILED", "{e}");
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_AUTH_FAILED", "{e}");
    assert_eq!(active_credentials(&a).await, 1);
    assert!(!HistoryClient::exists(&env.dir("b")));
    assert_eq!(a.devices().await.unwrap().len(), 1);
    // A typed code that is not 8 digits is refused before anything is sent.
    let req = HistoryClient::request_pairing(&env.url, &env.dir("c"), a.account_id(), "tablet")
        .await
        .unwrap();
    let e = a
        .approve_pairing(req.slot(), "1234", WAIT)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_CODE_INVALID");
}

/// The store swaps the new device's store key in the slot for one it controls.
async fn substituted_key(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let req = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let code = req.code().as_str().to_string();
    let slot = req.slot().to_string();
    let mut attacker = [0u8; 32];
    getrandom::fill(&mut attacker).unwrap();
    let attacker_key = ed25519_dalek::SigningKey::from_bytes(&attacker)
        .verifying_key()
        .to_bytes();
    env.db
        .exec(&format!(
            "UPDATE pairing_slots SET public_key = {} WHERE id = {}",
            env.db.bytes_sql(&attacker_key),
            env.db.bytes_sql(&hex::decode(&slot).unwrap()),
        ))
        .await;
    let pending = a.list_pairing_requests().await.unwrap();
    assert!(!pending[0].key_matches);
    let waiting = tokio::spawn(req.await_approval(WAIT));
    let e = a.approve_pairing(&slot, &code, WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_KEY_MISMATCH");
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_REJECTED");
    assert_eq!(active_credentials(&a).await, 1);
    assert!(!HistoryClient::exists(&env.dir("b")));
}

/// The store replaces the whole request (its own consistent key, id and SPAKE2 message,
/// built with a guessed code) and forwards the approver's response to the real device.
async fn substituted_request(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let req = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let code = req.code().as_str().to_string();
    let slot = req.slot().to_string();
    // The attacker's own request, from a slot it opened.
    let evil = HistoryClient::request_pairing(&env.url, &env.dir("evil"), a.account_id(), "x")
        .await
        .unwrap();
    let evil_slot = evil.slot().to_string();
    let evil_request = slot_bytes(env, a.account_id(), &evil_slot, "request").await;
    let evil_key = slot_bytes(env, a.account_id(), &evil_slot, "public_key").await;
    let id = env.db.bytes_sql(&hex::decode(&slot).unwrap());
    env.db
        .exec(&format!(
            "UPDATE pairing_slots SET request = {}, public_key = {} WHERE id = {id}",
            env.db.bytes_sql(&evil_request),
            env.db.bytes_sql(&evil_key),
        ))
        .await;
    assert!(a.list_pairing_requests().await.unwrap()[0].key_matches);
    let waiting = tokio::spawn(req.await_approval(WAIT));
    let e = a.approve_pairing(&slot, &code, WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_CONFIRM_FAILED", "{e}");
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_AUTH_FAILED", "{e}");
    // The attacker cannot open the response either (its code is not the one typed).
    let response = slot_bytes(env, a.account_id(), &slot, "response").await;
    env.db
        .exec(&format!(
            "UPDATE pairing_slots SET state = 'responded', response = {} WHERE id = {}",
            env.db.bytes_sql(&response),
            env.db.bytes_sql(&hex::decode(&evil_slot).unwrap()),
        ))
        .await;
    if evil.code().as_str() != code {
        let e = evil.await_approval(WAIT).await.unwrap_err();
        assert_eq!(code_of(&e), "PAIRING_AUTH_FAILED", "{e}");
    }
    assert_eq!(active_credentials(&a).await, 1);
    assert!(!HistoryClient::exists(&env.dir("b")));
    assert!(!HistoryClient::exists(&env.dir("evil")));
}

/// The store (not the new device) posts a confirmation.
async fn forged_confirmation(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let req = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let code = req.code().as_str().to_string();
    let slot = req.slot().to_string();
    let url = env.url.clone();
    let account = a.account_id().to_string();
    let s2 = slot.clone();
    let forger = tokio::spawn(async move {
        let s = StoreClient::new(&url, &account).unwrap();
        loop {
            if s.requester_slot(&s2).await.unwrap().state == "responded" {
                let mut forged = b"SVPC\x01".to_vec();
                forged.extend_from_slice(&[0x42; 32]);
                s.confirm_pairing(&s2, forged).await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let e = a.approve_pairing(&slot, &code, WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_CONFIRM_FAILED", "{e}");
    forger.await.unwrap();
    assert_eq!(active_credentials(&a).await, 1);
    // The real device learns the slot was rejected.
    let e = req.await_approval(WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_REJECTED");
    drop(a);
}

/// An approver's response from an earlier pairing, replayed into a new slot.
async fn replayed_response(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let first = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let code = first.code().as_str().to_string();
    let slot1 = first.slot().to_string();
    let waiting = tokio::spawn(first.await_approval(WAIT));
    a.approve_pairing(&slot1, &code, WAIT).await.unwrap();
    waiting.await.unwrap().unwrap();
    let old = slot_bytes(env, a.account_id(), &slot1, "response").await;

    let second = HistoryClient::request_pairing(&env.url, &env.dir("c"), a.account_id(), "tablet")
        .await
        .unwrap();
    env.db
        .exec(&format!(
            "UPDATE pairing_slots SET state = 'responded', response = {} WHERE id = {}",
            env.db.bytes_sql(&old),
            env.db.bytes_sql(&hex::decode(second.slot()).unwrap()),
        ))
        .await;
    let e = second.await_approval(WAIT).await.unwrap_err();
    assert_eq!(code_of(&e), "PAIRING_AUTH_FAILED", "{e}");
    assert!(!HistoryClient::exists(&env.dir("c")));
    assert_eq!(active_credentials(&a).await, 2);
}

async fn expired_and_foreign_slots(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "laptop")
        .await
        .unwrap();
    let mut other = HistoryClient::create_account(&env.url, &env.dir("o"), "other")
        .await
        .unwrap();
    let req = HistoryClient::request_pairing(&env.url, &env.dir("b"), a.account_id(), "phone")
        .await
        .unwrap();
    let code = req.code().as_str().to_string();
    let slot = req.slot().to_string();
    // Another account's device cannot see or answer it.
    assert!(other.list_pairing_requests().await.unwrap().is_empty());
    let e = other.approve_pairing(&slot, &code, WAIT).await.unwrap_err();
    assert_eq!(e.store_code(), Some("pairing_not_found"));
    // Expired: both sides get the store's code, nothing is registered.
    env.db
        .exec(&format!(
            "UPDATE pairing_slots SET expires_at = 1 WHERE id = {}",
            env.db.bytes_sql(&hex::decode(&slot).unwrap()),
        ))
        .await;
    let e = a.approve_pairing(&slot, &code, WAIT).await.unwrap_err();
    assert_eq!(e.store_code(), Some("pairing_expired"));
    let e = req.await_approval(WAIT).await.unwrap_err();
    assert_eq!(e.store_code(), Some("pairing_expired"));
    assert_eq!(active_credentials(&a).await, 1);
    // Unknown account; too many pending requests; an over-long name.
    let e = HistoryClient::request_pairing(&env.url, &env.dir("x"), &"0".repeat(32), "phone")
        .await
        .unwrap_err();
    assert_eq!(e.store_code(), Some("unknown_account"));
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(
            HistoryClient::request_pairing(
                &env.url,
                &env.dir(&format!("p{i}")),
                a.account_id(),
                "p",
            )
            .await
            .unwrap(),
        );
    }
    let e = HistoryClient::request_pairing(&env.url, &env.dir("p5"), a.account_id(), "p")
        .await
        .unwrap_err();
    assert_eq!(e.store_code(), Some("too_many_pairings"));
    let e = HistoryClient::request_pairing(
        &env.url,
        &env.dir("long"),
        other.account_id(),
        &"n".repeat(65),
    )
    .await
    .unwrap_err();
    assert_eq!(e.store_code(), Some("malformed_request"));
    other.sync().await.unwrap();
}

both_backends!(
    round_trip,
    wrong_code,
    substituted_key,
    substituted_request,
    forged_confirmation,
    replayed_response,
    expired_and_foreign_slots
);
