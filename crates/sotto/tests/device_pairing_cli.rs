//! End to end, across "machines": two `sotto` processes with separate state directories
//! that share nothing but the store URL. Machine A creates the account and saves a
//! conversation (through the enclave); machine B runs `sotto device add`, A `sotto device
//! approve` with the code B printed; B then lists and shows A's conversation. A removes B:
//! B can no longer log in. With two requests pending `--slot` is required; a pairing with
//! a wrong code fails on both sides with their codes and registers nothing; a code typed on
//! standard input works.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::*;

const ASK: &str = "Once upon a time a walrus named Bartholomew";
const LATER: &str = "The lighthouse keeper whistled";

fn run(args: &[&str]) -> (i32, String, String) {
    output(sotto().args(args))
}

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "sotto {args:?}: {err}");
    out
}

/// `sotto device add` running in the background: its stdout lines arrive on a channel.
struct Adding {
    child: Child,
    lines: Receiver<String>,
}

impl Adding {
    fn start(store: &str, account: &str, name: &str, state: &str) -> Self {
        let mut child = sotto()
            .args([
                "device",
                "add",
                "--store",
                store,
                "--account",
                account,
                "--name",
                name,
                "--timeout",
                "60",
                "--state-dir",
                state,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sotto device add");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Adding { child, lines }
    }

    /// Waits for the line starting with `prefix`; returns the rest.
    fn value(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {prefix:?} line"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    /// Waits for the process: `(exit code, rest of stdout, stderr)`.
    fn finish(self) -> (i32, String, String) {
        let out = self.child.wait_with_output().expect("wait");
        // The reader thread ends at end of file (the process has exited).
        let rest: Vec<String> = self.lines.iter().collect();
        (
            out.status.code().unwrap_or(-1),
            rest.join("\n"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn start_store() -> (String, tempfile::TempDir) {
    let db_dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg = sotto_store::StoreConfig {
        backend: sotto_store::BackendConfig::Sqlite {
            path: db_dir.path().join("store.db"),
        },
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
    (format!("http://{}", rx.recv().unwrap()), db_dir)
}

#[test]
fn device_add_and_approve_across_state_dirs() {
    let (store_url, _db) = start_store();
    let enclave = start_enclave();
    let (_relay, relay_addr) = start_relay(&enclave.addr);
    let url = format!("ws://{relay_addr}/v1/channel");
    let root = enclave.sim_root();
    let a_state = tempfile::tempdir().unwrap();
    let b_state = tempfile::tempdir().unwrap();
    let c_state = tempfile::tempdir().unwrap();
    let d_state = tempfile::tempdir().unwrap();
    let a = path_str(a_state.path());
    let b = path_str(b_state.path());
    let c = path_str(c_state.path());
    let d = path_str(d_state.path());
    let ask = |question: &str| {
        let (code, _, err) = run(&[
            "ask",
            "--relay",
            &url,
            "--allow-simulated",
            "--sim-root",
            &root,
            "--temperature",
            "0",
            "--max-tokens",
            "24",
            "--state-dir",
            &a,
            "--save",
            question,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("[saved as "), "{err}");
    };

    // Machine A: account and a saved conversation.
    let out = run_ok(&[
        "account",
        "create",
        "--store",
        &store_url,
        "--name",
        "laptop",
        "--state-dir",
        &a,
    ]);
    let account = out
        .lines()
        .find_map(|l| l.strip_prefix("account "))
        .expect("account id")
        .trim()
        .to_string();
    ask(ASK);
    let list_a = run_ok(&["history", "list", "--state-dir", &a]);
    let conv = list_a
        .lines()
        .next()
        .and_then(|l| l.split('\t').next())
        .expect("a conversation")
        .to_string();

    // Approving with nothing pending is a clear error.
    let (code, _, err) = run(&["device", "approve", "--code", "12345678", "--state-dir", &a]);
    assert_ne!(code, 0);
    assert!(err.contains("NO_PAIRING_REQUEST"), "{err}");

    // Machine B: device add prints the code; A approves it.
    let adding = Adding::start(&store_url, &account, "phone", &b);
    let code_shown = adding.value("pairing code:");
    assert!(
        code_shown.len() == 9 && code_shown.as_bytes()[4] == b' ',
        "{code_shown:?}"
    );
    let approved = run_ok(&[
        "device",
        "approve",
        "--code",
        &code_shown,
        "--state-dir",
        &a,
    ]);
    let b_id = approved
        .trim()
        .strip_prefix("approved device ")
        .expect("approved line")
        .to_string();
    let (code, rest, err) = adding.finish();
    assert_eq!(code, 0, "device add failed: {err}");
    assert!(rest.contains(&format!("device {b_id}")), "{rest}");

    // B reads A's conversation.
    let list_b = run_ok(&["history", "list", "--state-dir", &b]);
    assert!(list_b.contains(&conv), "{list_b}");
    let show_b = run_ok(&["history", "show", &conv, "--state-dir", &b]);
    assert!(show_b.contains(ASK), "{show_b}");
    let devices = run_ok(&["device", "list", "--state-dir", &a]);
    assert!(
        devices.contains(&b_id) && devices.contains("phone"),
        "{devices}"
    );

    // Two requests pending: approving without --slot is refused; C gets a wrong code
    // (both sides fail with their codes; C is not registered and has no state), D is
    // approved with its code typed on standard input.
    let adding_c = Adding::start(&store_url, &account, "intruder", &c);
    let shown = adding_c.value("pairing code:").replace(' ', "");
    let slot_c = adding_c.value("slot ");
    let adding_d = Adding::start(&store_url, &account, "tablet", &d);
    let code_d = adding_d.value("pairing code:");
    let slot_d = adding_d.value("slot ");
    let (code, _, err) = run(&["device", "approve", "--code", &shown, "--state-dir", &a]);
    assert_ne!(code, 0);
    assert!(err.contains("SEVERAL_PAIRING_REQUESTS"), "{err}");
    let wrong = format!("{:08}", (shown.parse::<u64>().unwrap() + 1) % 100_000_000);
    let (code, _, err) = run(&[
        "device",
        "approve",
        "--slot",
        &slot_c,
        "--code",
        &wrong,
        "--state-dir",
        &a,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("PAIRING_CONFIRM_FAILED"), "{err}");
    let (code, _, err) = adding_c.finish();
    assert_ne!(code, 0);
    assert!(err.contains("PAIRING_AUTH_FAILED"), "{err}");
    assert!(!c_state.path().join("history/device.json").exists());
    let mut approve_d = sotto()
        .args(["device", "approve", "--slot", &slot_d, "--state-dir", &a])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = approve_d.stdin.take().unwrap();
        writeln!(stdin, "{code_d}").unwrap();
    }
    let out = approve_d.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = adding_d.finish();
    assert_eq!(code, 0, "{err}");
    let devices = run_ok(&["device", "list", "--state-dir", &a]);
    assert!(!devices.contains("intruder"), "{devices}");
    assert!(devices.contains("tablet"), "{devices}");
    assert_eq!(devices.lines().count(), 3, "{devices}");

    // A removes B; A saves something new; B can no longer log in or read it.
    run_ok(&["device", "remove", &b_id, "--state-dir", &a]);
    ask(LATER);
    let (code, _, err) = run(&["history", "list", "--state-dir", &b]);
    assert_ne!(code, 0, "removed device still reads");
    assert!(err.contains("credential_revoked"), "{err}");
    let list_a = run_ok(&["history", "list", "--state-dir", &a]);
    assert_eq!(list_a.lines().count(), 2, "{list_a}");
}
