//! The history client against a real store, on SQLite and PostgreSQL: round trips,
//! concurrent edits from two devices, device removal with key rotation.

mod common;

use common::Env;
use sotto_history::HistoryClient;
use sotto_vault::{ItemKind, Role};

fn turns(user: &str, assistant: &str) -> Vec<(Role, String)> {
    vec![
        (Role::User, user.into()),
        (Role::Assistant, assistant.into()),
    ]
}

async fn round_trip(env: &Env) {
    let dir = env.dir("laptop");
    let mut a = HistoryClient::create_account(&env.url, &dir, "laptop")
        .await
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["root-secret", "device.json", "seen.json"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let work = a.create_folder("Work", "Answer tersely.").await.unwrap();
    let home = a.create_folder("Home", "").await.unwrap();
    let c1 = a
        .append_turns(
            None,
            Some(&work),
            "m",
            &turns("first question", "first answer"),
        )
        .await
        .unwrap();
    let c2 = a
        .append_turns(
            None,
            Some(&work),
            "m",
            &turns("second question", "second answer"),
        )
        .await
        .unwrap();
    a.append_turns(Some(&c1), None, "m", &turns("follow up", "more"))
        .await
        .unwrap();
    a.rename_folder(&home, "Personal").await.unwrap();
    a.set_instructions(&home, "Be kind.").await.unwrap();
    a.move_item(&home, Some(&work), None).await.unwrap();
    a.move_item(&c2, Some(&c1), None).await.unwrap();
    a.rename_conversation(&c1, "Renamed").await.unwrap();
    drop(a);

    // Reopen from disk: login, unlock, everything decrypts in order.
    let mut a = HistoryClient::open(&dir).await.unwrap();
    let snap = a.sync().await.unwrap();
    let names: Vec<_> = snap.folders.iter().map(|f| f.value.name.as_str()).collect();
    assert_eq!(names, ["Personal", "Work"]);
    assert_eq!(
        snap.folder("Personal").unwrap().value.instructions,
        "Be kind."
    );
    let ids: Vec<_> = snap.conversations.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [c2.as_str(), c1.as_str()]);
    let c = a.conversation(&c1).await.unwrap();
    assert_eq!(c.value.title, "Renamed");
    let contents: Vec<_> = c
        .value
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        contents,
        ["first question", "first answer", "follow up", "more"]
    );
    assert_eq!(c.value.folder_id.as_deref(), Some(work.as_str()));

    // Moving a conversation rewrites only it: c1's version is unchanged by moving c2.
    let v1 = a.conversation(&c1).await.unwrap().version;
    a.move_item(&c1, Some(&c2), None).await.unwrap();
    let v2 = a.conversation(&c2).await.unwrap().version;
    a.move_item(&c2, None, Some(&c1)).await.unwrap();
    assert_eq!(a.conversation(&c1).await.unwrap().version, v1 + 1);
    assert_eq!(a.conversation(&c2).await.unwrap().version, v2 + 1);

    // Delete: a tombstone; export omits it.
    a.delete(&c2).await.unwrap();
    assert_eq!(
        a.conversation(&c2).await.unwrap_err().code(),
        "ITEM_DELETED"
    );
    let export = a.export().await.unwrap();
    let convs = export["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["value"]["title"], "Renamed");
    assert_eq!(export["folders"].as_array().unwrap().len(), 2);

    // A second account in the same directory is refused.
    let err = HistoryClient::create_account(&env.url, &dir, "again")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ACCOUNT_EXISTS");
    let err = HistoryClient::open(&env.dir("nothing")).await.unwrap_err();
    assert_eq!(err.code(), "NO_ACCOUNT");
}

