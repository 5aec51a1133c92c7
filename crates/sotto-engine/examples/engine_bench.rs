//! Engine-only benchmark, the same measurement as `sotto model bench` without building the
//! whole CLI (used by scripts/bench-engine.sh, which needs a quick release build):
//!
//! ```sh
//! cargo run --release -p sotto-engine --example engine_bench -- MODEL TOKENIZER [PROMPT] [MAX_TOKENS] [RUNS]
//! ```
//!
//! TOKENIZER is `-` for a GGUF model (its tokenizer is inside the file).
//!
//! Prints `key: value` lines: load_ms, prompt_tokens, generated_tokens, runs,
//! time_to_first_token_ms, prompt_tok_s, generation_tok_s (medians), peak_rss_kib.
//! With `SOTTO_BENCH_TEXT=FILE` the first run's text is written to FILE.

use std::time::Instant;

use sotto_engine::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model_path), Some(tok_path)) = (args.first(), args.get(1)) else {
        return Err("usage: engine_bench MODEL TOKENIZER [PROMPT] [MAX_TOKENS] [RUNS]".into());
    };
    let prompt = args.get(2).map(String::as_str).unwrap_or("");
    let max_tokens: u32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let runs: u32 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(5);
    if runs == 0 {
        return Err("RUNS must be at least 1".into());
    }

    let t = Instant::now();
    let model = Model::load_auto(
        model_path.as_ref(),
        (tok_path.as_str() != "-").then(|| std::path::Path::new(tok_path.as_str())),
    )?;
    let load = t.elapsed();
    let (report, text) = sotto_engine::bench::measure(&model, load, prompt, max_tokens, 0, runs)?;
    if let Ok(p) = std::env::var("SOTTO_BENCH_TEXT") {
        std::fs::write(p, &text)?;
    }
    print!("{report}");
    Ok(())
}
