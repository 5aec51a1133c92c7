//! `sotto attest verify`: an auditor's tool that runs the client's verifier over files.
//!
//! Exit codes: 0 accepted, 10 rejected (code printed, and in the JSON), 30 malformed input
//! (unreadable file, bad hex, not a report), 1 internal error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sotto_attest::{AttestError, EvidenceBundle, Platform, Policy, TrustRoots, Verified, snp, tdx};

use crate::CliError;

/// Exit code: the evidence was rejected.
pub const EXIT_REJECTED: u8 = 10;
/// Exit code: an input could not be read or parsed.
pub const EXIT_MALFORMED: u8 = 30;

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Verify a SEV-SNP report or a TDX quote from files, offline, against a policy.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Raw SEV-SNP ATTESTATION_REPORT (1184 bytes).
    #[arg(long, conflicts_with_all = ["tdx_quote", "collateral"], requires = "vcek")]
    pub snp_report: Option<PathBuf>,
    /// The VCEK (or VLEK) certificate, DER or PEM.
    #[arg(long)]
    pub vcek: Option<PathBuf>,
    /// ASK (or ASVK for a VLEK) certificate, PEM or DER; a PEM holding ASK then ARK also
    /// fills --ark. Only accepted if it chains to AMD's built-in root.
    #[arg(long)]
    pub ask: Option<PathBuf>,
    /// ARK certificate, PEM or DER (informational: AMD's built-in roots are what is trusted).
    #[arg(long)]
    pub ark: Option<PathBuf>,
    /// AMD's CRL for the report's generation, DER or PEM, as served by AMD's KDS
    /// (https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/crl, /vlek/v1/… for a VLEK).
    /// Verified under the ARK; a revoked ASK/ASVK is CRL_REVOKED.
    #[arg(long, conflicts_with = "tdx_quote")]
    pub crl: Option<PathBuf>,
    /// Reject SEV-SNP evidence without an AMD CRL (CRL_MISSING).
    #[arg(long)]
    pub require_crl: bool,
    /// Raw Intel TDX quote (version 4 or 5).
    #[arg(long, requires = "collateral")]
    pub tdx_quote: Option<PathBuf>,
    /// TDX collateral JSON (PCK CRL, TCB info, QE identity and their chains).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verification time, Unix seconds (default: now).
    #[arg(long)]
    pub at: Option<u64>,
    /// Required launch measurement (SNP MEASUREMENT; TDX MRTD), hex.
    #[arg(long)]
    pub expect_measurement: Option<String>,
    /// Required REPORT_DATA / REPORTDATA, hex (64 bytes).
    #[arg(long)]
    pub expect_report_data: Option<String>,
    /// Required HOST_DATA, hex (SNP).
    #[arg(long)]
    pub expect_host_data: Option<String>,
    /// Required ID_KEY_DIGEST, hex (SNP).
    #[arg(long)]
    pub expect_id_key_digest: Option<String>,
    /// Required AUTHOR_KEY_DIGEST, hex (SNP).
    #[arg(long)]
    pub expect_author_key_digest: Option<String>,
    /// Required MRTD, hex (TDX).
    #[arg(long)]
    pub expect_mrtd: Option<String>,
    /// Required RTMR, as N=HEX with N in 0..=3 (TDX; repeatable).
    #[arg(long)]
    pub expect_rtmr: Vec<String>,
    /// Required MRCONFIGID, hex (TDX).
    #[arg(long)]
    pub expect_mrconfigid: Option<String>,
    /// Minimum TCB (SNP): bl=N,tee=N,snp=N,ucode=N[,fmc=N]; omitted components are 0.
    #[arg(long)]
    pub min_tcb: Option<String>,
    /// TDX TCB statuses to accept, comma-separated (default: UpToDate).
    #[arg(long)]
    pub allow_tcb_status: Option<String>,
    /// Accept a guest/TD that allows debugging (never for production).
    #[arg(long)]
    pub allow_debug: bool,
    /// Accept an SNP guest policy that allows a migration agent.
    #[arg(long)]
    pub allow_migration_agent: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// An input problem: exit code 30.
#[derive(Debug)]
pub struct Malformed(pub String);

fn read(path: &Path) -> Result<Vec<u8>, Malformed> {
    std::fs::read(path).map_err(|e| Malformed(format!("cannot read {}: {e}", path.display())))
}

