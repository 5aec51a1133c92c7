//! The converter's GGUF output run by this engine's own GGUF loader: greedy text must equal
//! the llama2.c reference (F32) and keep its first sentence (Q8_0).

mod common;

use std::ops::ControlFlow;

use common::*;
use sotto_engine::Model;
use sotto_engine::convert::{ConvertOptions, Quantization, llama2c_to_gguf};

/// Reference output of `./run stories260K.bin -z tok512.bin -t 0.0` (the model's README).
const REFERENCE: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"";

fn converted_model(q: Quantization) -> Model {
    let opts = ConvertOptions {
        quantize: q,
        name: "stories260K".into(),
        chat_template: None,
    };
    let bytes = llama2c_to_gguf(&checkpoint_bytes(), &tokenizer_bytes(), &opts).expect("convert");
    let dir = tempdir();
    let path = dir.join(format!("stories260K-{}.gguf", q.as_str()));
    std::fs::write(&path, bytes).expect("write");
    let model = Model::load_gguf(&path, &Default::default()).expect("load_gguf");
    let _ = std::fs::remove_dir_all(&dir);
    model
}

/// A fresh directory under the target dir (no extra dev-dependency needed).
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sotto-convert-engine-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn greedy_text(model: &Model, n: u32) -> String {
    let mut text = String::new();
    model
        .generate("", &greedy(n), &mut |piece| {
            text.push_str(piece);
            ControlFlow::Continue(())
        })
        .expect("generate");
    text
}

#[test]
fn engine_runs_converted_f32_gguf_like_llama2c() {
    let text = greedy_text(&converted_model(Quantization::F32), 255);
    assert!(text.starts_with(REFERENCE), "{text}");
}

#[test]
fn engine_runs_converted_q8_0_gguf() {
    let text = greedy_text(&converted_model(Quantization::Q8_0), 120);
    assert!(
        text.starts_with("Once upon a time, there was a little girl named Lily."),
        "{text}"
    );
}
