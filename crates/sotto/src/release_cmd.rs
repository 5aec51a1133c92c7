//! `sotto key`, `sotto release`: keys and signed release manifests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use sotto_log::{Cosigner, Ed25519Signer, VerifierKey};
use sotto_release::{Manifest, Measurement, ModelRef};

use crate::CliError;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a signing key: writes the secret to --out (mode 0600) and the public
    /// verifier key to --out.vkey, and prints the verifier key.
    Generate(KeyGenerateArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum KeyKind {
    /// Signs release manifests (Ed25519 note key).
    Release,
    /// Signs the log's checkpoints (Ed25519 note key).
    Log,
    /// Cosigns checkpoints as a witness (c2sp.org/tlog-cosignature key).
    Witness,
}

#[derive(Args, Debug)]
pub struct KeyGenerateArgs {
    /// What the key is for.
    #[arg(long, value_enum)]
    pub kind: KeyKind,
    /// Key name (for a log key: the log's origin, e.g. `log.example.org/releases`).
    #[arg(long)]
    pub name: String,
    /// Secret key file to create (refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Build a release manifest from an enclave binary, a model and measurements.
    Manifest(ManifestArgs),
    /// Sign a manifest with the release key (a C2SP signed note, the log's entry format).
    Sign(SignArgs),
    /// Check a signed release against release keys and print its manifest.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// Release version.
    #[arg(long)]
    pub version: String,
    /// Source commit (40 or 64 hex).
    #[arg(long)]
    pub source_commit: String,
    /// The enclave binary (output of scripts/build-enclave.sh).
    #[arg(long)]
    pub enclave_binary: PathBuf,
    /// Model weights file (a llama2.c checkpoint or a GGUF file).
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer file. Required for a llama2.c checkpoint; must be omitted for a GGUF model,
    /// which carries its tokenizer (the manifest then records the GGUF file's digest as
    /// both the weights and the tokenizer digest).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Model id as served (default: weights file name without extension).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Include the simulated TEE's measurement of this binary and model (development).
    #[arg(long)]
    pub simulated: bool,
    /// SEV-SNP launch measurement (hex, 48 bytes), from the operator's image tooling.
    #[arg(long = "snp-measurement", value_name = "HEX")]
    pub snp: Vec<String>,
    /// TDX measurement: mrtd=HEX[,rtmr0=HEX,...].
    #[arg(long = "tdx-measurement", value_name = "SPEC")]
    pub tdx: Vec<String>,
    /// SEV-SNP minimum TCB: bl=N,tee=N,snp=N,ucode=N[,fmc=N].
    #[arg(long)]
    pub min_tcb: Option<String>,
    /// Intel TDX TCB statuses the release accepts (comma-separated).
    #[arg(long)]
    pub tdx_tcb_status: Option<String>,
    /// Write the manifest here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Release key (secret key file from `sotto key generate --kind release`).
    #[arg(long)]
    pub key: PathBuf,
    /// The manifest to sign.
    pub manifest: PathBuf,
    /// Write the signed release here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Trusted release verifier key(s) (vkey string or file).
    #[arg(long = "release-key", required = true)]
    pub release_keys: Vec<String>,
    /// The signed release.
    pub signed_release: PathBuf,
}

/// Random 32-byte seed from the OS.
pub fn random_seed() -> Result<[u8; 32], CliError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(seed)
}

/// Writes a secret file with mode 0600, refusing to overwrite.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Generates a key of `kind` named `name` into `out` (+ `out.vkey`); returns the vkey.
pub fn generate_key(kind: KeyKind, name: &str, out: &Path) -> Result<String, CliError> {
    let seed = random_seed()?;
    let (secret, vkey) = match kind {
        KeyKind::Release | KeyKind::Log => {
            let s = Ed25519Signer::from_seed(name, &seed)
                .map_err(|e| format!("key name {name:?}: {e}"))?;
            (s.to_private_key(), s.verifier_key().to_vkey())
        }
        KeyKind::Witness => {
            let s =
                Cosigner::from_seed(name, &seed).map_err(|e| format!("key name {name:?}: {e}"))?;
            (s.to_private_key(), s.verifier_key().to_vkey())
        }
    };
    // Refuse before writing anything if either file exists: a stale `.vkey` beside a new
    // secret would publish the wrong public key.
    let vkey_file = vkey_path(out);
    if vkey_file.exists() {
        return Err(format!("cannot create {}: it already exists", vkey_file.display()).into());
    }
    write_secret(out, &format!("{}\n", secret.as_str()))?;
    std::fs::write(&vkey_file, format!("{vkey}\n"))?;
    Ok(vkey)
}

