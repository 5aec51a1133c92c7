//! `sotto log` (append, serve, audit) and `sotto witness run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::{Args, Subcommand};
use sotto_log::witness::{AddCheckpointRequest, TreeHead, Witness};
use sotto_log::{Checkpoint, CheckpointPolicy, Hash, KeySet, Log, Note, VerifierKey};

use crate::CliError;
use crate::release_cmd::{parse_vkey, read_cosigner, read_signer};

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Append signed releases to the log (after checking them) and collect witness
    /// cosignatures on the new checkpoint. With no files, only collects cosignatures.
    Append(AppendArgs),
    /// Serve the log directory read-only over HTTP (c2sp.org/tlog-tiles layout).
    Serve(ServeArgs),
    /// Monitor: recompute the whole tree from the published tiles, check every entry is a
    /// validly signed release manifest, report anything odd (exit 0 clean, 10 findings).
    Audit(AuditArgs),
}

#[derive(Args, Debug)]
pub struct AppendArgs {
    /// Log directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Log signing key (its name is the log's origin).
    #[arg(long)]
    pub key: PathBuf,
    /// Only append releases signed by one of these keys (vkey or file). Strongly advised.
    #[arg(long = "release-key")]
    pub release_keys: Vec<String>,
    /// Witness to ask for a cosignature: URL=VKEY (repeatable).
    #[arg(long = "witness", value_name = "URL=VKEY")]
    pub witnesses: Vec<String>,
    /// Signed release files to append.
    pub releases: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Log directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7950")]
    pub listen: SocketAddr,
    /// Exit when standard input closes (used by `sotto up`).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Audit a local log directory...
    #[arg(long, conflicts_with = "url")]
    pub dir: Option<PathBuf>,
    /// ...or a log published over HTTP (base URL of `checkpoint` and `tile/`).
    #[arg(long)]
    pub url: Option<String>,
    /// The log's verifier key (vkey or file); its name is the origin.
    #[arg(long)]
    pub log_key: String,
    /// Release keys: every entry must be a manifest signed by one of them.
    #[arg(long = "release-key", required = true)]
    pub release_keys: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Run a witness: serves c2sp.org/tlog-witness `POST /add-checkpoint`, cosigning a
    /// log's checkpoints only when consistent with the last one it cosigned.
    Run(WitnessArgs),
}

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// Witness cosigning key.
    #[arg(long)]
    pub key: PathBuf,
    /// Verifier key of a log to witness (its name is the origin; repeatable).
    #[arg(long = "log-key", required = true)]
    pub log_keys: Vec<String>,
    /// State file: the last cosigned tree head per log (created if missing).
    #[arg(long)]
    pub state: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7960")]
    pub listen: SocketAddr,
    /// Exit when standard input closes (used by `sotto up`).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

