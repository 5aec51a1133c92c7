#![cfg(feature = "std")]
//! The on-disk log: durability across restarts, proofs, tamper detection at open and by
//! the audit, concurrent appends from threads and from processes, cosignatures.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use sotto_log::store::{DirFetcher, Log};
use sotto_log::tiles::{Tile, entry_bundles_for_size, tiles_for_size};
use sotto_log::{
    CheckpointPolicy, Cosigner, Ed25519Signer, LogError, audit, leaf_hash, open_checkpoint,
    verify_consistency, verify_inclusion,
};

const ORIGIN: &str = "example.com/sotto-releases";

fn signer() -> Ed25519Signer {
    Ed25519Signer::from_seed(ORIGIN, &[21; 32]).unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    format!("manifest {i} {}", "x".repeat((i % 50) as usize)).into_bytes()
}

fn audit_dir(dir: &Path, log: &Log) -> sotto_log::AuditReport {
    let (cp, _) = open_checkpoint(&log.signed_checkpoint(), ORIGIN, log.verifier_key()).unwrap();
    let mut fetcher = DirFetcher::new(dir);
    audit(&mut fetcher, &cp, |_, e| {
        if e.starts_with(b"manifest ") || e.starts_with(b"t") || e.starts_with(b"p") {
            Ok(())
        } else {
            Err("not a manifest".into())
        }
    })
}

/// Every file under the log directory, relative, excluding the lock file.
fn files(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out.remove(".lock");
    out
}

#[test]
fn append_restart_proofs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut roots = Vec::new();
    {
        let log = Log::open(&dir, ORIGIN, signer()).unwrap();
        assert_eq!(log.size(), 0);
        assert_eq!(*log.checkpoint().root(), sotto_log::empty_root());
        roots.push(*log.checkpoint().root());
        // Singles, then batches crossing tile boundaries.
        for i in 0..10 {
            assert_eq!(log.append(&entry(i)).unwrap(), i);
            roots.push(*log.checkpoint().root());
        }
        let batch: Vec<Vec<u8>> = (10..600).map(entry).collect();
        assert_eq!(log.append_batch(&batch).unwrap(), 10..600);
        assert_eq!(log.append_batch::<Vec<u8>>(&[]).unwrap(), 600..600);
        assert_eq!(log.size(), 600);
    }
    // Restart: same checkpoint, same entries, proofs verify.
    let log = Log::open(&dir, ORIGIN, signer()).unwrap();
    let cp = log.checkpoint();
    assert_eq!(cp.size(), 600);
    for i in 0..600 {
        assert_eq!(log.read_entry(i).unwrap(), entry(i));
    }
    assert_eq!(
        log.read_entry(600).unwrap_err().code(),
        "INDEX_OUT_OF_RANGE"
    );
    for &i in &[0u64, 1, 255, 256, 511, 599] {
        let p = log.inclusion_proof(i, 600).unwrap();
        verify_inclusion(&leaf_hash(&entry(i)), i, 600, &p, cp.root()).unwrap();
    }
    for size in 1..=10u64 {
        assert_eq!(log.root_at(size).unwrap(), roots[size as usize]);
        let p = log.inclusion_proof(size - 1, size).unwrap();
        verify_inclusion(
            &leaf_hash(&entry(size - 1)),
            size - 1,
            size,
            &p,
            &roots[size as usize],
        )
        .unwrap();
        let c = log.consistency_proof(size, 600).unwrap();
        verify_consistency(size, 600, &c, &roots[size as usize], cp.root()).unwrap();
    }
    assert_eq!(
        log.inclusion_proof(0, 601).unwrap_err().code(),
        "INVALID_TREE_SIZE"
    );

    // The directory is exactly the published log: checkpoint, tiles, bundles for size 600
    // (partial tiles superseded by full ones were removed).
    let mut want: BTreeSet<String> = tiles_for_size(600)
        .iter()
        .chain(entry_bundles_for_size(600).iter())
        .map(Tile::path)
        .collect();
    want.insert("checkpoint".into());
    assert_eq!(files(&dir), want);
    assert!(audit_dir(&dir, &log).is_clean());

    // Appending after the restart continues the same tree.
    let old_root = *cp.root();
    log.append(&entry(600)).unwrap();
    let c = log.consistency_proof(600, 601).unwrap();
    verify_consistency(600, 601, &c, &old_root, log.checkpoint().root()).unwrap();
    drop(log);
    let log = Log::open(&dir, ORIGIN, signer()).unwrap();
    assert_eq!(log.size(), 601);
    assert_eq!(log.read_entry(600).unwrap(), entry(600));
}

