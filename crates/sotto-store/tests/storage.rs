//! The storage trait, directly, on both backends: migrations, write semantics, quotas,
//! concurrency, the change feed, challenges and sessions.

mod common;

use std::{collections::HashMap, sync::Arc};

use common::Db;
use sotto_store::{
    AccountId, AnyBackend, Backend, Challenge, CredentialId, CredentialKind, ItemId, ItemWrite,
    KeyId, NewCredential, Quota, SCHEMA_VERSION, Session, StoreError, open_backend,
};

const NOW: i64 = 1_800_000_000_000;
const QUOTA: Quota = Quota {
    max_bytes: 1 << 30,
    max_items: 1 << 20,
};

fn cred() -> NewCredential {
    let key = common::new_key();
    NewCredential {
        id: CredentialId::random().unwrap(),
        kind: CredentialKind::DeviceEd25519,
        public_key: key.verifying_key().as_bytes().to_vec(),
    }
}

async fn account(b: &AnyBackend) -> (AccountId, CredentialId) {
    let a = AccountId::random().unwrap();
    let c = cred();
    let id = c.id;
    b.create_account(a, c, NOW).await.unwrap();
    (a, id)
}

fn item(s: &str) -> ItemId {
    ItemId::parse(s).unwrap()
}

async fn put(
    b: &AnyBackend,
    a: AccountId,
    i: &str,
    v: u64,
    blob: &[u8],
) -> Result<(u64, u64), StoreError> {
    b.write_item(a, item(i), v, ItemWrite::Put(blob.to_vec()), QUOTA, NOW)
        .await
        .map(|o| (o.version, o.seq))
}

both_backends!(
    migrations_are_versioned_and_idempotent,
    refuses_a_newer_schema,
    write_semantics,
    deletion_semantics,
    quota_arithmetic,
    concurrent_writers_are_serialised,
    change_feed_pages,
    challenges_are_single_use,
    sessions_end_with_their_credential,
    credentials,
    wrapped_keys,
);

async fn migrations_are_versioned_and_idempotent(db: &Db) {
    let b = db.backend().await;
    let (a, _) = account(&b).await;
    put(&b, a, "x", 0, b"blob").await.unwrap();
    drop(b);
    // Opening again applies nothing and keeps the data.
    let b = db.backend().await;
    assert_eq!(b.item(a, item("x")).await.unwrap().unwrap().blob, b"blob");
    let versions: Vec<(String, String, Vec<u8>)> = db
        .dump()
        .await
        .into_iter()
        .filter(|(t, c, _)| t == "schema_version" && c == "version")
        .collect();
    assert_eq!(versions.len(), SCHEMA_VERSION as usize);
    assert_eq!(versions[0].2, b"1");
}

