//! The monitor: recompute the whole tree from the published files and compare.
//!
//! [`audit`] fetches every entry bundle and every hash tile a client could ask for at the
//! checkpoint's size, and checks that:
//!
//! 1. every entry bundle parses and holds exactly the entries its path says
//!    (`ENTRY_BUNDLE_MISSING`, `ENTRY_BUNDLE_MALFORMED`);
//! 2. every entry is acceptable to the caller's validator (`ENTRY_REJECTED`), e.g. "is a
//!    validly signed release manifest";
//! 3. the root recomputed from the entries equals the checkpoint's root
//!    (`ROOT_MISMATCH`);
//! 4. every level-0 tile holds the hashes of the entries, and every higher tile the roots
//!    of the full tiles below it (`TILE_MISSING`, `TILE_MALFORMED`, `TILE_MISMATCH`).
//!    When entries and tiles disagree, the side that reproduces the checkpoint root is
//!    taken as authentic and the other is reported (`ENTRY_MISMATCH` for a bundle that
//!    does not match authentic tiles).
//!
//! Problems are reported as typed [`Finding`]s; the audit never panics on bad data.
//! The caller verifies the checkpoint's signatures first (e.g. with a
//! [`crate::CheckpointPolicy`]).

use alloc::string::String;
use alloc::vec::Vec;

use crate::LogError;
use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, complete_subtree_root, empty_root, leaf_hash, root_from_leaves};
use crate::tiles::{
    TILE_WIDTH, Tile, entry_bundles_for_size, hashes_at_level, parse_entry_bundle, parse_hash_tile,
    tiles_for_size,
};

/// Fetches tiles and entry bundles by coordinates.
pub trait TileFetcher {
    /// The tile's bytes; `Ok(None)` if it does not exist; `Err` for a failed fetch.
    fn fetch(&mut self, tile: &Tile) -> Result<Option<Vec<u8>>, LogError>;
}

impl<F> TileFetcher for F
where
    F: FnMut(&Tile) -> Result<Option<Vec<u8>>, LogError>,
{
    fn fetch(&mut self, tile: &Tile) -> Result<Option<Vec<u8>>, LogError> {
        self(tile)
    }
}

/// Something wrong found by [`audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// Fetching a tile failed (not "absent": an error).
    FetchFailed {
        /// The tile.
        tile: Tile,
        /// The error's code.
        code: &'static str,
    },
    /// An entry bundle the checkpoint requires is absent.
    EntryBundleMissing {
        /// The bundle.
        tile: Tile,
    },
    /// An entry bundle does not parse or has the wrong number of entries.
    EntryBundleMalformed {
        /// The bundle.
        tile: Tile,
        /// Why.
        reason: &'static str,
    },
    /// An entry's hash differs from the authentic level-0 tile: the entry was altered.
    EntryMismatch {
        /// Index of the entry in the log.
        index: u64,
    },
    /// The validator rejected an entry.
    EntryRejected {
        /// Index of the entry in the log.
        index: u64,
        /// The validator's reason.
        reason: String,
    },
    /// A hash tile the checkpoint requires is absent.
    TileMissing {
        /// The tile.
        tile: Tile,
    },
    /// A hash tile has the wrong length.
    TileMalformed {
        /// The tile.
        tile: Tile,
        /// Why.
        reason: &'static str,
    },
    /// A hash tile's content differs from the recomputation.
    TileMismatch {
        /// The tile.
        tile: Tile,
        /// First position in the tile that differs.
        position: u16,
    },
    /// The tree recomputed from the published data does not have the checkpoint's root.
    RootMismatch {
        /// Root in the checkpoint.
        expected: Hash,
        /// Root recomputed from the entries (or from the tiles where entries are missing).
        computed: Hash,
    },
    /// Too much data is missing to recompute the root at all.
    RootUncomputable,
}

impl Finding {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Finding::FetchFailed { .. } => "FETCH_FAILED",
            Finding::EntryBundleMissing { .. } => "ENTRY_BUNDLE_MISSING",
            Finding::EntryBundleMalformed { .. } => "ENTRY_BUNDLE_MALFORMED",
            Finding::EntryMismatch { .. } => "ENTRY_MISMATCH",
            Finding::EntryRejected { .. } => "ENTRY_REJECTED",
            Finding::TileMissing { .. } => "TILE_MISSING",
            Finding::TileMalformed { .. } => "TILE_MALFORMED",
            Finding::TileMismatch { .. } => "TILE_MISMATCH",
            Finding::RootMismatch { .. } => "ROOT_MISMATCH",
            Finding::RootUncomputable => "ROOT_UNCOMPUTABLE",
        }
    }
}

