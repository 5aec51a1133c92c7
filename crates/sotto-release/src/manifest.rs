//! The release manifest: what a release is, in one canonical text document.
//!
//! ```text
//! sotto-release-manifest/v1
//! version 0.1.0
//! source-commit 94aca28c…(40 or 64 lowercase hex)
//! enclave-sha256 <64 hex>
//! model-name stories260K
//! model-weights-sha256 <64 hex>
//! model-tokenizer-sha256 <64 hex>
//! measurement simulated <96 hex>
//! measurement snp <96 hex>
//! measurement tdx mrtd=<96 hex> rtmr0=<96 hex> rtmr2=<96 hex>
//! min-tcb bl=3,tee=0,snp=8,ucode=115
//! tdx-tcb-status UpToDate,SWHardeningNeeded
//! ```
//!
//! Lines appear in exactly this order, each key once except `measurement` (one or more,
//! sorted by encoding, no duplicates); `min-tcb` and `tdx-tcb-status` are optional. Hex is
//! lowercase, every line ends with `\n`, nothing else is allowed (no blank lines, no
//! trailing spaces, no comments). The parser accepts exactly the documents the encoder
//! produces, so one manifest has one encoding and its digest identifies it: a log entry,
//! a signature and a client all talk about the same bytes.

use core::fmt::Write as _;

use sha2::{Digest, Sha384};
use sotto_attest::snp::TcbParts;
use sotto_attest::tdx::TcbStatus;

use crate::ReleaseError;

/// First line of every manifest (format and version).
pub const HEADER: &str = "sotto-release-manifest/v1";

/// Largest encoded manifest accepted, in bytes.
pub const MAX_MANIFEST_LEN: usize = 16 * 1024;

/// Most `measurement` lines in one manifest.
pub const MAX_MEASUREMENTS: usize = 32;

/// A release: the enclave build, the model it serves, the measurements a genuine launch of
/// it produces on each platform, and the minimum platform policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Release version: 1–64 characters of `[A-Za-z0-9._+-]`.
    pub version: String,
    /// Source commit the enclave was built from: 40 (SHA-1) or 64 (SHA-256) lowercase hex
    /// characters.
    pub source_commit: String,
    /// SHA-256 of the enclave binary (the reproducible build's output).
    pub enclave_sha256: [u8; 32],
    /// The model this release serves.
    pub model: ModelRef,
    /// Launch measurements of this release, at least one. A platform's evidence matches
    /// if its measurement equals any entry of its kind (an SNP launch digest depends on
    /// the vCPU count and type, so one release can have several).
    pub measurements: Vec<Measurement>,
    /// SEV-SNP minimum reported TCB, if the release requires one.
    pub min_tcb: Option<TcbParts>,
    /// Intel TDX TCB statuses the release accepts; empty means the verifier's default
    /// (UpToDate only). A client intersects this with its own allow-list.
    pub tdx_tcb_statuses: Vec<TcbStatus>,
}

/// The model a release serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// Model id as served in `/v1/models`: 1–64 characters of `[A-Za-z0-9._+-]`.
    pub name: String,
    /// SHA-256 of the weights file.
    pub weights_sha256: [u8; 32],
    /// SHA-256 of the tokenizer file.
    pub tokenizer_sha256: [u8; 32],
}

/// An expected launch measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measurement {
    /// The simulated TEE's measurement: [`simulated_measurement`] of this release's
    /// enclave binary and model. Development only.
    Simulated([u8; 48]),
    /// AMD SEV-SNP launch digest (report MEASUREMENT).
    Snp([u8; 48]),
    /// Intel TDX MRTD and, where pinned, RTMR0–3.
    Tdx {
        /// MRTD.
        mrtd: [u8; 48],
        /// RTMR0..RTMR3; `None` leaves that register unpinned.
        rtmrs: [Option<[u8; 48]>; 4],
    },
}

