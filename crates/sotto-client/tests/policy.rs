//! Client policy decisions that need no running enclave: handshakes in memory.

use sotto_client::{ClientError, Trust, verify_hello};
use sotto_wire::{ClientHandshake, Limits, ServerHandshake, StaticKeypair};

fn shared(p: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../../shared/attestation/{p}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A server hello carrying real Genoa evidence (its REPORT_DATA belongs to someone else).
fn hello_with_hardware_evidence() -> sotto_wire::ServerHello {
    let bundle = sotto_attest::EvidenceBundle {
        platform: sotto_attest::Platform::SevSnp,
        report: shared("snp/genoa-msft.report.bin"),
        vcek: shared("snp/genoa-msft.vcek.der"),
        ask: None,
        ark: None,
        extras: vec![],
    };
    let key = StaticKeypair::from_entropy([1; 32]).unwrap();
    let (client, m1) = ClientHandshake::start([2; 32], Some([3; 32])).unwrap();
    let server = ServerHandshake::read_client_hello(&key, [4; 32], &m1).unwrap();
    let claims = sotto_wire::Claims {
        model_id: "m".into(),
        weights_sha256: [5; 32],
        tokenizer_sha256: [6; 32],
        backend: "builtin".into(),
        enclave_version: "t".into(),
    }
    .encode()
    .unwrap();
    let (m2, _) = server
        .finish(&claims, &bundle.encode(), Limits::default())
        .unwrap();
    client.read_server_hello(&m2).unwrap()
}

// Inside the Genoa VCEK's validity.
const NOW: u64 = 1_780_000_000;

#[test]
fn hardware_evidence_without_measurement_pin_is_refused() {
    let hello = hello_with_hardware_evidence();
    let e = verify_hello(&hello, &Trust::default(), NOW).unwrap_err();
    assert_eq!(e.code(), "MEASUREMENT_NOT_PINNED");
    assert!(e.is_rejection());
}

#[test]
fn with_a_pin_or_explicit_waiver_the_verifier_runs() {
    // The evidence is genuine but bound to another key: the verifier itself must refuse.
    let hello = hello_with_hardware_evidence();
    let pinned = Trust {
        expected_measurement: Some([0; 48]),
        ..Trust::default()
    };
    let e = verify_hello(&hello, &pinned, NOW).unwrap_err();
    assert_eq!(e.code(), "REPORT_DATA_MISMATCH");
    let waived = Trust {
        allow_unpinned_measurement: true,
        ..Trust::default()
    };
    let e = verify_hello(&hello, &waived, NOW).unwrap_err();
    assert_eq!(e.code(), "REPORT_DATA_MISMATCH");
}

#[test]
fn rejections_are_classified() {
    assert!(
        ClientError::ModelDigestMismatch {
            got: "a".into(),
            expected: "b".into()
        }
        .is_rejection()
    );
    assert!(!ClientError::Closed.is_rejection());
    assert!(!ClientError::Timeout("x").is_rejection());
}