fn hex_arg<const N: usize>(flag: &str, s: &str) -> Result<[u8; N], Malformed> {
    let v = hex::decode(s.trim()).map_err(|_| Malformed(format!("{flag}: not hex")))?;
    v.try_into()
        .map_err(|_| Malformed(format!("{flag}: expected {N} bytes of hex")))
}

fn opt_hex<const N: usize>(flag: &str, s: &Option<String>) -> Result<Option<[u8; N]>, Malformed> {
    s.as_deref().map(|s| hex_arg::<N>(flag, s)).transpose()
}

/// DER certificates from a file that holds DER or one or more PEM certificates.
fn certs(path: &Path) -> Result<Vec<Vec<u8>>, Malformed> {
    sotto_attester::load_certificates(&read(path)?)
        .map_err(|e| Malformed(format!("{}: {e}", path.display())))
}

/// Parses `bl=N,tee=N,snp=N,ucode=N[,fmc=N]` (omitted components are 0).
pub fn parse_min_tcb(s: &str) -> Result<snp::TcbParts, Malformed> {
    let mut t = snp::TcbParts {
        fmc: None,
        bootloader: 0,
        tee: 0,
        snp: 0,
        microcode: 0,
    };
    let mut seen: Vec<&str> = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Malformed(format!("--min-tcb: {part:?} is not NAME=N")))?;
        // A repeated component is a typo, not "the last one wins".
        if seen.contains(&k.trim()) {
            return Err(Malformed(format!(
                "--min-tcb: component {:?} given twice",
                k.trim()
            )));
        }
        seen.push(k.trim());
        let n: u8 = v
            .trim()
            .parse()
            .map_err(|_| Malformed(format!("--min-tcb: {v:?} is not 0..=255")))?;
        match k.trim() {
            "bl" => t.bootloader = n,
            "tee" => t.tee = n,
            "snp" => t.snp = n,
            "ucode" => t.microcode = n,
            "fmc" => t.fmc = Some(n),
            other => {
                return Err(Malformed(format!(
                    "--min-tcb: unknown component {other:?} (bl, tee, snp, ucode, fmc)"
                )));
            }
        }
    }
    Ok(t)
}

/// Parses a comma-separated list of TDX TCB status names.
pub fn parse_statuses(list: &str) -> Result<Vec<tdx::TcbStatus>, Malformed> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            tdx::TcbStatus::from_name(s.trim())
                .ok_or_else(|| Malformed(format!("--allow-tcb-status: unknown status {s:?}")))
        })
        .collect()
}

fn policy(a: &VerifyArgs) -> Result<Policy, Malformed> {
    let mut p = Policy::new(TrustRoots::default(), [0; 64]);
    p.expected_report_data = opt_hex::<64>("--expect-report-data", &a.expect_report_data)?;
    p.expected_measurement = opt_hex::<48>("--expect-measurement", &a.expect_measurement)?;
    p.expected_host_data = opt_hex::<32>("--expect-host-data", &a.expect_host_data)?;
    p.expected_id_key_digest = opt_hex::<48>("--expect-id-key-digest", &a.expect_id_key_digest)?;
    p.expected_author_key_digest =
        opt_hex::<48>("--expect-author-key-digest", &a.expect_author_key_digest)?;
    p.min_tcb = a.min_tcb.as_deref().map(parse_min_tcb).transpose()?;
    p.allow_debug = a.allow_debug;
    p.allow_migration_agent = a.allow_migration_agent;
    p.require_amd_crl = a.require_crl;
    p.tdx.expected_mrtd = opt_hex::<48>("--expect-mrtd", &a.expect_mrtd)?;
    p.tdx.expected_mrconfigid = opt_hex::<48>("--expect-mrconfigid", &a.expect_mrconfigid)?;
    for r in &a.expect_rtmr {
        let (n, h) = r
            .split_once('=')
            .ok_or_else(|| Malformed(format!("--expect-rtmr: {r:?} is not N=HEX")))?;
        let i: usize = n
            .parse()
            .ok()
            .filter(|i| *i < 4)
            .ok_or_else(|| Malformed("--expect-rtmr: N must be 0..=3".into()))?;
        p.tdx.expected_rtmrs[i] = Some(hex_arg::<48>("--expect-rtmr", h)?);
    }
    if let Some(list) = &a.allow_tcb_status {
        p.tdx.allowed_tcb_statuses = list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                tdx::TcbStatus::from_name(s.trim())
                    .ok_or_else(|| Malformed(format!("--allow-tcb-status: unknown status {s:?}")))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(p)
}

/// Prints to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn out(line: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
}

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn tcb_json(t: &snp::TcbVersion, g: snp::Generation) -> Value {
    match t.decode(g) {
        Some(p) => {
            json!({ "raw": format!("{:016x}", t.raw), "bl": p.bootloader, "tee": p.tee, "snp": p.snp, "ucode": p.microcode, "fmc": p.fmc })
        }
        None => json!({ "raw": format!("{:016x}", t.raw) }),
    }
}

