//! An evil store: rows of the store's database are tampered with behind the service's back
//! (SQLite and PostgreSQL). Every attack must be detected with its code, never accepted.

mod common;

use common::Env;
use sotto_history::HistoryClient;
use sotto_vault::Role;

fn turns(user: &str) -> Vec<(Role, String)> {
    vec![
        (Role::User, user.into()),
        (Role::Assistant, "answer".into()),
    ]
}

/// Keeps the store's own bookkeeping (`size`) consistent with a tampered blob, so the
/// store serves it instead of failing its internal check.
fn fix_size(id: &str) -> String {
    format!("UPDATE items SET size = length(blob) WHERE item_id = '{id}'")
}

/// Makes the store announce item `id` in its change feed (a new sequence number), as it
/// would after a real write, without touching its blob or version.
fn announce(id: &str) -> String {
    format!(
        "UPDATE accounts SET last_seq = last_seq + 1 WHERE id = (SELECT account_id FROM items WHERE item_id = '{id}'); \
         UPDATE items SET seq = (SELECT last_seq FROM accounts WHERE accounts.id = items.account_id) WHERE item_id = '{id}'"
    )
}

fn check(what: &str, err: &sotto_history::HistoryError, codes: &[&str]) {
    assert!(
        codes.contains(&err.code()),
        "{what}: got {err}, want one of {codes:?}"
    );
    // Error messages never carry plaintext.
    assert!(!err.to_string().contains("secret words"), "{what}: {err}");
}

/// The attack must be detected by a complete listing and by fetching the item. An
/// incremental sync either detects it too or is unharmed (it uses the blobs it accepted
/// before, which the store cannot change); once the store announces the tampered item in
/// its change feed (`announced`), the incremental sync must detect it as well.
async fn assert_detected(
    env: &Env,
    c: &mut HistoryClient,
    id: &str,
    codes: &[&str],
    announced: bool,
) {
    let err = c.sync_full().await.unwrap_err();
    check("sync_full", &err, codes);
    if let Err(err) = c.sync().await {
        check("sync (unannounced)", &err, codes);
    }
    if announced {
        env.db.exec(&announce(id)).await;
        let err = c.sync().await.unwrap_err();
        check("sync (announced)", &err, codes);
    }
    let err = c.conversation(id).await.unwrap_err();
    check("show", &err, codes);
}

async fn swapped_between_items(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words x"))
        .await
        .unwrap();
    let y = a
        .append_turns(None, None, "m", &turns("secret words y"))
        .await
        .unwrap();
    a.sync().await.unwrap();
    env.db
        .exec(&format!(
            "UPDATE items SET blob = (SELECT blob FROM items WHERE item_id = '{y}') WHERE item_id = '{x}'; {}",
            fix_size(&x)
        ))
        .await;
    assert_detected(env, &mut a, &x, &["ITEM_AUTH_FAILED"], true).await;
}

async fn swapped_between_accounts(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let mut b = HistoryClient::create_account(&env.url, &env.dir("b"), "b")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words a"))
        .await
        .unwrap();
    let y = b
        .append_turns(None, None, "m", &turns("secret words b"))
        .await
        .unwrap();
    // Same version numbers, so only the cryptographic binding can tell.
    env.db
        .exec(&format!(
            "UPDATE items SET blob = (SELECT blob FROM items WHERE item_id = '{y}') WHERE item_id = '{x}'; {}",
            fix_size(&x)
        ))
        .await;
    assert_detected(env, &mut a, &x, &["ITEM_AUTH_FAILED"], true).await;
}

async fn replayed_older_version(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words v1"))
        .await
        .unwrap();
    env.db
        .exec(&format!(
            "CREATE TABLE evil AS SELECT item_id, version, blob FROM items WHERE item_id = '{x}'"
        ))
        .await;
    a.append_turns(Some(&x), None, "m", &turns("secret words v2"))
        .await
        .unwrap();
    // The old blob with its old version number …
    env.db
        .exec(&format!(
            "UPDATE items SET blob = (SELECT blob FROM evil), version = (SELECT version FROM evil) WHERE item_id = '{x}'; {}",
            fix_size(&x)
        ))
        .await;
    assert_detected(env, &mut a, &x, &["ROLLBACK_DETECTED"], true).await;
    // … or relabelled with the current version number.
    env.db
        .exec(&format!(
            "UPDATE items SET version = 2 WHERE item_id = '{x}'"
        ))
        .await;
    assert_detected(
        env,
        &mut a,
        &x,
        &["ITEM_VERSION_MISMATCH", "ROLLBACK_DETECTED"],
        true,
    )
    .await;
}

async fn truncated_blob(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words"))
        .await
        .unwrap();
    let long = "secret words ".repeat(100);
    let y = a
        .append_turns(None, None, "m", &turns(&long))
        .await
        .unwrap();
    env.db
        .exec(&format!(
            "UPDATE items SET blob = substr(blob, 1, 200) WHERE item_id = '{x}'; {}",
            fix_size(&x)
        ))
        .await;
    assert_detected(env, &mut a, &x, &["TRUNCATED", "BAD_LENGTH"], true).await;
    // A blob cut at a valid bucket boundary (its tag gone) is refused too.
    env.db
        .exec(&format!(
            "UPDATE items SET blob = substr(blob, 1, {}) WHERE item_id = '{y}'; {}",
            59 + 256,
            fix_size(&y)
        ))
        .await;
    let err = a.conversation(&y).await.unwrap_err();
    assert!(
        ["ITEM_AUTH_FAILED", "BAD_LENGTH"].contains(&err.code()),
        "{err}"
    );
}