fn key_set(keys: &[String]) -> Result<KeySet, CliError> {
    let mut set = KeySet::new();
    for k in keys {
        set.insert(parse_vkey(k)?)
            .map_err(|e| format!("{k}: {}", e.code()))?;
    }
    Ok(set)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn run_log(c: LogCommand) -> Result<ExitCode, CliError> {
    match c {
        LogCommand::Append(a) => append(a).await,
        LogCommand::Serve(a) => {
            crate::stack::exit_when_stdin_closes(a.exit_with_parent);
            let listener = tokio::net::TcpListener::bind(a.listen).await?;
            println!("serving log directory {}", a.dir.display());
            println!("log listening on http://{}", listener.local_addr()?);
            axum::serve(listener, sotto_relay::logfiles::router(a.dir)).await?;
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Audit(a) => audit(a).await,
    }
}

/// Appends signed releases (checked first) and collects cosignatures. Returns the
/// indexes of the appended entries.
pub async fn append_releases(
    dir: &Path,
    key: &Path,
    release_keys: &KeySet,
    witnesses: &[(String, VerifierKey)],
    releases: &[Vec<u8>],
) -> Result<Vec<u64>, CliError> {
    let signer = read_signer(key)?;
    let origin = signer.name().to_string();
    for (i, r) in releases.iter().enumerate() {
        // Only well-formed signed manifests enter the log; with release keys, only theirs.
        let note =
            Note::parse(r).map_err(|e| format!("entry {i}: not a signed note ({})", e.code()))?;
        sotto_release::Manifest::parse(note.text().as_bytes())
            .map_err(|e| format!("entry {i}: {e} [{}]", e.code()))?;
        if !release_keys.is_empty() {
            sotto_release::open_release(r, release_keys)
                .map_err(|e| format!("entry {i}: {e} [{}]", e.code()))?;
        }
    }
    let dir2 = dir.to_path_buf();
    let releases2 = releases.to_vec();
    let (log, indexes) = tokio::task::spawn_blocking(move || -> Result<_, CliError> {
        let log =
            Log::open(&dir2, &origin, signer).map_err(|e| format!("log: {e} [{}]", e.code()))?;
        let mut out = Vec::new();
        if !releases2.is_empty() {
            let range = log
                .append_batch(&releases2)
                .map_err(|e| format!("append: {e} [{}]", e.code()))?;
            out.extend(range);
        }
        Ok((log, out))
    })
    .await??;
    let log = Arc::new(log);
    // Ask every witness even if one fails (a client quorum may not need them all), and
    // say what was appended: the entries are durable whatever the witnesses answer, and
    // appending them again would log them twice.
    let mut failures = Vec::new();
    for (url, vkey) in witnesses {
        if let Err(e) = cosign_with(&log, url, vkey).await {
            failures.push(e.to_string());
        }
    }
    if !failures.is_empty() {
        let appended = match (indexes.first(), indexes.last()) {
            (Some(a), Some(b)) if a == b => format!("appended index {a}; "),
            (Some(a), Some(b)) => format!("appended index {a} to index {b}; "),
            _ => String::new(),
        };
        return Err(format!(
            "{appended}log size {}, not cosigned by every witness (run `sotto log append` without files to retry): {}",
            log.size(),
            failures.join("; ")
        )
        .into());
    }
    Ok(indexes)
}

/// Asks one witness to cosign the log's current checkpoint (c2sp.org/tlog-witness), and
/// stores its cosignature in the checkpoint file.
async fn cosign_with(log: &Arc<Log>, url: &str, vkey: &VerifierKey) -> Result<(), CliError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let checkpoint = log.checkpoint();
    let size = checkpoint.size();
    let note = log.signed_checkpoint();
    // First try from size 0 unless the witness tells us its size (409 + text/x.tlog.size).
    let mut old = 0u64;
    for _ in 0..2 {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let l = log.clone();
            tokio::task::spawn_blocking(move || l.consistency_proof(old, size))
                .await?
                .map_err(|e| format!("consistency proof: {e}"))?
        };
        let req = AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: note.clone(),
        };
        let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
        let resp = http
            .post(&endpoint)
            .body(req.to_bytes())
            .send()
            .await
            .map_err(|e| format!("witness {url}: {e}"))?;
        let status = resp.status();
        let is_size = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
        // Bounded read: a witness answers with a few signature lines; a hostile or broken
        // one must not make the log's tooling allocate without limit.
        const MAX_WITNESS_RESPONSE: usize = 64 * 1024;
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("witness {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_WITNESS_RESPONSE {
                return Err(format!("witness {url}: response larger than 64 KiB").into());
            }
            body.extend_from_slice(&chunk);
        }
        if status == reqwest::StatusCode::CONFLICT && is_size {
            let s = std::str::from_utf8(&body).unwrap_or("").trim();
            old = s
                .parse()
                .map_err(|_| format!("witness {url}: bad size in conflict response"))?;
            if old > size {
                return Err(format!(
                    "witness {url} has cosigned a larger tree ({old}) than the log's ({size}): the log lost entries or forked"
                )
                .into());
            }
            continue;
        }
        if !status.is_success() {
            return Err(format!(
                "witness {url} refused the checkpoint: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )
            .into());
        }
        let sigs = sotto_log::note::parse_signature_lines(&body, &Default::default())
            .map_err(|e| format!("witness {url}: bad cosignature lines ({})", e.code()))?;
        let l = log.clone();
        let v = vkey.clone();
        let added = tokio::task::spawn_blocking(move || l.add_cosignatures(size, &sigs, &[v]))
            .await?
            .map_err(|e| format!("witness {url}: {e} [{}]", e.code()))?;
        if added == 0 {
            return Err(
                format!("witness {url} returned no cosignature from {}", vkey.name()).into(),
            );
        }
        return Ok(());
    }
    Err(format!("witness {url}: could not agree on the old size").into())
}

fn parse_witnesses(specs: &[String]) -> Result<Vec<(String, VerifierKey)>, CliError> {
    specs
        .iter()
        .map(|s| {
            let (url, vkey) = s
                .split_once('=')
                .ok_or_else(|| format!("--witness {s:?}: expected URL=VKEY"))?;
            Ok((url.to_string(), parse_vkey(vkey)?))
        })
        .collect()
}

