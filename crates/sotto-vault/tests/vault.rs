//! Key hierarchy, item encryption and every way a malicious store can tamper with them.

mod common;

use common::*;
use sotto_vault::item::{MIN_BUCKET, blob_len, padded_len};
use sotto_vault::*;

fn vault(rng: &mut TestRng) -> Vault {
    Vault::create(ACCOUNT, rng.bytes()).unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
    r.expect_err("expected an error").code()
}

#[test]
fn prf_salt_is_sha256_of_label() {
    use sha2::{Digest, Sha256};
    assert_eq!(
        prf_salt(),
        <[u8; 32]>::from(Sha256::digest(b"sotto-vault-prf-salt-v1"))
    );
}

#[test]
fn item_round_trip_all_kinds_and_sizes() {
    let mut rng = TestRng::new("round-trip");
    let v = vault(&mut rng);
    for (i, len) in [0usize, 1, 251, 252, 253, 1000, 4096, 70_000]
        .into_iter()
        .enumerate()
    {
        let body: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        for kind in [
            ItemKind::Conversation,
            ItemKind::Folder,
            ItemKind::Settings,
            ItemKind::Index,
            ItemKind::Devices,
        ] {
            let id = format!("item-{i}");
            let blob = v
                .seal_item(id.as_bytes(), kind, 7, &body, rng.bytes())
                .unwrap();
            assert_eq!(blob.len(), blob_len(len).unwrap());
            let o = v.open_item(id.as_bytes(), Some(kind), &blob).unwrap();
            assert_eq!(&o.body[..], &body[..]);
            assert_eq!(
                o.header,
                ItemHeader {
                    kind,
                    deleted: false,
                    epoch: 1,
                    version: 7
                }
            );
            assert_eq!(parse_item_header(&blob).unwrap(), o.header);
        }
    }
}