async fn deleted_then_restored(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words"))
        .await
        .unwrap();
    env.db
        .exec(&format!(
            "CREATE TABLE evil AS SELECT item_id, version, blob FROM items WHERE item_id = '{x}'"
        ))
        .await;
    a.delete(&x).await.unwrap();
    assert!(a.sync().await.unwrap().conversations.is_empty());
    env.db
        .exec(&format!(
            "UPDATE items SET blob = (SELECT blob FROM evil), version = (SELECT version FROM evil) WHERE item_id = '{x}'; {}",
            fix_size(&x)
        ))
        .await;
    assert_detected(env, &mut a, &x, &["ROLLBACK_DETECTED"], true).await;
}

async fn withheld_item(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words"))
        .await
        .unwrap();
    a.sync().await.unwrap();
    env.db
        .exec(&format!("DELETE FROM items WHERE item_id = '{x}'"))
        .await;
    assert_detected(env, &mut a, &x, &["ITEM_WITHHELD"], false).await;
}

/// The store reports a store-level deletion (which this client never writes) of an item
/// this device holds: the incremental sync reports it as withheld.
async fn store_level_deletion_in_the_feed(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words"))
        .await
        .unwrap();
    a.sync().await.unwrap();
    env.db
        .exec(&format!(
            "UPDATE items SET deleted = TRUE WHERE item_id = '{x}'; {}",
            announce(&x)
        ))
        .await;
    let err = a.sync().await.unwrap_err();
    check("sync", &err, &["ITEM_WITHHELD"]);
    let err = a.sync_full().await.unwrap_err();
    check("sync_full", &err, &["ITEM_WITHHELD"]);
}

async fn substituted_wrapped_key(env: &Env) {
    let a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let mut b = HistoryClient::create_account(&env.url, &env.dir("b"), "b")
        .await
        .unwrap();
    let a2 = {
        let mut a = a;
        let a2 = a.enroll_local_device(&env.dir("a2"), "a2").await.unwrap();
        drop(a);
        a2
    };
    let (ka, kb, ka2) = (
        format!(
            "{}-e1",
            HistoryClient::open(&env.dir("a"))
                .await
                .unwrap()
                .credential_id()
        ),
        format!("{}-e1", b.credential_id()),
        format!("{}-e1", a2.credential_id()),
    );
    b.sync().await.unwrap();
    env.db
        .exec(&format!(
            "CREATE TABLE evil AS SELECT key_id, blob FROM wrapped_keys WHERE key_id = '{ka}'"
        ))
        .await;
    // Another account's record under our key id.
    env.db
        .exec(&format!(
            "UPDATE wrapped_keys SET blob = (SELECT blob FROM wrapped_keys WHERE key_id = '{kb}') WHERE key_id = '{ka}'"
        ))
        .await;
    let err = HistoryClient::open(&env.dir("a")).await.unwrap_err();
    assert_eq!(err.code(), "WRAPPED_KEY_WRONG_ACCOUNT", "{err}");
    // Another device's record of the same account.
    env.db
        .exec(&format!(
            "UPDATE wrapped_keys SET blob = (SELECT blob FROM wrapped_keys WHERE key_id = '{ka2}') WHERE key_id = '{ka}'"
        ))
        .await;
    let err = HistoryClient::open(&env.dir("a")).await.unwrap_err();
    assert_eq!(err.code(), "WRAPPED_KEY_WRONG_CREDENTIAL", "{err}");
    // Our own record back: opens again.
    env.db
        .exec(&format!(
            "UPDATE wrapped_keys SET blob = (SELECT blob FROM evil) WHERE key_id = '{ka}'"
        ))
        .await;
    HistoryClient::open(&env.dir("a")).await.unwrap();
    // The record withheld.
    env.db
        .exec(&format!("DELETE FROM wrapped_keys WHERE key_id = '{ka}'"))
        .await;
    let err = HistoryClient::open(&env.dir("a")).await.unwrap_err();
    assert_eq!(err.code(), "WRAPPED_KEY_MISSING", "{err}");
}

async fn equivocation(env: &Env) {
    let mut a = HistoryClient::create_account(&env.url, &env.dir("a"), "a")
        .await
        .unwrap();
    let x = a
        .append_turns(None, None, "m", &turns("secret words"))
        .await
        .unwrap();
    a.sync().await.unwrap();
    // A second, validly sealed blob for the same item and version (what a store colluding
    // with a removed device, or replaying a losing concurrent write, could serve).
    let mut other = a.conversation(&x).await.unwrap().value;
    other.title = "forged".into();
    let blob = a
        .vault()
        .seal_payload(
            x.as_bytes(),
            1,
            &sotto_vault::Payload::Conversation(other),
            [7; 24],
        )
        .unwrap();
    env.db
        .exec(&format!(
            "UPDATE items SET blob = {} WHERE item_id = '{x}'; {}",
            env.db.bytes_sql(&blob),
            fix_size(&x)
        ))
        .await;
    assert_detected(env, &mut a, &x, &["EQUIVOCATION"], true).await;
}

both_backends!(
    equivocation,
    swapped_between_items,
    swapped_between_accounts,
    replayed_older_version,
    truncated_blob,
    deleted_then_restored,
    withheld_item,
    store_level_deletion_in_the_feed,
    substituted_wrapped_key,
);
