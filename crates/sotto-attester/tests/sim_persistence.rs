//! The simulated TEE persists its chain and reloads it.

use std::os::unix::fs::PermissionsExt;

use sotto_attester::{Attester, SimulatedTee};

#[test]
fn load_or_create_twice_gives_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim");
    let first = SimulatedTee::load_or_create_with_key_bits(&state, [1; 48], 2048).unwrap();
    let fp = first.root_fingerprint();
    // Reload ignores the key size and keeps everything but the measurement.
    let second = SimulatedTee::load_or_create_with_key_bits(&state, [2; 48], 4096).unwrap();
    assert_eq!(second.root_fingerprint(), fp);
    assert_eq!(second.vcek_der(), first.vcek_der());
    assert_eq!(second.chip_id(), first.chip_id());
    assert_eq!(second.measurement(), [2; 48]);
    // Same VCEK key: reports from both instances verify with the same certificate.
    let b1 = first.evidence(&[9; 64]).unwrap();
    let b2 = second.evidence(&[9; 64]).unwrap();
    assert_eq!(b1.vcek, b2.vcek);
    assert_eq!(b1.report[..0x90], b2.report[..0x90]);

    // Private keys are owner-only; the directory too.
    for f in ["ark.key.der", "ask.key.der", "vcek.key.der"] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(SimulatedTee::state_files(&state).iter().all(|p| p.exists()));
}

#[test]
fn incomplete_or_corrupt_state_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim");
    SimulatedTee::load_or_create_with_key_bits(&state, [1; 48], 2048).unwrap();

    let vcek_key = std::fs::read(state.join("vcek.key.der")).unwrap();
    std::fs::write(state.join("vcek.key.der"), b"not a key").unwrap();
    let err = SimulatedTee::load_or_create_with_key_bits(&state, [1; 48], 2048).unwrap_err();
    assert_eq!(err.code(), "SIM_STATE_INVALID");
    assert!(
        !err.to_string().contains("BEGIN"),
        "no key material in messages"
    );

    // A valid key that does not belong to the certificate.
    let other = dir.path().join("other");
    SimulatedTee::load_or_create_with_key_bits(&other, [1; 48], 2048).unwrap();
    std::fs::copy(other.join("vcek.key.der"), state.join("vcek.key.der")).unwrap();
    let err = SimulatedTee::load_or_create_with_key_bits(&state, [1; 48], 2048).unwrap_err();
    assert_eq!(err.code(), "SIM_STATE_INVALID");

    std::fs::write(state.join("vcek.key.der"), vcek_key).unwrap();
    SimulatedTee::load_or_create_with_key_bits(&state, [1; 48], 2048).unwrap();

    std::fs::remove_file(state.join("ask.cert.der")).unwrap();
    let err = SimulatedTee::load_or_create_with_key_bits(&state, [1; 48], 2048).unwrap_err();
    assert_eq!(err.code(), "SIM_STATE_INCOMPLETE");
}
