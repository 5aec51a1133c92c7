//! Release enforcement: the client's view of the transparency log.
//!
//! [`verify_hello`](crate::verify_hello) checks the release proof in the evidence bundle
//! (signature, checkpoint, witnesses, inclusion; sans-I/O, in `sotto-release`). This module
//! adds the stateful part: the client remembers the latest checkpoint it accepted and
//! refuses a checkpoint that is not consistent with it (a split view), fetching the tiles
//! it needs for the consistency proof from the log. The tiles are untrusted: the proof
//! computed from them is verified against both signed roots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sotto_log::tiles::tiles_for_nodes;
use sotto_log::{Checkpoint, Hash, Note, Tile, TileSet, consistency_proof};
use sotto_release::{ReleaseError, ReleaseTrust, VerifiedRelease};

use crate::ClientError;

/// What the client requires of releases, and where it keeps its view of the log.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// Trusted release keys, log key, witnesses and quorum.
    pub trust: ReleaseTrust,
    /// Base URL of the log's tiles (`…/checkpoint`, `…/tile/…`), used to fetch consistency
    /// proofs. Without it, a checkpoint other than the one stored is refused.
    pub log_url: Option<String>,
    /// File holding the latest checkpoint this client accepted. `None` keeps the view in
    /// memory for the life of the process only.
    pub view_file: Option<PathBuf>,
}

/// Process-wide lock and in-memory view (for configurations without a file, and to
/// serialise updates of the file between concurrent connections).
static VIEW: tokio::sync::Mutex<Option<(Option<PathBuf>, Vec<u8>)>> =
    tokio::sync::Mutex::const_new(None);

fn checkpoint_of(signed: &[u8]) -> Result<Checkpoint, ReleaseError> {
    let note = Note::parse(signed).map_err(ReleaseError::Checkpoint)?;
    Checkpoint::parse(note.text()).map_err(ReleaseError::Checkpoint)
}

fn load_file(path: &Path) -> Result<Option<Vec<u8>>, ClientError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Config(format!(
            "cannot read the stored log view {}: {e}",
            path.display()
        ))),
    }
}

