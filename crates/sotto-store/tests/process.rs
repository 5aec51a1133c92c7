//! The `sotto-store` binary as a real process, on both backends:
//!
//! * durability: SIGKILL in the middle of a burst of writes, restart on the same database,
//!   every acknowledged write is intact and byte-identical (and no write is torn);
//! * the database and the logs hold nothing but the clients' bytes, and those only in blob
//!   columns: a marker inside blobs never shows up in any other column or in the log.

mod common;

use std::{
    collections::HashMap,
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64ct::{Base64, Encoding};
use common::{Db, Device, TestServer, random_bytes};
use reqwest::Method;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

both_backends!(
    acknowledged_writes_survive_sigkill,
    database_and_logs_hold_only_client_bytes
);

/// A running `sotto-store` process.
struct Proc {
    child: Child,
    addr: String,
}

async fn spawn_store(db: &Db, log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sotto-store"))
        .args(db.bin_args())
        .args(["--listen", "127.0.0.1:0"])
        .env("SOTTO_LOG", "trace")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("store did not start within 60 s")
        .unwrap()
        .expect("store exited before listening");
    let addr = line
        .strip_prefix("store listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Proc { child, addr }
}

async fn sigkill(p: &mut Proc) {
    p.child.start_kill().unwrap(); // SIGKILL on Unix
    let status = p.child.wait().await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "store was not killed by SIGKILL");
    }
    #[cfg(not(unix))]
    let _ = status;
}

/// Deterministic content for write `n` of writer `t` (sizes from 1 byte to 48 KiB).
fn content(t: usize, n: usize, tag: &str) -> Vec<u8> {
    let size = 1 + (t * 7919 + n * 104_729) % (48 << 10);
    let mut x = (t as u64) << 32 | n as u64 | 0x9e37_79b9_0000_0000;
    let mut out = format!("{tag}:{t}:{n}:").into_bytes();
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out.truncate(size.max(1));
    out
}

/// A version and its bytes.
type Versioned = (u64, Vec<u8>);

#[derive(Default)]
struct Ledger {
    /// Created items whose PUT returned 200: id → bytes.
    acked: HashMap<String, Vec<u8>>,
    /// Every create attempted: id → bytes (a superset of `acked`).
    attempted: HashMap<String, Vec<u8>>,
    /// Per writer's update item: last acknowledged (version, bytes), and the one in flight.
    updates: HashMap<String, (Versioned, Option<Versioned>)>,
}

