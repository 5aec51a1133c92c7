//! End to end: the enclave and relay as processes, a store on SQLite, and the `sotto`
//! history commands. Afterwards every byte of the store's database (and WAL) is searched
//! for the conversation's words, titles, folder names and instructions.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

const FOLDER: &str = "Quillfeather Archive";
const RENAMED: &str = "Marzipan Projects";
const OTHER_FOLDER: &str = "Thistledown Notes";
const INSTRUCTIONS: &str = "Always narrate about zeppelins";
const ASK: &str = "Once upon a time a walrus named Bartholomew";
const CHAT: &str = "The lighthouse keeper whistled";
const TITLE: &str = "Shipwreck chronicle renamed";
const SETTING: &str = "Speak like a cartographer";

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = output(sotto().args(args));
    assert_eq!(code, 0, "sotto {args:?}: {err}");
    out
}

/// Where the store keeps its data in one run, and how to read back every byte it wrote.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Db {
    fn config(&self) -> sotto_store::BackendConfig {
        match self {
            Db::Sqlite(dir) => sotto_store::BackendConfig::Sqlite {
                path: dir.path().join("store.db"),
            },
            Db::Postgres { url, schema } => sotto_store::BackendConfig::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
                pool_size: 2,
            },
        }
    }

    /// `(bytes to search for every secret word, bytes to search for whole secrets)`.
    ///
    /// SQLite: every file of the database (main file, WAL, shared memory), for both.
    /// PostgreSQL, after a `CHECKPOINT`: the on-disk files of every relation of the store's
    /// schema (tables, indexes, TOAST) plus a binary `COPY` of every table (values as
    /// stored, decompressed) for both; and the server's whole write-ahead log for whole
    /// secrets only (it also holds other tests' data, where common English words occur).
    fn written_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Db::Sqlite(dir) => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(dir.path()).unwrap() {
                    bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
                }
                (bytes.clone(), bytes)
            }
            Db::Postgres { url, schema } => {
                let data =
                    std::path::PathBuf::from(std::env::var("SOTTO_TEST_POSTGRES_DIR").expect(
                        "SOTTO_TEST_POSTGRES_DIR (scripts/postgres.sh) for the data directory",
                    ))
                    .join("data");
                let rt = tokio::runtime::Runtime::new().unwrap();
                let (mut relations, files) = rt.block_on(async {
                    use futures_util::StreamExt;
                    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    client.batch_execute("CHECKPOINT").await.unwrap();
                    let rows = client
                        .query(
                            "SELECT pg_relation_filepath(c.oid) FROM pg_class c \
                             JOIN pg_namespace n ON n.oid = c.relnamespace \
                             WHERE n.nspname = $1 AND pg_relation_filepath(c.oid) IS NOT NULL \
                             UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c \
                             JOIN pg_namespace n ON n.oid = c.relnamespace \
                             WHERE n.nspname = $1 AND c.reltoastrelid <> 0 \
                             UNION SELECT pg_relation_filepath(i.indexrelid) FROM pg_class c \
                             JOIN pg_namespace n ON n.oid = c.relnamespace \
                             JOIN pg_index i ON i.indrelid = c.reltoastrelid \
                             WHERE n.nspname = $1 AND c.reltoastrelid <> 0",
                            &[schema],
                        )
                        .await
                        .unwrap();
                    let files: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                    let tables = client
                        .query(
                            "SELECT table_name::text FROM information_schema.tables \
                             WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
                            &[schema],
                        )
                        .await
                        .unwrap();
                    assert!(tables.len() >= 4, "the store's tables");
                    let mut bytes = Vec::new();
                    for t in &tables {
                        let t: String = t.get(0);
                        let copy = client
                            .copy_out(&format!(
                                "COPY \"{schema}\".\"{t}\" TO STDOUT (FORMAT binary)"
                            ))
                            .await
                            .unwrap();
                        let mut copy = std::pin::pin!(copy);
                        while let Some(chunk) = copy.next().await {
                            bytes.extend_from_slice(&chunk.unwrap());
                        }
                    }
                    (bytes, files)
                });
                assert!(files.len() >= 4, "relation files of the store's schema");
                for f in files {
                    // A relation may have several 1 GiB segments (f, f.1, …); these are
                    // small. An index or TOAST relation never written has no file yet.
                    match std::fs::read(data.join(&f)) {
                        Ok(b) => relations.extend(b),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => panic!("{f}: {e}"),
                    }
                }
                // Dropped only now: the relation files go with the schema.
                rt.block_on(async {
                    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    client
                        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                        .await
                        .unwrap();
                });
                let mut wal = Vec::new();
                for entry in std::fs::read_dir(data.join("pg_wal")).unwrap() {
                    let p = entry.unwrap().path();
                    if p.is_file() {
                        wal.extend(std::fs::read(p).unwrap());
                    }
                }
                wal.extend_from_slice(&relations);
                (relations, wal)
            }
        }
    }
}

