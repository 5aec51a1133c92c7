//! Times simulated-chain generation: `cargo run --release --example simgen_timing`.

use std::time::Instant;

use sotto_attester::{Attester, SimulatedTee};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for bits in [2048usize, 3072, 4096] {
        let dir = std::env::temp_dir().join(format!("sotto-simgen-{}-{bits}", std::process::id()));
        let start = Instant::now();
        let sim = SimulatedTee::load_or_create_with_key_bits(&dir, [0; 48], bits)?;
        let created = start.elapsed();
        let start = Instant::now();
        let _ = SimulatedTee::load_or_create_with_key_bits(&dir, [0; 48], bits)?;
        let loaded = start.elapsed();
        let start = Instant::now();
        let _ = sim.evidence(&[0; 64])?;
        let evidence = start.elapsed();
        println!("RSA-{bits}: create {created:?}, reload {loaded:?}, evidence {evidence:?}");
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
