//! Evidence bundle encoding: round trips, every decode rejection, and fuzzing.

use proptest::prelude::*;
use sotto_attest::{
    AttestError, EvidenceBundle, Extra, MAX_EXTRAS, MAX_FIELD_LEN, Platform, snp, tags,
};

fn sample() -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::SimulatedSnp,
        report: vec![0xAA; 10],
        vcek: vec![0xBB; 3],
        ask: Some(vec![0xCC; 2]),
        ark: Some(vec![0xDD]),
        extras: vec![
            Extra {
                tag: 1,
                value: vec![1, 2, 3],
            },
            Extra {
                tag: 0xFFFF,
                value: vec![],
            },
        ],
    }
}

fn code(r: Result<EvidenceBundle, AttestError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn known_encoding() {
    let b = EvidenceBundle {
        platform: Platform::SevSnp,
        report: vec![0x01, 0x02],
        vcek: vec![0x03],
        ask: None,
        ark: Some(vec![0x04]),
        extras: vec![Extra {
            tag: 0x0102,
            value: vec![0x05],
        }],
    };
    let expected: Vec<u8> = [
        &b"SOTE"[..],
        &[1, 2],                   // version, platform
        &[0, 0, 0, 2, 0x01, 0x02], // report
        &[0, 0, 0, 1, 0x03],       // vcek
        &[0b10],                   // flags: ARK only
        &[0, 0, 0, 1, 0x04],       // ark
        &[0, 1],                   // one extra
        &[0x01, 0x02, 0, 0, 0, 1, 0x05],
    ]
    .concat();
    assert_eq!(b.encode(), expected);
    assert_eq!(EvidenceBundle::decode(&expected).unwrap(), b);
}

#[test]
fn well_known_tags_are_stable() {
    // Wire values (docs/protocol.md, section 6): never renumbered.
    assert_eq!(
        [
            tags::TDX_COLLATERAL,
            tags::GPU_EVIDENCE,
            tags::RELEASE_MANIFEST,
            tags::AMD_CRL
        ],
        [0x0001, 0x0002, 0x0003, 0x0004]
    );
}

#[test]
fn round_trips() {
    let mut variants = vec![sample()];
    let mut b = sample();
    b.ask = None;
    b.ark = None;
    b.extras.clear();
    b.platform = Platform::Tdx;
    variants.push(b);
    let mut b = sample();
    b.ask = Some(vec![]);
    b.platform = Platform::SevSnp;
    variants.push(b);
    let mut b = sample();
    b.report = vec![7; MAX_FIELD_LEN];
    b.extras = (0..MAX_EXTRAS as u16)
        .map(|tag| Extra {
            tag,
            value: vec![tag as u8],
        })
        .collect();
    variants.push(b);
    for b in variants {
        b.check_limits().unwrap();
        assert_eq!(EvidenceBundle::decode(&b.encode()).unwrap(), b);
    }
}

#[test]
fn rejects_every_truncation() {
    let enc = sample().encode();
    for len in 0..enc.len() {
        assert_eq!(
            code(EvidenceBundle::decode(&enc[..len])),
            "MALFORMED_EVIDENCE",
            "len {len}"
        );
    }
}

#[test]
fn rejects_trailing_bytes() {
    let mut enc = sample().encode();
    enc.push(0);
    assert_eq!(code(EvidenceBundle::decode(&enc)), "MALFORMED_EVIDENCE");
}

#[test]
fn rejects_bad_magic_version_platform_flags() {
    let enc = sample().encode();
    let mut bad = enc.clone();
    bad[0] = b'X';
    assert_eq!(code(EvidenceBundle::decode(&bad)), "MALFORMED_EVIDENCE");
    for v in [0u8, 2, 255] {
        let mut bad = enc.clone();
        bad[4] = v;
        assert_eq!(code(EvidenceBundle::decode(&bad)), "UNSUPPORTED_VERSION");
    }
    for p in [0u8, 4, 255] {
        let mut bad = enc.clone();
        bad[5] = p;
        assert_eq!(code(EvidenceBundle::decode(&bad)), "MALFORMED_EVIDENCE");
    }
    // flags byte follows the report (4+10) and vcek (4+3) fields.
    let flags_at = 6 + 14 + 7;
    assert_eq!(enc[flags_at], 0b11);
    let mut bad = enc.clone();
    bad[flags_at] = 0b111;
    assert_eq!(code(EvidenceBundle::decode(&bad)), "MALFORMED_EVIDENCE");
}

#[test]
fn rejects_oversized_field_and_too_many_extras() {
    let mut b = sample();
    b.vcek = vec![0; MAX_FIELD_LEN + 1];
    assert_eq!(b.check_limits().unwrap_err().code(), "MALFORMED_EVIDENCE");
    assert_eq!(
        code(EvidenceBundle::decode(&b.encode())),
        "MALFORMED_EVIDENCE"
    );

    // A huge declared length is rejected before anything is allocated or read.
    let mut enc = b"SOTE\x01\x01".to_vec();
    enc.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(code(EvidenceBundle::decode(&enc)), "MALFORMED_EVIDENCE");

    let mut b = sample();
    b.extras = (0..=MAX_EXTRAS as u16)
        .map(|tag| Extra { tag, value: vec![] })
        .collect();
    assert_eq!(b.check_limits().unwrap_err().code(), "MALFORMED_EVIDENCE");
    assert_eq!(
        code(EvidenceBundle::decode(&b.encode())),
        "MALFORMED_EVIDENCE"
    );
}

fn arb_bundle() -> impl Strategy<Value = EvidenceBundle> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
    (
        prop_oneof![
            Just(Platform::SimulatedSnp),
            Just(Platform::SevSnp),
            Just(Platform::Tdx)
        ],
        bytes(),
        bytes(),
        proptest::option::of(bytes()),
        proptest::option::of(bytes()),
        proptest::collection::vec((any::<u16>(), bytes()), 0..4),
    )
        .prop_map(
            |(platform, report, vcek, ask, ark, extras)| EvidenceBundle {
                platform,
                report,
                vcek,
                ask,
                ark,
                extras: extras
                    .into_iter()
                    .map(|(tag, value)| Extra { tag, value })
                    .collect(),
            },
        )
}

proptest! {
    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = EvidenceBundle::decode(&data);
    }

    #[test]
    fn decode_with_valid_prefix_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut data = b"SOTE\x01\x01".to_vec();
        data.extend_from_slice(&tail);
        if let Ok(b) = EvidenceBundle::decode(&data) {
            prop_assert_eq!(b.encode(), data);
        }
    }

    #[test]
    fn encode_decode_round_trip(b in arb_bundle()) {
        prop_assert_eq!(EvidenceBundle::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn snp_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = snp::parse(&data);
    }

    #[test]
    fn snp_parse_full_length_round_trips(
        data in proptest::collection::vec(any::<u8>(), snp::REPORT_LEN),
        version in 2u32..=5,
    ) {
        let mut data = data;
        data[..4].copy_from_slice(&version.to_le_bytes());
        let r = snp::parse(&data).unwrap();
        prop_assert_eq!(r.to_bytes(), data);
    }
}
