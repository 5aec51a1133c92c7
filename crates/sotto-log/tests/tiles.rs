//! Tile paths and contents against c2sp.org/tlog-tiles, and the audit over in-memory tiles.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sotto_log::tiles::{
    Tile, TileBuilder, TileKind, changed_tiles, encode_entry_bundle, encode_hash_tile,
    encode_index, entry_bundles_for_size, parse_entry_bundle, parse_hash_tile, tiles_for_size,
};
use sotto_log::{Checkpoint, Finding, Hash, LogError, audit, leaf_hash};

#[test]
fn paths_from_the_spec() {
    // "index 1234067 will be encoded as x001/x234/067"
    assert_eq!(encode_index(1234067), "x001/x234/067");
    assert_eq!(encode_index(0), "000");
    assert_eq!(encode_index(999), "999");
    assert_eq!(encode_index(1000), "x001/000");
    assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    let cases = [
        (
            Tile::hashes(0, 1234067, 256).unwrap(),
            "tile/0/x001/x234/067",
        ),
        (
            Tile::hashes(3, 1234067, 1).unwrap(),
            "tile/3/x001/x234/067.p/1",
        ),
        (Tile::hashes(63, 0, 255).unwrap(), "tile/63/000.p/255"),
        (
            Tile::entries(1234067, 256).unwrap(),
            "tile/entries/x001/x234/067",
        ),
        (Tile::entries(7, 42).unwrap(), "tile/entries/007.p/42"),
        (
            Tile::hashes(1, u64::MAX, 256).unwrap(),
            "tile/1/x018/x446/x744/x073/x709/x551/615",
        ),
    ];
    for (tile, path) in cases {
        assert_eq!(tile.path(), path);
        assert_eq!(Tile::parse_path(path).unwrap(), tile, "{path}");
    }
}

#[test]
fn non_canonical_paths_rejected() {
    for bad in [
        "tile/0/x000/001", // leading zero group
        "tile/0/1",        // not 3 digits
        "tile/0/0001",     // 4 digits
        "tile/00/000",     // leading zero in level
        "tile/64/000",     // level above 63
        "tile/-1/000",
        "tile/0/000.p/0",   // width 0
        "tile/0/000.p/256", // full width written as partial
        "tile/0/000.p/01",  // leading zero in width
        "tile/0/001/002",   // missing x prefix
        "tile/0/x001",      // last group with x
        "tile/0/x1/002",
        "tile/data/000",                            // Go sumdb layout, not C2SP
        "tile/8/0/000",                             // Go sumdb layout with height
        "tile/0/x018/x446/x744/x073/x709/x551/616", // u64 overflow
        "tile/0/000/",
        "tile/0/",
        "tile/entries",
        "tiles/0/000",
        "/tile/0/000",
        "tile/0/000.p/1/2",
        "tile/ 0/000",
    ] {
        assert!(Tile::parse_path(bad).is_err(), "accepted {bad:?}");
    }
    assert!(Tile::hashes(0, 0, 0).is_err());
    assert!(Tile::hashes(0, 0, 257).is_err());
    assert!(Tile::hashes(64, 0, 1).is_err());
}

/// Naive MTH over leaf hashes (RFC 6962 recursion), independent of the crate.
fn mth(leaves: &[Hash]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0].0,
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(mth(&leaves[..k]));
            h.update(mth(&leaves[k..]));
            h.finalize().into()
        }
    }
}

/// The tile contents the spec defines: the n-th tile at level l is
/// `MTH(D[(n*256+i)*256^l : (n*256+i+1)*256^l])` for i in 0..width.
fn spec_tile(leaves: &[Hash], level: u32, n: u64, width: u16) -> Vec<Hash> {
    let span = 256usize.pow(level);
    (0..u64::from(width))
        .map(|i| {
            let start = (n * 256 + i) as usize * span;
            Hash(mth(&leaves[start..start + span]))
        })
        .collect()
}