fn store_file(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let err = |e: std::io::Error| {
        ClientError::Config(format!("cannot store the log view {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Checks the release's checkpoint against the checkpoint this client accepted before and
/// records the newer one. Returns a one-line description of what was checked.
pub(crate) async fn check_view(
    config: &ReleaseConfig,
    release: &VerifiedRelease,
    timeout: Duration,
) -> Result<String, ClientError> {
    let new = &release.checkpoint.checkpoint;
    let mut guard = VIEW.lock().await;
    let seen_bytes = match (&config.view_file, guard.as_ref()) {
        (Some(path), _) => load_file(path)?,
        (None, Some((None, bytes))) => Some(bytes.clone()),
        (None, _) => None,
    };
    let Some(seen_bytes) = seen_bytes else {
        remember(config, &mut guard, &release.signed_checkpoint)?;
        return Ok(format!(
            "first checkpoint seen for {} (size {}); stored",
            new.origin(),
            new.size()
        ));
    };
    let seen = match checkpoint_of(&seen_bytes) {
        Ok(c) if c.origin() == new.origin() => c,
        // The view file is per log origin, so another origin in it, like an unparseable
        // file, is corruption or tampering. Treating it as a first sight would silently
        // disable fork detection; the user has to look at it (and may delete it).
        Ok(_) => {
            return Err(ReleaseError::ViewCorrupt(format!(
                "the stored log view{} holds a checkpoint of another log",
                view_name(config)
            ))
            .into());
        }
        Err(_) => {
            return Err(ReleaseError::ViewCorrupt(format!(
                "the stored log view{} is not a checkpoint",
                view_name(config)
            ))
            .into());
        }
    };
    let Some((old_size, new_size)) = sotto_release::consistency_needed(&seen, new)? else {
        return Ok(format!(
            "same checkpoint as seen before (size {})",
            new.size()
        ));
    };
    let url = config.log_url.as_deref().ok_or_else(|| {
        ReleaseError::ConsistencyInvalid(format!(
            "checkpoint size {} differs from the size {} seen before and no log URL is configured to prove consistency",
            new.size(),
            seen.size()
        ))
    })?;
    let log = LogClient::new(url)?;
    let proof = tokio::time::timeout(timeout, log.consistency_proof(old_size, new_size))
        .await
        .map_err(|_| ReleaseError::ConsistencyInvalid("timed out fetching log tiles".into()))??;
    sotto_release::check_consistency(&seen, new, &proof)?;
    if new.size() > seen.size() {
        remember(config, &mut guard, &release.signed_checkpoint)?;
    }
    Ok(format!(
        "consistent with the checkpoint seen before (size {} -> {})",
        seen.size(),
        new.size()
    ))
}

fn view_name(config: &ReleaseConfig) -> String {
    match &config.view_file {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

fn remember(
    config: &ReleaseConfig,
    guard: &mut Option<(Option<PathBuf>, Vec<u8>)>,
    signed: &[u8],
) -> Result<(), ClientError> {
    if let Some(path) = &config.view_file {
        store_file(path, signed)?;
    }
    *guard = Some((config.view_file.clone(), signed.to_vec()));
    Ok(())
}

/// A reader of a transparency log published over HTTP in the c2sp.org/tlog-tiles layout
/// (`<base>/checkpoint`, `<base>/tile/…`). Everything it returns is untrusted until
/// checked against a signed checkpoint; it only bounds sizes.
#[derive(Debug, Clone)]
pub struct LogClient {
    base: String,
    http: reqwest::Client,
}

/// Largest checkpoint or entry bundle accepted, in bytes.
const MAX_FILE_BYTES: usize = 1 << 20;

impl LogClient {
    /// A client for the log at `base` (http:// URL).
    pub fn new(base: &str) -> Result<LogClient, ClientError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Config(format!("http client: {e}")))?;
        Ok(LogClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The latest signed checkpoint (note bytes).
    pub async fn checkpoint(&self) -> Result<Vec<u8>, ClientError> {
        self.get("checkpoint", MAX_FILE_BYTES)
            .await?
            .ok_or_else(|| log_err("the log has no checkpoint".into()))
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves, from tiles.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ClientError> {
        let nodes = sotto_log::proof::nodes_for_inclusion_proof(index, size)
            .map_err(|e| log_err(e.to_string()))?;
        let set = self.tiles(&nodes, size).await?;
        sotto_log::inclusion_proof(&set, index, size).map_err(|e| log_err(e.to_string()))
    }

    /// Consistency proof between tree sizes `old` and `new`, from tiles.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ClientError> {
        let nodes = sotto_log::proof::nodes_for_consistency_proof(old, new)
            .map_err(|e| log_err(e.to_string()))?;
        let set = self.tiles(&nodes, new).await?;
        consistency_proof(&set, old, new).map_err(|e| log_err(e.to_string()))
    }

    /// Entry `index` of a tree of `size` leaves (from its entry bundle). Check it against
    /// the tree (its leaf hash and an inclusion proof) before trusting it.
    pub async fn entry(&self, index: u64, size: u64) -> Result<Vec<u8>, ClientError> {
        if index >= size {
            return Err(log_err(format!(
                "entry {index} is beyond the tree size {size}"
            )));
        }
        let entries = self.bundle(index / 256, size).await?;
        entries
            .into_iter()
            .nth((index % 256) as usize)
            .ok_or_else(|| log_err(format!("entry {index} missing from its bundle")))
    }

    /// The index of `entry` in the tree of `size` leaves, searching entry bundles from the
    /// newest (a release is usually recent); `None` if absent.
    pub async fn find_entry(&self, entry: &[u8], size: u64) -> Result<Option<u64>, ClientError> {
        for b in (0..size.div_ceil(256)).rev() {
            let entries = self.bundle(b, size).await?;
            if let Some(i) = entries.iter().rposition(|e| e == entry) {
                return Ok(Some(b * 256 + i as u64));
            }
        }
        Ok(None)
    }

    /// The entries of bundle `b` that belong to the tree of `size` leaves. A partial
    /// bundle that is gone (the log grew past it) is read from the full one.
    async fn bundle(&self, b: u64, size: u64) -> Result<Vec<Vec<u8>>, ClientError> {
        let width = (size - b * 256).min(256) as u16;
        let tile = Tile::entries(b, width).map_err(|e| log_err(e.to_string()))?;
        let (tile, data) = match self.get(&tile.path(), MAX_FILE_BYTES).await? {
            Some(d) => (tile, d),
            None if !tile.is_full() => {
                let full = tile.full();
                let d = self
                    .get(&full.path(), MAX_FILE_BYTES)
                    .await?
                    .ok_or_else(|| log_err(format!("{} not found", tile.path())))?;
                (full, d)
            }
            None => return Err(log_err(format!("{} not found", tile.path()))),
        };
        let entries = sotto_log::tiles::parse_entry_bundle(&tile, &data)
            .map_err(|e| log_err(e.to_string()))?;
        Ok(entries
            .into_iter()
            .take(usize::from(width))
            .map(|e| e.to_vec())
            .collect())
    }

    async fn tiles(&self, nodes: &[sotto_log::NodeId], size: u64) -> Result<TileSet, ClientError> {
        let tiles = tiles_for_nodes(nodes, size).map_err(|e| log_err(e.to_string()))?;
        let mut set = TileSet::new();
        for tile in tiles {
            let data = self.tile(&tile).await?;
            set.insert(&tile, &data)
                .map_err(|e| log_err(format!("{}: {e}", tile.path())))?;
        }
        Ok(set)
    }

    /// Fetches a hash tile; a partial tile that is gone (the tree grew past it) is read
    /// from the full tile, as c2sp.org/tlog-tiles allows.
    async fn tile(&self, tile: &Tile) -> Result<Vec<u8>, ClientError> {
        let want = usize::from(tile.width()) * 32;
        if let Some(data) = self.get(&tile.path(), MAX_TILE_BYTES).await? {
            return Ok(data);
        }
        if !tile.is_full()
            && let Some(mut data) = self.get(&tile.full().path(), MAX_TILE_BYTES).await?
            && data.len() >= want
        {
            data.truncate(want);
            return Ok(data);
        }
        Err(log_err(format!("log tile {} not found", tile.path())))
    }

    /// GET `path` under the log's base URL with a bounded body (at most `max` bytes; the
    /// log server is untrusted); `None` on 404.
    pub async fn get(&self, path: &str, max: usize) -> Result<Option<Vec<u8>>, ClientError> {
        let url = format!("{}/{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| log_err(format!("fetching {path}: {e}")))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(log_err(format!("fetching {path}: HTTP {}", resp.status())));
        }
        // Bounded read: the log server is not trusted to send what it announced.
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| log_err(format!("fetching {path}: {e}")))?
        {
            if body.len() + chunk.len() > max {
                return Err(log_err(format!("{path}: too large")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

fn log_err(msg: String) -> ClientError {
    ReleaseError::ConsistencyInvalid(msg).into()
}

/// Largest hash tile accepted (256 hashes of 32 bytes).
const MAX_TILE_BYTES: usize = 256 * 32;
