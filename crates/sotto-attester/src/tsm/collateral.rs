//! Intel TDX collateral for configfs-tsm bundles: from a file the operator keeps fresh, or
//! from a PCCS (or Intel's PCS) over `http://` or `https://` with a background refresh
//! before it expires.
//!
//! The collateral travels in the bundle as JSON in `dcap-qvl`'s `QuoteCollateralV3` layout
//! (extra tag [`sotto_attest::tags::TDX_COLLATERAL`]), re-serialised compactly, without a
//! PCK certificate chain (the quote carries it).
//!
//! Transport and TLS trust anchors: [`super::pccs_http`]. TLS is not in the trust base (the
//! collateral is signed by Intel and verified by every client), so plain `http://` stays
//! allowed for a PCCS on the VM's loopback or a trusted network.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::pccs_http::{self, GetError, TlsTrust};
use crate::AttesterError;

/// Intel's PCS. It has no `rootcacrl` endpoint: the root CA CRL is fetched from
/// [`INTEL_ROOT_CA_CRL_URL`] instead (a PCCS that answers 404 there gets the same).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";

/// The CRL distribution point of the Intel SGX Root CA (the built-in root's own extension,
/// checked by a test), where the root CA CRL is fetched when the PCCS does not serve it.
pub(crate) const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Where TDX collateral comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CollateralSource {
    /// A JSON file in `dcap-qvl`'s `QuoteCollateralV3` layout. Read at start, re-read when
    /// the file changes (size, modification time or inode) or when the collateral is within
    /// the refresh margin of its earliest `nextUpdate`.
    File(PathBuf),
    /// A PCCS (or Intel's PCS) base URL, `http://` or `https://`, e.g.
    /// `http://127.0.0.1:8081` or [`INTEL_PCS_URL`]. Uses the v4 API
    /// (`/sgx/certification/v4/pckcrl`, `.../rootcacrl`, `/tdx/certification/v4/tcb`,
    /// `.../qe/identity`) for the quote's FMSPC and PCK CA; the root CA CRL comes from
    /// Intel's CRL distribution point when the server has no `rootcacrl` (the PCS).
    /// `https://` verifies the server against the Mozilla roots compiled in.
    Pccs(String),
    /// Like [`Pccs`](Self::Pccs) for an `https://` URL, also trusting every certificate in
    /// `ca_file` (PEM) as a TLS trust anchor: a private PCCS with its own CA. Read at start
    /// (`PCCS_CA_INVALID`).
    PccsWithCa {
        /// The `https://` base URL.
        url: String,
        /// PEM file with one or more CA certificates.
        ca_file: PathBuf,
    },
}

/// Timing of collateral refreshes.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Refresh when the earliest `nextUpdate` is this close (default 24 hours).
    pub margin: Duration,
    /// Minimum time between refresh attempts once one is due (default 5 minutes).
    pub retry: Duration,
    /// How long a request waits for the first PCCS fetch (default 60 seconds).
    pub fetch_timeout: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            margin: Duration::from_secs(24 * 3600),
            retry: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(60),
        }
    }
}

pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Validated collateral: the canonical JSON and when it first expires.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Collateral {
    pub(crate) json: Vec<u8>,
    /// Earliest `nextUpdate` of TCB info, QE identity and both CRLs (unix seconds).
    pub(crate) expires: u64,
    /// FMSPC of the TCB info, upper-case hex.
    pub(crate) fmspc: String,
}

fn bad(m: impl Into<String>) -> AttesterError {
    AttesterError::CollateralInvalid(m.into())
}

#[derive(Deserialize)]
struct Dated {
    id: Option<String>,
    fmspc: Option<String>,
    #[serde(rename = "nextUpdate")]
    next_update: String,
}