async fn acknowledged_writes_survive_sigkill(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("store.log");
    let mut p = spawn_store(db, &log).await;
    let api = Arc::new(TestServer::remote(&p.addr));
    let device = api.new_account().await;

    const WRITERS: usize = 8;
    const KILL_AFTER: usize = 150;
    const MAX_WRITES: usize = 2000; // per writer; bounds the test if the kill never lands
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let acks = Arc::new(AtomicUsize::new(0));
    for t in 0..WRITERS {
        let id = format!("u{t}");
        let first = content(t, 0, "update");
        api.put_ok(&device, &id, 0, &first).await;
        ledger
            .lock()
            .unwrap()
            .updates
            .insert(id, ((1, first), None));
    }
    let mut writers = Vec::new();
    for t in 0..WRITERS {
        let (api, device, ledger, acks) =
            (api.clone(), device.clone(), ledger.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..MAX_WRITES {
                // Mostly new items; every 4th write updates this writer's own item.
                if n % 4 == 3 {
                    let id = format!("u{t}");
                    let (version, blob) = {
                        let mut l = ledger.lock().unwrap();
                        let entry = l.updates.get_mut(&id).unwrap();
                        let next = (entry.0.0 + 1, content(t, n, "update"));
                        entry.1 = Some(next.clone());
                        next
                    };
                    let Ok(resp) = try_put(&api, &device, &id, version - 1, blob.clone()).await
                    else {
                        return;
                    };
                    assert_eq!(resp, 200, "update refused before the kill");
                    let mut l = ledger.lock().unwrap();
                    let entry = l.updates.get_mut(&id).unwrap();
                    *entry = ((version, blob), None);
                } else {
                    let id = format!("w{t}-{n}");
                    let blob = content(t, n, "create");
                    ledger
                        .lock()
                        .unwrap()
                        .attempted
                        .insert(id.clone(), blob.clone());
                    let Ok(resp) = try_put(&api, &device, &id, 0, blob.clone()).await else {
                        return;
                    };
                    assert_eq!(resp, 200, "create refused before the kill");
                    ledger.lock().unwrap().acked.insert(id, blob);
                }
                acks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Kill mid-burst.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while acks.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "burst too slow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sigkill(&mut p).await;
    for w in writers {
        w.await.unwrap();
    }
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let in_flight = ledger.attempted.len() - ledger.acked.len();
    assert!(ledger.acked.len() >= KILL_AFTER * 3 / 4 - WRITERS);
    assert!(
        acks.load(Ordering::SeqCst) < WRITERS * MAX_WRITES,
        "the burst ended before the kill"
    );

    if let Db::Sqlite { path, .. } = db {
        let conn = rusqlite::Connection::open(path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    // Restart on the same database. Sessions are stored, so the old token still works.
    let mut p = spawn_store(db, &log).await;
    let api = TestServer::remote(&p.addr);
    for (id, blob) in &ledger.acked {
        let (got, version) = api
            .get_item(&device, id)
            .await
            .unwrap_or_else(|_| panic!("acknowledged write {id} lost"));
        assert_eq!(version, 1);
        assert!(got == *blob, "acknowledged write {id} corrupted");
    }
    // Writes in flight at the kill: absent, or complete (never torn).
    let mut landed_unacked = 0;
    for (id, blob) in &ledger.attempted {
        if ledger.acked.contains_key(id) {
            continue;
        }
        match api.get_item(&device, id).await {
            Ok((got, _)) => {
                assert!(got == *blob, "in-flight write {id} torn");
                landed_unacked += 1;
            }
            Err(resp) => assert_eq!(resp.status(), 404),
        }
    }
    for (id, ((version, blob), pending)) in &ledger.updates {
        let (got, v) = api.get_item(&device, id).await.unwrap();
        if v == *version {
            assert!(got == *blob, "acknowledged update {id} v{v} corrupted");
        } else {
            let (pv, pblob) = pending.as_ref().expect("version moved without a write");
            assert_eq!(v, *pv, "{id}");
            assert!(got == *pblob, "in-flight update {id} torn");
        }
    }
    // The sync feed agrees: every stored item once, seqs dense up to last_seq.
    let mut seqs = Vec::new();
    let mut since = 0;
    loop {
        let page = api
            .changes(&device, &format!("since={since}&limit=1000"))
            .await;
        for c in page["changes"].as_array().unwrap() {
            seqs.push(c["seq"].as_u64().unwrap());
        }
        since = page["next_since"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            break;
        }
    }
    let info = api.account_info(&device).await;
    let items = info["item_count"].as_u64().unwrap() as usize;
    assert_eq!(seqs.len(), items);
    assert_eq!(items, WRITERS + ledger.acked.len() + landed_unacked);
    // And the store takes writes again.
    api.put_ok(&device, "after-restart", 0, b"ok").await;
    eprintln!(
        "{}: {} acknowledged creates + {WRITERS} updated items intact after SIGKILL \
         ({in_flight} in flight, {landed_unacked} of them landed)",
        db.kind(),
        ledger.acked.len()
    );
    sigkill(&mut p).await;
}

/// `Ok(status)` if the store answered, `Err` if the connection failed (store gone).
async fn try_put(
    api: &TestServer,
    device: &Device,
    id: &str,
    if_match: u64,
    blob: Vec<u8>,
) -> Result<u16, reqwest::Error> {
    api.authed(device, Method::PUT, &TestServer::item_path(device, id))
        .header("if-match", if_match.to_string())
        .body(blob)
        .send()
        .await
        .map(|r| r.status().as_u16())
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn database_and_logs_hold_only_client_bytes(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("store.log");
    let mut p = spawn_store(db, &log).await;
    let api = TestServer::remote(&p.addr);
    let device = api.new_account().await;

    // 24 bytes (a multiple of 3, at an offset that is one too), so its base64 form is also
    // a substring of the blob's base64.
    let marker = format!("MARKER-{}-", hex::encode(random_bytes::<8>())).into_bytes();
    assert_eq!(marker.len(), 24);
    let blob = |n: u8| {
        let mut b = vec![n; 30];
        b.extend_from_slice(&marker);
        b.extend(random_bytes::<32>());
        b
    };
    let ids: Vec<String> = (0..6).map(|_| hex::encode(random_bytes::<16>())).collect();
    // What the database must hold afterwards, exactly: live blobs and the wrapped key.
    let mut expected: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut sent = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let b = blob(n as u8);
        api.put_ok(&device, id, 0, &b).await;
        sent.push(b);
    }
    let updated = blob(100);
    api.put_ok(&device, &ids[0], 1, &updated).await;
    sent[0] = updated;
    assert_eq!(api.delete_item(&device, &ids[1], 1).await.status(), 200);
    for (n, b) in sent.into_iter().enumerate() {
        if n != 1 {
            expected.push(("items", b));
        }
    }
    expected.push(("items", Vec::new())); // the tombstone's empty blob
    let key_path = format!("/v1/accounts/{}/keys/{}", device.account, device.credential);
    let key_blob = blob(200);
    let resp = api
        .authed(&device, Method::PUT, &key_path)
        .header("if-match", "0")
        .body(key_blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    expected.push(("wrapped_keys", key_blob));
    // Refused writes carrying the marker: conflict, oversized, bad version, wrong account.
    assert_eq!(
        api.put_item(&device, &ids[2], 0, blob(1)).await.status(),
        409
    );
    let mut big = blob(2);
    big.resize(2 << 20, 0);
    assert_eq!(api.put_item(&device, "big", 0, big).await.status(), 413);
    let resp = api
        .authed(&device, Method::PUT, &TestServer::item_path(&device, "v"))
        .header("if-match", "x")
        .body(blob(3))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let other = api.new_account().await;
    let resp = api
        .authed(&other, Method::PUT, &TestServer::item_path(&device, "x"))
        .header("if-match", "0")
        .body(blob(4))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Reads, including the sync feed with blobs.
    api.get_item(&device, &ids[3]).await.unwrap();
    let page: Value = api.changes(&device, "blobs=true").await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 6);
    sigkill(&mut p).await;

    // The forms the marker could take in a log line.
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("raw", marker.clone()),
        ("hex", hex::encode(&marker).into_bytes()),
        ("HEX", hex::encode_upper(&marker).into_bytes()),
        ("base64", Base64::encode_string(&marker).into_bytes()),
        (
            "debug",
            format!("{:?}", &marker[..8])
                .trim_end_matches(']')
                .as_bytes()
                .to_vec(),
        ),
    ];

    let text = std::fs::read(&log).unwrap();
    let text_str = String::from_utf8_lossy(&text);
    // The log is on and records requests with sizes.
    assert!(
        text_str.contains("route=\"/v1/accounts/{account}/items/{item}\""),
        "no access log"
    );
    assert!(
        text_str.contains("item written") && text_str.contains("size=86"),
        "no write log"
    );
    for (name, form) in &forms {
        assert!(
            !find(&text, form),
            "{name} form of blob bytes found in the log"
        );
    }

    // The database: blob columns hold exactly the bytes clients sent (byte for byte, nothing
    // added, nothing from refused requests), and the marker is nowhere else.
    let dump = db.dump().await;
    let mut stored: Vec<(&str, Vec<u8>)> = dump
        .iter()
        .filter(|(t, c, _)| c == "blob" && (t == "items" || t == "wrapped_keys"))
        .map(|(t, _, v)| {
            (
                if t == "items" {
                    "items"
                } else {
                    "wrapped_keys"
                },
                v.clone(),
            )
        })
        .collect();
    stored.sort();
    expected.sort();
    assert!(
        stored == expected,
        "blob columns differ from what clients sent"
    );
    let mut in_blobs = 0;
    for (table, column, value) in dump {
        let blob_column = column == "blob" && (table == "items" || table == "wrapped_keys");
        for (name, form) in &forms {
            if find(&value, form) {
                assert!(blob_column, "{name} form of blob bytes in {table}.{column}");
                in_blobs += 1;
            }
        }
        // Ids the client chose appear only as ids.
        if !blob_column {
            assert!(!find(&value, &marker[..7]), "{table}.{column}");
        }
    }
    // 5 live items (one deleted, its blob gone) + 1 wrapped key.
    assert_eq!(in_blobs, 6);
}