#[test]
fn open_refuses_foreign_or_tampered_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let log = Log::open(dir, ORIGIN, signer()).unwrap();
        let batch: Vec<Vec<u8>> = (0..300).map(entry).collect();
        log.append_batch(&batch).unwrap();
    }
    // Wrong origin; wrong key.
    assert_eq!(
        Log::open(dir, "other.example/log", signer())
            .unwrap_err()
            .code(),
        "ORIGIN_MISMATCH"
    );
    let other = Ed25519Signer::from_seed(ORIGIN, &[22; 32]).unwrap();
    assert_eq!(
        Log::open(dir, ORIGIN, other).unwrap_err().code(),
        "STORE_CORRUPT"
    );
    // Oversized entry.
    let log = Log::open(dir, ORIGIN, signer()).unwrap();
    assert_eq!(
        log.append(&vec![0u8; 65536]).unwrap_err(),
        LogError::EntryTooLarge(65536)
    );
    drop(log);

    let check = |name: &str, tamper: &dyn Fn(&Path), finding: &str| {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir, copy.path());
        tamper(copy.path());
        let err = Log::open(copy.path(), ORIGIN, signer()).unwrap_err();
        assert_eq!(err.code(), "STORE_CORRUPT", "{name}: {err}");
        assert!(err.to_string().contains(finding), "{name}: {err}");
        // The audit pinpoints it too.
        let note = std::fs::read(copy.path().join("checkpoint")).unwrap();
        if let Ok((cp, _)) = open_checkpoint(&note, ORIGIN, &signer().verifier_key()) {
            let mut f = DirFetcher::new(copy.path());
            let r = audit(&mut f, &cp, |_, _| Ok(()));
            assert!(
                r.findings.iter().any(|f| f.code() == finding),
                "{name}: {:?}",
                r.findings
            );
        }
    };
    check(
        "flipped byte in a full level-0 tile",
        &|d| flip_byte(&d.join("tile/0/000"), 100),
        "TILE_MISMATCH",
    );
    check(
        "truncated partial tile",
        &|d| truncate(&d.join("tile/0/001.p/44"), 31),
        "TILE_MALFORMED",
    );
    check(
        "truncated level-1 tile",
        &|d| truncate(&d.join("tile/1/000.p/1"), 0),
        "TILE_MALFORMED",
    );
    check(
        "altered entry",
        &|d| flip_byte(&d.join("tile/entries/000"), 50),
        "ENTRY_MISMATCH",
    );
    check(
        "missing bundle",
        &|d| std::fs::remove_file(d.join("tile/entries/001.p/44")).unwrap(),
        "ENTRY_BUNDLE_MISSING",
    );
    check(
        "missing tile",
        &|d| std::fs::remove_file(d.join("tile/0/000")).unwrap(),
        "TILE_MISSING",
    );
    check(
        "checkpoint altered",
        &|d| {
            let p = d.join("checkpoint");
            let s = std::fs::read_to_string(&p)
                .unwrap()
                .replace("\n300\n", "\n299\n");
            std::fs::write(&p, s).unwrap();
        },
        "CHECKPOINT_SIGNATURE_INVALID",
    );
    // Tiles without a checkpoint.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    std::fs::remove_file(copy.path().join("checkpoint")).unwrap();
    assert_eq!(
        Log::open(copy.path(), ORIGIN, signer()).unwrap_err().code(),
        "STORE_CORRUPT"
    );
}

