//! `sotto ask`, `sotto chat`, `sotto verify`: the client side.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use sotto_client::{ApiFailure, ChatStream, ClientConfig, Session, Trust, Verification};

use crate::CliError;
use crate::stack::{default_state_dir, sim_root_file};

/// Exit code when the enclave fails verification.
pub const EXIT_REJECTED: u8 = 10;

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Relay WebSocket URL.
    #[arg(
        long,
        env = "SOTTO_RELAY",
        default_value = "ws://127.0.0.1:7900/v1/channel"
    )]
    pub relay: String,
    /// Accept a SIMULATED TEE (development only). Requires a pinned simulation root.
    #[arg(long, env = "SOTTO_ALLOW_SIMULATED")]
    pub allow_simulated: bool,
    /// SHA-256 (hex) of the simulation root to pin. Default with --allow-simulated: the
    /// root recorded by a local `sotto up` in the state directory.
    #[arg(long, env = "SOTTO_SIM_ROOT")]
    pub sim_root: Option<String>,
    /// State directory (to find the local simulation root).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Require this launch measurement (hex, 48 bytes).
    #[arg(long)]
    pub expect_measurement: Option<String>,
    /// Require the enclave to claim these model weights (hex SHA-256).
    #[arg(long)]
    pub expect_model_sha256: Option<String>,
    /// Accept real-hardware evidence without --expect-measurement (auditing only: any image
    /// on genuine hardware would pass).
    #[arg(long)]
    pub allow_unpinned_measurement: bool,
    /// SEV-SNP minimum TCB: bl=N,tee=N,snp=N,ucode=N[,fmc=N].
    #[arg(long, env = "SOTTO_MIN_TCB")]
    pub min_tcb: Option<String>,
    /// Intel TDX TCB statuses to accept, comma-separated (default: UpToDate).
    #[arg(long, env = "SOTTO_ALLOW_TCB_STATUS")]
    pub allow_tcb_status: Option<String>,
    /// SEV-SNP: require AMD's CRL in the evidence (a CRL that is present is always checked).
    #[arg(long)]
    pub require_crl: bool,
    /// Require a logged release signed by this key (vkey or file; repeatable). Default:
    /// the release trust recorded by a local `sotto up` in the state directory, if any.
    #[arg(long = "release-key")]
    pub release_keys: Vec<String>,
    /// The transparency log's key (vkey or file; its name is the log's origin).
    #[arg(long)]
    pub log_key: Option<String>,
    /// A trusted witness key (vkey or file; repeatable).
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// How many of the trusted witnesses must have cosigned (default: all of them).
    #[arg(long)]
    pub witness_quorum: Option<usize>,
    /// Base URL of the log's tiles, to prove consistency with the checkpoint seen before.
    #[arg(long)]
    pub log_url: Option<String>,
}

/// The file where `sotto up` records the local release trust (keys, witness, log URL).
pub fn release_trust_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("release-trust")
}

/// Release trust settings, from flags or a trust file.
#[derive(Debug, Default)]
struct ReleaseSettings {
    release_keys: Vec<String>,
    log_key: Option<String>,
    witnesses: Vec<String>,
    quorum: Option<usize>,
    log_url: Option<String>,
}

fn parse_trust_file(path: &std::path::Path, text: &str) -> Result<ReleaseSettings, CliError> {
    let mut r = ReleaseSettings::default();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("{}:{}: expected `KEY VALUE`", path.display(), n + 1);
        let (k, v) = line.split_once(' ').ok_or_else(bad)?;
        match k {
            "release-key" => r.release_keys.push(v.to_string()),
            "log-key" => r.log_key = Some(v.to_string()),
            "witness" => r.witnesses.push(v.to_string()),
            "witness-quorum" => r.quorum = Some(v.parse().map_err(|_| bad())?),
            "log-url" => r.log_url = Some(v.to_string()),
            _ => return Err(bad().into()),
        }
    }
    Ok(r)
}

