//! Device pairing through a malicious store.

mod common;

use common::*;
use sotto_vault::pairing::PairingRequest;
use sotto_vault::*;

fn randomness(rng: &mut TestRng) -> ApproveRandomness {
    ApproveRandomness {
        spake_seed: rng.bytes(),
        ephemeral: rng.bytes(),
        nonce: rng.bytes(),
    }
}

/// An account with two epochs, held by "laptop".
fn setup(rng: &mut TestRng) -> (Vault, CredentialKeys) {
    let mut v = Vault::create(ACCOUNT, rng.bytes()).unwrap();
    v.rotate(rng.bytes()).unwrap();
    (v, credential("laptop", ACCOUNT))
}

fn wrong(code: &PairingCode) -> PairingCode {
    let mut s: Vec<u8> = code.as_str().bytes().collect();
    s[7] = if s[7] == b'9' { b'0' } else { s[7] + 1 };
    PairingCode::parse(std::str::from_utf8(&s).unwrap()).unwrap()
}

#[test]
fn pairing_succeeds_with_the_right_code() {
    let mut rng = TestRng::new("pair-ok");
    let (v, laptop) = setup(&mut rng);
    let phone = credential("phone", ACCOUNT);

    let (req_state, shown, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    assert_eq!(shown.as_str().len(), 8);
    let typed = PairingCode::parse(&shown.display()).unwrap();
    let (pending, response) = approve(&v, &laptop, &request, &typed, randomness(&mut rng)).unwrap();
    assert_eq!(pending.device(), &phone.public());
    let (paired, confirm) = req_state.finish(&response).unwrap();
    assert_eq!(paired.approver, laptop.public());
    assert_eq!(paired.vault.epochs().collect::<Vec<_>>(), vec![1, 2]);
    let added = pending.finish(&confirm).unwrap();
    assert_eq!(added, phone.public());

    // The new device reads items of both epochs.
    let item = v
        .seal_item(
            b"i",
            ItemKind::Conversation,
            1,
            b"shared history",
            rng.bytes(),
        )
        .unwrap();
    assert_eq!(
        &paired.vault.open_item(b"i", None, &item).unwrap().body[..],
        b"shared history"
    );
    let old = Vault::from_keys(ACCOUNT, [v.key(1).unwrap().clone()]).unwrap();
    let old_item = old
        .seal_item(b"o", ItemKind::Folder, 1, b"older", rng.bytes())
        .unwrap();
    assert_eq!(
        &paired.vault.open_item(b"o", None, &old_item).unwrap().body[..],
        b"older"
    );

    // It wraps the keys for itself and can unlock from the store afterwards.
    let records = paired.vault.wrap_all(&phone, &mut rng.filler()).unwrap();
    let unlocked = Vault::unlock(&phone, records.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(unlocked.current_epoch(), 2);
}

#[test]
fn wrong_code_fails_on_both_sides() {
    let mut rng = TestRng::new("pair-wrong");
    let (v, laptop) = setup(&mut rng);
    let phone = credential("phone", ACCOUNT);
    let (req_state, shown, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let (pending, response) =
        approve(&v, &laptop, &request, &wrong(&shown), randomness(&mut rng)).unwrap();
    assert_eq!(
        req_state.finish(&response).unwrap_err().code(),
        "PAIRING_AUTH_FAILED"
    );
    // Whatever comes back, the approver does not add the device.
    let mut fake = b"SVPC\x01".to_vec();
    fake.extend_from_slice(&[0; 32]);
    assert_eq!(
        pending.finish(&fake).unwrap_err().code(),
        "PAIRING_CONFIRM_FAILED"
    );
}

#[test]
fn store_substituting_the_new_device_key_learns_nothing() {
    let mut rng = TestRng::new("pair-mitm-device");
    let (v, laptop) = setup(&mut rng);
    let phone = credential("phone", ACCOUNT);
    let (_phone_state, shown, _real_request) = Requester::start(&phone, rng.bytes(), rng.bytes());

    // The store drops the phone's request and posts its own, with its own key, guessing
    // the code (it never sees the phone's screen). The user types the real code.
    let evil = credential("evil", ACCOUNT);
    let (evil_state, _evil_code, evil_request) = Requester::start(&evil, rng.bytes(), rng.bytes());
    let (pending, response) =
        approve(&v, &laptop, &evil_request, &shown, randomness(&mut rng)).unwrap();
    // The store cannot open the response (its guess was wrong) ...
    assert_eq!(
        evil_state.finish(&response).unwrap_err().code(),
        "PAIRING_AUTH_FAILED"
    );
    // ... nor confirm, so its key never enters the device directory.
    let mut forged = b"SVPC\x01".to_vec();
    forged.extend_from_slice(&rng.bytes::<32>());
    assert_eq!(
        pending.finish(&forged).unwrap_err().code(),
        "PAIRING_CONFIRM_FAILED"
    );

    // The store keeps the phone's SPAKE2 message but swaps only the wrapping key.
    let (phone_state, shown, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let mut swapped = request.clone();
    let parsed = PairingRequest::parse(&request).unwrap();
    let pos = request.len() - 33 - 32;
    assert_eq!(&request[pos..pos + 32], &parsed.credential.wrap_public);
    swapped[pos..pos + 32].copy_from_slice(&evil.public().wrap_public);
    let (pending, response) = approve(&v, &laptop, &swapped, &shown, randomness(&mut rng)).unwrap();
    // The real phone refuses (transcript and X25519 differ); the store, lacking the
    // phone's SPAKE2 secret, has no key either, and cannot confirm.
    assert_eq!(
        phone_state.finish(&response).unwrap_err().code(),
        "PAIRING_AUTH_FAILED"
    );
    assert_eq!(
        pending.finish(&forged).unwrap_err().code(),
        "PAIRING_CONFIRM_FAILED"
    );
}

#[test]
fn only_the_code_protects_against_substitution() {
    // The bound stated in docs/vault.md: a store that substitutes its key AND guesses the
    // code (probability 1e-8 per session) succeeds. This test documents that the code is
    // the only secret, so clients must never allow a second attempt with the same code.
    let mut rng = TestRng::new("pair-guess");
    let (v, laptop) = setup(&mut rng);
    let phone = credential("phone", ACCOUNT);
    let (_s, shown, _r) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let evil = credential("evil", ACCOUNT);
    // Force the evil requester to use the same code (the lucky guess).
    let mut code_seed = [0u8; 8];
    let target: u64 = shown.as_str().parse().unwrap();
    code_seed.copy_from_slice(&target.to_be_bytes());
    let (evil_state, guessed, evil_request) = Requester::start(&evil, code_seed, rng.bytes());
    assert_eq!(guessed.as_str(), shown.as_str());
    let (_p, response) = approve(&v, &laptop, &evil_request, &shown, randomness(&mut rng)).unwrap();
    assert!(evil_state.finish(&response).is_ok());
}

#[test]
fn store_impersonating_the_approver_cannot_inject_keys() {
    let mut rng = TestRng::new("pair-inject");
    let phone = credential("phone", ACCOUNT);
    let (phone_state, shown, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    // The store answers itself with keys it knows, guessing the code.
    let fake_vault = Vault::create(ACCOUNT, rng.bytes()).unwrap();
    let fake_approver = credential("evil", ACCOUNT);
    let (_p, response) = approve(
        &fake_vault,
        &fake_approver,
        &request,
        &wrong(&shown),
        randomness(&mut rng),
    )
    .unwrap();
    assert_eq!(
        phone_state.finish(&response).unwrap_err().code(),
        "PAIRING_AUTH_FAILED"
    );
}

#[test]
fn tampered_or_replayed_responses_fail() {
    let mut rng = TestRng::new("pair-tamper");
    let (v, laptop) = setup(&mut rng);
    let phone = credential("phone", ACCOUNT);

    // A response from an earlier, completed session is useless in a new one.
    let (s1, code1, r1) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let (_p1, old_response) = approve(&v, &laptop, &r1, &code1, randomness(&mut rng)).unwrap();
    s1.finish(&old_response).unwrap();
    let (s2, _code2, _r2) = Requester::start(&phone, rng.bytes(), rng.bytes());
    assert_eq!(
        s2.finish(&old_response).unwrap_err().code(),
        "PAIRING_AUTH_FAILED"
    );

    // Every single-byte change of a fresh response is refused.
    let (_s, code, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let (_p, response) = approve(&v, &laptop, &request, &code, randomness(&mut rng)).unwrap();
    for i in 0..response.len() {
        // Rebuild the requester deterministically for each attempt.
        let mut again = TestRng::new("pair-tamper-again");
        let (state, code, request) = Requester::start(&phone, again.bytes(), again.bytes());
        let (_p, response) = approve(&v, &laptop, &request, &code, randomness(&mut again)).unwrap();
        let mut bad = response.clone();
        bad[i] ^= 0x01;
        let err = state.finish(&bad).unwrap_err();
        assert!(
            matches!(
                err.code(),
                "PAIRING_AUTH_FAILED"
                    | "MALFORMED"
                    | "UNSUPPORTED_FORMAT"
                    | "TRUNCATED"
                    | "WEAK_PUBLIC_KEY"
            ),
            "byte {i}: {}",
            err.code()
        );
    }
    assert!(!response.is_empty());

    // The approver's identity in the response is authenticated too.
    let mut again = TestRng::new("pair-tamper-id");
    let (state, code, request) = Requester::start(&phone, again.bytes(), again.bytes());
    let (_p, response) = approve(&v, &laptop, &request, &code, randomness(&mut again)).unwrap();
    let pk_pos = 4 + 1 + 2 + b"laptop".len();
    let mut swapped = response.clone();
    swapped[pk_pos..pk_pos + 32].copy_from_slice(&credential("evil", ACCOUNT).public().wrap_public);
    assert_eq!(
        state.finish(&swapped).unwrap_err().code(),
        "PAIRING_AUTH_FAILED"
    );
}

#[test]
fn tampered_confirmation_fails() {
    let mut rng = TestRng::new("pair-confirm");
    let (v, laptop) = setup(&mut rng);
    let phone = credential("phone", ACCOUNT);
    let (state, code, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let (pending, response) = approve(&v, &laptop, &request, &code, randomness(&mut rng)).unwrap();
    let (_paired, mut confirm) = state.finish(&response).unwrap();
    let last = confirm.len() - 1;
    confirm[last] ^= 0x80;
    assert_eq!(
        pending.finish(&confirm).unwrap_err().code(),
        "PAIRING_CONFIRM_FAILED"
    );
}

#[test]
fn request_validation() {
    let mut rng = TestRng::new("pair-req");
    let (v, laptop) = setup(&mut rng);
    // A request for another account.
    let other = credential("phone", b"account-2");
    let (_s, code, request) = Requester::start(&other, rng.bytes(), rng.bytes());
    assert_eq!(
        approve(&v, &laptop, &request, &code, randomness(&mut rng))
            .unwrap_err()
            .code(),
        "MALFORMED"
    );
    // The approver's own credential id.
    let (_s, code, request) = Requester::start(&laptop, rng.bytes(), rng.bytes());
    assert_eq!(
        approve(&v, &laptop, &request, &code, randomness(&mut rng))
            .unwrap_err()
            .code(),
        "MALFORMED"
    );
    // A low-order wrapping key.
    let phone = credential("phone", ACCOUNT);
    let (_s, code, mut request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let pos = request.len() - 33 - 32;
    request[pos..pos + 32].copy_from_slice(&[0; 32]);
    assert_eq!(
        approve(&v, &laptop, &request, &code, randomness(&mut rng))
            .unwrap_err()
            .code(),
        "WEAK_PUBLIC_KEY"
    );
    // Truncated / trailing bytes.
    let (_s, code, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    assert_eq!(
        approve(
            &v,
            &laptop,
            &request[..request.len() - 1],
            &code,
            randomness(&mut rng)
        )
        .unwrap_err()
        .code(),
        "TRUNCATED"
    );
    let mut long = request.clone();
    long.push(0);
    assert_eq!(
        approve(&v, &laptop, &long, &code, randomness(&mut rng))
            .unwrap_err()
            .code(),
        "MALFORMED"
    );
}

#[test]
fn pairing_codes() {
    assert_eq!(PairingCode::from_random([0; 8]).as_str(), "00000000");
    assert_eq!(
        PairingCode::from_random(123_456_789u64.to_be_bytes()).as_str(),
        "23456789"
    );
    let c = PairingCode::parse("0123-4567").unwrap();
    assert_eq!(c.as_str(), "01234567");
    assert_eq!(c.display(), "0123 4567");
    assert_eq!(
        PairingCode::parse(" 0123 4567 ").unwrap().as_str(),
        "01234567"
    );
    for bad in ["", "1234567", "123456789", "1234 567a", "１２３４５６７８"] {
        assert_eq!(
            PairingCode::parse(bad).unwrap_err().code(),
            "PAIRING_CODE_INVALID",
            "{bad}"
        );
    }
}