#[test]
fn interrupted_append_leaves_previous_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let log = Log::open(dir, ORIGIN, signer()).unwrap();
        log.append_batch(&(0..250).map(entry).collect::<Vec<_>>())
            .unwrap();
    }
    // Simulate a crash after tiles were written but before the checkpoint: tiles for a
    // larger tree (different entries) exist beyond the checkpoint.
    {
        let scratch = tempfile::tempdir().unwrap();
        let other = Log::open(scratch.path(), ORIGIN, signer()).unwrap();
        other
            .append_batch(
                &(0..300)
                    .map(|i| format!("t{i}").into_bytes())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        for p in [
            "tile/0/000",
            "tile/entries/000",
            "tile/1/000.p/1",
            "tile/0/001.p/44",
        ] {
            let dst = dir.join(p);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(scratch.path().join(p), dst).unwrap();
        }
    }
    let log = Log::open(dir, ORIGIN, signer()).unwrap();
    assert_eq!(log.size(), 250);
    for i in 0..250 {
        assert_eq!(log.read_entry(i).unwrap(), entry(i));
    }
    // Appending overwrites the stale files.
    log.append_batch(&(250..300).map(entry).collect::<Vec<_>>())
        .unwrap();
    assert!(audit_dir(dir, &log).is_clean());
    drop(log);
    let log = Log::open(dir, ORIGIN, signer()).unwrap();
    assert_eq!(log.read_entry(299).unwrap(), entry(299));
}

#[test]
fn concurrent_appends_from_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(tmp.path(), ORIGIN, signer()).unwrap());
    const THREADS: u64 = 8;
    const PER: u64 = 40;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for j in 0..PER {
                    let e = format!("t{t}-{j}").into_bytes();
                    let idx = if j % 5 == 4 {
                        let batch = vec![e.clone(), format!("t{t}-{j}b").into_bytes()];
                        let r = log.append_batch(&batch).unwrap();
                        got.push((r.start + 1, batch[1].clone()));
                        r.start
                    } else {
                        log.append(&e).unwrap()
                    };
                    got.push((idx, e));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let total = THREADS * (PER + PER / 5);
    assert_eq!(log.size(), total);
    let indices: HashSet<u64> = all.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indices.len() as u64,
        total,
        "every index assigned exactly once"
    );
    for (i, e) in &all {
        assert_eq!(&log.read_entry(*i).unwrap(), e);
    }
    let entries: HashSet<Vec<u8>> = (0..total).map(|i| log.read_entry(i).unwrap()).collect();
    assert_eq!(entries.len() as u64, total, "every entry exactly once");
    assert!(audit_dir(tmp.path(), &log).is_clean());
    drop(log);
    assert_eq!(
        Log::open(tmp.path(), ORIGIN, signer()).unwrap().size(),
        total
    );
}