fn release_config(
    r: ReleaseSettings,
    view_dir: &std::path::Path,
) -> Result<sotto_client::ReleaseConfig, CliError> {
    use crate::release_cmd::parse_vkey;
    let log_key = parse_vkey(
        r.log_key
            .as_deref()
            .ok_or("--release-key needs --log-key")?,
    )?;
    let origin = log_key.name().to_string();
    let mut release_keys = sotto_log::KeySet::new();
    for k in &r.release_keys {
        release_keys
            .insert(parse_vkey(k)?)
            .map_err(|e| format!("{k}: {}", e.code()))?;
    }
    let witnesses = r
        .witnesses
        .iter()
        .map(|w| parse_vkey(w))
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = r.quorum.unwrap_or(witnesses.len());
    let checkpoint_policy = sotto_log::CheckpointPolicy::new(&origin, log_key)
        .and_then(|p| p.with_witnesses(witnesses, quorum))
        .map_err(|e| format!("release trust: {e} [{}]", e.code()))?;
    // One view file per log origin.
    let tag = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(origin.as_bytes())[..8]);
    Ok(sotto_client::ReleaseConfig {
        trust: sotto_release::ReleaseTrust {
            release_keys,
            checkpoint_policy,
        },
        log_url: r.log_url,
        view_file: Some(view_dir.join(format!("log-view-{tag}.checkpoint"))),
    })
}

fn parse_hex<const N: usize>(what: &str, s: &str) -> Result<[u8; N], CliError> {
    let v = hex::decode(s.trim()).map_err(|_| format!("{what}: not hex"))?;
    v.try_into()
        .map_err(|_| format!("{what}: expected {N} bytes").into())
}

impl ConnectArgs {
    pub(crate) fn config(&self) -> Result<ClientConfig, CliError> {
        let mut trust = Trust::default();
        if let Some(m) = &self.expect_measurement {
            trust.expected_measurement = Some(parse_hex::<48>("--expect-measurement", m)?);
        }
        if let Some(m) = &self.expect_model_sha256 {
            trust.expected_weights_sha256 = Some(parse_hex::<32>("--expect-model-sha256", m)?);
        }
        trust.allow_unpinned_measurement = self.allow_unpinned_measurement;
        trust.require_amd_crl = self.require_crl;
        if let Some(t) = &self.min_tcb {
            trust.min_tcb = Some(crate::attest_cmd::parse_min_tcb(t).map_err(|e| e.0)?);
        }
        if let Some(l) = &self.allow_tcb_status {
            trust.allowed_tcb_statuses =
                Some(crate::attest_cmd::parse_statuses(l).map_err(|e| e.0)?);
        }
        match (self.allow_simulated, &self.sim_root) {
            (false, Some(_)) => {
                return Err("--sim-root requires --allow-simulated (an explicit opt-in)".into());
            }
            (false, None) => {}
            (true, Some(r)) => trust.simulation_root = Some(parse_hex::<32>("--sim-root", r)?),
            (true, None) => {
                let f = sim_root_file(&self.state_dir.clone().unwrap_or_else(default_state_dir));
                let s = std::fs::read_to_string(&f).map_err(|_| {
                    format!("--allow-simulated needs a pinned root: pass --sim-root HEX (none recorded in {})", f.display())
                })?;
                trust.simulation_root = Some(parse_hex::<32>(&f.display().to_string(), &s)?);
            }
        }
        let state_dir = self.state_dir.clone().unwrap_or_else(default_state_dir);
        let explicit =
            !self.release_keys.is_empty() || self.log_key.is_some() || !self.witnesses.is_empty();
        let settings = if explicit {
            if self.release_keys.is_empty() {
                return Err("--log-key and --witness need --release-key".into());
            }
            Some(ReleaseSettings {
                release_keys: self.release_keys.clone(),
                log_key: self.log_key.clone(),
                witnesses: self.witnesses.clone(),
                quorum: self.witness_quorum,
                log_url: self.log_url.clone(),
            })
        } else {
            let f = release_trust_file(&state_dir);
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    let mut r = parse_trust_file(&f, &text)?;
                    if self.log_url.is_some() {
                        r.log_url = self.log_url.clone();
                    }
                    Some(r)
                }
                Err(_) => None,
            }
        };
        if let Some(r) = settings {
            trust.release = Some(release_config(r, &state_dir)?);
        }
        let mut c = ClientConfig::new(self.relay.clone());
        c.trust = trust;
        Ok(c)
    }

    /// Connects and verifies (every pin is checked before the channel opens); prints the
    /// verification status, and the simulation warning, on stderr on every connection.
    async fn connect(&self) -> Result<(Session, Verification), CliError> {
        let config = self.config()?;
        let (session, v) = sotto_client::connect(&config).await?;
        eprintln!("{}", status_line(&v));
        Ok((session, v))
    }
}

