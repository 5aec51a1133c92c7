//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::OnceLock;

use sotto_engine::{EngineError, GenerateParams, Generation, Model};

/// The model lives beside the repository checkout, never inside it.
pub const MODEL_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/models/stories260K"
);

pub fn checkpoint_path() -> PathBuf {
    PathBuf::from(MODEL_DIR).join("stories260K.bin")
}

pub fn tokenizer_path() -> PathBuf {
    PathBuf::from(MODEL_DIR).join("tok512.bin")
}

pub fn checkpoint_bytes() -> Vec<u8> {
    std::fs::read(checkpoint_path()).expect("read stories260K.bin")
}

pub fn tokenizer_bytes() -> Vec<u8> {
    std::fs::read(tokenizer_path()).expect("read tok512.bin")
}

/// Loaded once per test binary.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&checkpoint_path(), &tokenizer_path()).expect("load model"))
}

/// Runs a generation and collects its text.
pub fn run(
    model: &Model,
    prompt: &str,
    params: &GenerateParams,
) -> Result<(String, Generation), EngineError> {
    let mut text = String::new();
    let g = model.generate(prompt, params, &mut |piece| {
        text.push_str(piece);
        ControlFlow::Continue(())
    })?;
    Ok((text, g))
}

pub fn greedy(max_tokens: u32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        temperature: 0.0,
        ..GenerateParams::default()
    }
}