impl Measurement {
    fn encode(&self) -> String {
        match self {
            Measurement::Simulated(m) => format!("measurement simulated {}", hex::encode(m)),
            Measurement::Snp(m) => format!("measurement snp {}", hex::encode(m)),
            Measurement::Tdx { mrtd, rtmrs } => {
                let mut s = format!("measurement tdx mrtd={}", hex::encode(mrtd));
                for (i, r) in rtmrs.iter().enumerate() {
                    if let Some(r) = r {
                        // Writing to a String cannot fail.
                        let _ = write!(s, " rtmr{i}={}", hex::encode(r));
                    }
                }
                s
            }
        }
    }

    fn parse(rest: &str, line: usize) -> Result<Self, ReleaseError> {
        let bad = |why: &str| ReleaseError::malformed(line, why);
        let (kind, value) = rest
            .split_once(' ')
            .ok_or_else(|| bad("expected `measurement KIND VALUE`"))?;
        match kind {
            "simulated" => Ok(Measurement::Simulated(hex_array(value, line)?)),
            "snp" => Ok(Measurement::Snp(hex_array(value, line)?)),
            "tdx" => {
                let mut parts = value.split(' ');
                let mrtd = parts
                    .next()
                    .and_then(|p| p.strip_prefix("mrtd="))
                    .ok_or_else(|| bad("a tdx measurement starts with mrtd=HEX"))?;
                let mrtd = hex_array(mrtd, line)?;
                let mut rtmrs = [None; 4];
                let mut last: Option<usize> = None;
                for p in parts {
                    let (k, v) = p.split_once('=').ok_or_else(|| bad("expected rtmrN=HEX"))?;
                    let i = match k {
                        "rtmr0" => 0,
                        "rtmr1" => 1,
                        "rtmr2" => 2,
                        "rtmr3" => 3,
                        _ => return Err(bad("unknown tdx register (rtmr0..rtmr3)")),
                    };
                    if last.is_some_and(|l| l >= i) {
                        return Err(bad("rtmr registers must be in increasing order, once each"));
                    }
                    last = Some(i);
                    rtmrs[i] = Some(hex_array(v, line)?);
                }
                Ok(Measurement::Tdx { mrtd, rtmrs })
            }
            _ => Err(bad("unknown measurement kind (simulated, snp, tdx)")),
        }
    }
}

/// The simulated TEE's launch measurement of an enclave binary serving a model:
/// SHA-384("sotto-sim-measurement-v1\0" ‖ SHA-256(binary) ‖ SHA-256(weights) ‖
/// SHA-256(tokenizer)). It changes when the binary or the model changes, as a real launch
/// measurement of a VM image with the model baked in would.
pub fn simulated_measurement(
    enclave_sha256: &[u8; 32],
    weights_sha256: &[u8; 32],
    tokenizer_sha256: &[u8; 32],
) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(b"sotto-sim-measurement-v1\0");
    h.update(enclave_sha256);
    h.update(weights_sha256);
    h.update(tokenizer_sha256);
    h.finalize().into()
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

fn valid_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_array<const N: usize>(s: &str, line: usize) -> Result<[u8; N], ReleaseError> {
    // Lowercase only: one encoding per value.
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ReleaseError::malformed(
            line,
            &format!("expected {} lowercase hex characters", 2 * N),
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ReleaseError::malformed(line, "bad hex"))?;
    Ok(out)
}

fn encode_min_tcb(t: &TcbParts) -> String {
    let mut s = format!(
        "bl={},tee={},snp={},ucode={}",
        t.bootloader, t.tee, t.snp, t.microcode
    );
    if let Some(f) = t.fmc {
        let _ = write!(s, ",fmc={f}");
    }
    s
}