pub(crate) fn status_line(v: &Verification) -> String {
    let mut s = String::new();
    if v.is_simulated() {
        s.push_str(&format!(
            "!! SIMULATED TEE: this enclave is NOT protected by hardware (development only; root {}) !!\n",
            hex::encode(v.attestation.ark_fingerprint)
        ));
    }
    s.push_str(&format!(
        "verified enclave {}… · model {} (weights {}…) · measurement {}… · {} ms",
        &hex::encode(v.server_key)[..16],
        v.claims.model_id,
        &hex::encode(v.claims.weights_sha256)[..16],
        &hex::encode(v.attestation.measurement)[..16],
        v.elapsed.as_millis()
    ));
    match &v.release {
        Some(r) => s.push_str(&format!(
            "\nrelease {} (signed by {}) · log index {} of {} · {} witness cosignature(s)",
            r.manifest.version,
            r.signer,
            r.index,
            r.checkpoint.checkpoint.size(),
            r.checkpoint.cosignatures.len()
        )),
        None => s.push_str("\nno release transparency check (no release trust configured)"),
    }
    s
}

#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Sampling temperature (0 = greedy). Default: the account's `temperature` setting when
    /// the history is open (`sotto chat` with an account, `ask --save`/`--folder`), else 0.8.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Maximum tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Random seed (deterministic output for a given seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Model id (default: the one the enclave serves).
    #[arg(long)]
    pub model: Option<String>,
}

impl GenArgs {
    /// Fills what the command line left open from the account's settings.
    fn apply_settings(&mut self, s: &sotto_vault::Settings) {
        if self.temperature.is_none() {
            self.temperature = s.temperature.map(|t| t as f32);
        }
    }

    fn request(&self, v: &Verification, messages: &serde_json::Value) -> serde_json::Value {
        let mut r = json!({
            "model": self.model.clone().unwrap_or_else(|| v.claims.model_id.clone()),
            "messages": messages,
            "temperature": self.temperature.unwrap_or(0.8),
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stream": true,
        });
        if let Some(s) = self.seed {
            r["seed"] = json!(s);
        }
        r
    }
}

#[derive(Args, Debug)]
pub struct AskArgs {
    /// The question (prompt).
    pub prompt: String,
    /// Save the question and answer to the encrypted history (needs `sotto account create`).
    #[arg(long)]
    pub save: bool,
    /// History folder (id or name): its instructions become the system prompt.
    #[arg(long)]
    pub folder: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub gen_args: GenArgs,
}

fn verification_exit(e: &CliError) -> ExitCode {
    eprintln!("error: {e}");
    let rejected = e
        .downcast_ref::<sotto_client::ClientError>()
        .is_some_and(|c| c.is_rejection());
    if rejected {
        eprintln!("nothing was sent to the enclave.");
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::from(1)
    }
}

enum Outcome {
    Done(String),
    Cancelled(String),
}

/// Streams one answer to stdout; Ctrl-C cancels it (the enclave stops generating).
async fn stream_answer(session: &Session, request: serde_json::Value) -> Result<Outcome, CliError> {
    let mut stream = ChatStream::start(session, request).await.map_err(api_err)?;
    let mut text = String::new();
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            d = stream.next_delta() => match d.map_err(api_err)? {
                Some(delta) => {
                    out.write_all(delta.as_bytes())?;
                    out.flush()?;
                    text.push_str(&delta);
                }
                None => return Ok(Outcome::Done(text)),
            },
            _ = tokio::signal::ctrl_c() => {
                stream.cancel();
                return Ok(Outcome::Cancelled(text));
            }
        }
    }
}

fn api_err(e: ApiFailure) -> CliError {
    e.to_string().into()
}

