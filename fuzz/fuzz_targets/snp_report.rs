//! `snp::parse` on arbitrary bytes; whatever parses must re-encode byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_attest::snp;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = snp::parse(data) {
        let bytes = report.to_bytes();
        assert_eq!(bytes.as_slice(), data, "to_bytes is not the parsed input");
        assert_eq!(snp::parse(&bytes).ok(), Some(report.clone()));
        // Accessors must not panic on any parsed report.
        let _ = report.signed_bytes();
        let _ = report.cpuid();
        let g = report.generation();
        let _ = report.signing_key_kind();
        let _ = report.debug_allowed();
        let _ = report.migration_agent_allowed();
        let _ = report.reported_tcb.decode(g);
        let _ = report.signature.to_p384_be();
    }
});