async fn append(a: AppendArgs) -> Result<ExitCode, CliError> {
    let keys = key_set(&a.release_keys)?;
    if keys.is_empty() {
        eprintln!("warning: no --release-key: entries are checked for form only");
    }
    let witnesses = parse_witnesses(&a.witnesses)?;
    let mut releases = Vec::new();
    for p in &a.releases {
        releases.push(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    let indexes = append_releases(&a.dir, &a.key, &keys, &witnesses, &releases).await?;
    for (p, i) in a.releases.iter().zip(&indexes) {
        println!("{} -> index {i}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Blocking adapter of [`sotto_client::LogClient`] (bounded reads) for the synchronous
/// audit, run on a blocking thread.
struct HttpFetcher {
    rt: tokio::runtime::Handle,
    log: sotto_client::LogClient,
}

impl HttpFetcher {
    /// GET with a bounded body (the log is untrusted); `None` on 404.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, sotto_log::LogError> {
        const MAX: usize = 1 << 24;
        self.rt
            .block_on(self.log.get(path, MAX))
            .map_err(|_| sotto_log::LogError::TileMissing(path.to_string()))
    }
}

impl sotto_log::TileFetcher for HttpFetcher {
    fn fetch(&mut self, tile: &sotto_log::Tile) -> Result<Option<Vec<u8>>, sotto_log::LogError> {
        if let Some(b) = self.get(&tile.path())? {
            return Ok(Some(b));
        }
        if tile.is_full() {
            return Ok(None);
        }
        // The log grew past this partial tile and deleted it (c2sp.org/tlog-tiles allows
        // that): its content is the start of the full tile.
        let Some(full) = self.get(&tile.full().path())? else {
            return Ok(None);
        };
        let width = usize::from(tile.width());
        if tile.level().is_some() {
            if full.len() < width * 32 {
                return Err(sotto_log::LogError::MalformedTile("full tile too short"));
            }
            return Ok(Some(full[..width * 32].to_vec()));
        }
        let entries = sotto_log::tiles::parse_entry_bundle(&tile.full(), &full)?;
        let head: Vec<&[u8]> = entries.into_iter().take(width).collect();
        Ok(Some(sotto_log::tiles::encode_entry_bundle(&head)?))
    }
}

async fn audit(a: AuditArgs) -> Result<ExitCode, CliError> {
    let log_key = parse_vkey(&a.log_key)?;
    let release_keys = key_set(&a.release_keys)?;
    let origin = log_key.name().to_string();
    let policy =
        CheckpointPolicy::new(&origin, log_key).map_err(|e| format!("log key: {}", e.code()))?;
    let signed = match (&a.dir, &a.url) {
        (Some(d), None) => std::fs::read(d.join("checkpoint"))
            .map_err(|e| format!("{}: {e}", d.join("checkpoint").display()))?,
        (None, Some(u)) => sotto_client::LogClient::new(u)?.checkpoint().await?,
        _ => return Err("give --dir or --url".into()),
    };
    let checkpoint: Checkpoint = match policy.verify(&signed, now_unix()) {
        Ok(v) => v.checkpoint,
        Err(e) => {
            eprintln!("checkpoint rejected [{}]: {e}", e.code());
            return Ok(ExitCode::from(crate::cli_client::EXIT_REJECTED));
        }
    };
    let validate = move |i: u64, entry: &[u8]| -> Result<(), String> {
        sotto_release::open_release(entry, &release_keys)
            .map(|_| ())
            .map_err(|e| format!("entry {i}: {} [{}]", e, e.code()))
    };
    let report = match (&a.dir, &a.url) {
        (Some(d), _) => {
            let mut f = sotto_log::DirFetcher::new(d.clone());
            let cp = checkpoint.clone();
            tokio::task::spawn_blocking(move || sotto_log::audit(&mut f, &cp, validate)).await?
        }
        (None, Some(u)) => {
            let mut f = HttpFetcher {
                rt: tokio::runtime::Handle::current(),
                log: sotto_client::LogClient::new(u)?,
            };
            let cp = checkpoint.clone();
            tokio::task::spawn_blocking(move || sotto_log::audit(&mut f, &cp, validate)).await?
        }
        _ => return Err("give --dir or --url".into()),
    };
    if a.json {
        let findings: Vec<serde_json::Value> = report
            .findings
            .iter()
            .map(|f| serde_json::json!({"code": f.code(), "detail": format!("{f:?}")}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "origin": origin,
                "size": report.size,
                "root": checkpoint.root().to_base64(),
                "entries_checked": report.entries_checked,
                "tiles_checked": report.tiles_checked,
                "clean": report.is_clean(),
                "findings": findings,
            })
        );
    } else {
        println!(
            "log {origin}: size {}, {} entries and {} tiles checked",
            report.size, report.entries_checked, report.tiles_checked
        );
        for f in &report.findings {
            println!("FINDING [{}] {f:?}", f.code());
        }
        if report.is_clean() {
            println!(
                "clean: every entry is a validly signed release and every tile matches the checkpoint"
            );
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::cli_client::EXIT_REJECTED)
    })
}

// ---- witness ----

struct WitnessState {
    witness: Mutex<Witness>,
    state_file: PathBuf,
    /// State file lines of logs the witness is not configured for (kept as they were).
    other_heads: Vec<String>,
}

fn load_heads(path: &Path) -> Result<Vec<(String, TreeHead)>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [origin, size, root] = parts[..] else {
            return Err(format!("{}:{}: expected ORIGIN SIZE ROOT", path.display(), n + 1).into());
        };
        let size: u64 = size
            .parse()
            .map_err(|_| format!("{}:{}: bad size", path.display(), n + 1))?;
        let root = Hash::from_base64(root)
            .ok_or_else(|| format!("{}:{}: bad root", path.display(), n + 1))?;
        out.push((origin.to_string(), TreeHead { size, root }));
    }
    Ok(out)
}

