//! `sotto attest verify` over the real evidence in ../shared/attestation: every file gets
//! its README verdict, with the documented exit codes and JSON.

mod common;

use common::*;

fn att(p: &str) -> String {
    shared().join("attestation").join(p).display().to_string()
}

fn verify(args: &[&str]) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = output(sotto().args(["attest", "verify", "--json"]).args(args));
    let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (code, v, stderr)
}

fn snp(stem: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let report = att(&format!("snp/{stem}.report.bin"));
    let vcek = att(&format!("snp/{stem}.vcek.der"));
    let ask = att("snp/genoa.ask_ark.pem");
    let mut args = vec!["--snp-report", report.as_str(), "--vcek", vcek.as_str()];
    if stem.starts_with("genoa") {
        args.extend(["--ask", ask.as_str()]);
    }
    args.extend(extra);
    verify(&args)
}

/// A time at which every SNP VCEK here is valid.
const SNP_AT: &str = "1780000000";

#[test]
fn snp_files_get_their_readme_verdicts() {
    for stem in ["milan-virtee", "genoa-trustee", "genoa-msft"] {
        let (code, v, err) = snp(stem, &["--at", SNP_AT]);
        assert_eq!(code, 0, "{stem}: {v} {err}");
        assert_eq!(v["accepted"], true);
        assert_eq!(v["platform"], "sev-snp");
        assert!(v["checks"].as_array().unwrap().len() > 5);
    }
    let (code, v, _) = snp("milan-gosevguest", &["--at", SNP_AT]);
    assert_eq!(code, 10);
    assert_eq!(v["accepted"], false);
    assert_eq!(v["rejection"]["code"], "DEBUG_ENABLED");
    assert_eq!(v["decoded"]["policy"]["debug"], true);
    assert!(
        v["decoded"]["report_data"]
            .as_str()
            .unwrap()
            .starts_with("0102030405")
    );
    // The auditor can explicitly allow debug.
    let (code, _, _) = snp("milan-gosevguest", &["--at", SNP_AT, "--allow-debug"]);
    assert_eq!(code, 0);
}

#[test]
fn snp_decoded_fields() {
    let (_, v, _) = snp("genoa-msft", &["--at", SNP_AT]);
    let d = &v["decoded"];
    assert_eq!(d["version"], 3);
    assert_eq!(d["generation"], "Genoa");
    assert_eq!(d["cpuid"], "19 11 01");
    assert_eq!(d["report_data"], "00".repeat(64));
    assert!(d["tcb"]["reported"]["snp"].is_number());
}

#[test]
fn snp_pins_and_policy_reject_with_codes() {
    let (_, v, _) = snp("genoa-msft", &["--at", SNP_AT]);
    let m = v["decoded"]["measurement"].as_str().unwrap().to_string();
    let (code, _, _) = snp("genoa-msft", &["--at", SNP_AT, "--expect-measurement", &m]);
    assert_eq!(code, 0);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--expect-measurement".into(), "11".repeat(48)],
            "MEASUREMENT_MISMATCH",
        ),
        (
            vec!["--expect-report-data".into(), "11".repeat(64)],
            "REPORT_DATA_MISMATCH",
        ),
        (
            vec!["--expect-host-data".into(), "11".repeat(32)],
            "HOST_DATA_MISMATCH",
        ),
        (
            vec!["--expect-id-key-digest".into(), "11".repeat(48)],
            "ID_KEY_DIGEST_MISMATCH",
        ),
        (
            vec!["--expect-author-key-digest".into(), "11".repeat(48)],
            "AUTHOR_KEY_DIGEST_MISMATCH",
        ),
        (
            vec!["--min-tcb".into(), "bl=255,tee=0,snp=0,ucode=0".into()],
            "TCB_BELOW_MINIMUM",
        ),
        (
            vec!["--min-tcb".into(), "ucode=255".into()],
            "TCB_BELOW_MINIMUM",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--at", SNP_AT];
        args.extend(extra.iter().map(String::as_str));
        let (code, v, _) = snp("genoa-msft", &args);
        assert_eq!(code, 10, "{extra:?}");
        assert_eq!(v["rejection"]["code"], want, "{extra:?}");
    }
    // Past the VCEK's NotAfter (2033-02-05).
    let (code, v, _) = snp("genoa-msft", &["--at", "2000000000"]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "CERT_EXPIRED");
    // Another generation's VCEK.
    let report = att("snp/genoa-msft.report.bin");
    let vcek = att("snp/milan-virtee.vcek.der");
    let (code, v, _) = verify(&["--snp-report", &report, "--vcek", &vcek, "--at", SNP_AT]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "CERT_CHAIN_INVALID");
}

