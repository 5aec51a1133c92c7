//! Every parser of store-supplied (or locally persisted) bytes returns an error rather than
//! panicking, on arbitrary input and on mutations of valid input.

mod common;

use common::*;
use proptest::prelude::*;
use sotto_vault::pairing::PairingRequest;
use sotto_vault::*;

struct Fixture {
    vault: Vault,
    laptop: CredentialKeys,
    blob: Vec<u8>,
    record: Vec<u8>,
    sealed: Vec<u8>,
    request: Vec<u8>,
    response: Vec<u8>,
    confirm: Vec<u8>,
}

fn fixture() -> Fixture {
    let mut rng = TestRng::new("parsers");
    let vault = Vault::create(ACCOUNT, rng.bytes()).unwrap();
    let laptop = credential("laptop", ACCOUNT);
    let phone = credential("phone", ACCOUNT);
    let blob = vault
        .seal_payload(
            b"c",
            1,
            &Payload::Conversation(conversation("x")),
            rng.bytes(),
        )
        .unwrap();
    let record = laptop.wrap(vault.key(1).unwrap(), rng.bytes());
    let sealed = seal_account_key(
        &laptop.public(),
        vault.key(1).unwrap(),
        rng.bytes(),
        rng.bytes(),
    )
    .unwrap();
    let (state, code, request) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let (_p, response) = approve(
        &vault,
        &laptop,
        &request,
        &code,
        ApproveRandomness {
            spake_seed: rng.bytes(),
            ephemeral: rng.bytes(),
            nonce: rng.bytes(),
        },
    )
    .unwrap();
    let (_paired, confirm) = state.finish(&response).unwrap();
    Fixture {
        vault,
        laptop,
        blob,
        record,
        sealed,
        request,
        response,
        confirm,
    }
}

fn run_all(f: &Fixture, bytes: &[u8]) {
    let _ = parse_item_header(bytes);
    let _ = f.vault.open_item(b"c", None, bytes);
    let _ = f
        .vault
        .open_payload(b"c", Some(ItemKind::Conversation), bytes);
    let _ = parse_wrapped_key(bytes);
    let _ = f.laptop.unwrap(bytes, None);
    let _ = PairingRequest::parse(bytes);
    let _ = SeenVersions::decode(ACCOUNT, bytes);
    for kind in [
        ItemKind::Conversation,
        ItemKind::Folder,
        ItemKind::Settings,
        ItemKind::Index,
        ItemKind::Devices,
    ] {
        let _ = Payload::decode(kind, bytes);
    }
    let mut rng = TestRng::new("parsers-run");
    let phone = credential("phone", ACCOUNT);
    let (state, code, _r) = Requester::start(&phone, rng.bytes(), rng.bytes());
    let _ = state.finish(bytes);
    let (pending, _resp) = approve(
        &f.vault,
        &f.laptop,
        &f.request,
        &code,
        ApproveRandomness {
            spake_seed: rng.bytes(),
            ephemeral: rng.bytes(),
            nonce: rng.bytes(),
        },
    )
    .unwrap();
    let _ = pending.finish(bytes);
    let _ = approve(
        &f.vault,
        &f.laptop,
        bytes,
        &code,
        ApproveRandomness {
            spake_seed: [1; 32],
            ephemeral: [2; 32],
            nonce: [3; 24],
        },
    );
}

fn mutate(base: &[u8], edits: &[(u16, u8)], cut: Option<u16>) -> Vec<u8> {
    let mut v = base.to_vec();
    for (pos, x) in edits {
        if !v.is_empty() {
            let i = *pos as usize % v.len();
            v[i] ^= x;
        }
    }
    if let Some(c) = cut {
        v.truncate(c as usize % (v.len() + 1));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture();
        run_all(&f, &bytes);
    }

    #[test]
    fn mutated_valid_inputs_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<u16>()),
    ) {
        let f = fixture();
        let base = [&f.blob, &f.record, &f.sealed, &f.request, &f.response, &f.confirm][which];
        run_all(&f, &mutate(base, &edits, cut));
    }

    #[test]
    fn magic_prefixed_garbage_never_panics(
        magic in 0usize..5,
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let f = fixture();
        let mut bytes = [&b"SVIT\x01"[..], b"SVWK\x01", b"SVPQ\x01", b"SVPS\x01", b"SVPC\x01"][magic].to_vec();
        bytes.extend(rest);
        run_all(&f, &bytes);
    }

    #[test]
    fn arbitrary_codes_never_panic(s in ".{0,20}") {
        let _ = PairingCode::parse(&s);
    }
}