impl core::fmt::Display for Finding {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Finding::FetchFailed { tile, code } => write!(f, "{tile}: fetch failed ({code})"),
            Finding::EntryBundleMissing { tile } => write!(f, "{tile}: entry bundle missing"),
            Finding::EntryBundleMalformed { tile, reason } => {
                write!(f, "{tile}: malformed entry bundle: {reason}")
            }
            Finding::EntryMismatch { index } => {
                write!(
                    f,
                    "entry {index}: does not match the authentic tiles (altered)"
                )
            }
            Finding::EntryRejected { index, reason } => {
                write!(f, "entry {index}: rejected: {reason}")
            }
            Finding::TileMissing { tile } => write!(f, "{tile}: tile missing"),
            Finding::TileMalformed { tile, reason } => write!(f, "{tile}: malformed: {reason}"),
            Finding::TileMismatch { tile, position } => {
                write!(f, "{tile}: hash {position} differs from the recomputation")
            }
            Finding::RootMismatch { expected, computed } => write!(
                f,
                "recomputed root {computed} is not the checkpoint root {expected}"
            ),
            Finding::RootUncomputable => f.write_str("too much data missing to compute the root"),
        }
    }
}

/// Result of an [`audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Tree size audited.
    pub size: u64,
    /// Root recomputed from the entries, if they were all available.
    pub computed_root: Option<Hash>,
    /// Entries passed to the validator.
    pub entries_checked: u64,
    /// Tiles and bundles fetched.
    pub tiles_checked: u64,
    /// Everything found wrong (empty for a clean log).
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

fn fetch(fetcher: &mut dyn TileFetcher, tile: &Tile, report: &mut AuditReport) -> Option<Vec<u8>> {
    report.tiles_checked += 1;
    match fetcher.fetch(tile) {
        Ok(Some(d)) => Some(d),
        Ok(None) => {
            report.findings.push(match tile.level() {
                Some(_) => Finding::TileMissing { tile: *tile },
                None => Finding::EntryBundleMissing { tile: *tile },
            });
            None
        }
        Err(e) => {
            report.findings.push(Finding::FetchFailed {
                tile: *tile,
                code: e.code(),
            });
            None
        }
    }
}

fn root_of(leaves: &[Option<Hash>]) -> Option<Hash> {
    let all: Option<Vec<Hash>> = leaves.iter().copied().collect();
    all.map(|v| root_from_leaves(&v))
}