async fn concurrent_edits_merge(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let mut b = a.enroll_local_device(&env.dir("b"), "b").await.unwrap();
    let id = a
        .append_turns(None, None, "m", &turns("shared start", "ok"))
        .await
        .unwrap();
    let folder = a.create_folder("F", "").await.unwrap();

    // Both devices read version 1 of the conversation, then write concurrently.
    let base_a = a.conversation(&id).await.unwrap();
    let base_b = b.conversation(&id).await.unwrap();
    let mut ours_a = base_a.value.clone();
    ours_a.title = "title from a".into();
    ours_a.messages.push(sotto_vault::Message {
        id: "ma".into(),
        role: Role::User,
        content: "edit from a".into(),
        created_at: 1,
        device: "a".into(),
    });
    let mut ours_b = base_b.value.clone();
    ours_b.messages.push(sotto_vault::Message {
        id: "mb".into(),
        role: Role::User,
        content: "edit from b".into(),
        created_at: 2,
        device: "b".into(),
    });
    let (ra, rb) = tokio::join!(
        a.save_conversation(&id, Some((base_a.version, base_a.value.clone())), ours_a),
        b.save_conversation(&id, Some((base_b.version, base_b.value.clone())), ours_b),
    );
    let (va, vb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        va.max(vb),
        3,
        "one write won version 2, the other merged into 3"
    );
    for c in [&mut a, &mut b] {
        let got = c.conversation(&id).await.unwrap().value;
        let contents: Vec<_> = got.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            contents,
            ["shared start", "ok", "edit from a", "edit from b"]
        );
        assert_eq!(got.title, "title from a");
    }

    // Many rounds of concurrent appends through the high-level API: nothing lost.
    for round in 0..4 {
        let (ta, tb) = (
            [(Role::User, format!("a{round}"))],
            [(Role::User, format!("b{round}"))],
        );
        let (ra, rb) = tokio::join!(
            a.append_turns(Some(&id), None, "m", &ta),
            b.append_turns(Some(&id), None, "m", &tb),
        );
        ra.unwrap();
        rb.unwrap();
    }
    let got = a.conversation(&id).await.unwrap().value;
    for round in 0..4 {
        for d in ["a", "b"] {
            let m = format!("{d}{round}");
            assert!(got.messages.iter().any(|x| x.content == m), "lost {m}");
        }
    }

    // Concurrent folder edits of different fields: both kept.
    let (ra, rb) = tokio::join!(
        a.rename_folder(&folder, "New name"),
        b.set_instructions(&folder, "New rules")
    );
    ra.unwrap();
    rb.unwrap();
    let f = b.folder(&folder).await.unwrap().value;
    assert_eq!(
        (f.name.as_str(), f.instructions.as_str()),
        ("New name", "New rules")
    );
}

async fn device_removal_rotates(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let mut b = a.enroll_local_device(&env.dir("b"), "b").await.unwrap();
    let c = a.enroll_local_device(&env.dir("c"), "c").await.unwrap();
    let old = a
        .append_turns(None, None, "m", &turns("before removal", "x"))
        .await
        .unwrap();
    let devices = b.devices().await.unwrap();
    assert_eq!(devices.len(), 3);
    assert!(devices.iter().all(|d| d.active && d.in_directory));
    assert_eq!(devices.iter().filter(|d| d.this_device).count(), 1);

    let c_id = c.credential_id().to_string();
    assert_eq!(
        a.remove_device(a.credential_id().to_string().as_str())
            .await
            .unwrap_err()
            .code(),
        "INVALID_ARGUMENT"
    );
    a.remove_device(&c_id).await.unwrap();
    assert_eq!(a.current_epoch(), 2);
    let new = a
        .append_turns(None, None, "m", &turns("after removal", "y"))
        .await
        .unwrap();

    // The removed device can no longer log in …
    let err = HistoryClient::open(&env.dir("c")).await.unwrap_err();
    assert_eq!(err.store_code(), Some("credential_revoked"), "{err}");
    // … and even with the blob in hand (a colluding store), its keys cannot open new items.
    let (_, blob) = a.store().get_item(&new).await.unwrap().unwrap();
    let err = c
        .vault()
        .open_item(new.as_bytes(), Some(ItemKind::Conversation), &blob)
        .unwrap_err();
    assert_eq!(err.code(), "UNKNOWN_EPOCH");
    // It keeps what it had (documented limit).
    let (_, blob) = a.store().get_item(&old).await.unwrap().unwrap();
    c.vault().open_item(old.as_bytes(), None, &blob).unwrap();

    // The remaining device reopens with the sealed epoch-2 key and reads old and new.
    drop(b);
    let mut b = HistoryClient::open(&env.dir("b")).await.unwrap();
    assert_eq!(b.current_epoch(), 2);
    let snap = b.sync().await.unwrap();
    assert_eq!(snap.conversations.len(), 2);
    assert_eq!(
        b.conversation(&new).await.unwrap().value.messages[0].content,
        "after removal"
    );
    let devices = b.devices().await.unwrap();
    let removed = devices.iter().find(|d| d.credential_id == c_id).unwrap();
    assert!(!removed.active && !removed.in_directory);
    // The removed device's wrapped keys are gone from the store.
    let keys = b.store().keys().await.unwrap();
    assert!(keys.iter().all(|k| !k.key_id.starts_with(&c_id)));
    // B writes under epoch 2; A reads it.
    b.append_turns(Some(&old), None, "m", &turns("from b", "z"))
        .await
        .unwrap();
    assert_eq!(a.conversation(&old).await.unwrap().value.messages.len(), 4);
}

