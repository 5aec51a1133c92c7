//! A durable append-only log in a directory, laid out exactly as c2sp.org/tlog-tiles
//! serves it, so any static file server can publish the directory as is:
//!
//! ```text
//! <dir>/checkpoint                    signed checkpoint (c2sp.org/tlog-checkpoint)
//! <dir>/tile/<L>/<N>[.p/<W>]          hash tiles
//! <dir>/tile/entries/<N>[.p/<W>]      entry bundles
//! <dir>/.lock                         advisory lock file (not part of the published log)
//! ```
//!
//! Durability: every file is written to a temporary name, fsynced, renamed into place, and
//! its directory fsynced; the new checkpoint is written the same way only after all tiles
//! and bundles are durable, so a crash leaves the previous checkpoint and everything it
//! needs intact. Partial tiles are deleted only after a checkpoint covering the full tile
//! is durable (the spec allows deleting a partial once the full tile exists).
//!
//! Concurrency: appends are serialized within a process by a mutex and across processes
//! by an exclusive advisory lock on `.lock` (`flock`, via `std::fs::File::lock`). Before
//! appending, a process re-reads the checkpoint and, if another process moved it, checks
//! that the new tree is consistent with the one it knew.
//!
//! Opening verifies everything: the checkpoint's signature (by the signer's key) and
//! origin, and an [`audit`] of every bundle and tile against it. Any discrepancy (a
//! truncated or altered tile, a missing bundle, a foreign checkpoint) refuses the open
//! with `STORE_CORRUPT`.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::LogError;
use crate::audit::{TileFetcher, audit};
use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::hash::{Hash, empty_root, leaf_hash};
use crate::note::{Ed25519Signer, KeySet, Note, NoteSignature, VerifierKey};
use crate::proof::{self, HashReader, NodeId};
use crate::tiles::{
    MAX_ENTRY_SIZE, TILE_WIDTH, Tile, TileBuilder, TileSet, encode_entry_bundle, encode_hash_tile,
    hashes_at_level, parse_entry_bundle, parse_hash_tile, tile_for_node,
};

const CHECKPOINT_FILE: &str = "checkpoint";
const LOCK_FILE: &str = ".lock";

