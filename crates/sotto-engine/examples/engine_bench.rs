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

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use sotto_engine::{GenerateParams, Model};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

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
    let params = GenerateParams {
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ..Default::default()
    };
    let (mut pp, mut tg, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for run in 0..runs {
        let mut text = String::new();
        let start = Instant::now();
        let mut first: Option<Duration> = None;
        let g = model.generate(prompt, &params, &mut |piece| {
            first.get_or_insert_with(|| start.elapsed());
            text.push_str(piece);
            ControlFlow::Continue(())
        })?;
        let total = start.elapsed();
        let first = first.unwrap_or(total);
        pp.push(f64::from(g.prompt_tokens) / first.as_secs_f64());
        ttft.push(first.as_secs_f64() * 1e3);
        if g.completion_tokens > 1 {
            tg.push(f64::from(g.completion_tokens - 1) / (total - first).as_secs_f64());
        }
        if run == 0
            && let Ok(p) = std::env::var("SOTTO_BENCH_TEXT")
        {
            std::fs::write(p, &text)?;
        }
        last = Some(g);
    }
    let g = last.ok_or("no run")?;
    println!("load_ms: {:.2}", load.as_secs_f64() * 1e3);
    println!("prompt_tokens: {}", g.prompt_tokens);
    println!("generated_tokens: {}", g.completion_tokens);
    println!("runs: {runs}");
    println!("time_to_first_token_ms: {:.3}", median(&mut ttft));
    println!("prompt_tok_s: {:.1}", median(&mut pp));
    println!("generation_tok_s: {:.1}", median(&mut tg));
    match peak_rss_kib() {
        Some(k) => println!("peak_rss_kib: {k}"),
        None => println!("peak_rss_kib: n/a"),
    }
    Ok(())
}
