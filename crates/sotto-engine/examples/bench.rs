//! Times greedy generation on stories260K:
//! `cargo run --release -p sotto-engine --example bench [model_dir] [runs] [model.gguf]`.
//! With a third argument, times that GGUF file instead (e.g. stories260K exported by the
//! ignored `export_stories_gguf` test in `tests/gguf.rs`).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use sotto_engine::{GenerateParams, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/models/stories260K"
        ))
    });
    let runs: u32 = args.next().map(|r| r.parse()).transpose()?.unwrap_or(20);
    let model = match args.next() {
        Some(gguf) => Model::load_auto(gguf.as_ref(), None)?,
        None => Model::load(&dir.join("stories260K.bin"), &dir.join("tok512.bin"))?,
    };
    let params = GenerateParams {
        max_tokens: 255,
        temperature: 0.0,
        ..GenerateParams::default()
    };
    let mut tokens = 0u64;
    let start = Instant::now();
    for _ in 0..runs {
        let g = model.generate("", &params, &mut |_| ControlFlow::Continue(()))?;
        tokens += u64::from(g.completion_tokens);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{tokens} tokens in {secs:.3} s: {:.0} tokens/s",
        tokens as f64 / secs
    );
    Ok(())
}