fn io_err(op: &'static str, path: &Path, e: io::Error) -> LogError {
    LogError::StoreIo {
        op,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn corrupt(what: impl core::fmt::Display) -> LogError {
    LogError::StoreCorrupt(what.to_string())
}

/// Reads a file, `None` if it does not exist.
fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, LogError> {
    match fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

fn tile_path(dir: &Path, tile: &Tile) -> PathBuf {
    dir.join(tile.path())
}

/// Reads a tile's exact file; for a partial tile that is gone (deleted once the full tile
/// was written), the first `width` items of the full tile.
fn read_tile_with_fallback(dir: &Path, tile: &Tile) -> Result<Option<Vec<u8>>, LogError> {
    if let Some(d) = read_opt(&tile_path(dir, tile))? {
        return Ok(Some(d));
    }
    if tile.is_full() {
        return Ok(None);
    }
    let Some(full) = read_opt(&tile_path(dir, &tile.full()))? else {
        return Ok(None);
    };
    let width = usize::from(tile.width());
    match tile.level() {
        Some(_) => Ok(full.get(..width * 32).map(<[u8]>::to_vec)),
        None => {
            let entries = parse_entry_bundle(&tile.full(), &full)?;
            Ok(Some(encode_entry_bundle(&entries[..width])?))
        }
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` atomically and durably (except the directory fsync, done by
/// the caller for all written directories at once).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LogError> {
    let parent = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io_err("create directory", parent, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(data).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err("rename", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(path: &Path) -> Result<(), LogError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", path, e))
}

/// Exclusive advisory lock on the lock file, released on drop.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(f: &'a File, path: &Path) -> Result<Self, LogError> {
        f.lock().map_err(|e| io_err("lock", path, e))?;
        Ok(FileLock(f))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Reads tiles and bundles from a log directory by their exact paths (no fallback), for
/// [`audit`] of a local copy. Missing files are `Ok(None)`.
#[derive(Clone, Debug)]
pub struct DirFetcher {
    dir: PathBuf,
}

impl DirFetcher {
    /// A fetcher reading under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DirFetcher {
        DirFetcher { dir: dir.into() }
    }
}

impl TileFetcher for DirFetcher {
    fn fetch(&mut self, tile: &Tile) -> Result<Option<Vec<u8>>, LogError> {
        read_opt(&tile_path(&self.dir, tile))
    }
}

/// [`HashReader`] over the tiles of a log directory at a given tree size (caching tiles).
struct DiskTiles<'a> {
    dir: &'a Path,
    tree_size: u64,
    cache: std::cell::RefCell<TileSet>,
}

impl HashReader for DiskTiles<'_> {
    fn read_node(&self, node: NodeId) -> Result<Hash, LogError> {
        if let Ok(h) = self.cache.borrow().read_node(node) {
            return Ok(h);
        }
        let (tile, _, _) = tile_for_node(node, self.tree_size)
            .ok_or(LogError::InvalidTreeSize("node beyond the tree"))?;
        let data = read_tile_with_fallback(self.dir, &tile)?
            .ok_or_else(|| LogError::TileMissing(tile.path()))?;
        self.cache
            .borrow_mut()
            .insert(&tile, &data)
            .map_err(|_| corrupt(format_args!("{tile}: malformed tile")))?;
        self.cache.borrow().read_node(node)
    }
}

#[derive(Clone, Debug)]
struct State {
    checkpoint: Checkpoint,
    /// The signed checkpoint exactly as on disk.
    note: Vec<u8>,
    builder: TileBuilder,
    /// Entries of the partial entry bundle.
    bundle: Vec<Vec<u8>>,
}

/// A durable, append-only transparency log stored in a directory (see the module docs).
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    origin: String,
    signer: Ed25519Signer,
    key: VerifierKey,
    lock_path: PathBuf,
    lock_file: File,
    append: Mutex<()>,
    state: RwLock<State>,
}

impl Log {
    /// Opens (or creates) the log in `dir` for `origin`, signing checkpoints with `signer`.
    ///
    /// A new directory gets a signed checkpoint of the empty tree. An existing one is
    /// verified completely (signature, origin, every tile and bundle). Files an
    /// interrupted append left beyond the checkpoint are ignored (never referenced by a
    /// checkpoint) and overwritten by later appends; nothing is ever deleted at open.
    pub fn open(
        dir: impl AsRef<Path>,
        origin: &str,
        signer: Ed25519Signer,
    ) -> Result<Log, LogError> {
        let dir = dir.as_ref().to_path_buf();
        Checkpoint::new(origin, 0, empty_root())?;
        fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        let key = signer.verifier_key();
        let state = {
            let _lock = FileLock::exclusive(&lock_file, &lock_path)?;
            let cp_path = dir.join(CHECKPOINT_FILE);
            if read_opt(&cp_path)?.is_none() {
                if dir.join("tile").exists() {
                    return Err(corrupt("tiles present but no checkpoint"));
                }
                let cp = Checkpoint::new(origin, 0, empty_root())?;
                write_atomic(&cp_path, &cp.sign(&signer)?.to_bytes())?;
                sync_dir(&dir)?;
            }
            load_verified(&dir, origin, &key)?
        };
        Ok(Log {
            dir,
            origin: origin.to_string(),
            signer,
            key,
            lock_path,
            lock_file,
            append: Mutex::new(()),
            state: RwLock::new(state),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log's verifier key (what clients and witnesses configure).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.key
    }

    fn snapshot(&self) -> State {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, s: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// The latest checkpoint this handle knows (see [`Log::refresh`]).
    pub fn checkpoint(&self) -> Checkpoint {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .checkpoint
            .clone()
    }

    /// The signed checkpoint note, as served (with any cosignatures added).
    pub fn signed_checkpoint(&self) -> Vec<u8> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .note
            .clone()
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.checkpoint().size()
    }

    /// Appends one entry (at most 65535 bytes); returns its index. Durable when this
    /// returns.
    pub fn append(&self, entry: &[u8]) -> Result<u64, LogError> {
        self.append_batch(&[entry]).map(|r| r.start)
    }

    /// Appends entries in order under a single new checkpoint; returns their index range.
    /// An empty batch changes nothing.
    pub fn append_batch<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<Range<u64>, LogError> {
        for e in entries {
            if e.as_ref().len() > MAX_ENTRY_SIZE {
                return Err(LogError::EntryTooLarge(e.as_ref().len()));
            }
        }
        let _in_process = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let _lock = FileLock::exclusive(&self.lock_file, &self.lock_path)?;
        let mut state = self.snapshot();
        if let Some(s) = self.reload_if_changed(&state)? {
            state = s;
            self.publish(state.clone());
        }
        let old_size = state.builder.size();
        if entries.is_empty() {
            return Ok(old_size..old_size);
        }
        let mut builder = state.builder.clone();
        let mut bundle = state.bundle.clone();
        let mut files: Vec<(Tile, Vec<u8>)> = Vec::new();
        for e in entries {
            let e = e.as_ref();
            for (tile, hashes) in builder.push(leaf_hash(e))? {
                files.push((tile, encode_hash_tile(&hashes)));
            }
            bundle.push(e.to_vec());
            if bundle.len() == usize::from(TILE_WIDTH) {
                let index = (builder.size() - 1) / u64::from(TILE_WIDTH);
                files.push((
                    Tile::entries(index, TILE_WIDTH)?,
                    encode_entry_bundle(&bundle)?,
                ));
                bundle.clear();
            }
        }
        let new_size = builder.size();
        if !bundle.is_empty() {
            let index = new_size / u64::from(TILE_WIDTH);
            files.push((
                Tile::entries(index, bundle.len() as u16)?,
                encode_entry_bundle(&bundle)?,
            ));
        }
        for (tile, hashes) in builder.partial_tiles() {
            let level = tile.level().unwrap_or(0);
            if hashes_at_level(new_size, level) != hashes_at_level(old_size, level) {
                files.push((tile, encode_hash_tile(hashes)));
            }
        }

        // Tiles and bundles first, durably; then the checkpoint.
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for (tile, data) in &files {
            let path = tile_path(&self.dir, tile);
            write_atomic(&path, data)?;
            let mut d = path.parent();
            while let Some(p) = d {
                dirs.insert(p.to_path_buf());
                if p == self.dir {
                    break;
                }
                d = p.parent();
            }
        }
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
        let checkpoint = Checkpoint::new(&self.origin, new_size, builder.root())?;
        let note = checkpoint.sign(&self.signer)?.to_bytes();
        write_atomic(&self.dir.join(CHECKPOINT_FILE), &note)?;
        sync_dir(&self.dir)?;
        self.publish(State {
            checkpoint,
            note,
            builder,
            bundle,
        });

        // Partial tiles superseded by full ones are no longer needed (best effort).
        for (tile, _) in &files {
            if tile.is_full() {
                let mut p = tile_path(&self.dir, tile).into_os_string();
                p.push(".p");
                let _ = fs::remove_dir_all(PathBuf::from(p));
            }
        }
        Ok(old_size..new_size)
    }

    /// Adds witness cosignatures to the current checkpoint file (signatures from keys not
    /// in `witnesses` are ignored). Every added cosignature must verify. Returns how many
    /// were added; fails with `INVALID_TREE_SIZE` if the checkpoint moved past
    /// `checkpoint_size`.
    pub fn add_cosignatures(
        &self,
        checkpoint_size: u64,
        cosignatures: &[NoteSignature],
        witnesses: &[VerifierKey],
    ) -> Result<usize, LogError> {
        let keys = KeySet::from_keys(witnesses)?;
        let _in_process = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let _lock = FileLock::exclusive(&self.lock_file, &self.lock_path)?;
        let mut state = self.snapshot();
        if let Some(s) = self.reload_if_changed(&state)? {
            state = s;
        }
        if state.checkpoint.size() != checkpoint_size {
            return Err(LogError::InvalidTreeSize("the checkpoint has moved"));
        }
        let mut note = Note::parse(&state.note)?;
        let mut added = 0;
        for s in cosignatures {
            if keys.get(s.name(), s.id()).is_some() {
                note.add_signature(s.clone());
                added += 1;
            }
        }
        note.check_signatures(&keys).map_err(|e| match e {
            LogError::NoteSignatureInvalid { name, id } => {
                LogError::CosignatureInvalid { name, id }
            }
            other => other,
        })?;
        let bytes = note.to_bytes();
        write_atomic(&self.dir.join(CHECKPOINT_FILE), &bytes)?;
        sync_dir(&self.dir)?;
        state.note = bytes;
        self.publish(state);
        Ok(added)
    }

    /// Re-reads the checkpoint and adopts appends made by other processes (after checking
    /// they are consistent with what this handle knew).
    pub fn refresh(&self) -> Result<(), LogError> {
        let _in_process = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let _lock = FileLock::exclusive(&self.lock_file, &self.lock_path)?;
        let state = self.snapshot();
        if let Some(s) = self.reload_if_changed(&state)? {
            self.publish(s);
        }
        Ok(())
    }

    /// If the checkpoint file differs from `state`, the new state (verified: signature,
    /// origin, no rollback or fork, root recomputed from the edge tiles, consistency with
    /// `state`'s tree). Caller holds the file lock.
    fn reload_if_changed(&self, state: &State) -> Result<Option<State>, LogError> {
        let path = self.dir.join(CHECKPOINT_FILE);
        let bytes = read_opt(&path)?.ok_or_else(|| corrupt("checkpoint file disappeared"))?;
        if bytes == state.note {
            return Ok(None);
        }
        let (cp, _) = open_checkpoint(&bytes, &self.origin, &self.key)
            .map_err(|e| corrupt(format_args!("checkpoint: {} ({e})", e.code())))?;
        let old = &state.checkpoint;
        if cp.size() < old.size() {
            return Err(corrupt("checkpoint went backwards"));
        }
        if cp.size() == old.size() {
            if cp.root() != old.root() {
                return Err(corrupt("checkpoint forked: same size, different root"));
            }
            let mut s = state.clone();
            s.note = bytes;
            return Ok(Some(s));
        }
        let new_state = load_state(&self.dir, cp, bytes)?;
        let reader = DiskTiles {
            dir: &self.dir,
            tree_size: new_state.checkpoint.size(),
            cache: Default::default(),
        };
        let proof = proof::consistency_proof(&reader, old.size(), new_state.checkpoint.size())?;
        proof::verify_consistency(
            old.size(),
            new_state.checkpoint.size(),
            &proof,
            old.root(),
            new_state.checkpoint.root(),
        )
        .map_err(|e| {
            corrupt(format_args!(
                "new checkpoint inconsistent with the old: {e}"
            ))
        })?;
        Ok(Some(new_state))
    }

    /// Inclusion proof of entry `index` in the tree of `size` entries (`size` at most the
    /// current size).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        let current = self.size();
        if size > current {
            return Err(LogError::InvalidTreeSize("size beyond the log"));
        }
        let reader = DiskTiles {
            dir: &self.dir,
            tree_size: current,
            cache: Default::default(),
        };
        proof::inclusion_proof(&reader, index, size)
    }

    /// Consistency proof from the tree of `old_size` entries to that of `new_size`
    /// (`new_size` at most the current size).
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LogError> {
        let current = self.size();
        if new_size > current {
            return Err(LogError::InvalidTreeSize("size beyond the log"));
        }
        let reader = DiskTiles {
            dir: &self.dir,
            tree_size: current,
            cache: Default::default(),
        };
        proof::consistency_proof(&reader, old_size, new_size)
    }

    /// Root of the tree of `size` entries (at most the current size).
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        let current = self.size();
        if size > current {
            return Err(LogError::InvalidTreeSize("size beyond the log"));
        }
        let reader = DiskTiles {
            dir: &self.dir,
            tree_size: current,
            cache: Default::default(),
        };
        proof::tree_root(&reader, size)
    }

    /// The entry at `index`, read from its entry bundle.
    pub fn read_entry(&self, index: u64) -> Result<Vec<u8>, LogError> {
        let size = self.size();
        if index >= size {
            return Err(LogError::IndexOutOfRange { index, size });
        }
        let n = index / u64::from(TILE_WIDTH);
        let width = (size - n * u64::from(TILE_WIDTH)).min(u64::from(TILE_WIDTH)) as u16;
        let tile = Tile::entries(n, width)?;
        let data = read_tile_with_fallback(&self.dir, &tile)?
            .ok_or_else(|| LogError::TileMissing(tile.path()))?;
        let entries = parse_entry_bundle(&tile, &data)?;
        entries
            .get((index % u64::from(TILE_WIDTH)) as usize)
            .map(|e| e.to_vec())
            .ok_or(LogError::MalformedEntryBundle("entry not in bundle"))
    }
}

/// Reads and fully verifies the directory's state (caller holds the lock).
fn load_verified(dir: &Path, origin: &str, key: &VerifierKey) -> Result<State, LogError> {
    let cp_path = dir.join(CHECKPOINT_FILE);
    let bytes = read_opt(&cp_path)?.ok_or_else(|| corrupt("no checkpoint"))?;
    let (cp, _) = open_checkpoint(&bytes, origin, key).map_err(|e| match e {
        LogError::OriginMismatch { .. } => e,
        other => corrupt(format_args!("checkpoint: {} ({other})", other.code())),
    })?;
    let mut fetcher = DirFetcher::new(dir);
    let report = audit(&mut fetcher, &cp, |_, _| Ok(()));
    if let Some(first) = report.findings.first() {
        return Err(corrupt(format_args!(
            "{} finding(s), first: {} {first}",
            report.findings.len(),
            first.code()
        )));
    }
    load_state(dir, cp, bytes)
}

/// Builds the in-memory state (right edge, partial bundle) for checkpoint `cp` from the
/// directory, checking the edge reproduces the checkpoint root.
fn load_state(dir: &Path, cp: Checkpoint, note: Vec<u8>) -> Result<State, LogError> {
    let size = cp.size();
    let mut edge: Vec<Vec<Hash>> = Vec::new();
    let mut level: u8 = 0;
    loop {
        let count = hashes_at_level(size, level);
        if count == 0 {
            break;
        }
        let width = (count % u64::from(TILE_WIDTH)) as u16;
        if width == 0 {
            edge.push(Vec::new());
        } else {
            let tile = Tile::hashes(level, count / u64::from(TILE_WIDTH), width)?;
            let data = read_tile_with_fallback(dir, &tile)?
                .ok_or_else(|| corrupt(format_args!("{tile}: missing")))?;
            edge.push(
                parse_hash_tile(&tile, &data)
                    .map_err(|_| corrupt(format_args!("{tile}: malformed")))?,
            );
        }
        level += 1;
    }
    let builder = TileBuilder::from_edge(size, edge)?;
    if builder.root() != *cp.root() {
        return Err(corrupt("tiles do not reproduce the checkpoint root"));
    }
    let mut bundle = Vec::new();
    let width = (size % u64::from(TILE_WIDTH)) as u16;
    if width > 0 {
        let tile = Tile::entries(size / u64::from(TILE_WIDTH), width)?;
        let data = read_tile_with_fallback(dir, &tile)?
            .ok_or_else(|| corrupt(format_args!("{tile}: missing")))?;
        let entries = parse_entry_bundle(&tile, &data)
            .map_err(|_| corrupt(format_args!("{tile}: malformed")))?;
        // The partial bundle must hash to the partial level-0 tile.
        let level0 = builder.partial_tiles();
        let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        if level0.first().map(|(_, h)| *h) != Some(hashes.as_slice()) {
            return Err(corrupt(format_args!(
                "{tile}: does not match the level-0 tile"
            )));
        }
        bundle = entries.iter().map(|e| e.to_vec()).collect();
    }
    Ok(State {
        checkpoint: cp,
        note,
        builder,
        bundle,
    })
}