#[test]
fn tdx_files_get_their_readme_verdicts() {
    for (stem, at, mrtd, rd) in [
        (
            "v4-dcapqvl",
            "1751371200",
            "91eb2b44d141d4ec",
            "9a9d48e7f6799642",
        ),
        (
            "v5-gotdxguest",
            "1772366400",
            "7348651a34b2d2d3",
            "945eaacf5abc1f71",
        ),
    ] {
        let q = att(&format!("tdx/{stem}.quote.bin"));
        let c = att(&format!("tdx/{stem}.collateral.json"));
        let (code, v, err) = verify(&["--tdx-quote", &q, "--collateral", &c, "--at", at]);
        assert_eq!(code, 0, "{stem}: {v} {err}");
        assert_eq!(v["platform"], "tdx");
        assert_eq!(v["tdx"]["tcb_status"], "UpToDate");
        assert!(v["decoded"]["mrtd"].as_str().unwrap().starts_with(mrtd));
        assert!(
            v["decoded"]["report_data"]
                .as_str()
                .unwrap()
                .starts_with(rd)
        );
    }
    // Collateral expired at 2026-01-01 for the v4 sample.
    let q = att("tdx/v4-dcapqvl.quote.bin");
    let c = att("tdx/v4-dcapqvl.collateral.json");
    let (code, v, _) = verify(&["--tdx-quote", &q, "--collateral", &c, "--at", "1767225600"]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "COLLATERAL_EXPIRED");
    // An allow-list without UpToDate.
    let (code, v, _) = verify(&[
        "--tdx-quote",
        &q,
        "--collateral",
        &c,
        "--at",
        "1751371200",
        "--allow-tcb-status",
        "OutOfDate",
    ]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "TCB_STATUS_NOT_ALLOWED");
    // A pin mismatch.
    let (code, v, _) = verify(&[
        "--tdx-quote",
        &q,
        "--collateral",
        &c,
        "--at",
        "1751371200",
        "--expect-mrtd",
        &"00".repeat(48),
    ]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "MEASUREMENT_MISMATCH");
}

#[test]
fn malformed_inputs_exit_30() {
    let report = att("snp/genoa-msft.report.bin");
    let vcek = att("snp/genoa-msft.vcek.der");
    let model = model_dir().join("tok512.bin").display().to_string();
    // Unreadable file.
    let (code, _, _) = verify(&["--snp-report", "/nonexistent/report.bin", "--vcek", &vcek]);
    assert_eq!(code, 30);
    // Not a report.
    let (code, v, _) = verify(&["--snp-report", &model, "--vcek", &vcek]);
    assert_eq!(code, 30);
    assert!(
        v["malformed_input"]
            .as_str()
            .unwrap()
            .contains("not an SEV-SNP report")
    );
    // Bad hex in a pin.
    let (code, _, _) = verify(&[
        "--snp-report",
        &report,
        "--vcek",
        &vcek,
        "--expect-measurement",
        "xyz",
    ]);
    assert_eq!(code, 30);
    // A certificate file that is not a certificate.
    let (code, _, _) = verify(&["--snp-report", &report, "--vcek", &model, "--at", SNP_AT]);
    assert_eq!(code, 30);
    // A TDX quote that is not one.
    let c = att("tdx/v4-dcapqvl.collateral.json");
    let (code, _, _) = verify(&["--tdx-quote", &report, "--collateral", &c]);
    assert_eq!(code, 30);
    // Nothing to verify.
    let (code, _, _) = verify(&[]);
    assert_eq!(code, 30);
}

/// AMD's real Milan CRL (sotto-attest's test fixture, see its README).
fn milan_crl() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sotto-attest/tests/data/amd/milan-vcek.crl")
        .display()
        .to_string()
}

/// 2026-03-01T12:00Z: inside the Milan CRL's window (2025-05-06 .. 2026-05-12).
const CRL_AT: &str = "1772366400";

#[test]
fn snp_with_amd_crl() {
    let crl = milan_crl();
    // DER, checked under the built-in Milan ARK and reported.
    let (code, v, err) = snp("milan-virtee", &["--at", CRL_AT, "--crl", &crl]);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["amd_crl"]["issuer"], "ARK-Milan");
    assert_eq!(v["amd_crl"]["number"], 6);
    assert_eq!(v["amd_crl"]["not_revoked"], "SEV-Milan");
    let checks = v["checks"].as_array().unwrap();
    let crl_check = checks.iter().find(|c| c["name"] == "crl").unwrap();
    assert!(
        crl_check["result"].as_str().unwrap().contains("ARK-Milan"),
        "{crl_check}"
    );
    // PEM works too, and --require-crl is then satisfied.
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("milan.crl.pem");
    let der = std::fs::read(&crl).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    std::fs::write(
        &pem_path,
        format!(
            "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let pem = pem_path.display().to_string();
    let (code, v, err) = snp(
        "milan-virtee",
        &["--at", CRL_AT, "--crl", &pem, "--require-crl"],
    );
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["amd_crl"]["issuer"], "ARK-Milan");
    // Without a CRL the check says so, and --require-crl rejects.
    let (code, v, _) = snp("milan-virtee", &["--at", CRL_AT]);
    assert_eq!(code, 0);
    assert!(v.get("amd_crl").is_none());
    let (code, v, _) = snp("milan-virtee", &["--at", CRL_AT, "--require-crl"]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "CRL_MISSING");
    // Stale at SNP_AT (after the CRL's nextUpdate), another generation's, not a CRL.
    let (code, v, _) = snp("milan-virtee", &["--at", SNP_AT, "--crl", &crl]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "COLLATERAL_EXPIRED");
    let (code, v, _) = snp("genoa-trustee", &["--at", CRL_AT, "--crl", &crl]);
    assert_eq!(code, 10);
    assert_eq!(v["rejection"]["code"], "COLLATERAL_MISMATCH");
    let vcek = att("snp/milan-virtee.vcek.der");
    let (code, v, _) = snp("milan-virtee", &["--at", CRL_AT, "--crl", &vcek]);
    assert_eq!(code, 30);
    assert!(
        v["malformed_input"]
            .as_str()
            .unwrap()
            .contains("does not parse"),
        "{v}"
    );
}