/// `FILE.vkey` beside a secret key file.
pub fn vkey_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".vkey");
    PathBuf::from(s)
}

/// Reads a note signing key (release or log) from a secret key file.
pub fn read_signer(path: &Path) -> Result<Ed25519Signer, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    Ed25519Signer::from_private_key(text.trim())
        .map_err(|e| format!("{}: not a release/log key ({})", path.display(), e.code()).into())
}

/// Reads a witness cosigning key from a secret key file.
pub fn read_cosigner(path: &Path) -> Result<Cosigner, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    Cosigner::from_private_key(text.trim())
        .map_err(|e| format!("{}: not a witness key ({})", path.display(), e.code()).into())
}

/// A verifier key given inline (`name+hash+base64`) or as a file containing one.
pub fn parse_vkey(s: &str) -> Result<VerifierKey, CliError> {
    let text = if s.contains('+') && !Path::new(s).exists() {
        s.to_string()
    } else {
        std::fs::read_to_string(s).map_err(|e| format!("cannot read verifier key {s}: {e}"))?
    };
    VerifierKey::parse(text.trim())
        .map_err(|e| format!("{s}: not a verifier key ({})", e.code()).into())
}

fn hex48(what: &str, s: &str) -> Result<[u8; 48], CliError> {
    let v = hex::decode(s.trim()).map_err(|_| format!("{what}: not hex"))?;
    v.try_into()
        .map_err(|_| format!("{what}: expected 48 bytes").into())
}

fn parse_tdx(spec: &str) -> Result<Measurement, CliError> {
    let mut mrtd = None;
    let mut rtmrs = [None; 4];
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("--tdx-measurement: {part:?} is not NAME=HEX"))?;
        let twice = || format!("--tdx-measurement: {k} given twice");
        match k {
            "mrtd" if mrtd.is_some() => return Err(twice().into()),
            "mrtd" => mrtd = Some(hex48("mrtd", v)?),
            "rtmr0" | "rtmr1" | "rtmr2" | "rtmr3" => {
                let i = usize::from(k.as_bytes()[4] - b'0');
                if rtmrs[i].is_some() {
                    return Err(twice().into());
                }
                rtmrs[i] = Some(hex48(k, v)?);
            }
            _ => return Err(format!("--tdx-measurement: unknown register {k:?}").into()),
        }
    }
    Ok(Measurement::Tdx {
        mrtd: mrtd.ok_or("--tdx-measurement needs mrtd=HEX")?,
        rtmrs,
    })
}

/// The `(weights, tokenizer)` SHA-256 digests a release manifest records for a model.
///
/// A llama2.c checkpoint has a separate tokenizer file, hashed on its own. A GGUF file
/// carries its tokenizer, so both digests are the file's digest: the manifest format stays
/// the same, and a separate tokenizer cannot be paired with a GGUF model by mistake.
pub fn model_digests(
    model: &Path,
    tokenizer: Option<&Path>,
) -> Result<([u8; 32], [u8; 32]), CliError> {
    let gguf = crate::model_cmd::is_gguf(model)?;
    let weights = sotto_enclave::sha256_file(model)?;
    match (gguf, tokenizer) {
        (true, None) => Ok((weights, weights)),
        (true, Some(_)) => Err(format!(
            "{} is a GGUF model, which carries its own tokenizer: omit --tokenizer",
            model.display()
        )
        .into()),
        (false, Some(t)) => Ok((weights, sotto_enclave::sha256_file(t)?)),
        (false, None) => Err(format!(
            "{} is not a GGUF model: pass its --tokenizer",
            model.display()
        )
        .into()),
    }
}