#[test]
fn history_end_to_end_store_sees_no_plaintext_sqlite() {
    history_end_to_end(Db::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn history_end_to_end_store_sees_no_plaintext_postgres() {
    match std::env::var("SOTTO_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).unwrap();
            history_end_to_end(Db::Postgres {
                url,
                schema: format!("e2e_{}", hex::encode(b)),
            })
        }
        _ if std::env::var("SOTTO_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: PostgreSQL test (SOTTO_SKIP_POSTGRES=1)");
        }
        _ => panic!(
            "SOTTO_TEST_POSTGRES_URL is not set: start a throwaway server with \
             `eval \"$(scripts/postgres.sh)\"` or set SOTTO_SKIP_POSTGRES=1"
        ),
    }
}

fn history_end_to_end(db: Db) {
    // The store, in-process on its own runtime.
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg = sotto_store::StoreConfig {
        backend: db.config(),
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: Default::default(),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let bound = sotto_store::bind(cfg).await.unwrap();
            tx.send(bound.local_addr()).unwrap();
            bound.run().await.unwrap();
        });
    });
    let store_url = format!("http://{}", rx.recv().unwrap());

    let enclave = start_enclave();
    let (_relay, relay_addr) = start_relay(&enclave.addr);
    let url = format!("ws://{relay_addr}/v1/channel");
    let root = enclave.sim_root();
    let state = tempfile::tempdir().unwrap();
    let sd = path_str(state.path());
    let st = ["--state-dir", sd.as_str()];
    let connect = [
        "--relay",
        url.as_str(),
        "--allow-simulated",
        "--sim-root",
        root.as_str(),
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--state-dir",
        sd.as_str(),
    ];

    // Without an account, --save is a clear error and nothing is sent.
    let (code, _, err) = output(sotto().arg("ask").args(connect).args(["--save", "hello"]));
    assert_ne!(code, 0);
    assert!(err.contains("NO_ACCOUNT"), "{err}");

    let out = run_ok(
        &[
            &[
                "account", "create", "--store", &store_url, "--name", "laptop",
            ],
            &st[..],
        ]
        .concat(),
    );
    assert!(out.starts_with("account "), "{out}");
    let folder = run_ok(
        &[
            &["folder", "create", FOLDER, "--instructions", INSTRUCTIONS],
            &st[..],
        ]
        .concat(),
    );
    let folder = folder.trim().to_string();
    let other = run_ok(&[&["folder", "create", OTHER_FOLDER], &st[..]].concat());
    let other = other.trim().to_string();

    // ask --save in the folder: the folder's instructions are the system prompt.
    let (code, answer, err) = output(
        sotto()
            .arg("ask")
            .args(connect)
            .args(["--save", "--folder", FOLDER, ASK]),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("[saved as "), "{err}");
    // The same question without the folder gets another answer: the instructions were used.
    let (_, plain, _) = output(sotto().arg("ask").args(connect).arg(ASK));
    assert_ne!(
        answer.trim(),
        plain.trim(),
        "folder instructions were not applied"
    );

    let list = run_ok(&[&["history", "list"], &st[..]].concat());
    let line = list.lines().next().expect("one conversation");
    let id = line.split('\t').next().unwrap().to_string();
    assert!(
        line.contains(FOLDER) && line.contains("2 messages"),
        "{list}"
    );

    // chat --continue: two more turns saved into the same conversation.
    let mut child = sotto()
        .arg("chat")
        .args(connect)
        .args(["--continue", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{CHAT}\nAnd then the walrus sang\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chat_answers = String::from_utf8_lossy(&out.stdout).into_owned();
    // A new chat in the other folder.
    let mut child = sotto()
        .arg("chat")
        .args(connect)
        .args(["--folder", OTHER_FOLDER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Second conversation begins\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let show = run_ok(&[&["history", "show", &id], &st[..]].concat());
    assert!(show.contains(ASK) && show.contains(CHAT), "{show}");
    assert_eq!(
        show.lines().filter(|l| l.starts_with("[user]")).count(),
        3,
        "{show}"
    );

    // Rename, move, instructions.
    run_ok(&[&["folder", "rename", &folder, RENAMED], &st[..]].concat());
    run_ok(&[&["folder", "move", &folder, "--after", &other], &st[..]].concat());
    run_ok(&[&["folder", "instructions", &other, INSTRUCTIONS], &st[..]].concat());
    let folders = run_ok(&[&["folder", "list"], &st[..]].concat());
    let names: Vec<_> = folders
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(names, [OTHER_FOLDER, RENAMED]);

    let export_file = state.path().join("export.json");
    run_ok(
        &[
            &["history", "export", "--out", &path_str(&export_file)],
            &st[..],
        ]
        .concat(),
    );
    let export = std::fs::read_to_string(&export_file).unwrap();
    assert!(export.contains(RENAMED) && export.contains(CHAT));
    let devices = run_ok(&[&["device", "list"], &st[..]].concat());
    assert!(
        devices.contains("laptop") && devices.contains("(this device)"),
        "{devices}"
    );

    // A title set through the library, so it is in the database too.
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = sotto_history::HistoryClient::open(&state.path().join("history"))
                .await
                .unwrap();
            c.rename_conversation(&id, TITLE).await.unwrap();
        });
    }

    // Settings are encrypted too.
    run_ok(&[&["settings", "set", "persona-note", SETTING], &st[..]].concat());
    let settings = run_ok(&[&["settings", "show"], &st[..]].concat());
    assert!(settings.contains(SETTING), "{settings}");

    // Every byte the store wrote.
    let (bytes, whole) = db.written_bytes();
    assert!(bytes.len() > 10_000, "the store wrote its database");
    let mut secrets = vec![
        FOLDER,
        RENAMED,
        OTHER_FOLDER,
        INSTRUCTIONS,
        ASK,
        CHAT,
        TITLE,
        SETTING,
    ];
    secrets.push("Second conversation begins");
    let answers = format!("{answer}\n{chat_answers}");
    for s in secrets
        .iter()
        .copied()
        .chain(answers.lines().filter(|l| l.trim().len() > 12))
    {
        let found = leaks(&bytes, s);
        assert!(found.is_empty(), "store database leaks {found:?}");
        assert!(
            !whole.windows(s.len()).any(|w| w == s.as_bytes()),
            "store database (WAL) leaks {s:?}"
        );
    }
    // The leak check itself works on this database: the account id is in it.
    let acct = std::fs::read_to_string(state.path().join("history/device.json")).unwrap();
    let acct: serde_json::Value = serde_json::from_str(&acct).unwrap();
    let raw = hex::decode(acct["account_id"].as_str().unwrap()).unwrap();
    assert!(bytes.windows(16).any(|w| w == raw.as_slice()));
    assert!(whole.windows(16).any(|w| w == raw.as_slice()));
}