fn parse_min_tcb(s: &str, line: usize) -> Result<TcbParts, ReleaseError> {
    let bad = |why: &str| ReleaseError::malformed(line, why);
    let mut parts = s.split(',');
    let mut next = |key: &str| -> Result<u8, ReleaseError> {
        let p = parts
            .next()
            .ok_or_else(|| bad("min-tcb is bl=N,tee=N,snp=N,ucode=N[,fmc=N]"))?;
        let v = p
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(|| bad("min-tcb is bl=N,tee=N,snp=N,ucode=N[,fmc=N]"))?;
        canonical_u8(v).ok_or_else(|| bad("min-tcb values are decimal 0..=255, no leading zeros"))
    };
    let bootloader = next("bl")?;
    let tee = next("tee")?;
    let snp = next("snp")?;
    let microcode = next("ucode")?;
    let fmc = match parts.next() {
        None => None,
        Some(p) => Some(
            p.strip_prefix("fmc=")
                .and_then(canonical_u8)
                .ok_or_else(|| bad("min-tcb's optional last component is fmc=N"))?,
        ),
    };
    if parts.next().is_some() {
        return Err(bad("min-tcb has too many components"));
    }
    Ok(TcbParts {
        fmc,
        bootloader,
        tee,
        snp,
        microcode,
    })
}

fn canonical_u8(s: &str) -> Option<u8> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