fn snp_fields(r: &snp::Report) -> Value {
    let g = r.generation();
    json!({
        "version": r.version,
        "generation": format!("{g:?}"),
        "cpuid": r.cpuid().map(|(f, m, s)| format!("{f:02x} {m:02x} {s:02x}")),
        "measurement": h(&r.measurement),
        "report_data": h(&r.report_data),
        "host_data": h(&r.host_data),
        "id_key_digest": h(&r.id_key_digest),
        "author_key_digest": h(&r.author_key_digest),
        "chip_id": h(&r.chip_id),
        "vmpl": r.vmpl,
        "guest_svn": r.guest_svn,
        "policy": { "raw": format!("{:#x}", r.policy), "debug": r.debug_allowed(), "migration_agent": r.migration_agent_allowed() },
        "signing_key": r.signing_key_kind().map(|k| format!("{k:?}")),
        "platform_info": format!("{:#x}", r.platform_info),
        "tcb": {
            "reported": tcb_json(&r.reported_tcb, g),
            "current": tcb_json(&r.current_tcb, g),
            "committed": tcb_json(&r.committed_tcb, g),
            "launch": tcb_json(&r.launch_tcb, g),
        },
    })
}

fn tdx_fields(q: &tdx::Quote) -> Value {
    let r = &q.report;
    json!({
        "version": q.version,
        "body_type": q.body_type,
        "mrtd": h(&r.mr_td),
        "rtmrs": r.rtmrs.iter().map(|x| h(x)).collect::<Vec<_>>(),
        "mrconfigid": h(&r.mr_config_id),
        "mrowner": h(&r.mr_owner),
        "report_data": h(&r.report_data),
        "td_attributes": { "raw": format!("{:#018x}", r.td_attributes), "debug": r.debug() },
        "tee_tcb_svn": h(&r.tee_tcb_svn),
        "mrseam": h(&r.mr_seam),
    })
}

struct Outcome {
    platform: &'static str,
    decoded: Value,
    result: Result<Verified, AttestError>,
}

fn run(a: &VerifyArgs, now: u64) -> Result<Outcome, Malformed> {
    let policy = policy(a)?;
    if let Some(report_path) = &a.snp_report {
        let report = read(report_path)?;
        let parsed = snp::parse(&report).map_err(|e| {
            Malformed(format!(
                "{}: not an SEV-SNP report: {e}",
                report_path.display()
            ))
        })?;
        let vcek_path = a
            .vcek
            .as_ref()
            .ok_or_else(|| Malformed("--snp-report needs --vcek".into()))?;
        let vcek = certs(vcek_path)?.remove(0);
        let (mut ask, mut ark) = (None, None);
        if let Some(p) = &a.ask {
            let mut c = certs(p)?.into_iter();
            ask = c.next();
            ark = c.next();
        }
        if let Some(p) = &a.ark {
            ark = certs(p)?.into_iter().next();
        }
        let mut extras = vec![];
        if let Some(p) = &a.crl {
            let der = sotto_attest::amd::crl_der_from_der_or_pem(&read(p)?)
                .map_err(|e| Malformed(format!("{}: {e}", p.display())))?;
            extras.push(sotto_attest::Extra {
                tag: sotto_attest::tags::AMD_CRL,
                value: der,
            });
        }
        let bundle = EvidenceBundle {
            platform: Platform::SevSnp,
            report,
            vcek,
            ask,
            ark,
            extras,
        };
        let result = sotto_attest::verify(&bundle, &policy, now);
        return Ok(Outcome {
            platform: "sev-snp",
            decoded: snp_fields(&parsed),
            result,
        });
    }
    if let Some(quote_path) = &a.tdx_quote {
        let quote = read(quote_path)?;
        let parsed = tdx::parse_quote(&quote)
            .map_err(|e| Malformed(format!("{}: not a TDX quote: {e}", quote_path.display())))?;
        let collateral_path = a
            .collateral
            .as_ref()
            .ok_or_else(|| Malformed("--tdx-quote needs --collateral".into()))?;
        let collateral = read(collateral_path)?;
        if serde_json::from_slice::<Value>(&collateral).is_err() {
            return Err(Malformed(format!(
                "{}: collateral is not JSON",
                collateral_path.display()
            )));
        }
        let bundle = EvidenceBundle {
            platform: Platform::Tdx,
            report: quote,
            vcek: vec![],
            ask: None,
            ark: None,
            extras: vec![sotto_attest::Extra {
                tag: sotto_attest::tags::TDX_COLLATERAL,
                value: collateral,
            }],
        };
        let result = sotto_attest::verify(&bundle, &policy, now);
        return Ok(Outcome {
            platform: "tdx",
            decoded: tdx_fields(&parsed),
            result,
        });
    }
    Err(Malformed(
        "give --snp-report FILE --vcek FILE, or --tdx-quote FILE --collateral FILE".into(),
    ))
}