pub async fn run_witness(c: WitnessCommand) -> Result<ExitCode, CliError> {
    let WitnessCommand::Run(a) = c;
    crate::stack::exit_when_stdin_closes(a.exit_with_parent);
    let cosigner = read_cosigner(&a.key)?;
    let vkey = cosigner.verifier_key().to_vkey();
    let mut witness = Witness::new(cosigner);
    let heads = load_heads(&a.state)?;
    // A log may have several keys (rotation): one entry per origin with all its keys.
    let mut logs: Vec<(String, Vec<VerifierKey>)> = Vec::new();
    for k in &a.log_keys {
        let key = parse_vkey(k)?;
        let origin = key.name().to_string();
        match logs.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, keys)) => keys.push(key),
            None => logs.push((origin, vec![key])),
        }
    }
    for (origin, keys) in &logs {
        let head = heads.iter().find(|(o, _)| o == origin).map(|(_, h)| *h);
        witness
            .add_log(origin, keys, head)
            .map_err(|e| format!("log keys of {origin}: {}", e.code()))?;
    }
    // Heads of logs not configured this time stay in the state file: dropping them would
    // let the witness cosign a fork of such a log if it is configured again later.
    let other_heads = heads
        .iter()
        .filter(|(o, _)| !logs.iter().any(|(l, _)| l == o))
        .map(|(o, h)| format!("{o} {} {}\n", h.size, h.root.to_base64()))
        .collect();
    let state = Arc::new(WitnessState {
        witness: Mutex::new(witness),
        state_file: a.state.clone(),
        other_heads,
    });
    let app = axum::Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    println!("witness {vkey}");
    println!("witness listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(ExitCode::SUCCESS)
}

async fn add_checkpoint(State(st): State<Arc<WitnessState>>, body: Bytes) -> Response {
    let req = match AddCheckpointRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{}\n", e.code())).into_response(),
    };
    // One request at a time per witness: the state file must move monotonically.
    let mut w = st.witness.lock().unwrap_or_else(|p| p.into_inner());
    match w.add_checkpoint(&req, now_unix()) {
        Ok(pending) => {
            let origin = pending.origin().to_string();
            let head = pending.head();
            let mut shadow_heads = st.other_heads.clone();
            for o in w.origins() {
                let h = if o == origin { Some(head) } else { w.head(o) };
                if let Some(h) = h {
                    shadow_heads.push(format!("{o} {} {}\n", h.size, h.root.to_base64()));
                }
            }
            // Persist the new head before the cosignature leaves (two-phase).
            // `<state>.tmp` beside it (not with_extension: a state file named `x.tmp`
            // would be its own temporary), then the directory is synced so the rename
            // itself survives a crash before the cosignature is released.
            let mut tmp = st.state_file.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            let dir = match st.state_file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let persisted = std::fs::write(&tmp, shadow_heads.concat())
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &st.state_file))
                .and_then(|_| std::fs::File::open(&dir)?.sync_all());
            if persisted.is_err() {
                return (StatusCode::INTERNAL_SERVER_ERROR, "STATE_NOT_PERSISTED\n")
                    .into_response();
            }
            match w.commit(pending) {
                Ok(lines) => {
                    tracing::info!(origin, size = head.size, "cosigned");
                    (StatusCode::OK, lines).into_response()
                }
                Err(e) => (StatusCode::CONFLICT, format!("{}\n", e.code())).into_response(),
            }
        }
        Err(e) => {
            use sotto_log::LogError as L;
            let status = match &e {
                L::UnknownOrigin(_) => StatusCode::NOT_FOUND,
                L::CheckpointSignatureInvalid | L::CheckpointSignatureMissing => {
                    StatusCode::FORBIDDEN
                }
                L::OldSizeMismatch { witness_size, .. } => {
                    // The log retries with the right old size (c2sp.org/tlog-witness).
                    let mut r = (StatusCode::CONFLICT, format!("{witness_size}\n")).into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/x.tlog.size"),
                    );
                    return r;
                }
                L::CheckpointRollback { .. } | L::ForkDetected { .. } => StatusCode::CONFLICT,
                L::ConsistencyProofInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(code = e.code(), "refused checkpoint");
            (status, format!("{}\n", e.code())).into_response()
        }
    }
}
