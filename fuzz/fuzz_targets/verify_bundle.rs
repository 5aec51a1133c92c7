//! Decode, then run the full verifier with a default policy at a fixed time. Every input
//! must be rejected or accepted with an error value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_attest::{EvidenceBundle, Policy, TrustRoots, verify};

/// 2026-03-01T12:00Z, the time the SNP tests and the v5 TDX sample verify at.
const NOW: u64 = 1_772_366_400;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = EvidenceBundle::decode(data) {
        let policy = Policy::new(TrustRoots::default(), [0; 64]);
        if let Err(e) = verify(&bundle, &policy, NOW) {
            let _ = e.code();
            let _ = e.to_string();
        }
    }
});
