//! Manifest encoding: canonical round trip, every rejection, policy tightening.

use proptest::prelude::*;
use sotto_attest::snp::TcbParts;
use sotto_attest::tdx::TcbStatus;
use sotto_attest::{Policy, TrustRoots};
use sotto_release::{Manifest, Measurement, ModelRef, ReleaseError, simulated_measurement};

fn sample() -> Manifest {
    Manifest {
        version: "0.1.0".into(),
        source_commit: "94aca28c0a5b8e2f6a5d4c3b2a1908f7e6d5c4b3".into(),
        enclave_sha256: [0x11; 32],
        model: ModelRef {
            name: "stories260K".into(),
            weights_sha256: [0x22; 32],
            tokenizer_sha256: [0x33; 32],
        },
        measurements: vec![
            Measurement::Tdx {
                mrtd: [0x66; 48],
                rtmrs: [Some([0x70; 48]), None, Some([0x72; 48]), None],
            },
            Measurement::Snp([0x55; 48]),
            Measurement::Simulated([0x44; 48]),
        ],
        min_tcb: Some(TcbParts {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        }),
        tdx_tcb_statuses: vec![TcbStatus::SWHardeningNeeded, TcbStatus::UpToDate],
    }
}

#[test]
fn canonical_round_trip() {
    let m = sample();
    let text = m.encode().unwrap();
    let expected = format!(
        "sotto-release-manifest/v1\n\
         version 0.1.0\n\
         source-commit 94aca28c0a5b8e2f6a5d4c3b2a1908f7e6d5c4b3\n\
         enclave-sha256 {}\n\
         model-name stories260K\n\
         model-weights-sha256 {}\n\
         model-tokenizer-sha256 {}\n\
         measurement simulated {}\n\
         measurement snp {}\n\
         measurement tdx mrtd={} rtmr0={} rtmr2={}\n\
         min-tcb bl=3,tee=0,snp=8,ucode=115\n\
         tdx-tcb-status UpToDate,SWHardeningNeeded\n",
        "11".repeat(32),
        "22".repeat(32),
        "33".repeat(32),
        "44".repeat(48),
        "55".repeat(48),
        "66".repeat(48),
        "70".repeat(48),
        "72".repeat(48),
    );
    assert_eq!(text, expected);
    let parsed = Manifest::parse(text.as_bytes()).unwrap();
    // Parsing yields the canonical (sorted) order; encoding it again is a fixed point.
    assert_eq!(parsed.encode().unwrap(), text);
    assert_eq!(parsed.measurements[0], Measurement::Simulated([0x44; 48]));
    assert_eq!(parsed.digest().unwrap(), m.digest().unwrap());
}

#[test]
fn optional_lines_may_be_absent() {
    let mut m = sample();
    m.min_tcb = None;
    m.tdx_tcb_statuses.clear();
    m.measurements = vec![Measurement::Simulated([1; 48])];
    m.min_tcb = Some(TcbParts {
        fmc: Some(1),
        bootloader: 0,
        tee: 0,
        snp: 0,
        microcode: 0,
    });
    let text = m.encode().unwrap();
    assert!(text.ends_with("min-tcb bl=0,tee=0,snp=0,ucode=0,fmc=1\n"));
    assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
}

fn code(text: &str) -> &'static str {
    match Manifest::parse(text.as_bytes()) {
        Ok(_) => "ACCEPTED",
        Err(e) => e.code(),
    }
}

#[test]
fn rejects_every_non_canonical_form() {
    let good = sample().encode().unwrap();
    assert_eq!(code(&good), "ACCEPTED");
    let cases: Vec<(&str, String)> = vec![
        ("no final newline", good.trim_end().to_string()),
        ("blank line", good.replacen("version", "\nversion", 1)),
        ("CRLF", good.replace('\n', "\r\n")),
        (
            "uppercase hex",
            good.replacen(&"11".repeat(32), &"AA".repeat(32), 1),
        ),
        (
            "short hex",
            good.replacen(&"11".repeat(32), &"11".repeat(31), 1),
        ),
        ("wrong header", good.replacen("/v1", "/v2", 1)),
        ("trailing space", good.replacen("0.1.0\n", "0.1.0 \n", 1)),
        ("two spaces", good.replacen("version 0", "version  0", 1)),
        ("bad version chars", good.replacen("0.1.0", "0.1 0", 1)),
        (
            "short commit",
            good.replacen("94aca28c0a5b8e2f6a5d4c3b2a1908f7e6d5c4b3", "94aca28", 1),
        ),
        (
            "unsorted measurements",
            good.replacen(
                &format!(
                    "measurement simulated {}\nmeasurement snp {}\n",
                    "44".repeat(48),
                    "55".repeat(48)
                ),
                &format!(
                    "measurement snp {}\nmeasurement simulated {}\n",
                    "55".repeat(48),
                    "44".repeat(48)
                ),
                1,
            ),
        ),
        (
            "duplicate measurement",
            good.replacen(
                &format!("measurement snp {}\n", "55".repeat(48)),
                &format!(
                    "measurement snp {0}\nmeasurement snp {0}\n",
                    "55".repeat(48)
                ),
                1,
            ),
        ),
        (
            "unknown measurement kind",
            good.replacen("measurement snp", "measurement sev", 1),
        ),
        ("rtmr out of order", good.replacen(" rtmr0=", " rtmr3=", 1)),
        ("leading zero in tcb", good.replacen("snp=8", "snp=08", 1)),
        ("tcb too big", good.replacen("ucode=115", "ucode=256", 1)),
        (
            "status order",
            good.replacen(
                "UpToDate,SWHardeningNeeded",
                "SWHardeningNeeded,UpToDate",
                1,
            ),
        ),
        (
            "revoked allowed",
            good.replacen("UpToDate,SWHardeningNeeded", "UpToDate,Revoked", 1),
        ),
        (
            "unknown status",
            good.replacen("SWHardeningNeeded", "Fine", 1),
        ),
        ("unknown line", format!("{good}comment hello\n")),
        ("min-tcb after statuses", {
            let mut lines: Vec<&str> = good.lines().collect();
            let n = lines.len();
            lines.swap(n - 1, n - 2);
            lines.join("\n") + "\n"
        }),
        ("no measurement", {
            let lines: Vec<&str> = good
                .lines()
                .filter(|l| !l.starts_with("measurement"))
                .collect();
            lines.join("\n") + "\n"
        }),
        (
            "missing model line",
            good.replacen("model-name stories260K\n", "", 1),
        ),
        ("empty", String::new()),
    ];
    for (what, text) in cases {
        assert_eq!(code(&text), "MANIFEST_MALFORMED", "{what}");
    }
    assert_eq!(code(&"x".repeat(20_000)), "MANIFEST_MALFORMED");
    assert_eq!(
        Manifest::parse(&[0xff, 0xfe]).unwrap_err().code(),
        "MANIFEST_MALFORMED"
    );
}