/// Validate collateral, compute its expiry and re-serialise it canonically.
pub(crate) fn validate(mut c: QuoteCollateralV3) -> Result<Collateral, AttesterError> {
    c.pck_certificate_chain = None;
    let tcb: Dated =
        serde_json::from_str(&c.tcb_info).map_err(|e| bad(format!("TCB info: {e}")))?;
    if tcb.id.as_deref() != Some("TDX") {
        return Err(bad(format!("TCB info id {:?}, expected \"TDX\"", tcb.id)));
    }
    let fmspc = tcb
        .fmspc
        .ok_or_else(|| bad("TCB info has no fmspc"))?
        .to_ascii_uppercase();
    let qe: Dated =
        serde_json::from_str(&c.qe_identity).map_err(|e| bad(format!("QE identity: {e}")))?;
    if qe.id.as_deref() != Some("TD_QE") {
        return Err(bad(format!(
            "QE identity id {:?}, expected \"TD_QE\"",
            qe.id
        )));
    }
    let mut expires = u64::MAX;
    for (what, s) in [
        ("TCB info", &tcb.next_update),
        ("QE identity", &qe.next_update),
    ] {
        let t = parse_rfc3339_utc(s).ok_or_else(|| bad(format!("{what} nextUpdate {s:?}")))?;
        expires = expires.min(t);
    }
    for (what, der) in [("root CA CRL", &c.root_ca_crl), ("PCK CRL", &c.pck_crl)] {
        use der::Decode;
        let crl = x509_cert::crl::CertificateList::from_der(der)
            .map_err(|e| bad(format!("{what}: {e}")))?;
        let next = crl
            .tbs_cert_list
            .next_update
            .ok_or_else(|| bad(format!("{what} has no nextUpdate")))?;
        expires = expires.min(next.to_unix_duration().as_secs());
    }
    for (what, chain) in [
        ("PCK CRL issuer chain", &c.pck_crl_issuer_chain),
        ("TCB info issuer chain", &c.tcb_info_issuer_chain),
        ("QE identity issuer chain", &c.qe_identity_issuer_chain),
    ] {
        if !chain.contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(format!("{what} is not PEM")));
        }
    }
    let json = serde_json::to_vec(&c).map_err(|e| bad(e.to_string()))?;
    if json.len() > sotto_attest::MAX_FIELD_LEN {
        return Err(bad(format!(
            "{} bytes, more than a bundle field holds ({})",
            json.len(),
            sotto_attest::MAX_FIELD_LEN
        )));
    }
    Ok(Collateral {
        json,
        expires,
        fmspc,
    })
}

