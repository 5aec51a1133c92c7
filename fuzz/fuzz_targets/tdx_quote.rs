//! `tdx::parse_quote` on arbitrary bytes: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_attest::tdx;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = tdx::parse_quote(data) {
        assert!(quote.signed_len <= data.len());
        let _ = quote.report.debug();
    }
});
