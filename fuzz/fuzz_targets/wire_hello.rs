//! `ClientHello::decode` and `Claims::decode` on arbitrary bytes: strict decoders must
//! round-trip whatever they accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_wire::{Claims, ClientHello};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = ClientHello::decode(data) {
        assert_eq!(hello.encode().as_slice(), data, "ClientHello round trip");
    }
    if let Ok(claims) = Claims::decode(data) {
        let encoded = claims.encode().expect("decoded claims re-encode");
        assert_eq!(encoded.as_slice(), data, "Claims round trip");
    }
});