async fn settings_sync_and_merge(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let mut b = a.enroll_local_device(&env.dir("b"), "b").await.unwrap();
    let none = a.settings().await.unwrap();
    assert_eq!((none.version, none.value.temperature), (0, None));
    let s = a
        .update_settings(|s| {
            s.temperature = Some(0.3);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!((s.version, s.value.temperature), (1, Some(0.3)));
    // Both devices start from version 1 and edit different fields concurrently.
    let base_a = a.settings().await.unwrap();
    let base_b = b.settings().await.unwrap();
    let mut ours_b = base_b.value.clone();
    ours_b.default_model = Some("model-b".into());
    b.save_settings(&base_b, ours_b).await.unwrap();
    let mut ours_a = base_a.value.clone();
    ours_a.save_history = Some(false);
    let merged = a.save_settings(&base_a, ours_a).await.unwrap();
    assert_eq!(merged.version, 3, "the conflict was merged and written");
    for c in [&mut a, &mut b] {
        let s = c.sync().await.unwrap().settings.unwrap().value;
        assert_eq!(s.temperature, Some(0.3));
        assert_eq!(s.save_history, Some(false));
        assert_eq!(s.default_model.as_deref(), Some("model-b"));
    }
    // An edit that fails leaves the settings unchanged.
    let err = a
        .update_settings(|_| Err(sotto_history::HistoryError::InvalidArgument("no")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert_eq!(a.settings().await.unwrap().version, 3);
}

async fn incremental_sync(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let mut b = a.enroll_local_device(&env.dir("b"), "b").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            a.append_turns(None, None, "m", &turns(&format!("q{i}"), "a"))
                .await
                .unwrap(),
        );
    }
    let first = b.sync().await.unwrap();
    assert_eq!(first.conversations.len(), 5);
    assert_eq!(b.last_sync(), Some(sotto_history::SyncKind::Full));
    // Nothing changed: an incremental sync fetches nothing and shows the same.
    let again = b.sync().await.unwrap();
    assert_eq!(
        b.last_sync(),
        Some(sotto_history::SyncKind::Incremental { changes: 0 })
    );
    assert_eq!(again.conversations.len(), 5);
    // A edits one and deletes another: B fetches just those two changes.
    a.append_turns(Some(&ids[0]), None, "m", &turns("more", "b"))
        .await
        .unwrap();
    a.delete(&ids[1]).await.unwrap();
    let snap = b.sync().await.unwrap();
    assert_eq!(
        b.last_sync(),
        Some(sotto_history::SyncKind::Incremental { changes: 2 })
    );
    assert_eq!(snap.conversations.len(), 4);
    assert_eq!(snap.deleted, vec![ids[1].clone()]);
    let c0 = snap.conversations.iter().find(|c| c.id == ids[0]).unwrap();
    assert_eq!(c0.value.messages.len(), 4);
    // B's own write comes back through the feed and matches its cache.
    b.append_turns(Some(&ids[2]), None, "m", &turns("from b", "c"))
        .await
        .unwrap();
    let snap = b.sync().await.unwrap();
    assert!(matches!(
        b.last_sync(),
        Some(sotto_history::SyncKind::Incremental { .. })
    ));
    let c2 = snap.conversations.iter().find(|c| c.id == ids[2]).unwrap();
    assert_eq!(c2.value.messages.len(), 4);
    // A cache that lags behind what B accepted (lost in a crash) is rebuilt by a complete
    // listing, with the same result.
    std::fs::remove_file(env.dir("b").join("cache/items").join(&ids[3])).unwrap();
    let rebuilt = b.sync().await.unwrap();
    assert_eq!(b.last_sync(), Some(sotto_history::SyncKind::Full));
    assert_eq!(rebuilt.conversations.len(), snap.conversations.len());
    // A corrupted cached blob too.
    std::fs::write(env.dir("b").join("cache/items").join(&ids[4]), [0u8; 40]).unwrap();
    b.sync().await.unwrap();
    assert_eq!(b.last_sync(), Some(sotto_history::SyncKind::Full));
    b.sync().await.unwrap();
    assert!(matches!(
        b.last_sync(),
        Some(sotto_history::SyncKind::Incremental { .. })
    ));
}

both_backends!(
    round_trip,
    concurrent_edits_merge,
    device_removal_rotates,
    settings_sync_and_merge,
    incremental_sync,
);
