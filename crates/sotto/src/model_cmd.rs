//! `sotto model`: convert llama2.c checkpoints to GGUF, inspect a model file, benchmark the
//! built-in engine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use sha2::Digest;
use sotto_engine::convert::{ConvertOptions, Quantization};

use crate::CliError;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Convert a llama2.c checkpoint and tokenizer into one GGUF file (prints its SHA-256).
    Convert(ConvertArgs),
    /// Print a GGUF model's architecture, sizes, tensor types and SHA-256.
    Info(InfoArgs),
    /// Benchmark the built-in engine: load time, prompt and generation tokens/s, peak RSS.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SourceFormat {
    /// llama2.c: a `.bin` checkpoint (7 x i32 header, float32 tensors) and a tokenizer.bin.
    Llama2c,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum QuantizeArg {
    /// Everything float32 (lossless).
    F32,
    /// 2-D weights as float16.
    F16,
    /// 2-D weights whose rows are a multiple of 32 as Q8_0; the rest float32.
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<QuantizeArg> for Quantization {
    fn from(q: QuantizeArg) -> Self {
        match q {
            QuantizeArg::F32 => Quantization::F32,
            QuantizeArg::F16 => Quantization::F16,
            QuantizeArg::Q8_0 => Quantization::Q8_0,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input format.
    #[arg(long, value_enum)]
    pub from: SourceFormat,
    /// llama2.c checkpoint (.bin).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// llama2.c tokenizer (.bin).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// GGUF file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Storage of the weight matrices.
    #[arg(long, value_enum, default_value = "f32")]
    pub quantize: QuantizeArg,
    /// `general.name` recorded in the file (default: the checkpoint's file name without
    /// extension).
    #[arg(long)]
    pub name: Option<String>,
    /// A Jinja chat template file to store in the GGUF (`tokenizer.chat_template`).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The GGUF model file.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model file (today: a llama2.c checkpoint; GGUF once the GGUF loader is merged).
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer file (llama2.c models; a GGUF model carries its own).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Fixed prompt (an empty prompt is BOS only, like `run` without `-i`).
    #[arg(
        long,
        default_value = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    )]
    pub prompt: String,
    /// Tokens to generate per run (greedy, temperature 0).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Measured runs over one loaded model; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Sampling seed (no effect at temperature 0; recorded for completeness).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the first run's generated text to this file (to compare engines' outputs).
    #[arg(long)]
    pub text_out: Option<PathBuf>,
}

pub fn run_model(c: ModelCommand) -> Result<ExitCode, CliError> {
    match c {
        ModelCommand::Convert(a) => convert(&a),
        ModelCommand::Info(a) => info(&a),
        ModelCommand::Bench(a) => bench(&a),
    }
}

/// Whether `path` starts with the GGUF magic (false for shorter files).
pub fn is_gguf(path: &Path) -> Result<bool, CliError> {
    sotto_engine::is_gguf_file(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn convert(a: &ConvertArgs) -> Result<ExitCode, CliError> {
    match a.from {
        SourceFormat::Llama2c => {}
    }
    // Fail before the (possibly long) conversion, not after it.
    if !a.force && a.out.exists() {
        return Err(format!(
            "{} already exists; pass --force to replace it",
            a.out.display()
        )
        .into());
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .checkpoint
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("cannot derive a model name from the checkpoint file name; pass --name")?
            .to_string(),
    };
    let chat_template = match &a.chat_template {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let opts = ConvertOptions {
        quantize: a.quantize.into(),
        name,
        chat_template,
    };
    let ckpt = read(&a.checkpoint)?;
    let tok = read(&a.tokenizer)?;
    let gguf = sotto_engine::convert::llama2c_to_gguf(&ckpt, &tok, &opts)
        .map_err(|e| format!("{e} [{}]", e.code()))?;
    drop((ckpt, tok));
    write_new(&a.out, &gguf, a.force)?;
    let digest = hex::encode(sha2::Sha256::digest(&gguf));
    println!(
        "wrote {} ({} bytes, {}, GGUF v{})",
        a.out.display(),
        gguf.len(),
        opts.quantize.as_str(),
        sotto_engine::convert::GGUF_VERSION
    );
    println!("sha256 {digest}");
    // The release manifest records a GGUF model with its tokenizer inside: both digests are
    // the file's (see docs/engine.md).
    println!("model-weights-sha256 {digest}");
    println!("model-tokenizer-sha256 {digest}");
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `out` through a temporary file in the same directory, so `out` is
/// either absent/old or complete, never partial. Without `force` an existing `out` is never
/// replaced, even one created during the write (hard link, not rename).
fn write_new(out: &Path, bytes: &[u8], force: bool) -> Result<(), CliError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", out.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> Result<(), CliError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let placed = if force {
            std::fs::rename(&tmp, out)
        } else {
            std::fs::hard_link(&tmp, out)
        };
        placed.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} already exists; pass --force to replace it",
                out.display()
            ),
            _ => format!("{}: {e}", out.display()),
        })?;
        // Make the new directory entry durable too.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    // After a rename the temporary name is gone already; after a link or a failure it is
    // removed here.
    let _ = std::fs::remove_file(&tmp);
    result
}

fn info(a: &InfoArgs) -> Result<ExitCode, CliError> {
    let path = &a.file;
    if !is_gguf(path)? {
        return Err(format!(
            "{}: not a GGUF file (llama2.c checkpoints: `sotto model convert` first)",
            path.display()
        )
        .into());
    }
    // The engine's bounded reader: an untrusted download cannot make this allocate without
    // bound (candle's reader would allocate whatever lengths the file claims).
    let text = sotto_engine::describe_gguf_file(path)
        .map_err(|e| format!("{}: invalid GGUF: {e} [{}]", path.display(), e.code()))?;
    let digest = sotto_enclave::sha256_file(path)?;
    println!("{text}sha256 {}", hex::encode(digest));
    Ok(ExitCode::SUCCESS)
}

fn bench(a: &BenchArgs) -> Result<ExitCode, CliError> {
    if a.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let t = Instant::now();
    let model = sotto_engine::Model::load_auto(&a.model, a.tokenizer.as_deref())?;
    let load = t.elapsed();
    let (report, text) =
        sotto_engine::bench::measure(&model, load, &a.prompt, a.max_tokens, a.seed, a.runs)?;
    if let Some(p) = &a.text_out {
        std::fs::write(p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!("model: {}", a.model.display());
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