pub async fn ask(mut args: AskArgs) -> Result<ExitCode, CliError> {
    let mut prepared = if args.save || args.folder.is_some() {
        Some(
            crate::history_cmd::Autosave::prepare(
                args.connect.state_dir.as_deref(),
                args.save,
                None,
                args.folder.as_deref(),
            )
            .await?,
        )
    } else {
        None
    };
    if let Some(p) = &prepared {
        args.gen_args.apply_settings(&p.settings);
    }
    let (session, v) = match args.connect.connect().await {
        Ok(x) => x,
        Err(e) => return Ok(verification_exit(&e)),
    };
    let mut messages = prepared
        .as_ref()
        .map(|p| p.messages.clone())
        .unwrap_or_default();
    messages.push(json!({ "role": "user", "content": args.prompt }));
    let request = args
        .gen_args
        .request(&v, &serde_json::Value::Array(messages));
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let outcome = stream_answer(&session, request).await?;
    println!();
    session.close();
    Ok(match outcome {
        Outcome::Done(text) => {
            if args.save
                && let Some(autosave) = prepared.as_mut().and_then(|p| p.autosave.as_mut())
            {
                let id = autosave.save_turn(&model, &args.prompt, &text).await?;
                eprintln!("[saved as {id}]");
            }
            ExitCode::SUCCESS
        }
        Outcome::Cancelled(_) => {
            eprintln!("[cancelled]");
            ExitCode::from(130)
        }
    })
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Continue a saved conversation (id from `sotto history list`).
    #[arg(long = "continue", value_name = "ID")]
    pub continue_id: Option<String>,
    /// History folder (id or name) for a new conversation: its instructions become the
    /// system prompt.
    #[arg(long)]
    pub folder: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub gen_args: GenArgs,
}