#[test]
fn tile_contents_match_the_spec_definition() {
    // 70,000 is the spec's example: 273 full + 1 partial (112) level-0 tiles, 1 full + 1
    // partial (17) level-1 tiles, 1 partial (1) level-2 tile.
    const N: u64 = 70_000;
    let leaves: Vec<Hash> = (0..N).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut b = TileBuilder::new();
    let mut produced: BTreeMap<Tile, Vec<Hash>> = BTreeMap::new();
    for l in &leaves {
        for (t, h) in b.push(*l).unwrap() {
            assert!(produced.insert(t, h).is_none(), "tile {t} produced twice");
        }
    }
    for (t, h) in b.partial_tiles() {
        produced.insert(t, h.to_vec());
    }
    let expected = tiles_for_size(N);
    assert_eq!(produced.keys().copied().collect::<Vec<_>>(), {
        let mut e = expected.clone();
        e.sort();
        e
    });
    for t in &expected {
        let level = u32::from(t.level().unwrap());
        // Level 2's single hash spans 65,536 leaves; check it and a sample elsewhere.
        if level == 0 && t.index() % 37 != 0 && t.is_full() {
            continue;
        }
        assert_eq!(
            produced[t],
            spec_tile(&leaves, level, t.index(), t.width()),
            "tile {t}"
        );
    }
    assert_eq!(b.root().0, mth(&leaves));
    // Resuming from the edge gives the same tree.
    let edge: Vec<Vec<Hash>> = (0..3u8)
        .map(|l| {
            b.partial_tiles()
                .iter()
                .find(|(t, _)| t.level() == Some(l))
                .map(|(_, h)| h.to_vec())
                .unwrap_or_default()
        })
        .collect();
    let resumed = TileBuilder::from_edge(N, edge).unwrap();
    assert_eq!(resumed.root(), b.root());
    assert!(TileBuilder::from_edge(N + 1, vec![]).is_err());
}

#[test]
fn changed_tiles_per_growth() {
    let paths =
        |old, new| -> Vec<String> { changed_tiles(old, new).iter().map(|t| t.path()).collect() };
    assert_eq!(paths(0, 1), ["tile/0/000.p/1", "tile/entries/000.p/1"]);
    assert_eq!(
        paths(255, 256),
        ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]
    );
    assert_eq!(
        paths(256, 300),
        ["tile/0/001.p/44", "tile/entries/001.p/44"]
    );
    assert_eq!(
        paths(100, 600),
        [
            "tile/0/000",
            "tile/0/001",
            "tile/0/002.p/88",
            "tile/1/000.p/2",
            "tile/entries/000",
            "tile/entries/001",
            "tile/entries/002.p/88"
        ]
    );
    assert!(changed_tiles(5, 5).is_empty());
    assert_eq!(entry_bundles_for_size(512).len(), 2);
    assert!(tiles_for_size(0).is_empty());
}

#[test]
fn entry_bundles() {
    let entries: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7; 300]];
    let data = encode_entry_bundle(&entries).unwrap();
    assert_eq!(&data[..5], &[0, 0, 0, 1, b'a']);
    let t = Tile::entries(0, 3).unwrap();
    let parsed = parse_entry_bundle(&t, &data).unwrap();
    assert_eq!(
        parsed,
        entries.iter().map(|e| e.as_slice()).collect::<Vec<_>>()
    );
    // Wrong width, truncation, trailing bytes.
    assert!(parse_entry_bundle(&Tile::entries(0, 2).unwrap(), &data).is_err());
    assert!(parse_entry_bundle(&Tile::entries(0, 4).unwrap(), &data).is_err());
    assert!(parse_entry_bundle(&t, &data[..data.len() - 1]).is_err());
    let mut extra = data.clone();
    extra.push(0);
    assert!(parse_entry_bundle(&t, &extra).is_err());
    assert_eq!(
        encode_entry_bundle(&[vec![0u8; 65536]]).unwrap_err(),
        LogError::EntryTooLarge(65536)
    );
    assert!(encode_entry_bundle(&[vec![0u8; 65535]]).is_ok());
    // Hash tiles: exactly 32 * width bytes.
    let h = vec![Hash([1; 32]); 3];
    let ht = Tile::hashes(0, 0, 3).unwrap();
    assert_eq!(parse_hash_tile(&ht, &encode_hash_tile(&h)).unwrap(), h);
    assert!(parse_hash_tile(&ht, &encode_hash_tile(&h)[..95]).is_err());
    assert!(parse_hash_tile(&t, &encode_hash_tile(&h)).is_err());
    assert_eq!(ht.kind(), TileKind::Hashes { level: 0 });
}