/// Builds the manifest of a release from files and measurements.
pub fn build_manifest(a: &ManifestArgs) -> Result<Manifest, CliError> {
    let enclave_sha256 = sotto_enclave::sha256_file(&a.enclave_binary)?;
    let (weights_sha256, tokenizer_sha256) = model_digests(&a.model, a.tokenizer.as_deref())?;
    let name = match &a.model_id {
        Some(n) => n.clone(),
        None => a
            .model
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("cannot derive a model id from the file name; pass --model-id")?
            .to_string(),
    };
    let mut measurements = Vec::new();
    if a.simulated {
        measurements.push(Measurement::Simulated(
            sotto_release::simulated_measurement(
                &enclave_sha256,
                &weights_sha256,
                &tokenizer_sha256,
            ),
        ));
    }
    for s in &a.snp {
        measurements.push(Measurement::Snp(hex48("--snp-measurement", s)?));
    }
    for s in &a.tdx {
        measurements.push(parse_tdx(s)?);
    }
    if measurements.is_empty() {
        return Err(
            "a release needs at least one measurement: --simulated, --snp-measurement or --tdx-measurement"
                .into(),
        );
    }
    let min_tcb = a
        .min_tcb
        .as_deref()
        .map(crate::attest_cmd::parse_min_tcb)
        .transpose()
        .map_err(|e| e.0)?;
    let tdx_tcb_statuses = a
        .tdx_tcb_status
        .as_deref()
        .map(crate::attest_cmd::parse_statuses)
        .transpose()
        // The shared parser names the client's flag.
        .map_err(|e| e.0.replace("--allow-tcb-status", "--tdx-tcb-status"))?
        .unwrap_or_default();
    let m = Manifest {
        version: a.version.clone(),
        source_commit: a.source_commit.to_ascii_lowercase(),
        enclave_sha256,
        model: ModelRef {
            name,
            weights_sha256,
            tokenizer_sha256,
        },
        measurements,
        min_tcb,
        tdx_tcb_statuses,
    };
    m.encode().map_err(|e| format!("{} [{}]", e, e.code()))?;
    Ok(m)
}

fn output(out: &Option<PathBuf>, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    match out {
        Some(p) => std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))?,
        None => std::io::stdout().write_all(bytes)?,
    }
    Ok(())
}

pub fn run_key(c: KeyCommand) -> Result<ExitCode, CliError> {
    match c {
        KeyCommand::Generate(a) => {
            let vkey = generate_key(a.kind, &a.name, &a.out)?;
            println!("{vkey}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_release(c: ReleaseCommand) -> Result<ExitCode, CliError> {
    match c {
        ReleaseCommand::Manifest(a) => {
            let m = build_manifest(&a)?;
            output(&a.out, m.encode()?.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        ReleaseCommand::Sign(a) => {
            let signer = read_signer(&a.key)?;
            let text =
                std::fs::read(&a.manifest).map_err(|e| format!("{}: {e}", a.manifest.display()))?;
            let m = Manifest::parse(&text).map_err(|e| format!("{e} [{}]", e.code()))?;
            let signed = sotto_release::sign_release(&m, &signer)?;
            output(&a.out, &signed)?;
            Ok(ExitCode::SUCCESS)
        }
        ReleaseCommand::Show(a) => {
            let mut keys = sotto_log::KeySet::new();
            for k in &a.release_keys {
                keys.insert(parse_vkey(k)?)
                    .map_err(|e| format!("{k}: {}", e.code()))?;
            }
            let bytes = std::fs::read(&a.signed_release)
                .map_err(|e| format!("{}: {e}", a.signed_release.display()))?;
            match sotto_release::open_release(&bytes, &keys) {
                Ok((m, signer)) => {
                    println!("signed by: {signer}");
                    print!("{}", m.encode()?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("rejected [{}]: {e}", e.code());
                    Ok(ExitCode::from(crate::cli_client::EXIT_REJECTED))
                }
            }
        }
    }
}