pub(crate) fn parse_json(bytes: &[u8]) -> Result<Collateral, AttesterError> {
    let c: QuoteCollateralV3 = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("not QuoteCollateralV3 JSON: {e}")))?;
    validate(c)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` to unix seconds.
fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    if !frac.is_empty()
        && (frac[0] != b'.' || frac.len() < 2 || !frac[1..].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &b[r];
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// The quote's FMSPC (upper-case hex) and PCK CA (`platform`/`processor`).
pub(crate) fn quote_target(quote: &[u8]) -> Result<Target, AttesterError> {
    let parsed = dcap_qvl::quote::Quote::parse(quote)
        .map_err(|e| AttesterError::InvalidReport(format!("TDX quote: {e}")))?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
        .map_err(|e| AttesterError::InvalidReport(format!("TDX quote FMSPC: {e}")))?;
    let ca = dcap_qvl::intel::quote_ca(&parsed)
        .map_err(|e| AttesterError::InvalidReport(format!("TDX quote PCK CA: {e}")))?;
    Ok(Target {
        fmspc: hex::encode_upper(fmspc),
        ca: ca.as_id_str(),
    })
}

/// What collateral is needed for: the platform's FMSPC and PCK CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) fmspc: String,
    pub(crate) ca: &'static str,
}

/// A configured collateral source, ready to serve.
#[derive(Debug)]
pub(crate) enum Provider {
    File(FileProvider),
    Pccs(PccsProvider),
}

impl Provider {
    pub(crate) fn start(
        source: CollateralSource,
        policy: RefreshPolicy,
        clock: Clock,
        root_crl_url: &str,
    ) -> Result<Self, AttesterError> {
        match source {
            CollateralSource::File(path) => {
                Ok(Provider::File(FileProvider::open(path, policy, clock)?))
            }
            CollateralSource::Pccs(url) => Ok(Provider::Pccs(PccsProvider::start(
                &url,
                None,
                policy,
                clock,
                root_crl_url,
            )?)),
            CollateralSource::PccsWithCa { url, ca_file } => Ok(Provider::Pccs(
                PccsProvider::start(&url, Some(&ca_file), policy, clock, root_crl_url)?,
            )),
        }
    }

    /// Collateral JSON for `quote`.
    pub(crate) fn get(&self, quote: &[u8]) -> Result<Arc<Collateral>, AttesterError> {
        match self {
            Provider::File(f) => {
                let c = f.get()?;
                // A quote whose PCK chain we cannot read is left to the verifier.
                if let Ok(t) = quote_target(quote)
                    && t.fmspc != c.fmspc
                {
                    return Err(AttesterError::CollateralMismatch(format!(
                        "collateral FMSPC {}, quote FMSPC {}",
                        c.fmspc, t.fmspc
                    )));
                }
                Ok(c)
            }
            Provider::Pccs(p) => p.get(quote_target(quote)?),
        }
    }

    /// How many times collateral was (re)loaded or fetched successfully.
    #[cfg(test)]
    pub(crate) fn loads(&self) -> u64 {
        match self {
            Provider::File(f) => lock(&f.state).loads,
            Provider::Pccs(p) => lock(&p.shared.state).loads,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------- file

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        ino: m.ino(),
    })
}

pub(crate) struct FileProvider {
    path: PathBuf,
    policy: RefreshPolicy,
    clock: Clock,
    state: Mutex<FileState>,
}

impl std::fmt::Debug for FileProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileProvider")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

struct FileState {
    current: Arc<Collateral>,
    stamp: Stamp,
    last_attempt: u64,
    loads: u64,
}

impl FileProvider {
    fn read(path: &std::path::Path) -> Result<(Collateral, Stamp), AttesterError> {
        let io = |e| AttesterError::io(format!("reading TDX collateral {}", path.display()), e);
        let before = stamp(path).map_err(io)?;
        let bytes = std::fs::read(path).map_err(io)?;
        Ok((parse_json(&bytes)?, before))
    }

    fn open(path: PathBuf, policy: RefreshPolicy, clock: Clock) -> Result<Self, AttesterError> {
        let (c, stamp) = Self::read(&path)?;
        let now = clock();
        Ok(FileProvider {
            path,
            policy,
            clock,
            state: Mutex::new(FileState {
                current: Arc::new(c),
                stamp,
                last_attempt: now,
                loads: 1,
            }),
        })
    }

    fn get(&self) -> Result<Arc<Collateral>, AttesterError> {
        let mut st = lock(&self.state);
        let now = (self.clock)();
        let changed = stamp(&self.path).map(|s| s != st.stamp).unwrap_or(true);
        let due = now.saturating_add(self.policy.margin.as_secs()) >= st.current.expires
            && now >= st.last_attempt.saturating_add(self.policy.retry.as_secs());
        if changed || due {
            st.last_attempt = now;
            match Self::read(&self.path) {
                Ok((c, s)) => {
                    st.current = Arc::new(c);
                    st.stamp = s;
                    st.loads += 1;
                }
                // Keep serving what we have while it is valid (a half-written file, a
                // brief removal); once it has expired, report why there is nothing newer.
                Err(e) if now >= st.current.expires => return Err(e),
                Err(_) => {}
            }
        }
        Ok(st.current.clone())
    }
}

// ---------------------------------------------------------------- PCCS

pub(crate) struct PccsProvider {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PccsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PccsProvider")
            .field("base", &self.shared.base)
            .finish_non_exhaustive()
    }
}

struct Shared {
    base: String,
    /// Where the root CA CRL comes from when the server has no `rootcacrl` endpoint.
    root_crl_url: String,
    policy: RefreshPolicy,
    clock: Clock,
    state: Mutex<PccsState>,
    cond: Condvar,
}

#[derive(Default)]
struct PccsState {
    target: Option<Target>,
    current: Option<(Target, Arc<Collateral>)>,
    /// Code-preserving copy of the last failure.
    last_error: Option<FetchError>,
    last_attempt: Option<u64>,
    /// The target of the last attempt if it failed.
    failed_target: Option<Target>,
    loads: u64,
    stopped: bool,
}

#[derive(Debug, Clone)]
enum FetchError {
    Unreachable(String),
    Tls(String),
    Pccs(String),
    Invalid(String),
}

impl From<FetchError> for AttesterError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Unreachable(m) => AttesterError::PccsUnreachable(m),
            FetchError::Tls(m) => AttesterError::PccsTls(m),
            FetchError::Pccs(m) => AttesterError::PccsError(m),
            FetchError::Invalid(m) => AttesterError::CollateralInvalid(m),
        }
    }
}

impl From<GetError> for FetchError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Unreachable(m) => FetchError::Unreachable(m),
            GetError::Tls(m) => FetchError::Tls(m),
            GetError::Http(m) => FetchError::Pccs(m),
        }
    }
}

impl Drop for PccsProvider {
    fn drop(&mut self) {
        lock(&self.shared.state).stopped = true;
        self.shared.cond.notify_all();
    }
}

/// Poll interval of the refresh thread (it also wakes on every change of target).
const POLL: Duration = Duration::from_secs(5);

impl PccsProvider {
    fn start(
        url: &str,
        ca_file: Option<&std::path::Path>,
        policy: RefreshPolicy,
        clock: Clock,
        root_crl_url: &str,
    ) -> Result<Self, AttesterError> {
        let (base, https) = pccs_http::check_base_url(url)
            .ok_or_else(|| AttesterError::PccsUrlUnsupported(url.to_string()))?;
        let base = base
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .to_string();
        if let (Some(path), false) = (ca_file, https) {
            return Err(AttesterError::PccsCaInvalid {
                path: path.display().to_string(),
                reason: format!("given for {base}, which is plain http:// (no TLS to use it)"),
            });
        }
        // Built for http:// too: the root CA CRL may come from Intel's https:// URL.
        let trust = TlsTrust::new(ca_file)?;
        if https {
            tracing::info!(
                pccs = %base,
                "TDX collateral from a PCCS over https://, server certificate verified against {}",
                trust.describe()
            );
        } else {
            tracing::info!(
                pccs = %base,
                "TDX collateral from a PCCS over plain http:// (no TLS: use only on loopback or \
                 a trusted network; the collateral is signed by Intel and verified by clients)"
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AttesterError::io("starting the PCCS refresh runtime", e))?;
        let client =
            pccs_http::Client::new(trust, Duration::from_secs(10), Duration::from_secs(60));
        let shared = Arc::new(Shared {
            base,
            root_crl_url: root_crl_url.to_string(),
            policy,
            clock,
            state: Mutex::new(PccsState::default()),
            cond: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("sotto-pccs".into())
            .spawn(move || refresh_loop(&thread_shared, &rt, &client))
            .map_err(|e| AttesterError::io("starting the PCCS refresh thread", e))?;
        Ok(PccsProvider { shared })
    }

    fn get(&self, target: Target) -> Result<Arc<Collateral>, AttesterError> {
        let sh = &self.shared;
        let mut st = lock(&sh.state);
        if st.target.as_ref() != Some(&target) {
            st.target = Some(target.clone());
            sh.cond.notify_all();
        }
        let deadline = Instant::now() + sh.policy.fetch_timeout;
        loop {
            if let Some((t, c)) = &st.current
                && *t == target
            {
                // Served even if a refresh failed: the verifier judges freshness.
                return Ok(c.clone());
            }
            // Fail fast while the PCCS is down (retried every `retry` in the background).
            if st.failed_target.as_ref() == Some(&target)
                && let Some(e) = &st.last_error
            {
                return Err(e.clone().into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AttesterError::PccsUnreachable(format!(
                    "no collateral from {} within {:?}",
                    sh.base, sh.policy.fetch_timeout
                )));
            }
            st = sh
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn refresh_loop(sh: &Shared, rt: &tokio::runtime::Runtime, client: &pccs_http::Client) {
    let mut st = lock(&sh.state);
    loop {
        if st.stopped {
            return;
        }
        let now = (sh.clock)();
        let target = st.target.clone();
        let retry_ok = st
            .last_attempt
            .is_none_or(|a| now >= a.saturating_add(sh.policy.retry.as_secs()));
        let due = match (&target, &st.current) {
            (None, _) => false,
            // Refresh before expiry.
            (Some(t), Some((ct, c))) if ct == t => {
                now.saturating_add(sh.policy.margin.as_secs()) >= c.expires && retry_ok
            }
            // Nothing for this target yet: fetch now, or retry a failure after a pause.
            (Some(t), _) => st.failed_target.as_ref() != Some(t) || retry_ok,
        };
        let Some(target) = target.filter(|_| due) else {
            st = sh
                .cond
                .wait_timeout(st, POLL.min(sh.policy.retry))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        };
        st.last_attempt = Some(now);
        drop(st);
        let result = rt.block_on(fetch(client, &sh.base, &sh.root_crl_url, &target));
        st = lock(&sh.state);
        st.failed_target = None;
        match result {
            Ok(c) => {
                st.current = Some((target, Arc::new(c)));
                st.last_error = None;
                st.loads += 1;
            }
            Err(e) => {
                tracing::warn!(
                    pccs = %sh.base,
                    "fetching TDX collateral failed (retried every {:?}): {}",
                    sh.policy.retry,
                    AttesterError::from(e.clone())
                );
                st.last_error = Some(e);
                st.failed_target = Some(target);
            }
        }
        sh.cond.notify_all();
    }
}

fn pccs_err(m: impl Into<String>) -> FetchError {
    FetchError::Pccs(m.into())
}

/// GET `url`, requiring a 2xx status.
async fn get(
    client: &pccs_http::Client,
    url: &str,
) -> Result<(http::HeaderMap, Vec<u8>), FetchError> {
    let resp = client.get(url).await?;
    if !resp.status.is_success() {
        return Err(pccs_err(format!("{url}: HTTP {}", resp.status)));
    }
    Ok((resp.headers, resp.body))
}

/// The root CA CRL: from the PCCS's `rootcacrl` (hex), or, for Intel's PCS (which has no
/// such endpoint) and for a PCCS answering 404 there, from `fallback` (Intel's CRL
/// distribution point, DER). Either way the CRL is signed by the Intel SGX Root CA and
/// verified by clients.
async fn root_ca_crl(
    client: &pccs_http::Client,
    base: &str,
    fallback: &str,
) -> Result<Vec<u8>, FetchError> {
    let pcs = base
        .strip_prefix(INTEL_PCS_URL)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', ':']));
    if !pcs {
        let url = format!("{base}/sgx/certification/v4/rootcacrl");
        let resp = client.get(&url).await?;
        if resp.status.is_success() {
            return crl_body(resp.body, &url);
        }
        if resp.status != http::StatusCode::NOT_FOUND {
            return Err(pccs_err(format!("{url}: HTTP {}", resp.status)));
        }
    }
    let (_, body) = get(client, fallback).await?;
    crl_body(body, fallback)
}

/// A percent-encoded PEM chain header.
fn chain_header(
    headers: &http::HeaderMap,
    names: &[&str],
    url: &str,
) -> Result<String, FetchError> {
    let raw = names
        .iter()
        .find_map(|n| headers.get(*n))
        .ok_or_else(|| pccs_err(format!("{url}: no {} header", names[0])))?;
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| pccs_err(format!("{url}: bad percent-encoding in {}", names[0])))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| pccs_err(format!("{url}: {} is not UTF-8", names[0])))
}

/// A CRL body: DER, PEM or hex-encoded DER (PCCS serves the root CA CRL as hex).
fn crl_body(body: Vec<u8>, url: &str) -> Result<Vec<u8>, FetchError> {
    if body.first() == Some(&0x30) {
        return Ok(body);
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| pccs_err(format!("{url}: CRL is neither DER nor text")))?
        .trim();
    if text.starts_with("-----BEGIN") {
        let (_, der) = der::pem::decode_vec(text.as_bytes())
            .map_err(|e| pccs_err(format!("{url}: CRL PEM: {e}")))?;
        return Ok(der);
    }
    hex::decode(text).map_err(|_| pccs_err(format!("{url}: CRL is neither DER, PEM nor hex")))
}

#[derive(Deserialize)]
struct Signed<'a> {
    #[serde(rename = "tcbInfo", alias = "enclaveIdentity", borrow)]
    body: &'a RawValue,
    signature: String,
}

fn signed(body: &[u8], url: &str) -> Result<(String, Vec<u8>), FetchError> {
    let s: Signed<'_> =
        serde_json::from_slice(body).map_err(|e| pccs_err(format!("{url}: bad JSON: {e}")))?;
    let sig =
        hex::decode(&s.signature).map_err(|_| pccs_err(format!("{url}: signature is not hex")))?;
    Ok((s.body.get().to_string(), sig))
}

/// Fetch the collateral for `target` from the PCCS v4 API.
async fn fetch(
    client: &pccs_http::Client,
    base: &str,
    root_crl_url: &str,
    target: &Target,
) -> Result<Collateral, FetchError> {
    let url = format!(
        "{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
        target.ca
    );
    let (h, body) = get(client, &url).await?;
    let pck_crl_issuer_chain = chain_header(&h, &["SGX-PCK-CRL-Issuer-Chain"], &url)?;
    let pck_crl = crl_body(body, &url)?;

    let url = format!("{base}/tdx/certification/v4/tcb?fmspc={}", target.fmspc);
    let (h, body) = get(client, &url).await?;
    let tcb_info_issuer_chain = chain_header(
        &h,
        &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        &url,
    )?;
    let (tcb_info, tcb_info_signature) = signed(&body, &url)?;

    let url = format!("{base}/tdx/certification/v4/qe/identity");
    let (h, body) = get(client, &url).await?;
    let qe_identity_issuer_chain = chain_header(
        &h,
        &[
            "SGX-Enclave-Identity-Issuer-Chain",
            "Enclave-Identity-Issuer-Chain",
        ],
        &url,
    )?;
    let (qe_identity, qe_identity_signature) = signed(&body, &url)?;

    let root_ca_crl = root_ca_crl(client, base, root_crl_url).await?;

    let c = validate(QuoteCollateralV3 {
        pck_crl_issuer_chain,
        root_ca_crl,
        pck_crl,
        tcb_info_issuer_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain,
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: None,
    })
    .map_err(|e| FetchError::Invalid(format!("from {base}: {e}")))?;
    if c.fmspc != target.fmspc {
        return Err(FetchError::Invalid(format!(
            "{base} served TCB info for FMSPC {}, asked for {}",
            c.fmspc, target.fmspc
        )));
    }
    Ok(c)
}