#[test]
fn padding_buckets() {
    assert_eq!(padded_len(0).unwrap(), MIN_BUCKET);
    assert_eq!(padded_len(252).unwrap(), 256);
    assert_eq!(padded_len(253).unwrap(), 512);
    assert_eq!(padded_len(508).unwrap(), 512);
    assert_eq!(padded_len(509).unwrap(), 1024);
    assert_eq!(padded_len(item::MAX_BODY_LEN).unwrap(), 1 << 24);
    assert_eq!(code(padded_len(item::MAX_BODY_LEN + 1)), "ITEM_TOO_LARGE");
    // Every body length in a bucket gives the same blob size.
    let mut rng = TestRng::new("pad");
    let v = vault(&mut rng);
    let sizes: std::collections::BTreeSet<usize> = (0..=252)
        .map(|n| {
            v.seal_item(b"x", ItemKind::Folder, 1, &vec![1; n], rng.bytes())
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes.len(), 1);
}

#[test]
fn typed_payload_round_trip_and_tombstone() {
    let mut rng = TestRng::new("payload");
    let v = vault(&mut rng);
    let c = Payload::Conversation(conversation("Secret plans"));
    let blob = v.seal_payload(b"c1", 1, &c, rng.bytes()).unwrap();
    let (h, p) = v
        .open_payload(b"c1", Some(ItemKind::Conversation), &blob)
        .unwrap();
    assert_eq!(h.version, 1);
    assert_eq!(p.unwrap(), c);
    // The title never appears in the blob.
    assert!(!blob.windows(6).any(|w| w == b"Secret"));

    let f = Payload::Folder(Folder {
        name: "Work".into(),
        instructions: "Answer tersely.".into(),
        order_key: "a0".into(),
        updated_at: 5,
        updated_by: "d".into(),
    });
    let blob = v.seal_payload(b"f1", 3, &f, rng.bytes()).unwrap();
    assert_eq!(v.open_payload(b"f1", None, &blob).unwrap().1.unwrap(), f);

    let mut s = Settings {
        default_model: Some("stories260K".into()),
        temperature: Some(0.5),
        ..Default::default()
    };
    s.extra.insert("theme".into(), serde_json::json!("dark"));
    let blob = v
        .seal_payload(b"settings", 1, &Payload::Settings(s.clone()), rng.bytes())
        .unwrap();
    assert_eq!(
        v.open_payload(b"settings", None, &blob).unwrap().1.unwrap(),
        Payload::Settings(s)
    );

    let idx = Payload::Index(vec![9, 8, 7]);
    let blob = v.seal_payload(b"idx", 1, &idx, rng.bytes()).unwrap();
    assert_eq!(v.open_payload(b"idx", None, &blob).unwrap().1.unwrap(), idx);

    let t = v
        .seal_tombstone(b"c1", ItemKind::Conversation, 2, rng.bytes())
        .unwrap();
    let (h, p) = v.open_payload(b"c1", None, &t).unwrap();
    assert!(h.deleted);
    assert!(p.is_none());
    // A tombstone is the same size as any small item.
    assert_eq!(t.len(), blob_len(0).unwrap());
}

#[test]
fn swapped_blobs_fail() {
    let mut rng = TestRng::new("swap");
    let v = vault(&mut rng);
    let a = v
        .seal_item(b"item-a", ItemKind::Conversation, 1, b"A", rng.bytes())
        .unwrap();
    // Between items.
    assert_eq!(code(v.open_item(b"item-b", None, &a)), "ITEM_AUTH_FAILED");
    // Between accounts: same key bytes, different account id.
    let mut rng2 = TestRng::new("swap");
    let other = Vault::create(b"account-2", rng2.bytes()).unwrap();
    assert_eq!(
        code(other.open_item(b"item-a", None, &a)),
        "ITEM_AUTH_FAILED"
    );
    // Between accounts with unrelated keys.
    let other = Vault::create(ACCOUNT, rng.bytes()).unwrap();
    assert_eq!(
        code(other.open_item(b"item-a", None, &a)),
        "ITEM_AUTH_FAILED"
    );
    // Between kinds: the expected kind differs ...
    assert_eq!(
        code(v.open_item(b"item-a", Some(ItemKind::Folder), &a)),
        "ITEM_KIND_MISMATCH"
    );
    // ... or the store relabels the kind byte to match.
    let mut relabelled = a.clone();
    relabelled[5] = ItemKind::Folder.byte();
    assert_eq!(
        code(v.open_item(b"item-a", Some(ItemKind::Folder), &relabelled)),
        "ITEM_AUTH_FAILED"
    );
    // Another version number.
    let mut bumped = a.clone();
    bumped[18] = 2;
    assert_eq!(
        code(v.open_item(b"item-a", None, &bumped)),
        "ITEM_AUTH_FAILED"
    );
    // The deleted flag flipped (a live item passed off as a tombstone, and back).
    let mut deleted = a.clone();
    deleted[6] = 1;
    assert_eq!(
        code(v.open_item(b"item-a", None, &deleted)),
        "ITEM_AUTH_FAILED"
    );
    let t = v
        .seal_tombstone(b"item-a", ItemKind::Conversation, 2, rng.bytes())
        .unwrap();
    let mut undeleted = t.clone();
    undeleted[6] = 0;
    assert_eq!(
        code(v.open_item(b"item-a", None, &undeleted)),
        "ITEM_AUTH_FAILED"
    );
}

#[test]
fn version_claim_is_checked() {
    let mut rng = TestRng::new("claim");
    let v = vault(&mut rng);
    let b = v
        .seal_item(b"i", ItemKind::Folder, 4, b"x", rng.bytes())
        .unwrap();
    let o = v.open_item(b"i", None, &b).unwrap();
    o.expect_version(4).unwrap();
    assert_eq!(code(o.expect_version(5)), "ITEM_VERSION_MISMATCH");
}

#[test]
fn every_bit_flip_is_detected() {
    let mut rng = TestRng::new("flip");
    let v = vault(&mut rng);
    let blob = v
        .seal_item(
            b"item",
            ItemKind::Settings,
            3,
            b"settings body",
            rng.bytes(),
        )
        .unwrap();
    for i in 0..blob.len() {
        for bit in 0..8 {
            let mut b = blob.clone();
            b[i] ^= 1 << bit;
            let err = v.open_item(b"item", None, &b).unwrap_err();
            // Header fields may fail to parse first; everything else fails authentication.
            let ok = matches!(
                err.code(),
                "ITEM_AUTH_FAILED"
                    | "MALFORMED"
                    | "UNSUPPORTED_FORMAT"
                    | "UNKNOWN_ITEM_KIND"
                    | "UNKNOWN_EPOCH"
                    | "RESERVED_VERSION"
                    | "INVALID_EPOCH"
            );
            assert!(ok, "byte {i} bit {bit}: {}", err.code());
            if i >= item::ITEM_HEADER_LEN {
                assert_eq!(err.code(), "ITEM_AUTH_FAILED", "byte {i}");
            }
        }
    }
}

#[test]
fn truncated_and_extended_blobs() {
    let mut rng = TestRng::new("trunc");
    let v = vault(&mut rng);
    let blob = v
        .seal_item(b"item", ItemKind::Conversation, 1, &[5; 300], rng.bytes())
        .unwrap();
    for n in [0, 3, 10, 18, 19, 42, 43, 43 + 100, 43 + 256 + 15] {
        assert_eq!(
            code(v.open_item(b"item", None, &blob[..n])),
            "TRUNCATED",
            "len {n}"
        );
    }
    for n in [43 + 256 + 17, blob.len() - 1, blob.len() - 16] {
        assert_eq!(
            code(v.open_item(b"item", None, &blob[..n])),
            "BAD_LENGTH",
            "len {n}"
        );
    }
    // Truncated to the smaller bucket exactly: parses, fails authentication.
    assert_eq!(
        code(v.open_item(b"item", None, &blob[..43 + 256 + 16])),
        "ITEM_AUTH_FAILED"
    );
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(code(v.open_item(b"item", None, &longer)), "BAD_LENGTH");
}

#[test]
fn unknown_epoch_and_bad_ids() {
    let mut rng = TestRng::new("epoch");
    let mut v = vault(&mut rng);
    let old_only = Vault::from_keys(ACCOUNT, [v.key(1).unwrap().clone()]).unwrap();
    v.rotate(rng.bytes()).unwrap();
    let b = v
        .seal_item(b"i", ItemKind::Folder, 1, b"x", rng.bytes())
        .unwrap();
    assert_eq!(code(old_only.open_item(b"i", None, &b)), "UNKNOWN_EPOCH");
    assert_eq!(
        code(v.seal_item(b"", ItemKind::Folder, 1, b"", rng.bytes())),
        "INVALID_ID"
    );
    assert_eq!(
        code(v.seal_item(&[0; 1025], ItemKind::Folder, 1, b"", rng.bytes())),
        "INVALID_ID"
    );
    assert_eq!(
        code(v.seal_item(b"i", ItemKind::Folder, 0, b"", rng.bytes())),
        "RESERVED_VERSION"
    );
    assert_eq!(code(Vault::create(b"", rng.bytes())), "INVALID_ID");
    assert_eq!(code(AccountKey::new(0, [0; 32])), "INVALID_EPOCH");
}

#[test]
fn rollback_equivocation_and_restored_tombstone() {
    let mut rng = TestRng::new("seen");
    let v = vault(&mut rng);
    let mut seen = SeenVersions::new(ACCOUNT).unwrap();
    let id = b"conv";
    let v1 = v
        .seal_item(id, ItemKind::Conversation, 1, b"one", rng.bytes())
        .unwrap();
    let v2 = v
        .seal_item(id, ItemKind::Conversation, 2, b"two", rng.bytes())
        .unwrap();
    let v2_other = v
        .seal_item(id, ItemKind::Conversation, 2, b"TWO", rng.bytes())
        .unwrap();
    let v3_tomb = v
        .seal_tombstone(id, ItemKind::Conversation, 3, rng.bytes())
        .unwrap();

    let open = |b: &[u8]| v.open_item(id, None, b).unwrap();
    assert_eq!(seen.accept(id, &open(&v1), &v1).unwrap(), Freshness::New);
    assert_eq!(seen.accept(id, &open(&v2), &v2).unwrap(), Freshness::New);
    assert_eq!(seen.accept(id, &open(&v2), &v2).unwrap(), Freshness::Same);
    // Replayed older version.
    assert_eq!(code(seen.accept(id, &open(&v1), &v1)), "ROLLBACK_DETECTED");
    // Same version, different blob.
    assert_eq!(
        code(seen.accept(id, &open(&v2_other), &v2_other)),
        "EQUIVOCATION"
    );
    // Deleted, then the store restores the older live blob.
    assert_eq!(
        seen.accept(id, &open(&v3_tomb), &v3_tomb).unwrap(),
        Freshness::New
    );
    assert_eq!(seen.is_deleted(id), Some(true));
    assert_eq!(code(seen.accept(id, &open(&v2), &v2)), "ROLLBACK_DETECTED");
    assert_eq!(seen.highest(id), Some(3));

    // State survives persistence, and is bound to the account.
    let bytes = seen.encode();
    let back = SeenVersions::decode(ACCOUNT, &bytes).unwrap();
    assert_eq!(back, seen);
    assert_eq!(
        code(back.clone().accept(id, &open(&v2), &v2)),
        "ROLLBACK_DETECTED"
    );
    assert_eq!(
        code(SeenVersions::decode(b"account-2", &bytes)),
        "STATE_INVALID"
    );
    assert_eq!(code(SeenVersions::decode(ACCOUNT, b"{")), "STATE_INVALID");
}

#[test]
fn open_checked_combines_both_checks() {
    let mut rng = TestRng::new("checked");
    let v = vault(&mut rng);
    let mut seen = SeenVersions::new(ACCOUNT).unwrap();
    let b1 = v
        .seal_item(b"f", ItemKind::Folder, 1, b"one", rng.bytes())
        .unwrap();
    let b2 = v
        .seal_item(b"f", ItemKind::Folder, 2, b"two", rng.bytes())
        .unwrap();
    let (o, f) = v
        .open_checked(&mut seen, b"f", Some(ItemKind::Folder), &b2)
        .unwrap();
    assert_eq!((&o.body[..], f), (&b"two"[..], Freshness::New));
    assert_eq!(
        code(v.open_checked(&mut seen, b"f", None, &b1)),
        "ROLLBACK_DETECTED"
    );
    assert_eq!(
        code(v.open_checked(&mut seen, b"g", None, &b1)),
        "ITEM_AUTH_FAILED"
    );
    let mut other = SeenVersions::new(b"account-2").unwrap();
    assert_eq!(
        code(v.open_checked(&mut other, b"f", None, &b2)),
        "STATE_INVALID"
    );
}

#[test]
fn own_writes_are_recorded() {
    let mut rng = TestRng::new("own");
    let v = vault(&mut rng);
    let mut seen = SeenVersions::new(ACCOUNT).unwrap();
    let w = v
        .seal_item(b"x", ItemKind::Folder, 5, b"mine", rng.bytes())
        .unwrap();
    assert_eq!(seen.record_own_write(b"x", &w).unwrap(), Freshness::New);
    // The store presents a different version 5 (someone else's) later: equivocation.
    let other = v
        .seal_item(b"x", ItemKind::Folder, 5, b"theirs", rng.bytes())
        .unwrap();
    let o = v.open_item(b"x", None, &other).unwrap();
    assert_eq!(code(seen.accept(b"x", &o, &other)), "EQUIVOCATION");
}

#[test]
fn epoch_regression_is_refused() {
    let mut rng = TestRng::new("regress");
    let mut v = vault(&mut rng);
    let mut seen = SeenVersions::new(ACCOUNT).unwrap();
    let old = v
        .seal_item(b"i", ItemKind::Folder, 9, b"old epoch", rng.bytes())
        .unwrap();
    v.rotate(rng.bytes()).unwrap();
    let new = v
        .seal_item(b"i", ItemKind::Folder, 5, b"new epoch", rng.bytes())
        .unwrap();
    seen.accept(b"i", &v.open_item(b"i", None, &new).unwrap(), &new)
        .unwrap();
    // Version 9 under epoch 1 after version 5 under epoch 2: e.g. forged by a removed
    // device that still holds epoch 1.
    let o = v.open_item(b"i", None, &old).unwrap();
    assert_eq!(code(seen.accept(b"i", &o, &old)), "EPOCH_REGRESSION");
}

#[test]
fn withheld_items_are_reported() {
    let mut rng = TestRng::new("withhold");
    let v = vault(&mut rng);
    let mut seen = SeenVersions::new(ACCOUNT).unwrap();
    for (id, ver) in [(&b"a"[..], 3u64), (b"b", 1), (b"c", 2)] {
        let blob = v
            .seal_item(id, ItemKind::Conversation, ver, b"x", rng.bytes())
            .unwrap();
        seen.accept(id, &v.open_item(id, None, &blob).unwrap(), &blob)
            .unwrap();
    }
    let t = v
        .seal_tombstone(b"c", ItemKind::Conversation, 3, rng.bytes())
        .unwrap();
    seen.accept(b"c", &v.open_item(b"c", None, &t).unwrap(), &t)
        .unwrap();

    assert!(
        seen.check_listing([(&b"a"[..], 3), (b"b", 1), (b"c", 3)])
            .is_empty()
    );
    // New items in the listing are fine; the purged tombstone "c" is fine.
    assert!(
        seen.check_listing([(&b"a"[..], 4), (b"b", 1), (b"d", 1)])
            .is_empty()
    );
    let f = seen.check_listing([(&b"a"[..], 2)]);
    assert_eq!(
        f,
        vec![
            SyncFinding::ListedOlderVersion {
                item_id: b"a".to_vec(),
                listed: 2,
                seen: 3
            },
            SyncFinding::Withheld {
                item_id: b"b".to_vec(),
                last_version: 1
            },
        ]
    );
    assert_eq!(f[0].code(), "ROLLBACK_DETECTED");
    assert_eq!(f[1].code(), "ITEM_WITHHELD");
}

#[test]
fn wrapped_key_round_trip_and_substitution() {
    let mut rng = TestRng::new("wrap");
    let v = vault(&mut rng);
    let laptop = credential("laptop", ACCOUNT);
    let phone = credential("phone", ACCOUNT);
    let elsewhere = credential("laptop", b"account-2");
    let key = v.key(1).unwrap();

    let rec = laptop.wrap(key, rng.bytes());
    let back = laptop.unwrap(&rec, Some(1)).unwrap();
    assert_eq!(back.epoch(), 1);
    let v2 = Vault::unlock(&laptop, [rec.as_slice()]).unwrap();
    let b = v
        .seal_item(b"i", ItemKind::Folder, 1, b"hi", rng.bytes())
        .unwrap();
    assert_eq!(&v2.open_item(b"i", None, &b).unwrap().body[..], b"hi");

    // Another credential's record.
    let phone_rec = phone.wrap(key, rng.bytes());
    assert_eq!(
        code(laptop.unwrap(&phone_rec, None)),
        "WRAPPED_KEY_WRONG_CREDENTIAL"
    );
    // Another account's record (same credential id).
    let other_rec = elsewhere.wrap(&AccountKey::new(1, rng.bytes()).unwrap(), rng.bytes());
    assert_eq!(
        code(laptop.unwrap(&other_rec, None)),
        "WRAPPED_KEY_WRONG_ACCOUNT"
    );
    // Another epoch than asked for.
    let e2 = laptop.wrap(&AccountKey::new(2, rng.bytes()).unwrap(), rng.bytes());
    assert_eq!(code(laptop.unwrap(&e2, Some(1))), "WRAPPED_KEY_WRONG_EPOCH");
    // The store rewrites headers to match: authentication fails.
    let mut relabelled = phone_rec.clone();
    // "SVWK" 1 alg epoch(4) len(2) account(9) len(2) "phone" → replace with "laptop".
    let hdr_end = 4 + 1 + 1 + 4 + 2 + ACCOUNT.len();
    relabelled.splice(hdr_end.., {
        let mut t = vec![0, 6];
        t.extend_from_slice(b"laptop");
        t.extend_from_slice(&phone_rec[hdr_end + 2 + 5..]);
        t
    });
    assert_eq!(
        code(laptop.unwrap(&relabelled, None)),
        "WRAPPED_KEY_AUTH_FAILED"
    );
    let mut epoch_rewritten = e2.clone();
    epoch_rewritten[9] = 1;
    assert_eq!(
        code(laptop.unwrap(&epoch_rewritten, Some(1))),
        "WRAPPED_KEY_AUTH_FAILED"
    );
    let mut account_rewritten = other_rec.clone();
    let pos = 4 + 1 + 1 + 4 + 2 + 8; // last byte of "account-2"
    account_rewritten[pos] = b'1';
    assert_eq!(
        code(laptop.unwrap(&account_rewritten, None)),
        "WRAPPED_KEY_AUTH_FAILED"
    );
    // Any bit flip.
    for i in 0..rec.len() {
        let mut r = rec.clone();
        r[i] ^= 0x20;
        assert!(laptop.unwrap(&r, None).is_err(), "byte {i}");
    }
    // Truncation and trailing bytes.
    assert_eq!(
        code(laptop.unwrap(&rec[..rec.len() - 1], None)),
        "TRUNCATED"
    );
    let mut long = rec.clone();
    long.push(0);
    assert_eq!(code(laptop.unwrap(&long, None)), "MALFORMED");
    // Records from the same root for another account differ (KEK bound to the account).
    assert_ne!(laptop.public().wrap_public, elsewhere.public().wrap_public);
}

#[test]
fn sealed_wrapping_for_another_credential() {
    let mut rng = TestRng::new("seal");
    let v = vault(&mut rng);
    let phone = credential("phone", ACCOUNT);
    let tablet = credential("tablet", ACCOUNT);
    let key = v.key(1).unwrap();
    let rec = seal_account_key(&phone.public(), key, rng.bytes(), rng.bytes()).unwrap();
    let info = parse_wrapped_key(&rec).unwrap();
    assert_eq!(info.alg, WrapAlg::Sealed);
    assert_eq!(info.credential_id, b"phone");
    assert_eq!(phone.unwrap(&rec, Some(1)).unwrap().epoch(), 1);
    assert_eq!(
        code(tablet.unwrap(&rec, None)),
        "WRAPPED_KEY_WRONG_CREDENTIAL"
    );
    // A record sealed to tablet's key but labelled for phone: phone cannot open it.
    let mut mislabelled_pub = tablet.public();
    mislabelled_pub.credential_id = b"phone".to_vec();
    let rec2 = seal_account_key(&mislabelled_pub, key, rng.bytes(), rng.bytes()).unwrap();
    assert_eq!(code(phone.unwrap(&rec2, None)), "WRAPPED_KEY_AUTH_FAILED");
    // Low-order recipient keys are refused.
    let mut weak = phone.public();
    weak.wrap_public = [0; 32];
    assert_eq!(
        code(seal_account_key(&weak, key, rng.bytes(), rng.bytes())),
        "WEAK_PUBLIC_KEY"
    );
}

#[test]
fn rotation_after_device_removal() {
    let mut rng = TestRng::new("rotate");
    let laptop = credential("laptop", ACCOUNT);
    let phone = credential("phone", ACCOUNT);
    let stolen = credential("stolen", ACCOUNT);
    let mut v = vault(&mut rng);

    // Epoch 1: every credential holds a wrapped key.
    let mut store: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for c in [&laptop, &phone, &stolen] {
        for r in v.wrap_all(c, &mut rng.filler()).unwrap() {
            store.push((c.credential_id().to_vec(), r));
        }
    }
    let old_item = v
        .seal_item(
            b"old",
            ItemKind::Conversation,
            1,
            b"before removal",
            rng.bytes(),
        )
        .unwrap();

    // The directory lists all three; remove "stolen" and rotate.
    let mut dir = DeviceDirectory::default();
    for c in [&laptop, &phone, &stolen] {
        dir.upsert(DeviceEntry {
            credential: c.public(),
            kind: CredentialKind::Device,
            name: String::from_utf8(c.credential_id().to_vec()).unwrap(),
            added_at: 1,
        });
    }
    assert!(dir.remove(b"stolen"));
    let rot = v
        .rotate_and_wrap(rng.bytes(), &laptop, &dir.credentials(), &mut rng.filler())
        .unwrap();
    assert_eq!(rot.epoch, 2);
    assert_eq!(v.current_epoch(), 2);
    assert_eq!(rot.records.len(), 2);
    assert!(rot.records.iter().all(|(id, _)| id != b"stolen"));
    store.retain(|(id, _)| id != b"stolen");
    store.extend(rot.records.iter().cloned());

    let new_item = v
        .seal_item(
            b"new",
            ItemKind::Conversation,
            1,
            b"after removal",
            rng.bytes(),
        )
        .unwrap();
    assert_eq!(parse_item_header(&new_item).unwrap().epoch, 2);

    // Remaining credentials unlock both epochs and read old and new items.
    for c in [&laptop, &phone] {
        let recs: Vec<&[u8]> = store
            .iter()
            .filter(|(id, _)| id == c.credential_id())
            .map(|(_, r)| r.as_slice())
            .collect();
        let cv = Vault::unlock(c, recs).unwrap();
        assert_eq!(cv.epochs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            &cv.open_item(b"old", None, &old_item).unwrap().body[..],
            b"before removal"
        );
        assert_eq!(
            &cv.open_item(b"new", None, &new_item).unwrap().body[..],
            b"after removal"
        );
    }

    // The removed credential cannot unwrap any epoch-2 record, and with what it kept
    // (epoch 1) it cannot read new items.
    for (_, r) in &rot.records {
        assert!(stolen.unwrap(r, None).is_err());
    }
    let stolen_vault = Vault::from_keys(ACCOUNT, [v.key(1).unwrap().clone()]).unwrap();
    assert_eq!(
        code(stolen_vault.open_item(b"new", None, &new_item)),
        "UNKNOWN_EPOCH"
    );
    // It may still read what it could already read (stated limitation).
    assert!(stolen_vault.open_item(b"old", None, &old_item).is_ok());
}

#[test]
fn key_conflicts_and_debug_redaction() {
    let mut rng = TestRng::new("conflict");
    let mut v = vault(&mut rng);
    let k = AccountKey::new(1, [0xCD; 32]).unwrap();
    assert_eq!(code(v.add_key(k.clone())), "EPOCH_KEY_CONFLICT");
    v.add_key(v.key(1).unwrap().clone()).unwrap();

    let root = RootSecret::from_bytes([0xAB; 32]);
    let cred = CredentialKeys::derive(&root, ACCOUNT, b"dev").unwrap();
    let pairing_code = PairingCode::from_random([1; 8]);
    let dbg = format!("{root:?} {k:?} {cred:?} {v:?} {pairing_code:?}");
    assert!(dbg.contains("redacted"));
    for needle in ["abab", "cdcd", "171", "205", pairing_code.as_str()] {
        assert!(!dbg.to_lowercase().contains(needle), "{needle} in {dbg}");
    }
}

#[test]
fn error_messages_carry_no_secrets() {
    let mut rng = TestRng::new("msgs");
    let v = vault(&mut rng);
    let body = b"very secret words";
    let blob = v
        .seal_item(b"i", ItemKind::Conversation, 1, body, rng.bytes())
        .unwrap();
    let mut bad = blob.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = v.open_item(b"i", None, &bad).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains("secret"));
    assert!(!msg.contains(&hex::encode(v.key(1).unwrap().epoch().to_be_bytes())));
}