/// A log published in memory, for the audit.
fn publish(entries: &[Vec<u8>]) -> (BTreeMap<Tile, Vec<u8>>, Checkpoint) {
    let mut files = BTreeMap::new();
    let mut b = TileBuilder::new();
    for e in entries {
        for (t, h) in b.push(leaf_hash(e)).unwrap() {
            files.insert(t, encode_hash_tile(&h));
        }
    }
    for (t, h) in b.partial_tiles() {
        files.insert(t, encode_hash_tile(h));
    }
    for t in entry_bundles_for_size(entries.len() as u64) {
        let start = (t.index() * 256) as usize;
        let chunk = &entries[start..start + usize::from(t.width())];
        files.insert(t, encode_entry_bundle(chunk).unwrap());
    }
    let cp = Checkpoint::new("example.com/audit", entries.len() as u64, b.root()).unwrap();
    (files, cp)
}

fn run_audit(files: &BTreeMap<Tile, Vec<u8>>, cp: &Checkpoint) -> sotto_log::AuditReport {
    let mut fetch = |t: &Tile| -> Result<Option<Vec<u8>>, LogError> { Ok(files.get(t).cloned()) };
    audit(&mut fetch, cp, |_, e| {
        if e.starts_with(b"entry") {
            Ok(())
        } else {
            Err("not an entry".into())
        }
    })
}

#[test]
fn audit_in_memory() {
    let entries: Vec<Vec<u8>> = (0..600)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    let (files, cp) = publish(&entries);
    let r = run_audit(&files, &cp);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.entries_checked, 600);
    assert_eq!(r.computed_root, Some(*cp.root()));

    // A tampered level-0 tile (entries authentic).
    let mut f = files.clone();
    let t0 = Tile::hashes(0, 1, 256).unwrap();
    f.get_mut(&t0).unwrap()[40] ^= 1;
    let r = run_audit(&f, &cp);
    assert_eq!(
        r.findings,
        [Finding::TileMismatch {
            tile: t0,
            position: 1
        }]
    );

    // A tampered level-1 tile.
    let mut f = files.clone();
    let t1 = Tile::hashes(1, 0, 2).unwrap();
    f.get_mut(&t1).unwrap()[0] ^= 1;
    let r = run_audit(&f, &cp);
    assert_eq!(
        r.findings,
        [Finding::TileMismatch {
            tile: t1,
            position: 0
        }]
    );

    // A truncated tile.
    let mut f = files.clone();
    let tp = Tile::hashes(0, 2, 88).unwrap();
    f.get_mut(&tp).unwrap().pop();
    let r = run_audit(&f, &cp);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].code(), "TILE_MALFORMED");

    // An altered entry (same length) with authentic tiles: the entry is reported.
    let mut f = files.clone();
    let b1 = Tile::entries(1, 256).unwrap();
    let bundle = f.get_mut(&b1).unwrap();
    let pos = bundle.len() - 1;
    bundle[pos] ^= 1;
    let r = run_audit(&f, &cp);
    assert_eq!(r.findings, [Finding::EntryMismatch { index: 511 }]);

    // An entry the validator rejects, consistently published: reported, tree fine.
    let mut bad_entries = entries.clone();
    bad_entries[7] = b"not a manifest".to_vec();
    let (f, cp2) = publish(&bad_entries);
    let r = run_audit(&f, &cp2);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].code(), "ENTRY_REJECTED");

    // Missing bundle and missing tile.
    let mut f = files.clone();
    f.remove(&b1);
    f.remove(&Tile::hashes(1, 0, 2).unwrap());
    let r = run_audit(&f, &cp);
    let codes: Vec<&str> = r.findings.iter().map(|f| f.code()).collect();
    assert_eq!(codes, ["ENTRY_BUNDLE_MISSING", "TILE_MISSING"]);

    // A checkpoint that the data does not support.
    let wrong = Checkpoint::new("example.com/audit", 600, Hash([3; 32])).unwrap();
    let r = run_audit(&files, &wrong);
    assert_eq!(r.findings[0].code(), "ROOT_MISMATCH");

    // Fetch errors are findings, not panics.
    let mut failing =
        |_: &Tile| -> Result<Option<Vec<u8>>, LogError> { Err(LogError::TileMissing("x".into())) };
    let r = audit(&mut failing, &cp, |_, _| Ok(()));
    assert!(r.findings.iter().any(|f| f.code() == "FETCH_FAILED"));
    assert!(r.findings.iter().any(|f| f.code() == "ROOT_UNCOMPUTABLE"));

    // Empty log.
    let empty = Checkpoint::new("o", 0, sotto_log::empty_root()).unwrap();
    assert!(run_audit(&BTreeMap::new(), &empty).is_clean());
}