pub fn run_command(cmd: AttestCommand) -> Result<ExitCode, CliError> {
    let AttestCommand::Verify(a) = cmd;
    let now = a.at.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let outcome = match run(&a, now) {
        Ok(o) => o,
        Err(Malformed(msg)) => {
            if a.json {
                out(&json!({ "accepted": false, "malformed_input": msg }).to_string());
            } else {
                eprintln!("error: {msg}");
            }
            return Ok(ExitCode::from(EXIT_MALFORMED));
        }
    };
    let (code, rejection, steps, extra, crl) = match &outcome.result {
        Ok(v) => {
            let steps: Vec<Value> = v
                .steps
                .iter()
                .map(|s| json!({ "name": s.name, "result": s.result }))
                .collect();
            let extra = v.tdx.as_ref().map(|t| {
                json!({ "tcb_status": t.tcb_status.name(), "advisory_ids": t.advisory_ids, "fmspc": h(&t.fmspc),
                        "collateral_expires": t.collateral_expires })
            });
            let crl = v.amd_crl.as_ref().map(|c| {
                json!({ "issuer": c.issuer, "number": c.number, "this_update": c.this_update,
                        "next_update": c.next_update, "revoked_count": c.revoked_count,
                        "not_revoked": c.intermediate })
            });
            (0u8, Value::Null, steps, extra, crl)
        }
        Err(e) => {
            // A report that parsed but whose certificates or collateral are garbage is still
            // malformed input, not a verdict about the platform.
            let code = if e.code() == "MALFORMED_EVIDENCE" {
                EXIT_MALFORMED
            } else {
                EXIT_REJECTED
            };
            (
                code,
                json!({ "code": e.code(), "message": e.to_string() }),
                vec![],
                None,
                None,
            )
        }
    };
    if a.json {
        let mut report = json!({
            "accepted": code == 0,
            "rejection": rejection,
            "platform": outcome.platform,
            "verified_at": now,
            "decoded": outcome.decoded,
            "checks": steps,
        });
        if let Some(x) = extra {
            report["tdx"] = x;
        }
        if let Some(c) = crl {
            report["amd_crl"] = c;
        }
        out(&serde_json::to_string_pretty(&report)?);
    } else {
        match &outcome.result {
            Ok(v) => {
                for s in &v.steps {
                    out(&format!("PASS  {:<20} {}", s.name, s.result));
                }
                out(&format!(
                    "ACCEPTED ({} evidence, verified at {now})",
                    outcome.platform
                ));
            }
            Err(e) => {
                out(&format!("REJECTED  {}  {e}", e.code()));
            }
        }
    }
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_tcb_parses_and_refuses_duplicates() {
        let t = parse_min_tcb("bl=3,tee=0,snp=8,ucode=115,fmc=2").unwrap();
        assert_eq!(
            (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
            (3, 0, 8, 115, Some(2))
        );
        for bad in ["bl=3,bl=4", "snp=1,snp=1", "bl=256", "bl", "xyz=1"] {
            assert!(parse_min_tcb(bad).is_err(), "{bad}");
        }
        assert!(
            parse_min_tcb("bl=3,bl=4")
                .unwrap_err()
                .0
                .contains("given twice")
        );
    }
}
