//! Times full `verify` on the real SEV-SNP and TDX samples in `../shared/attestation`.
//!
//! ```text
//! cargo run --release -p sotto-attest --example verify_bench [-- ITERATIONS] [DIR]
//! ```
//!
//! ITERATIONS defaults to 200; DIR defaults to `../shared/attestation` relative to the
//! workspace root. Reports the median and p90 wall time per call, in milliseconds:
//! - SNP genoa-msft, first call: `verify` (a fresh `ChainCache` each time, so the three
//!   RSA-PSS chain signatures are checked every call — what a first handshake pays);
//! - SNP genoa-msft, cached: `verify_cached` with a warm `ChainCache` (chain signatures
//!   skipped; validity, report signature, bindings and policy still checked);
//! - TDX v4-dcapqvl: `verify` (quote, QE report, PCK chain, collateral signatures, CRLs).
//!
//! Verification times: SNP at 2026-03-01T12:00Z (as the SNP tests), TDX v4 at
//! 2025-07-01T12:00Z (the shared README's time for that sample).

use std::path::PathBuf;
use std::time::Instant;

use sotto_attest::{
    ChainCache, EvidenceBundle, Extra, Platform, Policy, TrustRoots, snp, tags, tdx, verify,
    verify_cached,
};

/// 2026-03-01T12:00Z: SNP samples' verification time in the test suite.
const SNP_NOW: u64 = 1_772_366_400;
/// 2025-07-01T12:00Z: the README's verification time for v4-dcapqvl.
const TDX_V4_NOW: u64 = 1_751_371_200;

fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    let p = dir.join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
        min: ms[0],
        max: ms[ms.len() - 1],
    }
}

fn time(iters: usize, mut f: impl FnMut()) -> Stats {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stats(samples)
}

fn row(name: &str, s: &Stats) {
    println!(
        "{name:<34} median {:>7.3} ms   p90 {:>7.3} ms   (min {:.3}, max {:.3})",
        s.median, s.p90, s.min, s.max
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: usize = args
        .next()
        .map(|a| a.parse().expect("ITERATIONS must be a number"))
        .unwrap_or(200)
        .max(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/attestation"
        ))
    });

    // SEV-SNP: genoa-msft report + VCEK; ASK/ARK come from the built-in AMD roots.
    let snp_report = read(&dir, "snp/genoa-msft.report.bin");
    let snp_bundle = EvidenceBundle {
        platform: Platform::SevSnp,
        report: snp_report.clone(),
        vcek: read(&dir, "snp/genoa-msft.vcek.der"),
        ask: None,
        ark: None,
        extras: vec![],
    };
    // Through the wire encoding, as a client receives it.
    let snp_bundle = EvidenceBundle::decode(&snp_bundle.encode()).expect("SNP bundle decodes");
    let snp_policy = Policy::new(
        TrustRoots::default(),
        snp::parse(&snp_report)
            .expect("SNP report parses")
            .report_data,
    );

    // TDX: v4-dcapqvl quote + collateral (JSON extra).
    let quote = read(&dir, "tdx/v4-dcapqvl.quote.bin");
    let tdx_bundle = EvidenceBundle {
        platform: Platform::Tdx,
        report: quote.clone(),
        vcek: vec![],
        ask: None,
        ark: None,
        extras: vec![Extra {
            tag: tags::TDX_COLLATERAL,
            value: read(&dir, "tdx/v4-dcapqvl.collateral.json"),
        }],
    };
    let tdx_bundle = EvidenceBundle::decode(&tdx_bundle.encode()).expect("TDX bundle decodes");
    let tdx_policy = Policy::new(
        TrustRoots::default(),
        tdx::parse_quote(&quote)
            .expect("TDX quote parses")
            .report
            .report_data,
    );

    // Sanity: every measured call must be an accept.
    let v = verify(&snp_bundle, &snp_policy, SNP_NOW).expect("SNP genoa-msft verifies");
    println!(
        "SNP genoa-msft: accepted ({} steps, {} generation)",
        v.steps.len(),
        v.generation
    );
    let v = verify(&tdx_bundle, &tdx_policy, TDX_V4_NOW).expect("TDX v4-dcapqvl verifies");
    println!(
        "TDX v4-dcapqvl: accepted ({} steps, TCB status {})",
        v.steps.len(),
        v.tdx.as_ref().map_or("?", |t| t.tcb_status.name())
    );
    println!("{iters} iterations each, after 5 warm-up calls\n");

    for _ in 0..5 {
        verify(&snp_bundle, &snp_policy, SNP_NOW).unwrap();
        verify(&tdx_bundle, &tdx_policy, TDX_V4_NOW).unwrap();
    }

    let s = time(iters, || {
        verify(&snp_bundle, &snp_policy, SNP_NOW).unwrap();
    });
    row("SNP verify (first call, no cache)", &s);

    let mut cache = ChainCache::default();
    verify_cached(&snp_bundle, &snp_policy, SNP_NOW, &mut cache).unwrap();
    assert_eq!(cache.len(), 1);
    let s = time(iters, || {
        verify_cached(&snp_bundle, &snp_policy, SNP_NOW, &mut cache).unwrap();
    });
    row("SNP verify_cached (warm cache)", &s);

    let s = time(iters, || {
        verify(&tdx_bundle, &tdx_policy, TDX_V4_NOW).unwrap();
    });
    row("TDX v4 verify", &s);

    let s = time(iters, || {
        EvidenceBundle::decode(&snp_bundle.encode()).unwrap();
        EvidenceBundle::decode(&tdx_bundle.encode()).unwrap();
    });
    row("(encode+decode both bundles)", &s);
}