#[test]
fn refuses_to_encode_invalid_values() {
    let mut m = sample();
    m.measurements.clear();
    assert_eq!(m.encode().unwrap_err().code(), "MANIFEST_INVALID");
    let mut m = sample();
    m.measurements.push(Measurement::Snp([0x55; 48]));
    assert_eq!(m.encode().unwrap_err().code(), "MANIFEST_INVALID");
    let mut m = sample();
    m.model.name = "has space".into();
    assert_eq!(m.encode().unwrap_err().code(), "MANIFEST_INVALID");
    let mut m = sample();
    m.source_commit = "ABCDEF".into();
    assert_eq!(m.encode().unwrap_err().code(), "MANIFEST_INVALID");
    let mut m = sample();
    m.tdx_tcb_statuses.push(TcbStatus::Revoked);
    assert_eq!(m.encode().unwrap_err().code(), "MANIFEST_INVALID");
}

#[test]
fn simulated_measurement_changes_with_binary_and_model() {
    let base = simulated_measurement(&[1; 32], &[2; 32], &[3; 32]);
    assert_ne!(base, simulated_measurement(&[9; 32], &[2; 32], &[3; 32]));
    assert_ne!(base, simulated_measurement(&[1; 32], &[9; 32], &[3; 32]));
    assert_ne!(base, simulated_measurement(&[1; 32], &[2; 32], &[9; 32]));
    assert_eq!(base, simulated_measurement(&[1; 32], &[2; 32], &[3; 32]));
}

#[test]
fn policy_is_tightened_never_loosened() {
    let m = sample();
    let mut p = Policy::unbound(TrustRoots::default());
    p.min_tcb = Some(TcbParts {
        fmc: None,
        bootloader: 5,
        tee: 0,
        snp: 1,
        microcode: 200,
    });
    p.tdx.allowed_tcb_statuses = vec![TcbStatus::UpToDate, TcbStatus::OutOfDate];
    m.apply_to(&mut p);
    assert_eq!(
        p.min_tcb,
        Some(TcbParts {
            fmc: None,
            bootloader: 5,
            tee: 0,
            snp: 8,
            microcode: 200,
        })
    );
    // OutOfDate is not in the release's list; SWHardeningNeeded is not in the client's.
    assert_eq!(p.tdx.allowed_tcb_statuses, vec![TcbStatus::UpToDate]);
}

#[test]
fn model_check_names_each_mismatch() {
    let m = sample();
    assert!(
        m.check_model("stories260K", &[0x22; 32], &[0x33; 32])
            .is_ok()
    );
    for (id, w, t) in [
        ("other", [0x22; 32], [0x33; 32]),
        ("stories260K", [0x23; 32], [0x33; 32]),
        ("stories260K", [0x22; 32], [0x34; 32]),
    ] {
        let e = m.check_model(id, &w, &t).unwrap_err();
        assert!(matches!(e, ReleaseError::ModelMismatch(_)));
        assert_eq!(e.code(), "RELEASE_MODEL_MISMATCH");
    }
}

proptest! {
    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Manifest::parse(&bytes);
    }

    #[test]
    fn mutated_manifests_never_panic_and_reparse_canonically(
        pos in 0usize..1200, byte in any::<u8>()
    ) {
        let mut text = sample().encode().unwrap().into_bytes();
        let i = pos % text.len();
        text[i] = byte;
        if let Ok(m) = Manifest::parse(&text) {
            // Whatever is accepted is canonical.
            prop_assert_eq!(m.encode().unwrap().into_bytes(), text);
        }
    }
}