/// Two handles on one directory (as two processes would have) appending concurrently:
/// the lock file serializes them, each adopts the other's appends after checking
/// consistency.
#[test]
fn concurrent_appends_from_two_handles() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Arc::new(Log::open(tmp.path(), ORIGIN, signer()).unwrap());
    let b = Arc::new(Log::open(tmp.path(), ORIGIN, signer()).unwrap());
    let mut handles = Vec::new();
    for (name, log) in [("a", &a), ("b", &b)] {
        for t in 0..4 {
            let log = Arc::clone(log);
            handles.push(std::thread::spawn(move || {
                (0..25)
                    .map(|j| {
                        let e = format!("t{name}{t}-{j}").into_bytes();
                        (log.append(&e).unwrap(), e)
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    let all: Vec<(u64, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    a.refresh().unwrap();
    b.refresh().unwrap();
    assert_eq!(a.checkpoint(), b.checkpoint());
    assert_eq!(a.size(), 200);
    let idx: HashSet<u64> = all.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx.len(), 200);
    for (i, e) in &all {
        assert_eq!(&a.read_entry(*i).unwrap(), e);
    }
    assert!(audit_dir(tmp.path(), &a).is_clean());
}

/// Real processes: this test binary re-executes itself as workers that append to one
/// directory at the same time.
#[test]
fn concurrent_appends_from_processes() {
    if let Ok(dir) = std::env::var("SOTTO_LOG_TEST_WORKER_DIR") {
        let id = std::env::var("SOTTO_LOG_TEST_WORKER_ID").unwrap();
        let log = Log::open(&dir, ORIGIN, signer()).unwrap();
        for j in 0..30 {
            log.append(format!("p{id}-{j}").as_bytes()).unwrap();
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    drop(Log::open(tmp.path(), ORIGIN, signer()).unwrap());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|id| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_appends_from_processes",
                    "--test-threads=1",
                ])
                .env("SOTTO_LOG_TEST_WORKER_DIR", tmp.path())
                .env("SOTTO_LOG_TEST_WORKER_ID", id.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let log = Log::open(tmp.path(), ORIGIN, signer()).unwrap();
    assert_eq!(log.size(), 90);
    let entries: BTreeSet<Vec<u8>> = (0..90).map(|i| log.read_entry(i).unwrap()).collect();
    let want: BTreeSet<Vec<u8>> = (0..3)
        .flat_map(|id| (0..30).map(move |j| format!("p{id}-{j}").into_bytes()))
        .collect();
    assert_eq!(entries, want);
    // Each worker's entries are in its own order.
    for id in 0..3 {
        let positions: Vec<u64> = (0..90)
            .filter(|&i| {
                log.read_entry(i)
                    .unwrap()
                    .starts_with(format!("p{id}-").as_bytes())
            })
            .collect();
        let order: Vec<Vec<u8>> = positions
            .iter()
            .map(|&i| log.read_entry(i).unwrap())
            .collect();
        let want: Vec<Vec<u8>> = (0..30).map(|j| format!("p{id}-{j}").into_bytes()).collect();
        assert_eq!(order, want);
    }
    assert!(audit_dir(tmp.path(), &log).is_clean());
}

#[test]
fn cosignatures_published_with_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path(), ORIGIN, signer()).unwrap();
    log.append_batch(&(0..5).map(entry).collect::<Vec<_>>())
        .unwrap();
    let w = Cosigner::from_seed("witness.example", &[30; 32]).unwrap();
    let cp = log.checkpoint();
    let cos = w.cosign(&cp, 1_700_000_000).unwrap();
    let stranger = Cosigner::from_seed("stranger.example", &[31; 32]).unwrap();
    let added = log
        .add_cosignatures(
            5,
            &[cos.clone(), stranger.cosign(&cp, 1).unwrap()],
            &[w.verifier_key()],
        )
        .unwrap();
    assert_eq!(added, 1);
    let policy = CheckpointPolicy::new(ORIGIN, log.verifier_key().clone())
        .unwrap()
        .with_witnesses(vec![w.verifier_key()], 1)
        .unwrap();
    let served = std::fs::read(tmp.path().join("checkpoint")).unwrap();
    assert_eq!(served, log.signed_checkpoint());
    policy.verify(&served, 1_700_000_000).unwrap();
    // A reopen keeps the cosigned checkpoint.
    drop(log);
    let log = Log::open(tmp.path(), ORIGIN, signer()).unwrap();
    policy
        .verify(&log.signed_checkpoint(), 1_700_000_000)
        .unwrap();
    // A bad cosignature is refused; a moved checkpoint is refused.
    let mut bytes = cos.signature().to_vec();
    bytes[30] ^= 1;
    let bad = sotto_log::NoteSignature::new(cos.name(), cos.id(), bytes).unwrap();
    assert_eq!(
        log.add_cosignatures(5, &[bad], &[w.verifier_key()])
            .unwrap_err()
            .code(),
        "COSIGNATURE_INVALID"
    );
    log.append(&entry(5)).unwrap();
    assert_eq!(
        log.add_cosignatures(5, &[cos], &[w.verifier_key()])
            .unwrap_err()
            .code(),
        "INVALID_TREE_SIZE"
    );
    // A new checkpoint carries no stale cosignatures.
    assert!(
        policy
            .verify(&log.signed_checkpoint(), 1_700_000_000)
            .is_err()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

fn flip_byte(p: &Path, at: usize) {
    let mut d = std::fs::read(p).unwrap();
    d[at] ^= 0x20;
    std::fs::write(p, d).unwrap();
}

fn truncate(p: &Path, len: usize) {
    let d = std::fs::read(p).unwrap();
    std::fs::write(p, &d[..len]).unwrap();
}
