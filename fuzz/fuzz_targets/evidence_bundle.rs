//! `EvidenceBundle::decode` on arbitrary bytes; the encoding is unique, so whatever decodes
//! must re-encode to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_attest::EvidenceBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = EvidenceBundle::decode(data) {
        assert!(
            bundle.check_limits().is_ok(),
            "decoded bundle breaks the limits"
        );
        let encoded = bundle.encode();
        assert_eq!(encoded.as_slice(), data, "encode(decode(x)) != x");
        assert_eq!(EvidenceBundle::decode(&encoded).ok(), Some(bundle));
    }
});
