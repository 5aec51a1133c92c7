//! `sotto up`, `sotto enclave`, `sotto relay`, `sotto serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use clap::Args;
use sha2::Digest;
use sotto_attester::{Attester, CertSource, CollateralSource, ConfigFsTsm, SimulatedTee};
use sotto_openai::{ApiState, Backend, BuiltinBackend, UpstreamBackend};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::CliError;

/// Where the model may be found, in order, when `--model` is absent.
pub const MODEL_ENV: &str = "SOTTO_MODEL";

/// Default state directory: `$SOTTO_STATE_DIR`, else `$XDG_DATA_HOME/sotto`, else
/// `~/.local/share/sotto`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SOTTO_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("sotto");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/sotto")
}

/// The file where `sotto up` records the simulation root fingerprint for local clients.
pub fn sim_root_file(state_dir: &Path) -> PathBuf {
    state_dir.join("sim-root.sha256")
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a GGUF file (its tokenizer and chat template inside; llama, qwen2, qwen3
    /// architectures, F32/F16/quantized weights: docs/engine.md) or a llama2.c checkpoint
    /// (with --tokenizer). Default: $SOTTO_MODEL, then
    /// ~/.local/share/sotto/models/stories260K/stories260K.bin, then
    /// ../shared/models/stories260K/stories260K.bin.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Tokenizer of a llama2.c checkpoint. Default: tok512.bin or tokenizer.bin beside the
    /// model. Refused for a GGUF model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Model id served in the API. Default: the weights file name without extension.
    #[arg(long)]
    pub model_id: Option<String>,
    /// Largest context (prompt + answer, in tokens) of a GGUF model: bounds each
    /// generation's KV cache. Default: the model's context length, at most 4096.
    #[arg(long)]
    pub max_context: Option<usize>,
}

impl ModelArgs {
    fn load_options(&self) -> sotto_engine::LoadOptions {
        let mut o = sotto_engine::LoadOptions::default();
        if let Some(n) = self.max_context {
            o.max_context = Some(n);
        }
        o
    }
}

impl ModelArgs {
    /// `(model, tokenizer (None for GGUF), model id)`.
    fn resolve(&self) -> Result<(PathBuf, Option<PathBuf>, String), CliError> {
        let candidates: Vec<PathBuf> = match (&self.model, std::env::var_os(MODEL_ENV)) {
            (Some(m), _) => vec![m.clone()],
            (None, Some(m)) => vec![PathBuf::from(m)],
            (None, None) => vec![
                default_state_dir().join("models/stories260K/stories260K.bin"),
                PathBuf::from("../shared/models/stories260K/stories260K.bin"),
            ],
        };
        let Some(model) = candidates.iter().find(|p| p.is_file()).cloned() else {
            return Err(format!(
                "no model found (looked at: {}).\n\
                 Pass --model PATH (a llama2.c checkpoint such as stories260K.bin) or set {MODEL_ENV}.\n\
                 To install the demo model: download stories260K.bin and tok512.bin from the\n\
                 llama2.c project's tinyllamas release, check their SHA-256 against SHA256SUMS, and\n\
                 put them in {}",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                default_state_dir().join("models/stories260K/").display()
            )
            .into());
        };
        let gguf = crate::model_cmd::is_gguf(&model)?;
        let tokenizer = match (&self.tokenizer, gguf) {
            (Some(_), true) => {
                return Err(format!(
                    "{} is a GGUF model, which carries its own tokenizer: omit --tokenizer",
                    model.display()
                )
                .into());
            }
            (None, true) => None,
            (Some(t), false) => Some(t.clone()),
            (None, false) => {
                let dir = model.parent().unwrap_or(Path::new("."));
                Some(
                    ["tok512.bin", "tokenizer.bin"]
                        .iter()
                        .map(|n| dir.join(n))
                        .find(|p| p.is_file())
                        .ok_or_else(|| {
                            format!("no tokenizer beside {}; pass --tokenizer", model.display())
                        })?,
                )
            }
        };
        let id = self.model_id.clone().unwrap_or_else(|| {
            model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        Ok((model, tokenizer, id))
    }
}

#[derive(Args, Debug)]
pub struct EnclaveArgs {
    /// Address to listen on (loopback by default; inside a VM, the VM's interface).
    #[arg(long, default_value = "127.0.0.1:7901")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Serve an OpenAI-compatible upstream (vLLM, llama.cpp, Ollama on the VM's loopback)
    /// instead of the built-in engine, e.g. http://127.0.0.1:8000.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Model id to claim for the upstream backend.
    #[arg(long, default_value = "upstream")]
    pub upstream_model: String,
    /// Evidence source (required, no default): `configfs` (a real SEV-SNP or TDX guest,
    /// through Linux configfs-tsm) or `simulated` (development only: NOT protected by
    /// hardware).
    #[arg(long, value_parser = ["configfs", "simulated"])]
    pub tee: String,
    /// configfs-tsm report directory (with --tee configfs).
    #[arg(long, default_value = "/sys/kernel/config/tsm/report")]
    pub tsm_dir: PathBuf,
    /// SEV-SNP: PEM file with the VCEK (or VLEK), ASK and ARK, in any order, used for those
    /// the host's certificate table (auxblob) lacks. Only with --tee configfs.
    #[arg(long, value_name = "FILE")]
    pub snp_certs: Option<PathBuf>,
    /// SEV-SNP: AMD's CRL for this processor generation (from the KDS, DER or PEM), shipped
    /// in every bundle so clients can check the ASK/ASVK is not revoked. Only with
    /// --tee configfs.
    #[arg(long, value_name = "FILE")]
    pub snp_crl: Option<PathBuf>,
    /// TDX: collateral JSON file (dcap-qvl QuoteCollateralV3 layout), re-read when it
    /// changes or nears expiry. Only with --tee configfs.
    #[arg(long, value_name = "FILE", conflicts_with = "pccs_url")]
    pub tdx_collateral: Option<PathBuf>,
    /// TDX: PCCS base URL to fetch collateral from at start and refresh before expiry:
    /// https:// (certificate verified against the Mozilla roots built into the binary, plus
    /// --pccs-ca), e.g. Intel's PCS https://api.trustedservices.intel.com, or http:// for a
    /// PCCS on loopback or a trusted network. Only with --tee configfs.
    #[arg(long, value_name = "URL")]
    pub pccs_url: Option<String>,
    /// TDX: PEM file of CA certificates to trust, in addition to the built-in roots, for an
    /// https:// --pccs-url (a private PCCS with its own CA). Never the host's trust store.
    #[arg(long, value_name = "FILE", requires = "pccs_url")]
    pub pccs_ca: Option<PathBuf>,
    /// State directory (holds the simulated TEE's root keys).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The signed release this enclave runs. It refuses to start if its model (and, on the
    /// simulated TEE, its binary) is not the release's. Its proof of publication is
    /// attached to every evidence bundle.
    #[arg(long)]
    pub release: Option<PathBuf>,
    /// Base URL of the transparency log (c2sp.org/tlog-tiles) to fetch the release's
    /// checkpoint and inclusion proof from, refreshed as the log grows.
    #[arg(long, requires = "release")]
    pub log_url: Option<String>,
    /// Seconds between log refreshes.
    #[arg(long, default_value_t = 30)]
    pub log_refresh_secs: u64,
    /// RSA size for a newly created simulated root (tests use 2048 for speed).
    #[arg(long, default_value_t = 4096, hide = true)]
    pub sim_rsa_bits: usize,
    /// Exit when standard input closes (used by `sotto up` so children die with it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

/// The signed release an enclave was started with, checked against what it serves.
struct StartRelease {
    signed: Vec<u8>,
    manifest: sotto_release::Manifest,
}

fn load_release(path: &Path, claims: &sotto_wire::Claims) -> Result<StartRelease, CliError> {
    let signed = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let note = sotto_log::Note::parse(&signed)
        .map_err(|e| format!("{}: not a signed release ({})", path.display(), e.code()))?;
    let manifest = sotto_release::Manifest::parse(note.text().as_bytes())
        .map_err(|e| format!("{}: {e} [{}]", path.display(), e.code()))?;
    manifest
        .check_model(
            &claims.model_id,
            &claims.weights_sha256,
            &claims.tokenizer_sha256,
        )
        .map_err(|e| format!("refusing to start: {e} [{}]", e.code()))?;
    Ok(StartRelease { signed, manifest })
}

/// Keeps the release proof attached to the enclave's evidence current: fetches the log's
/// checkpoint, finds the release, and builds the inclusion proof. Retries quickly until
/// the first proof, then every `every`. A checkpoint with fewer signatures (witness
/// cosignatures not yet collected) does not replace the current one.
async fn refresh_release_proof(
    enclave: Arc<sotto_enclave::Enclave>,
    log: sotto_client::LogClient,
    signed: Vec<u8>,
    every: std::time::Duration,
) {
    let mut current: Option<(u64, usize)> = None; // (tree size, signature count)
    let mut index: Option<u64> = None;
    let mut failures: u32 = 0;
    loop {
        let result: Result<Option<(u64, usize)>, CliError> = async {
            let cp_bytes = log.checkpoint().await?;
            let note = sotto_log::Note::parse(&cp_bytes).map_err(|e| e.code())?;
            let cp = sotto_log::Checkpoint::parse(note.text()).map_err(|e| e.code())?;
            let sigs = note.signatures().len();
            if let Some((size, n)) = current
                && (cp.size() < size || (cp.size() == size && sigs <= n) || sigs < n)
            {
                return Ok(None);
            }
            let i = match index {
                Some(i) if i < cp.size() => i,
                _ => log
                    .find_entry(&signed, cp.size())
                    .await?
                    .ok_or("the release is not in the log (yet)")?,
            };
            index = Some(i);
            let inclusion = log.inclusion_proof(i, cp.size()).await?;
            let proof = sotto_release::ReleaseProof {
                signed_release: signed.clone(),
                index: i,
                inclusion,
                checkpoint: cp_bytes,
            }
            .encode()?;
            enclave.set_release_proof(Some(proof));
            Ok(Some((cp.size(), sigs)))
        }
        .await;
        match result {
            Ok(Some((size, sigs))) => {
                if current.is_none() {
                    println!(
                        "release proof: index {} in log of size {size}",
                        index.unwrap_or(0)
                    );
                }
                current = Some((size, sigs));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("release proof refresh failed: {e}"),
        }
        // Quick retries until the first proof (the log may come up after the enclave),
        // backing off so a log without our release is not scanned in a tight loop.
        let wait = if current.is_some() {
            failures = 0;
            every
        } else {
            failures = failures.saturating_add(1);
            std::time::Duration::from_millis(250u64.saturating_mul(1 << failures.min(8)) / 2)
                .min(every)
        };
        tokio::time::sleep(wait).await;
    }
}

/// The simulated launch measurement of this binary serving this model
/// ([`sotto_release::simulated_measurement`]): it changes when either does.
fn sim_measurement(weights: &[u8; 32], tokenizer: &[u8; 32]) -> Result<[u8; 48], CliError> {
    let exe = std::env::current_exe()?;
    let exe_digest = sotto_enclave::sha256_file(&exe)?;
    Ok(sotto_release::simulated_measurement(
        &exe_digest,
        weights,
        tokenizer,
    ))
}

pub(crate) fn exit_when_stdin_closes(enabled: bool) {
    if !enabled {
        return;
    }
    tokio::spawn(async {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

/// The configfs-tsm attester with its certificate cache and collateral source, checked end
/// to end (one report, certificates, TDX collateral) before the enclave starts listening.
async fn configfs_attester(args: &EnclaveArgs) -> Result<ConfigFsTsm, CliError> {
    let coded = |e: sotto_attester::AttesterError| format!("[{}] {e}", e.code());
    let mut tsm = ConfigFsTsm::new(args.tsm_dir.clone());
    if let Some(path) = &args.snp_certs {
        tsm = tsm
            .with_snp_certs(CertSource::File(path.clone()))
            .map_err(coded)?;
    }
    if let Some(path) = &args.snp_crl {
        tsm = tsm.with_snp_crl(path).map_err(coded)?;
    }
    if let Some(path) = &args.tdx_collateral {
        tsm = tsm
            .with_tdx_collateral(CollateralSource::File(path.clone()))
            .map_err(coded)?;
    }
    if let Some(url) = &args.pccs_url {
        let source = match &args.pccs_ca {
            Some(ca_file) => CollateralSource::PccsWithCa {
                url: url.clone(),
                ca_file: ca_file.clone(),
            },
            None => CollateralSource::Pccs(url.clone()),
        };
        tsm = tsm.with_tdx_collateral(source).map_err(coded)?;
    }
    // Blocking file and (on its own thread) PCCS I/O: keep it off the async workers.
    let (tsm, prepared) = tokio::task::spawn_blocking(move || {
        let r = tsm.prepare();
        (tsm, r)
    })
    .await?;
    let platform =
        prepared.map_err(|e| format!("configfs-tsm evidence check failed [{}]: {e}", e.code()))?;
    println!("configfs-tsm evidence: {platform:?}");
    Ok(tsm)
}

pub async fn enclave(args: EnclaveArgs) -> Result<ExitCode, CliError> {
    exit_when_stdin_closes(args.exit_with_parent);
    if args.tee != "configfs"
        && (args.snp_certs.is_some()
            || args.snp_crl.is_some()
            || args.tdx_collateral.is_some()
            || args.pccs_url.is_some())
    {
        return Err(
            "--snp-certs, --snp-crl, --tdx-collateral and --pccs-url need --tee configfs".into(),
        );
    }
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let (backend, claims): (Arc<dyn Backend>, sotto_wire::Claims) = match &args.upstream {
        Some(url) => {
            let backend = UpstreamBackend::new(url)?;
            let claims = sotto_wire::Claims {
                model_id: args.upstream_model.clone(),
                weights_sha256: [0; 32],
                tokenizer_sha256: [0; 32],
                backend: "upstream".into(),
                enclave_version: env!("CARGO_PKG_VERSION").into(),
            };
            (Arc::new(backend), claims)
        }
        None => {
            let (model_path, tok_path, id) = args.model.resolve()?;
            // Hash exactly the bytes we load: read once, hash, then parse from memory (not a
            // memory map: the host could change a mapped file after it was hashed).
            let weights =
                std::fs::read(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
            let weights_sha256: [u8; 32] = sha2::Sha256::digest(&weights).into();
            let (model, tokenizer_sha256) = match &tok_path {
                Some(tok_path) => {
                    let tok = std::fs::read(tok_path)
                        .map_err(|e| format!("{}: {e}", tok_path.display()))?;
                    let tokenizer_sha256: [u8; 32] = sha2::Sha256::digest(&tok).into();
                    (
                        sotto_engine::Model::from_bytes(&weights, &tok)?,
                        tokenizer_sha256,
                    )
                }
                // A GGUF file carries its tokenizer: both digests are the file's
                // (docs/releases.md), as `sotto release manifest` records them.
                None => (
                    sotto_engine::Model::from_gguf_bytes(&weights, &args.model.load_options())?,
                    weights_sha256,
                ),
            };
            drop(weights);
            let claims = sotto_wire::Claims {
                model_id: id.clone(),
                weights_sha256,
                tokenizer_sha256,
                backend: "builtin".into(),
                enclave_version: env!("CARGO_PKG_VERSION").into(),
            };
            (Arc::new(BuiltinBackend::new(Arc::new(model), id)), claims)
        }
    };
    let release = match &args.release {
        Some(p) => Some(load_release(p, &claims)?),
        None => None,
    };
    let attester: Arc<dyn Attester> = match args.tee.as_str() {
        "simulated" => {
            let m = sim_measurement(&claims.weights_sha256, &claims.tokenizer_sha256)?;
            if let Some(r) = &release
                && !r
                    .manifest
                    .measurements
                    .contains(&sotto_release::Measurement::Simulated(m))
            {
                return Err(format!(
                    "refusing to start: this binary and model (simulated measurement {}) are not release {}",
                    hex::encode(m),
                    r.manifest.version
                )
                .into());
            }
            let sim = SimulatedTee::load_or_create_with_key_bits(
                &state_dir.join("sim"),
                m,
                args.sim_rsa_bits,
            )?;
            let fp = hex::encode(sim.root_fingerprint());
            std::fs::write(sim_root_file(&state_dir), format!("{fp}\n"))?;
            eprintln!(
                "WARNING: SIMULATED TEE. This enclave is not protected by hardware; for development only."
            );
            println!("simulation root (ARK SHA-256): {fp}");
            Arc::new(sim)
        }
        "configfs" => Arc::new(configfs_attester(&args).await?),
        other => return Err(format!("unknown --tee {other:?} (use configfs or simulated)").into()),
    };
    let api = sotto_openai::router(ApiState::new(backend));
    let enclave = Arc::new(sotto_enclave::Enclave::new(
        attester,
        &claims,
        api,
        Default::default(),
    )?);
    if let Some(r) = release {
        println!(
            "release: {} (manifest sha256 {})",
            r.manifest.version,
            hex::encode(r.manifest.digest()?)
        );
        match &args.log_url {
            Some(url) => {
                let log = sotto_client::LogClient::new(url)?;
                tokio::spawn(refresh_release_proof(
                    enclave.clone(),
                    log,
                    r.signed,
                    std::time::Duration::from_secs(args.log_refresh_secs.max(1)),
                ));
            }
            None => eprintln!(
                "warning: --release without --log-url: no proof of publication is attached; clients that require a logged release will refuse this enclave"
            ),
        }
    }
    let listener = TcpListener::bind(args.listen).await?;
    println!("enclave channel key: {}", hex::encode(enclave.public_key()));
    println!(
        "model: {} (weights sha256 {})",
        claims.model_id,
        hex::encode(claims.weights_sha256)
    );
    println!("enclave listening on {}", listener.local_addr()?);
    sotto_enclave::serve(listener, enclave).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7900")]
    pub listen: SocketAddr,
    /// Enclave address HOST:PORT (repeat for several; round robin).
    #[arg(long = "enclave", required = true)]
    pub enclaves: Vec<String>,
    /// Maximum concurrent client connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Publish this transparency log directory read-only under /log/.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Exit when standard input closes (used by `sotto up`).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

pub async fn relay(args: RelayArgs) -> Result<ExitCode, CliError> {
    exit_when_stdin_closes(args.exit_with_parent);
    let config = sotto_relay::RelayConfig {
        enclaves: args.enclaves,
        max_connections: args.max_connections,
        log_dir: args.log_dir,
        ..Default::default()
    };
    let listener = TcpListener::bind(args.listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    sotto_relay::serve(listener, config).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:7902")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Allow a non-loopback address (this server is NOT encrypted).
    #[arg(long)]
    pub allow_non_loopback: bool,
}

pub async fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        return Err(
            "refusing to serve plaintext on a non-loopback address (pass --allow-non-loopback)"
                .into(),
        );
    }
    let (model_path, tok_path, id) = args.model.resolve()?;
    let model = match &tok_path {
        Some(t) => sotto_engine::Model::load(&model_path, t)?,
        // Memory-mapped: this plaintext development server measures nothing.
        None => sotto_engine::Model::load_gguf(&model_path, &args.model.load_options())?,
    };
    let api = sotto_openai::router(ApiState::new(Arc::new(BuiltinBackend::new(
        Arc::new(model),
        id,
    ))));
    let listener = TcpListener::bind(args.listen).await?;
    println!(
        "plaintext engine server (NOT private) listening on {}",
        listener.local_addr()?
    );
    sotto_openai::serve_plain(listener, api).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Relay port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 7900)]
    pub port: u16,
    /// Enclave port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 7901)]
    pub enclave_port: u16,
    #[command(flatten)]
    pub model: ModelArgs,
    /// State directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 4096, hide = true)]
    pub sim_rsa_bits: usize,
}

/// A child of `sotto up`. Holding `_lifeline` (its stdin) keeps it alive; when `up` dies,
/// even by SIGKILL, the pipe closes and the child exits (`--exit-with-parent`).
struct Child {
    proc: tokio::process::Child,
    _lifeline: Option<tokio::process::ChildStdin>,
    /// The child's later stdout lines (also echoed).
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Child {
    /// Waits for a later stdout line starting with `prefix`; returns the rest.
    async fn wait_line(&mut self, prefix: &str, what: &str) -> Result<String, CliError> {
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(60));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                l = self.lines.recv() => match l {
                    Some(l) => if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.to_string());
                    },
                    None => return Err(format!("{what}: the process exited").into()),
                },
                _ = &mut deadline => return Err(format!("{what}: timed out").into()),
            }
        }
    }
}

/// Spawns `sotto <args>` and waits for its "listening on ADDR" line.
async fn spawn_child(args: &[String], ready_prefix: &str) -> Result<(Child, String), CliError> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .arg("--exit-with-parent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    // `Child::wait` would close stdin; keep it apart so waiting does not stop the child.
    let lifeline = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // Every line (also those before the ready line) is available to `wait_line`.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = loop {
        match lines.next_line().await? {
            Some(line) => {
                println!("  {line}");
                let _ = tx.send(line.clone());
                if let Some(a) = line.strip_prefix(ready_prefix) {
                    break a.trim().to_string();
                }
            }
            None => return Err(format!("`sotto {}` exited during start-up", args[0]).into()),
        }
    };
    // Keep forwarding the child's output.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("  {line}");
            let _ = tx.send(line);
        }
    });
    Ok((
        Child {
            proc: child,
            _lifeline: lifeline,
            lines: rx,
        },
        addr,
    ))
}

