//! Regenerates the test vectors in docs/vault.md from fixed inputs and compares them with
//! the published ones. Run with `SOTTO_BLESS=1` to rewrite the block after an intended
//! change. Intermediate values (KEK, item key, plaintext layout) are recomputed here
//! independently from the formulas in docs/vault.md with the primitives directly.

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use sotto_vault::order::keys_between;
use sotto_vault::*;

const BEGIN: &str = "<!-- vectors:begin -->";
const END: &str = "<!-- vectors:end -->";

fn fixed<const N: usize>(b: u8) -> [u8; N] {
    [b; N]
}

fn id(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .unwrap();
    out
}

fn open(key: &[u8; 32], nonce: &[u8], aad: &[u8], ct: &[u8]) -> Vec<u8> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), AeadPayload { msg: ct, aad })
        .expect("independent decryption")
}

const ACCOUNT: &[u8] = b"acct-0001";

fn generate() -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &[u8]| out.push_str(&format!("{k} = {}\n", hex::encode(v)));

    // 1. PRF salt and credential keys.
    line("prf_salt", &prf_salt());
    let laptop_root = fixed::<32>(0x11);
    line("account_id", ACCOUNT);
    line("laptop_credential_id", b"laptop");
    line("laptop_root_secret", &laptop_root);
    let laptop =
        CredentialKeys::derive(&RootSecret::from_bytes(laptop_root), ACCOUNT, b"laptop").unwrap();
    let mut info = b"sotto-vault/v1/kek\0".to_vec();
    info.extend(id(ACCOUNT));
    info.extend(id(b"laptop"));
    let kek = hkdf(b"sotto-vault/v1/root", &laptop_root, &info);
    line("laptop_kek", &kek);
    let mut info = b"sotto-vault/v1/credential-x25519\0".to_vec();
    info.extend(id(ACCOUNT));
    info.extend(id(b"laptop"));
    let x = hkdf(b"sotto-vault/v1/root", &laptop_root, &info);
    line("laptop_x25519_secret", &x);
    let xpub = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(x)).to_bytes();
    assert_eq!(xpub, laptop.public().wrap_public);
    line("laptop_x25519_public", &xpub);

    // 2. Wrapped-key record (algorithm 1, KEK).
    let k1 = fixed::<32>(0x22);
    line("account_key_epoch_1", &k1);
    let key1 = AccountKey::new(1, k1).unwrap();
    let wrap_nonce = fixed::<24>(0x33);
    line("wrap_nonce", &wrap_nonce);
    let rec = laptop.wrap(&key1, wrap_nonce);
    line("wrapped_key_laptop_epoch_1", &rec);
    let hdr_len = rec.len() - 24 - 48;
    let mut aad = b"sotto-vault/v1/wrapped-key-ad\0".to_vec();
    aad.extend_from_slice(&rec[..hdr_len]);
    assert_eq!(open(&kek, &wrap_nonce, &aad, &rec[hdr_len + 24..]), k1);

    // 3. Sealed record (algorithm 2) for the phone.
    let phone_root = fixed::<32>(0x44);
    line("phone_credential_id", b"phone");
    line("phone_root_secret", &phone_root);
    let phone =
        CredentialKeys::derive(&RootSecret::from_bytes(phone_root), ACCOUNT, b"phone").unwrap();
    line("phone_x25519_public", &phone.public().wrap_public);
    let seal_eph = fixed::<32>(0x55);
    let seal_nonce = fixed::<24>(0x66);
    line("seal_ephemeral_secret", &seal_eph);
    line("seal_nonce", &seal_nonce);
    let sealed = seal_account_key(&phone.public(), &key1, seal_eph, seal_nonce).unwrap();
    line("sealed_key_phone_epoch_1", &sealed);
    assert_eq!(phone.unwrap(&sealed, Some(1)).unwrap().epoch(), 1);

    // 4. Items.
    let vault = Vault::from_keys(ACCOUNT, [key1.clone()]).unwrap();
    let item_id = b"conv-0001";
    line("item_id", item_id);
    let mut info = b"sotto-vault/v1/item-key\0".to_vec();
    info.extend(1u32.to_be_bytes());
    info.extend(id(ACCOUNT));
    info.extend(id(item_id));
    let ik = hkdf(b"sotto-vault/v1/item", &k1, &info);
    line("item_key_epoch_1", &ik);
    let body = b"hello, vault";
    line("item_body", body);
    let item_nonce = fixed::<24>(0x77);
    line("item_nonce", &item_nonce);
    let blob = vault
        .seal_item(item_id, ItemKind::Conversation, 1, body, item_nonce)
        .unwrap();
    line("item_blob_v1", &blob);
    let mut aad = b"sotto-vault/v1/item-ad\0".to_vec();
    aad.extend_from_slice(&blob[..19]);
    aad.extend(id(ACCOUNT));
    aad.extend(id(item_id));
    let pt = open(&ik, &item_nonce, &aad, &blob[43..]);
    assert_eq!(pt.len(), 256);
    assert_eq!(&pt[..4], &(body.len() as u32).to_be_bytes());
    assert_eq!(&pt[4..4 + body.len()], body);
    assert!(pt[4 + body.len()..].iter().all(|&b| b == 0));

    let conv = Conversation {
        title: "Hello".into(),
        messages: vec![Message {
            id: "m1".into(),
            role: Role::User,
            content: "Once upon a time".into(),
            created_at: 1_700_000_000_000,
            device: "laptop".into(),
        }],
        model: "stories260K".into(),
        folder_id: None,
        order_key: "a0".into(),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        updated_by: "laptop".into(),
    };
    let payload = Payload::Conversation(conv);
    line("conversation_body", &payload.encode());
    let typed_nonce = fixed::<24>(0x88);
    line("conversation_nonce", &typed_nonce);
    line(
        "conversation_blob_v2",
        &vault
            .seal_payload(item_id, 2, &payload, typed_nonce)
            .unwrap(),
    );
    let tomb_nonce = fixed::<24>(0x99);
    line("tombstone_nonce", &tomb_nonce);
    line(
        "tombstone_blob_v3",
        &vault
            .seal_tombstone(item_id, ItemKind::Conversation, 3, tomb_nonce)
            .unwrap(),
    );
    let mut vault2 = Vault::from_keys(ACCOUNT, [key1]).unwrap();
    let k2 = fixed::<32>(0xAA);
    line("account_key_epoch_2", &k2);
    vault2.rotate(k2).unwrap();
    let e2_nonce = fixed::<24>(0xAB);
    line("epoch_2_nonce", &e2_nonce);
    line(
        "item_blob_v4_epoch_2",
        &vault2
            .seal_item(item_id, ItemKind::Conversation, 4, body, e2_nonce)
            .unwrap(),
    );

    // 5. Pairing: laptop (approver, epochs 1 and 2) pairs the phone (requester).
    let code_random = [1, 2, 3, 4, 5, 6, 7, 8];
    line("pair_code_random", &code_random);
    let req_seed = fixed::<32>(0xBB);
    line("pair_requester_spake_seed", &req_seed);
    let (state, code, request) = Requester::start(&phone, code_random, req_seed);
    line("pair_code_ascii", code.as_str().as_bytes());
    line("pair_request", &request);
    let r = ApproveRandomness {
        spake_seed: fixed(0xCC),
        ephemeral: fixed(0xDD),
        nonce: fixed(0xEE),
    };
    line("pair_approver_spake_seed", &r.spake_seed);
    line("pair_approver_ephemeral", &r.ephemeral);
    line("pair_nonce", &r.nonce);
    let (pending, response) = approve(&vault2, &laptop, &request, &code, r).unwrap();
    line("pair_response", &response);
    let (paired, confirm) = state.finish(&response).unwrap();
    assert_eq!(paired.vault.epochs().collect::<Vec<_>>(), vec![1, 2]);
    line("pair_confirm", &confirm);
    pending.finish(&confirm).unwrap();

    // 6. Order keys (ASCII).
    let keys = keys_between(None, None, 3).unwrap();
    line("order_first_three_ascii", keys.join(",").as_bytes());
    let mid = key_between(Some(&keys[0]), Some(&keys[1])).unwrap();
    line("order_between_first_two_ascii", mid.as_bytes());
    out
}

#[test]
fn vault_vectors_match_docs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/vault.md");
    let doc = std::fs::read_to_string(path).expect("docs/vault.md");
    let start = doc.find(BEGIN).expect("vectors begin marker") + BEGIN.len();
    let end = doc.find(END).expect("vectors end marker");
    let block = format!("\n```text\n{}```\n", generate());
    if std::env::var_os("SOTTO_BLESS").is_some() {
        let new = format!("{}{}{}", &doc[..start], block, &doc[end..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..end],
        block,
        "vectors changed: rerun with SOTTO_BLESS=1 if intended"
    );
}

#[test]
fn vectors_are_deterministic() {
    assert_eq!(generate(), generate());
}