async fn refuses_a_newer_schema(db: &Db) {
    drop(db.backend().await);
    db.exec("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
        .await;
    match open_backend(&db.config()).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (999, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

async fn write_semantics(db: &Db) {
    let b = db.backend().await;
    let (a, _) = account(&b).await;
    assert_eq!(put(&b, a, "i1", 0, b"one").await.unwrap(), (1, 1));
    // Create over an existing item, or naming a stale or future version: conflict, no change.
    for v in [0, 2, 7] {
        match put(&b, a, "i1", v, b"nope").await {
            Err(StoreError::VersionConflict {
                current: 1,
                deleted: false,
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    // Replacing a missing item: conflict with current version 0.
    assert!(matches!(
        put(&b, a, "missing", 3, b"x").await,
        Err(StoreError::VersionConflict {
            current: 0,
            deleted: false
        })
    ));
    assert_eq!(put(&b, a, "i1", 1, b"two").await.unwrap(), (2, 2));
    assert_eq!(put(&b, a, "i2", 0, b"").await.unwrap(), (1, 3));
    let i1 = b.item(a, item("i1")).await.unwrap().unwrap();
    assert_eq!(
        (i1.version, i1.seq, i1.blob.as_slice()),
        (2, 2, &b"two"[..])
    );
    let usage = b.account(a).await.unwrap().unwrap();
    // Failed writes consumed no sequence numbers.
    assert_eq!(
        (usage.last_seq, usage.used_bytes, usage.item_count),
        (3, 3, 2)
    );
    // Unknown account.
    assert!(matches!(
        put(&b, AccountId::random().unwrap(), "i", 0, b"x").await,
        Err(StoreError::UnknownAccount)
    ));
    // Accounts are isolated: same item id elsewhere is a different item.
    let (other, _) = account(&b).await;
    assert!(b.item(other, item("i1")).await.unwrap().is_none());
    assert_eq!(put(&b, other, "i1", 0, b"mine").await.unwrap(), (1, 1));
    assert_eq!(b.item(a, item("i1")).await.unwrap().unwrap().blob, b"two");
}

async fn deletion_semantics(db: &Db) {
    let b = db.backend().await;
    let (a, _) = account(&b).await;
    let del = |v| b.write_item(a, item("d"), v, ItemWrite::Delete, QUOTA, NOW);
    assert!(matches!(del(0).await, Err(StoreError::ItemNotFound)));
    put(&b, a, "d", 0, b"12345").await.unwrap();
    assert!(matches!(
        del(0).await,
        Err(StoreError::VersionConflict { current: 1, .. })
    ));
    let out = del(1).await.unwrap();
    assert_eq!((out.version, out.seq), (2, 2));
    let it = b.item(a, item("d")).await.unwrap().unwrap();
    assert!(it.deleted && it.blob.is_empty() && it.size == 0 && it.version == 2);
    assert!(matches!(
        del(2).await,
        Err(StoreError::ItemDeleted { version: 2 })
    ));
    assert!(matches!(
        del(1).await,
        Err(StoreError::VersionConflict {
            current: 2,
            deleted: true
        })
    ));
    let usage = b.account(a).await.unwrap().unwrap();
    assert_eq!((usage.used_bytes, usage.item_count), (0, 0));
    // Re-creating names the tombstone's version.
    assert!(matches!(
        put(&b, a, "d", 0, b"again").await,
        Err(StoreError::VersionConflict {
            current: 2,
            deleted: true
        })
    ));
    assert_eq!(put(&b, a, "d", 2, b"again").await.unwrap(), (3, 3));
    let usage = b.account(a).await.unwrap().unwrap();
    assert_eq!((usage.used_bytes, usage.item_count), (5, 1));
}

async fn quota_arithmetic(db: &Db) {
    let b = db.backend().await;
    let (a, _) = account(&b).await;
    let q = Quota {
        max_bytes: 100,
        max_items: 2,
    };
    let w = |i: &'static str, v: u64, n: usize| {
        b.write_item(a, item(i), v, ItemWrite::Put(vec![7; n]), q, NOW)
    };
    w("a", 0, 60).await.unwrap();
    assert!(matches!(
        w("b", 0, 41).await,
        Err(StoreError::QuotaBytesExceeded { limit: 100 })
    ));
    w("b", 0, 40).await.unwrap();
    assert!(matches!(
        w("c", 0, 0).await,
        Err(StoreError::QuotaItemsExceeded { limit: 2 })
    ));
    // Replacing counts the new size only once.
    w("a", 1, 60).await.unwrap();
    assert!(matches!(
        w("a", 2, 61).await,
        Err(StoreError::QuotaBytesExceeded { .. })
    ));
    let usage = b.account(a).await.unwrap().unwrap();
    assert_eq!(
        (usage.used_bytes, usage.item_count, usage.last_seq),
        (100, 2, 3)
    );
    // A lowered quota still lets the account shrink.
    let tight = Quota {
        max_bytes: 10,
        max_items: 1,
    };
    b.write_item(a, item("a"), 2, ItemWrite::Put(vec![1; 30]), tight, NOW)
        .await
        .unwrap();
    // Deleting frees space and a slot.
    b.write_item(a, item("b"), 1, ItemWrite::Delete, q, NOW)
        .await
        .unwrap();
    let usage = b.account(a).await.unwrap().unwrap();
    assert_eq!((usage.used_bytes, usage.item_count), (30, 1));
    w("c", 0, 70).await.unwrap();
}

async fn concurrent_writers_are_serialised(db: &Db) {
    let b = Arc::new(db.backend().await);
    let (a, _) = account(&b).await;
    const TASKS: usize = 16;
    const ROUNDS: usize = 10;
    // Every task increments the same item with read-modify-write retries, and also creates
    // its own items.
    put(&b, a, "shared", 0, b"0").await.unwrap();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for r in 0..ROUNDS {
                loop {
                    let cur = b.item(a, item("shared")).await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(cur.blob).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    match put(&b, a, "shared", cur.version, next.as_bytes()).await {
                        Ok((v, seq)) => {
                            mine.push((v, seq));
                            break;
                        }
                        Err(StoreError::VersionConflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
                let (v, seq) = put(&b, a, &format!("t{t}-{r}"), 0, &[t as u8; 10])
                    .await
                    .unwrap();
                assert_eq!(v, 1);
                mine.push((0, seq));
            }
            mine
        }));
    }
    let mut versions = Vec::new();
    let mut seqs = Vec::new();
    for h in handles {
        for (v, seq) in h.await.unwrap() {
            if v > 0 {
                versions.push(v);
            }
            seqs.push(seq);
        }
    }
    versions.sort();
    // No lost update: versions 2..=161 each won by exactly one writer; the counter agrees.
    assert_eq!(
        versions,
        (2..=(1 + TASKS * ROUNDS) as u64).collect::<Vec<_>>()
    );
    let shared = b.item(a, item("shared")).await.unwrap().unwrap();
    assert_eq!(shared.blob, (TASKS * ROUNDS).to_string().as_bytes());
    // Sequence numbers: every acknowledged write got a distinct one, no gaps.
    seqs.sort();
    let total = 1 + 2 * TASKS * ROUNDS;
    assert_eq!(seqs, (2..=total as u64).collect::<Vec<_>>());
    let usage = b.account(a).await.unwrap().unwrap();
    assert_eq!(usage.last_seq, total as u64);
    assert_eq!(usage.item_count, 1 + (TASKS * ROUNDS) as u64);
    assert_eq!(
        usage.used_bytes,
        shared.blob.len() as u64 + (TASKS * ROUNDS * 10) as u64
    );
}

async fn change_feed_pages(db: &Db) {
    let b = db.backend().await;
    let (a, _) = account(&b).await;
    for i in 0..25 {
        put(&b, a, &format!("i{i:02}"), 0, &[i as u8; 100])
            .await
            .unwrap();
    }
    put(&b, a, "i03", 1, b"newer").await.unwrap();
    b.write_item(a, item("i04"), 1, ItemWrite::Delete, QUOTA, NOW)
        .await
        .unwrap();
    // Pages of 10: each item exactly once, at its latest version, in seq order.
    let mut seen = HashMap::new();
    let mut since = 0;
    let mut pages = 0;
    loop {
        let page = b.changes(a, since, 10, false, 0).await.unwrap();
        pages += 1;
        for it in &page.items {
            assert!(it.seq > since && it.blob.is_empty());
            since = it.seq;
            assert!(seen.insert(it.id.to_string(), it.clone()).is_none());
        }
        if !page.more {
            break;
        }
    }
    assert_eq!((seen.len(), pages), (25, 3));
    assert_eq!(seen["i03"].version, 2);
    assert!(seen["i04"].deleted);
    // Nothing after the end.
    let empty = b.changes(a, since, 10, false, 0).await.unwrap();
    assert!(empty.items.is_empty() && !empty.more);
    // With blobs and a byte budget of 250: pages of two 100-byte blobs (the budget is passed
    // by the third); a blob larger than the budget still comes alone.
    let page = b.changes(a, 0, 10, true, 250).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.more);
    assert_eq!(page.items[0].blob, vec![0u8; 100]);
    let page = b.changes(a, 0, 10, true, 1).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let last = b.changes(a, 26, 10, true, 1).await.unwrap();
    assert_eq!(last.items.len(), 1);
    assert!(last.items[0].deleted && last.items[0].blob.is_empty());
}

async fn challenges_are_single_use(db: &Db) {
    let b = db.backend().await;
    let (a, c) = account(&b).await;
    let ch = |n: u8, expires_at| Challenge {
        challenge: [n; 32],
        account: a,
        credential: c,
        expires_at,
    };
    b.insert_challenge(ch(1, NOW + 1000), 8, NOW).await.unwrap();
    assert_eq!(
        b.take_challenge([1; 32]).await.unwrap(),
        Some(ch(1, NOW + 1000))
    );
    assert_eq!(b.take_challenge([1; 32]).await.unwrap(), None);
    // At most 3 outstanding per credential: the oldest go.
    for n in 10..15 {
        b.insert_challenge(ch(n, NOW + i64::from(n)), 3, NOW)
            .await
            .unwrap();
    }
    for n in 10..12 {
        assert_eq!(b.take_challenge([n; 32]).await.unwrap(), None, "{n}");
    }
    for n in 12..15 {
        assert!(b.take_challenge([n; 32]).await.unwrap().is_some(), "{n}");
    }
    // Expired challenges are purged when new ones are issued.
    b.insert_challenge(ch(20, NOW + 5), 8, NOW).await.unwrap();
    b.insert_challenge(ch(21, NOW + 100), 8, NOW + 10)
        .await
        .unwrap();
    assert_eq!(b.take_challenge([20; 32]).await.unwrap(), None);
}

async fn sessions_end_with_their_credential(db: &Db) {
    let b = db.backend().await;
    let (a, c1) = account(&b).await;
    let c2 = cred();
    let c2id = c2.id;
    b.add_credential(a, c2, 8, NOW).await.unwrap();
    let s = |h: u8, c| Session {
        token_hash: [h; 32],
        account: a,
        credential: c,
        expires_at: NOW + 1000,
    };
    b.insert_session(s(1, c1), NOW).await.unwrap();
    b.insert_session(s(2, c2id), NOW).await.unwrap();
    assert_eq!(b.session([2; 32]).await.unwrap(), Some(s(2, c2id)));
    b.revoke_credential(a, c2id, NOW).await.unwrap();
    assert_eq!(b.session([2; 32]).await.unwrap(), None);
    assert_eq!(b.session([1; 32]).await.unwrap(), Some(s(1, c1)));
    b.delete_session([1; 32]).await.unwrap();
    assert_eq!(b.session([1; 32]).await.unwrap(), None);
    // Expired sessions are purged on the next insert.
    b.insert_session(s(3, c1), NOW).await.unwrap();
    b.insert_session(s(4, c1), NOW + 5000).await.unwrap();
    assert_eq!(b.session([3; 32]).await.unwrap(), None);
}

async fn credentials(db: &Db) {
    let b = db.backend().await;
    let (a, c1) = account(&b).await;
    let c2 = cred();
    let dup = NewCredential {
        id: CredentialId::random().unwrap(),
        ..c2.clone()
    };
    let c2id = c2.id;
    b.add_credential(a, c2, 2, NOW).await.unwrap();
    assert!(matches!(
        b.add_credential(a, dup, 8, NOW).await,
        Err(StoreError::DuplicateCredential)
    ));
    assert!(matches!(
        b.add_credential(a, cred(), 2, NOW).await,
        Err(StoreError::TooManyCredentials { limit: 2 })
    ));
    assert!(matches!(
        b.add_credential(AccountId::random().unwrap(), cred(), 2, NOW)
            .await,
        Err(StoreError::UnknownAccount)
    ));
    let list = b.credentials(a).await.unwrap();
    assert_eq!(list.len(), 2);
    b.revoke_credential(a, c1, NOW + 1).await.unwrap();
    assert!(matches!(
        b.revoke_credential(a, c1, NOW).await,
        Err(StoreError::CredentialRevoked)
    ));
    assert!(matches!(
        b.revoke_credential(a, c2id, NOW).await,
        Err(StoreError::LastCredential)
    ));
    assert!(matches!(
        b.revoke_credential(a, CredentialId::random().unwrap(), NOW)
            .await,
        Err(StoreError::UnknownCredential)
    ));
    let c1r = b.credential(a, c1).await.unwrap().unwrap();
    assert_eq!(c1r.revoked_at, Some(NOW + 1));
    // Another account cannot see or revoke it.
    let (other, _) = account(&b).await;
    assert!(b.credential(other, c2id).await.unwrap().is_none());
    assert!(matches!(
        b.revoke_credential(other, c2id, NOW).await,
        Err(StoreError::UnknownCredential)
    ));
}

async fn wrapped_keys(db: &Db) {
    let b = db.backend().await;
    let (a, _) = account(&b).await;
    let k = |s: &str| KeyId::parse(s).unwrap();
    assert_eq!(
        b.put_key(a, k("dev1"), 0, b"w1".to_vec(), 2, NOW)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        b.put_key(a, k("dev1"), 0, b"x".to_vec(), 2, NOW).await,
        Err(StoreError::VersionConflict { current: 1, .. })
    ));
    assert_eq!(
        b.put_key(a, k("dev1"), 1, b"w2".to_vec(), 2, NOW)
            .await
            .unwrap(),
        2
    );
    b.put_key(a, k("dev2"), 0, b"v".to_vec(), 2, NOW)
        .await
        .unwrap();
    assert!(matches!(
        b.put_key(a, k("dev3"), 0, b"v".to_vec(), 2, NOW).await,
        Err(StoreError::TooManyKeys { limit: 2 })
    ));
    let keys = b.keys(a).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].version, keys[0].blob.as_slice()), (2, &b"w2"[..]));
    assert!(matches!(
        b.delete_key(a, k("dev1"), 1).await,
        Err(StoreError::VersionConflict { current: 2, .. })
    ));
    b.delete_key(a, k("dev1"), 2).await.unwrap();
    assert!(b.key(a, k("dev1")).await.unwrap().is_none());
    assert!(matches!(
        b.delete_key(a, k("dev1"), 2).await,
        Err(StoreError::KeyNotFound)
    ));
    assert!(matches!(
        b.put_key(AccountId::random().unwrap(), k("x"), 0, vec![], 2, NOW)
            .await,
        Err(StoreError::UnknownAccount)
    ));
}