pub async fn chat(mut args: ChatArgs) -> Result<ExitCode, CliError> {
    use tokio::io::AsyncBufReadExt;
    let (mut session, mut v) = match args.connect.connect().await {
        Ok(x) => x,
        Err(e) => return Ok(verification_exit(&e)),
    };
    // Every finished turn is saved when a history account exists in the state directory.
    let prepared = crate::history_cmd::Autosave::prepare(
        args.connect.state_dir.as_deref(),
        false,
        args.continue_id.as_deref(),
        args.folder.as_deref(),
    )
    .await?;
    args.gen_args.apply_settings(&prepared.settings);
    let mut autosave = prepared.autosave;
    // `save-history false` in the settings turns the autosave off, unless this chat
    // continues a saved conversation or starts one in a folder (both ask for saving).
    if prepared.settings.save_history == Some(false)
        && args.continue_id.is_none()
        && args.folder.is_none()
        && autosave.take().is_some()
    {
        eprintln!("[not saving: save-history is false in the account settings]");
    }
    let mut history: Vec<serde_json::Value> = prepared.messages;
    if let Some(s) = &args.system {
        history.retain(|m| m["role"] != "system");
        history.insert(0, json!({ "role": "system", "content": s }));
    }
    eprintln!(
        "chat ready: type a message and press Enter; Ctrl-C cancels an answer; Ctrl-D exits."
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("> ");
        let line = tokio::select! {
            l = lines.next_line() => l?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        if !session.is_open() {
            eprintln!("connection lost; reconnecting and verifying again");
            (session, v) = match args.connect.connect().await {
                Ok(x) => x,
                Err(e) => return Ok(verification_exit(&e)),
            };
        }
        history.push(json!({ "role": "user", "content": line }));
        let request = args
            .gen_args
            .request(&v, &serde_json::Value::Array(history.clone()));
        let model = request["model"].as_str().unwrap_or_default().to_string();
        match stream_answer(&session, request).await? {
            Outcome::Done(text) => {
                println!();
                if let Some(a) = autosave.as_mut() {
                    let id = a.save_turn(&model, &line, &text).await?;
                    eprintln!("[saved as {id}]");
                }
                history.push(json!({ "role": "assistant", "content": text }));
            }
            Outcome::Cancelled(text) => {
                println!();
                eprintln!("[cancelled]");
                history.push(json!({ "role": "assistant", "content": text }));
            }
        }
    }
    session.close();
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn verify(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let config = match args.connect.config() {
        Ok(c) => c,
        Err(e) => return Ok(verification_exit(&e)),
    };
    let result = sotto_client::connect(&config).await;
    let (session, v) = match result {
        Ok(x) => x,
        Err(e) => {
            let rejected = e.is_rejection();
            if args.json {
                println!(
                    "{}",
                    json!({ "ok": false, "relay": config.relay_url, "error": { "code": e.code(), "message": e.to_string() } })
                );
            } else {
                println!("FAIL  {} — {}", e.code(), e);
                println!("nothing was sent to the enclave.");
            }
            return Ok(ExitCode::from(if rejected { EXIT_REJECTED } else { 1 }));
        }
    };
    session.close();
    let mut checks: Vec<(String, String, bool)> = v
        .attestation
        .steps
        .iter()
        .map(|s| (s.name.to_string(), s.result.clone(), true))
        .collect();
    checks.push((
        "key_binding".into(),
        format!(
            "REPORT_DATA = SHA-512(label, channel key {}, {} nonce, claims)",
            hex::encode(v.server_key),
            if v.fresh { "this connection's" } else { "no" }
        ),
        true,
    ));
    checks.push((
        "model".into(),
        format!(
            "{} via {} backend, weights sha256 {}{}, tokenizer sha256 {}",
            v.claims.model_id,
            v.claims.backend,
            hex::encode(v.claims.weights_sha256),
            if args.connect.expect_model_sha256.is_some() {
                " (equals the pin)"
            } else {
                " (not pinned)"
            },
            hex::encode(v.claims.tokenizer_sha256)
        ),
        true,
    ));
    if let Some(r) = &v.release {
        checks.push((
            "release_signature".into(),
            format!(
                "manifest {} (sha256 {}) signed by trusted release key {}",
                r.manifest.version,
                hex::encode(r.manifest_digest),
                r.signer
            ),
            true,
        ));
        let witnesses: Vec<String> = r
            .checkpoint
            .cosignatures
            .iter()
            .map(|c| c.name.clone())
            .collect();
        checks.push((
            "log_checkpoint".into(),
            format!(
                "checkpoint of {} (size {}) signed by the log, cosigned by {} trusted witness(es): {}",
                r.checkpoint.checkpoint.origin(),
                r.checkpoint.checkpoint.size(),
                witnesses.len(),
                witnesses.join(", ")
            ),
            true,
        ));
        checks.push((
            "log_inclusion".into(),
            format!(
                "release is entry {} of the log (inclusion proof verified)",
                r.index
            ),
            true,
        ));
        checks.push((
            "log_consistency".into(),
            v.log_view.clone().unwrap_or_default(),
            true,
        ));
        checks.push((
            "release_measurement".into(),
            format!(
                "attested measurement {} is one of the release's",
                hex::encode(v.attestation.measurement)
            ),
            true,
        ));
        checks.push((
            "release_model".into(),
            format!(
                "model {} with the release's weights and tokenizer digests",
                r.manifest.model.name
            ),
            true,
        ));
    } else {
        checks.push((
            "release".into(),
            "not checked: no release trust configured (no --release-key, no local trust file)"
                .into(),
            true,
        ));
    }
    // Every check above passed: connect() fails closed otherwise.
    if args.json {
        let checks: Vec<_> = checks
            .iter()
            .map(|(n, r, ok)| json!({ "name": n, "result": r, "ok": ok }))
            .collect();
        println!(
            "{}",
            json!({
                "ok": true,
                "relay": config.relay_url,
                "simulated": v.is_simulated(),
                "platform": format!("{:?}", v.attestation.platform),
                "root_sha256": hex::encode(v.attestation.ark_fingerprint),
                "measurement": hex::encode(v.attestation.measurement),
                "channel_key": hex::encode(v.server_key),
                "model": { "id": v.claims.model_id, "backend": v.claims.backend,
                           "weights_sha256": hex::encode(v.claims.weights_sha256),
                           "tokenizer_sha256": hex::encode(v.claims.tokenizer_sha256) },
                "checks": checks,
            })
        );
    } else {
        if v.is_simulated() {
            println!("!! SIMULATED TEE: NOT protected by hardware — development only !!");
        }
        for (name, result, ok) in &checks {
            println!("{}  {name:<20} {result}", if *ok { "PASS" } else { "FAIL" });
        }
        println!("measurement: {}", hex::encode(v.attestation.measurement));
    }
    Ok(ExitCode::SUCCESS)
}