impl Manifest {
    /// The canonical encoding. Fails if a field is out of its allowed range (so an invalid
    /// manifest can never be signed).
    pub fn encode(&self) -> Result<String, ReleaseError> {
        let invalid = |why: &str| ReleaseError::Invalid(why.into());
        if !valid_name(&self.version) {
            return Err(invalid(
                "version must be 1-64 characters of [A-Za-z0-9._+-]",
            ));
        }
        if !valid_commit(&self.source_commit) {
            return Err(invalid(
                "source commit must be 40 or 64 lowercase hex characters",
            ));
        }
        if !valid_name(&self.model.name) {
            return Err(invalid(
                "model name must be 1-64 characters of [A-Za-z0-9._+-]",
            ));
        }
        if self.measurements.is_empty() {
            return Err(invalid("a release needs at least one measurement"));
        }
        if self.measurements.len() > MAX_MEASUREMENTS {
            return Err(invalid("too many measurements"));
        }
        let mut ms: Vec<String> = self.measurements.iter().map(Measurement::encode).collect();
        ms.sort();
        if ms.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("duplicate measurement"));
        }
        let mut statuses: Vec<TcbStatus> = self.tdx_tcb_statuses.clone();
        statuses.sort_by_key(|s| TcbStatus::ALL.iter().position(|a| a == s));
        statuses.dedup();
        if statuses.contains(&TcbStatus::Revoked) {
            return Err(invalid("the Revoked TCB status can never be allowed"));
        }

        let mut out = String::new();
        let _ = writeln!(out, "{HEADER}");
        let _ = writeln!(out, "version {}", self.version);
        let _ = writeln!(out, "source-commit {}", self.source_commit);
        let _ = writeln!(out, "enclave-sha256 {}", hex::encode(self.enclave_sha256));
        let _ = writeln!(out, "model-name {}", self.model.name);
        let _ = writeln!(
            out,
            "model-weights-sha256 {}",
            hex::encode(self.model.weights_sha256)
        );
        let _ = writeln!(
            out,
            "model-tokenizer-sha256 {}",
            hex::encode(self.model.tokenizer_sha256)
        );
        for m in ms {
            let _ = writeln!(out, "{m}");
        }
        if let Some(t) = &self.min_tcb {
            let _ = writeln!(out, "min-tcb {}", encode_min_tcb(t));
        }
        if !statuses.is_empty() {
            let names: Vec<&str> = statuses.iter().map(|s| s.name()).collect();
            let _ = writeln!(out, "tdx-tcb-status {}", names.join(","));
        }
        if out.len() > MAX_MANIFEST_LEN {
            return Err(invalid("manifest too large"));
        }
        Ok(out)
    }

    /// Parses a manifest, accepting only the canonical encoding.
    pub fn parse(text: &[u8]) -> Result<Manifest, ReleaseError> {
        if text.len() > MAX_MANIFEST_LEN {
            return Err(ReleaseError::malformed(0, "manifest too large"));
        }
        let text = core::str::from_utf8(text)
            .map_err(|_| ReleaseError::malformed(0, "manifest is not UTF-8"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| ReleaseError::malformed(0, "manifest must end with a newline"))?;
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        if lines.next().map(|(_, l)| l) != Some(HEADER) {
            return Err(ReleaseError::malformed(
                1,
                &format!("expected header `{HEADER}`"),
            ));
        }
        let mut take = |key: &str| -> Result<(usize, String), ReleaseError> {
            let (n, l) = lines
                .next()
                .ok_or_else(|| ReleaseError::malformed(0, &format!("missing `{key}` line")))?;
            let v = l
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or_else(|| ReleaseError::malformed(n, &format!("expected `{key} …`")))?;
            Ok((n, v.to_string()))
        };
        let (n, version) = take("version")?;
        if !valid_name(&version) {
            return Err(ReleaseError::malformed(
                n,
                "version must be 1-64 characters of [A-Za-z0-9._+-]",
            ));
        }
        let (n, source_commit) = take("source-commit")?;
        if !valid_commit(&source_commit) {
            return Err(ReleaseError::malformed(
                n,
                "source commit must be 40 or 64 lowercase hex characters",
            ));
        }
        let (n, v) = take("enclave-sha256")?;
        let enclave_sha256 = hex_array(&v, n)?;
        let (n, name) = take("model-name")?;
        if !valid_name(&name) {
            return Err(ReleaseError::malformed(
                n,
                "model name must be 1-64 characters of [A-Za-z0-9._+-]",
            ));
        }
        let (n, v) = take("model-weights-sha256")?;
        let weights_sha256 = hex_array(&v, n)?;
        let (n, v) = take("model-tokenizer-sha256")?;
        let tokenizer_sha256 = hex_array(&v, n)?;

        let mut measurements = Vec::new();
        let mut min_tcb = None;
        let mut tdx_tcb_statuses = Vec::new();
        // Optional trailing sections in fixed order: measurements (1+), min-tcb, statuses.
        let mut stage = 0u8;
        for (n, l) in lines {
            if let Some(rest) = l.strip_prefix("measurement ") {
                if stage > 0 {
                    return Err(ReleaseError::malformed(n, "measurement lines come first"));
                }
                if measurements.len() == MAX_MEASUREMENTS {
                    return Err(ReleaseError::malformed(n, "too many measurements"));
                }
                measurements.push(Measurement::parse(rest, n)?);
            } else if let Some(rest) = l.strip_prefix("min-tcb ") {
                if stage >= 1 || measurements.is_empty() {
                    return Err(ReleaseError::malformed(n, "min-tcb out of order"));
                }
                stage = 1;
                min_tcb = Some(parse_min_tcb(rest, n)?);
            } else if let Some(rest) = l.strip_prefix("tdx-tcb-status ") {
                if stage >= 2 || measurements.is_empty() {
                    return Err(ReleaseError::malformed(n, "tdx-tcb-status out of order"));
                }
                stage = 2;
                for name in rest.split(',') {
                    let s = TcbStatus::from_name(name)
                        .ok_or_else(|| ReleaseError::malformed(n, "unknown TDX TCB status"))?;
                    tdx_tcb_statuses.push(s);
                }
            } else {
                return Err(ReleaseError::malformed(n, "unexpected line"));
            }
        }
        let m = Manifest {
            version,
            source_commit,
            enclave_sha256,
            model: ModelRef {
                name,
                weights_sha256,
                tokenizer_sha256,
            },
            measurements,
            min_tcb,
            tdx_tcb_statuses,
        };
        // Canonical form: order, duplicates, an empty measurement list, Revoked and every
        // other rule are the encoder's; re-encoding must give back the same bytes.
        let again = m
            .encode()
            .map_err(|e| ReleaseError::malformed(0, &format!("not canonical: {e}")))?;
        if again != text {
            return Err(ReleaseError::malformed(
                0,
                "not in canonical form (order, duplicates or formatting)",
            ));
        }
        Ok(m)
    }

    /// The SHA-256 of the canonical encoding (how tools and logs name a manifest).
    pub fn digest(&self) -> Result<[u8; 32], ReleaseError> {
        Ok(sha2::Sha256::digest(self.encode()?.as_bytes()).into())
    }
}
