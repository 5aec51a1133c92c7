//! `sotto model convert|info|bench` and GGUF models in `sotto release manifest`, black-box
//! on the real stories260K files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

fn sotto(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sotto"))
        .env("SOTTO_LOG", "warn")
        .stdin(Stdio::null())
        .args(args)
        .output()
        .expect("run sotto");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/stories260K")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

fn convert(out: &Path, extra: &[&str]) -> (i32, String, String) {
    let ckpt = model_dir().join("stories260K.bin");
    let tok = model_dir().join("tok512.bin");
    let mut args = vec![
        "model",
        "convert",
        "--from",
        "llama2c",
        "--checkpoint",
        p(&ckpt),
        "--tokenizer",
        p(&tok),
        "--out",
        p(out),
    ];
    args.extend_from_slice(extra);
    sotto(&args)
}

#[test]
fn convert_prints_digest_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stories260K.gguf");
    let (code, stdout, stderr) = convert(&out, &["--quantize", "q8_0"]);
    assert_eq!(code, 0, "{stderr}");
    let digest = sha256_hex(&out);
    assert!(stdout.contains(&format!("sha256 {digest}\n")), "{stdout}");
    assert!(stdout.contains(&format!("model-weights-sha256 {digest}\n")));
    assert!(stdout.contains(&format!("model-tokenizer-sha256 {digest}\n")));
    assert!(stdout.contains("q8_0"));
    assert_eq!(&std::fs::read(&out).unwrap()[..4], b"GGUF");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A second conversion must not replace the file without --force.
    let (code, _, stderr) = convert(&out, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(sha256_hex(&out), digest, "file was modified");

    // With --force it is replaced (by the F32 conversion, a different file).
    let (code, stdout, stderr) = convert(&out, &["--force"]);
    assert_eq!(code, 0, "{stderr}");
    let f32_digest = sha256_hex(&out);
    assert_ne!(f32_digest, digest);
    assert!(stdout.contains(&f32_digest));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn convert_rejects_a_bad_tokenizer_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad_tok = dir.path().join("bad.bin");
    std::fs::write(&bad_tok, [7, 0, 0, 0, 1, 2]).unwrap();
    let out = dir.path().join("x.gguf");
    let ckpt = model_dir().join("stories260K.bin");
    let (code, _, stderr) = sotto(&[
        "model",
        "convert",
        "--from",
        "llama2c",
        "--checkpoint",
        p(&ckpt),
        "--tokenizer",
        p(&bad_tok),
        "--out",
        p(&out),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("TOKENIZER_INVALID"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn info_describes_converted_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.gguf");
    assert_eq!(convert(&out, &["--quantize", "q8_0"]).0, 0);
    let (code, stdout, stderr) = sotto(&["model", "info", p(&out)]);
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "format: GGUF v3,",
        "architecture: llama\n",
        "name: stories260K\n",
        "context_length: 512\n",
        "embedding_length: 64\n",
        "block_count: 5\n",
        "feed_forward_length: 172\n",
        "attention.head_count: 8\n",
        "attention.head_count_kv: 4\n",
        "rope.dimension_count: 8\n",
        "tokenizer: llama (512 tokens), chat template: no\n",
        // 11 norms + 5 ffn_down stay F32; 5 x 6 matrices + the embedding are Q8_0.
        "tensors: 47 (F32 x16, Q8_0 x31),",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains(&format!("sha256 {}\n", sha256_hex(&out))));

    // A truncated file and one claiming an absurd metadata count: clear errors, no panic
    // and no giant allocation (the engine's bounded reader).
    let bytes = std::fs::read(&out).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, stderr) = sotto(&["model", "info", p(&cut)]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("invalid GGUF") && stderr.contains("[GGUF_TRUNCATED]"),
        "{stderr}"
    );
    let mut absurd = bytes[..24].to_vec();
    absurd[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata KV count
    let bad = dir.path().join("absurd.gguf");
    std::fs::write(&bad, &absurd).unwrap();
    let (code, _, stderr) = sotto(&["model", "info", p(&bad)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid GGUF"), "{stderr}");

    // A llama2.c checkpoint is not GGUF.
    let (code, _, stderr) = sotto(&["model", "info", p(&model_dir().join("stories260K.bin"))]);
    assert_ne!(code, 0);
    assert!(stderr.contains("not a GGUF file"), "{stderr}");
}

fn manifest(model: &Path, tokenizer: Option<&Path>) -> (i32, String, String) {
    let mut args = vec![
        "release",
        "manifest",
        "--version",
        "1.0.0",
        "--source-commit",
        "94aca28c0ffee0ddba11deadbeef0123456789ab",
        "--enclave-binary",
        env!("CARGO_BIN_EXE_sotto"),
        "--model",
        p(model),
        "--simulated",
    ];
    if let Some(t) = tokenizer {
        args.extend(["--tokenizer", p(t)]);
    }
    sotto(&args)
}

#[test]
fn release_manifest_records_gguf_digest_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("stories260K.gguf");
    assert_eq!(convert(&gguf, &[]).0, 0);
    let digest = sha256_hex(&gguf);

    let (code, stdout, stderr) = manifest(&gguf, None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("model-name stories260K\n"), "{stdout}");
    assert!(stdout.contains(&format!("model-weights-sha256 {digest}\n")));
    assert!(stdout.contains(&format!("model-tokenizer-sha256 {digest}\n")));

    // A GGUF model carries its tokenizer: a separate one is refused.
    let tok = model_dir().join("tok512.bin");
    let (code, _, stderr) = manifest(&gguf, Some(&tok));
    assert_ne!(code, 0);
    assert!(stderr.contains("omit --tokenizer"), "{stderr}");

    // A llama2.c checkpoint still needs its tokenizer, and records both digests.
    let ckpt = model_dir().join("stories260K.bin");
    let (code, _, stderr) = manifest(&ckpt, None);
    assert_ne!(code, 0);
    assert!(stderr.contains("pass its --tokenizer"), "{stderr}");
    let (code, stdout, stderr) = manifest(&ckpt, Some(&tok));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("model-weights-sha256 {}\n", sha256_hex(&ckpt))));
    assert!(stdout.contains(&format!("model-tokenizer-sha256 {}\n", sha256_hex(&tok))));
}

#[test]
fn bench_reports_all_metrics() {
    let (code, stdout, stderr) = sotto(&[
        "model",
        "bench",
        "--model",
        p(&model_dir().join("stories260K.bin")),
        "--tokenizer",
        p(&model_dir().join("tok512.bin")),
        "--max-tokens",
        "20",
        "--runs",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    for key in [
        "load_ms: ",
        "prompt_tokens: ",
        "generated_tokens: 20\n",
        "runs: 2\n",
        "time_to_first_token_ms: ",
        "prompt_tok_s: ",
        "generation_tok_s: ",
        "peak_rss_kib: ",
    ] {
        assert!(stdout.contains(key), "missing {key:?} in:\n{stdout}");
    }
    // Zero runs is refused.
    let (code, _, stderr) = sotto(&[
        "model",
        "bench",
        "--model",
        p(&model_dir().join("stories260K.bin")),
        "--tokenizer",
        p(&model_dir().join("tok512.bin")),
        "--runs",
        "0",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--runs"), "{stderr}");
}