/// Audits the log at `checkpoint` (whose signatures the caller has verified): fetches every
/// entry bundle and hash tile through `fetcher`, runs `validate(index, entry)` on every
/// entry, recomputes the tree and reports every discrepancy.
///
/// Work and memory are linear in the tree size (33 bytes per entry plus one bundle at a
/// time): a monitor auditing an untrusted log should bound the size it accepts.
pub fn audit<V>(
    fetcher: &mut dyn TileFetcher,
    checkpoint: &Checkpoint,
    mut validate: V,
) -> AuditReport
where
    V: FnMut(u64, &[u8]) -> Result<(), String>,
{
    let size = checkpoint.size();
    let mut report = AuditReport {
        size,
        computed_root: None,
        entries_checked: 0,
        tiles_checked: 0,
        findings: Vec::new(),
    };
    if size == 0 {
        let root = empty_root();
        report.computed_root = Some(root);
        if root != *checkpoint.root() {
            report.findings.push(Finding::RootMismatch {
                expected: *checkpoint.root(),
                computed: root,
            });
        }
        return report;
    }
    if usize::try_from(size).is_err() {
        report.findings.push(Finding::RootUncomputable);
        return report;
    }

    // 1-2. Entries: leaf hashes from the bundles.
    let mut from_entries: Vec<Option<Hash>> = Vec::new();
    for bundle in entry_bundles_for_size(size) {
        let start = bundle.index() * u64::from(TILE_WIDTH);
        let width = usize::from(bundle.width());
        let parsed =
            fetch(fetcher, &bundle, &mut report).and_then(|data| {
                match parse_entry_bundle(&bundle, &data) {
                    Ok(entries) => {
                        let mut hashes = Vec::with_capacity(width);
                        for (i, e) in entries.iter().enumerate() {
                            let index = start + i as u64;
                            report.entries_checked += 1;
                            if let Err(reason) = validate(index, e) {
                                report
                                    .findings
                                    .push(Finding::EntryRejected { index, reason });
                            }
                            hashes.push(Some(leaf_hash(e)));
                        }
                        Some(hashes)
                    }
                    Err(e) => {
                        let reason = match e {
                            LogError::MalformedEntryBundle(r) => r,
                            _ => "unparseable",
                        };
                        report.findings.push(Finding::EntryBundleMalformed {
                            tile: bundle,
                            reason,
                        });
                        None
                    }
                }
            });
        match parsed {
            Some(h) => from_entries.extend(h),
            None => from_entries.extend(core::iter::repeat_n(None, width)),
        }
    }

    // Level-0 tiles: leaf hashes as published.
    let all_tiles = tiles_for_size(size);
    let mut stored: Vec<(Tile, Option<Vec<Hash>>)> = Vec::with_capacity(all_tiles.len());
    for tile in all_tiles {
        let hashes = fetch(fetcher, &tile, &mut report).and_then(|data| {
            match parse_hash_tile(&tile, &data) {
                Ok(h) => Some(h),
                Err(_) => {
                    report.findings.push(Finding::TileMalformed {
                        tile,
                        reason: "length is not 32 bytes times the width",
                    });
                    None
                }
            }
        });
        stored.push((tile, hashes));
    }
    let mut from_tiles: Vec<Option<Hash>> = Vec::new();
    for (tile, hashes) in stored.iter().filter(|(t, _)| t.level() == Some(0)) {
        match hashes {
            Some(h) => from_tiles.extend(h.iter().map(|x| Some(*x))),
            None => from_tiles.extend(core::iter::repeat_n(None, usize::from(tile.width()))),
        }
    }

    // 3. Which side reproduces the checkpoint root?
    let expected = *checkpoint.root();
    let root_entries = root_of(&from_entries);
    let root_tiles = root_of(&from_tiles);
    report.computed_root = root_entries;
    let entries_authentic = root_entries == Some(expected);
    let tiles_authentic = !entries_authentic && root_tiles == Some(expected);
    if !entries_authentic && !tiles_authentic {
        match root_entries.or(root_tiles) {
            Some(computed) => report
                .findings
                .push(Finding::RootMismatch { expected, computed }),
            None => report.findings.push(Finding::RootUncomputable),
        }
    }

    // Authentic leaves: entries, holes filled from tiles (or the reverse).
    let (primary, secondary) = if tiles_authentic {
        (&from_tiles, &from_entries)
    } else {
        (&from_entries, &from_tiles)
    };
    let mut level_hashes: Vec<Option<Hash>> = primary
        .iter()
        .zip(secondary.iter())
        .map(|(p, s)| p.or(*s))
        .collect();

    // Disagreements between entries and level-0 tiles.
    for (i, (e, t)) in from_entries.iter().zip(from_tiles.iter()).enumerate() {
        if let (Some(e), Some(t)) = (e, t)
            && e != t
            && tiles_authentic
        {
            report
                .findings
                .push(Finding::EntryMismatch { index: i as u64 });
        }
    }

    // 4. Compare every tile with the recomputation, level by level.
    let mut level: u8 = 0;
    loop {
        let count = hashes_at_level(size, level);
        if count == 0 {
            break;
        }
        for (tile, hashes) in stored.iter().filter(|(t, _)| t.level() == Some(level)) {
            let Some(hashes) = hashes else { continue };
            let start = (tile.index() * u64::from(TILE_WIDTH)) as usize;
            for (pos, h) in hashes.iter().enumerate() {
                if let Some(Some(want)) = level_hashes.get(start + pos)
                    && want != h
                {
                    if !(level == 0 && tiles_authentic) {
                        report.findings.push(Finding::TileMismatch {
                            tile: *tile,
                            position: pos as u16,
                        });
                    }
                    break;
                }
            }
        }
        // Next level: roots of full tiles of this level; holes filled from stored tiles of
        // the next level so the comparison can continue above a gap.
        let mut next: Vec<Option<Hash>> = level_hashes
            .chunks_exact(usize::from(TILE_WIDTH))
            .map(|chunk| {
                let all: Option<Vec<Hash>> = chunk.iter().copied().collect();
                all.and_then(|v| complete_subtree_root(&v))
            })
            .collect();
        for (tile, hashes) in stored.iter().filter(|(t, _)| t.level() == Some(level + 1)) {
            let Some(hashes) = hashes else { continue };
            let start = (tile.index() * u64::from(TILE_WIDTH)) as usize;
            for (pos, h) in hashes.iter().enumerate() {
                if let Some(slot @ None) = next.get_mut(start + pos) {
                    *slot = Some(*h);
                }
            }
        }
        level_hashes = next;
        level += 1;
    }
    report
}