/// The local release tooling `sotto up` sets up: keys, a witness, a log and this build's
/// signed release, exactly as production does it (see docs/releases.md).
struct LocalRelease {
    log_dir: PathBuf,
    signed_release: PathBuf,
    release_vkey: String,
    log_vkey: String,
    witness_vkey: String,
}

fn key_or_generate(
    dir: &Path,
    file: &str,
    kind: crate::release_cmd::KeyKind,
    name: &str,
) -> Result<(PathBuf, String), CliError> {
    let path = dir.join(file);
    let vkey_file = crate::release_cmd::vkey_path(&path);
    if path.exists() {
        let vkey = std::fs::read_to_string(&vkey_file)
            .map_err(|e| format!("{}: {e}", vkey_file.display()))?;
        return Ok((path, vkey.trim().to_string()));
    }
    let vkey = crate::release_cmd::generate_key(kind, name, &path)?;
    Ok((path, vkey))
}

/// Source commit baked in by scripts/build-enclave.sh; all zeros when unknown.
fn source_commit() -> String {
    match option_env!("SOTTO_SOURCE_COMMIT") {
        Some(c) if c.len() == 40 || c.len() == 64 => c.to_ascii_lowercase(),
        _ => "0".repeat(40),
    }
}

async fn local_release(
    state_dir: &Path,
    model: &Path,
    tokenizer: Option<&Path>,
    id: &str,
    witness: &mut Option<Child>,
) -> Result<LocalRelease, CliError> {
    use crate::release_cmd::KeyKind;
    let dir = state_dir.join("release");
    std::fs::create_dir_all(&dir)?;
    let (release_key, release_vkey) =
        key_or_generate(&dir, "release.key", KeyKind::Release, "sotto-local-release")?;
    let (log_key, log_vkey) =
        key_or_generate(&dir, "log.key", KeyKind::Log, "localhost/sotto-local-log")?;
    let (witness_key, witness_vkey) =
        key_or_generate(&dir, "witness.key", KeyKind::Witness, "sotto-local-witness")?;

    let wargs = vec![
        "witness".to_string(),
        "run".into(),
        "--key".into(),
        witness_key.display().to_string(),
        "--log-key".into(),
        log_vkey.clone(),
        "--state".into(),
        dir.join("witness.state").display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    let (w, witness_url) = spawn_child(&wargs, "witness listening on ").await?;
    *witness = Some(w);

    let manifest = crate::release_cmd::build_manifest(&crate::release_cmd::ManifestArgs {
        version: env!("CARGO_PKG_VERSION").into(),
        source_commit: source_commit(),
        enclave_binary: std::env::current_exe()?,
        model: model.to_path_buf(),
        tokenizer: tokenizer.map(Path::to_path_buf),
        model_id: Some(id.to_string()),
        simulated: true,
        snp: vec![],
        tdx: vec![],
        min_tcb: None,
        tdx_tcb_status: None,
        out: None,
    })?;
    let signer = crate::release_cmd::read_signer(&release_key)?;
    let signed = sotto_release::sign_release(&manifest, &signer)?;
    let log_dir = dir.join("log");
    // Already logged (same binary and model as a previous run)? Then only re-cosign.
    let already = {
        let log_signer = crate::release_cmd::read_signer(&log_key)?;
        let origin = log_signer.name().to_string();
        let ld = log_dir.clone();
        let s2 = signed.clone();
        tokio::task::spawn_blocking(move || -> Result<bool, CliError> {
            let log = sotto_log::Log::open(&ld, &origin, log_signer)
                .map_err(|e| format!("log {}: {e} [{}]", ld.display(), e.code()))?;
            for i in 0..log.size() {
                if log.read_entry(i).map_err(|e| e.code())? == s2 {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await??
    };
    let mut keys = sotto_log::KeySet::new();
    keys.insert(crate::release_cmd::parse_vkey(&release_vkey)?)
        .map_err(|e| e.code())?;
    let witness_vk = crate::release_cmd::parse_vkey(&witness_vkey)?;
    let entries = if already {
        vec![]
    } else {
        vec![signed.clone()]
    };
    crate::log_cmd::append_releases(
        &log_dir,
        &log_key,
        &keys,
        &[(witness_url, witness_vk)],
        &entries,
    )
    .await?;
    let signed_release = dir.join("release.signed");
    std::fs::write(&signed_release, &signed)?;
    println!(
        "release {} (manifest sha256 {}) {} the local log, cosigned by the local witness",
        manifest.version,
        hex::encode(manifest.digest()?),
        if already { "already in" } else { "appended to" }
    );
    Ok(LocalRelease {
        log_dir,
        signed_release,
        release_vkey,
        log_vkey,
        witness_vkey,
    })
}

pub async fn up(args: UpArgs) -> Result<ExitCode, CliError> {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    std::fs::create_dir_all(&state_dir)?;
    let (model, tokenizer, id) = args.model.resolve()?;
    println!("setting up the local release: keys, witness, transparency log");
    let mut witness = None;
    let rel = local_release(&state_dir, &model, tokenizer.as_deref(), &id, &mut witness).await?;
    let (mut log_server, log_addr) = spawn_child(
        &[
            "log".to_string(),
            "serve".into(),
            "--dir".into(),
            rel.log_dir.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        "log listening on ",
    )
    .await?;
    println!("starting enclave (SIMULATED TEE, built-in engine, model {id})");
    let mut eargs = vec![
        "enclave".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", args.enclave_port),
        "--model".into(),
        model.display().to_string(),
        "--model-id".into(),
        id,
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--sim-rsa-bits".into(),
        args.sim_rsa_bits.to_string(),
        "--release".into(),
        rel.signed_release.display().to_string(),
        "--log-url".into(),
        log_addr.clone(),
    ];
    if let Some(t) = &tokenizer {
        eargs.extend(["--tokenizer".into(), t.display().to_string()]);
    }
    if let Some(n) = args.model.max_context {
        eargs.extend(["--max-context".into(), n.to_string()]);
    }
    eargs.extend(["--tee".into(), "simulated".into()]);
    let (mut enclave, enclave_addr) = spawn_child(&eargs, "enclave listening on ").await?;
    println!("starting relay");
    let rargs = vec![
        "relay".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", args.port),
        "--enclave".into(),
        enclave_addr.clone(),
        "--log-dir".into(),
        rel.log_dir.display().to_string(),
    ];
    let (mut relay, relay_addr) = spawn_child(&rargs, "relay listening on ").await?;
    enclave
        .wait_line("release proof: ", "enclave loading its release proof")
        .await?;
    // What local clients trust: this release key, log and witness (like the sim root).
    std::fs::write(
        crate::cli_client::release_trust_file(&state_dir),
        format!(
            "release-key {}\nlog-key {}\nwitness {}\nwitness-quorum 1\nlog-url http://{relay_addr}/log\n",
            rel.release_vkey, rel.log_vkey, rel.witness_vkey
        ),
    )?;

    let fp = std::fs::read_to_string(sim_root_file(&state_dir))?
        .trim()
        .to_string();
    println!();
    println!("Sotto is up (development stack on a SIMULATED TEE).");
    println!("  relay:            ws://{relay_addr}/v1/channel");
    println!("  enclave:          {enclave_addr} (reached only through the relay)");
    println!("  simulation root:  {fp}");
    println!(
        "  transparency log: http://{relay_addr}/log (witnessed; release trust in {})",
        crate::cli_client::release_trust_file(&state_dir).display()
    );
    println!(
        "  try:              sotto ask --relay ws://{relay_addr}/v1/channel --allow-simulated --sim-root {fp} \"Once upon a time\""
    );
    println!("stack ready");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("stopping"),
        s = enclave.proc.wait() => eprintln!("enclave exited: {s:?}"),
        s = relay.proc.wait() => eprintln!("relay exited: {s:?}"),
        s = log_server.proc.wait() => eprintln!("log server exited: {s:?}"),
    }
    let _ = relay.proc.kill().await;
    let _ = log_server.proc.kill().await;
    if let Some(mut w) = witness {
        let _ = w.proc.kill().await;
    }
    let _ = enclave.proc.kill().await;
    Ok(ExitCode::SUCCESS)
}
