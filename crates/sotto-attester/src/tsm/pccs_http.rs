//! The PCCS client's transport: one HTTP/1.1 GET per connection, over plain TCP (`http://`)
//! or TLS (`https://`).
//!
//! TLS is rustls with the `ring` crypto provider, passed explicitly (never a process-wide
//! default). `ring` rather than aws-lc-rs: aws-lc-rs needs cmake and a large C build, while
//! ring needs only a C compiler (`cc`, already the Rust linker on Linux) and is the most
//! widely used rustls provider. Certificates are always verified (there is no switch to
//! turn that off) against the Mozilla root program compiled into the binary
//! (`webpki-roots`) plus, optionally, an operator's CA file for a private PCCS. The host's
//! trust store is never read: the host is untrusted, and the enclave binary is measured,
//! so its trust anchors are part of what the measurement covers.
//!
//! TLS is not part of the trust base: the collateral is signed by Intel and verified by
//! every client against the built-in Intel SGX Root CA. It keeps a network attacker from
//! substituting stale (validly signed) collateral or simply garbage, which is availability
//! and hygiene, not integrity of the attestation.
//!
//! Why not reqwest's `rustls-no-provider` feature: Cargo unifies features, so it would give
//! every other `reqwest::Client` in the workspace (relay health checks, the OpenAI upstream
//! client) a rustls backend that panics at `build()` unless a process-wide provider is
//! installed, and that verifies with the host's trust store (`rustls-platform-verifier`).
//! hyper is the HTTP engine reqwest uses anyway, so this adds no HTTP code to the build.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::AttesterError;

/// Largest response body accepted (collateral must fit a 64 KiB bundle field anyway).
const MAX_BODY: usize = 1 << 20;

/// How a GET failed, by layer; mapped to the PCCS error codes by the caller.
#[derive(Debug, Clone)]
pub(crate) enum GetError {
    /// Name resolution, TCP connect, or the overall timeout (`PCCS_UNREACHABLE`).
    Unreachable(String),
    /// The TCP connection was made but the TLS handshake failed (`PCCS_TLS_ERROR`).
    Tls(String),
    /// HTTP-level failure: malformed response, body too large (`PCCS_ERROR`).
    Http(String),
}

/// A response with any status; the caller decides what a status means.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Trust anchors for `https://`, with a description for logs and errors.
#[derive(Debug, Clone)]
pub(crate) struct TlsTrust {
    config: Arc<rustls::ClientConfig>,
    describe: String,
}

impl TlsTrust {
    /// The compiled-in Mozilla roots, plus every certificate in `extra_ca` (PEM) if given.
    pub(crate) fn new(extra_ca: Option<&Path>) -> Result<Self, AttesterError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut describe = format!(
            "the {} Mozilla roots compiled in",
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
        if let Some(path) = extra_ca {
            let certs = load_ca_file(path)?;
            let n = certs.len();
            for (i, cert) in certs.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|e| ca_invalid(path, format!("certificate {}: {e}", i + 1)))?;
            }
            describe.push_str(&format!(" and {n} certificate(s) from {}", path.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AttesterError::PccsTls(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsTrust {
            config: Arc::new(config),
            describe,
        })
    }

    /// Which trust anchors are used, for logs.
    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }
}

fn ca_invalid(path: &Path, reason: impl Into<String>) -> AttesterError {
    AttesterError::PccsCaInvalid {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file; at least one, all of them well-formed PEM.
fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, AttesterError> {
    let bytes = std::fs::read(path).map_err(|e| ca_invalid(path, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_invalid(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ca_invalid(
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    Ok(certs)
}

/// A PCCS base URL, checked: `http://` or `https://`, a host, no user info, query or
/// fragment. Returns the URL without a trailing slash and whether it is https.
pub(crate) fn check_base_url(url: &str) -> Option<(String, bool)> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['@', '?', '#']) {
        return None;
    }
    let base = url.trim_end_matches('/');
    let uri: Uri = format!("{base}/").parse().ok()?;
    uri.host().filter(|h| !h.is_empty())?;
    Some((base.to_string(), https))
}

/// One-connection-per-request HTTP/1.1 client (a handful of requests a day).
#[derive(Debug, Clone)]
pub(crate) struct Client {
    tls: TlsTrust,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Client {
    pub(crate) fn new(tls: TlsTrust, connect_timeout: Duration, timeout: Duration) -> Self {
        Client {
            tls,
            connect_timeout,
            timeout,
        }
    }

    /// GET `url` (`http://` or `https://`); redirects are not followed.
    pub(crate) async fn get(&self, url: &str) -> Result<Response, GetError> {
        tokio::time::timeout(self.timeout, self.get_inner(url))
            .await
            .map_err(|_| {
                GetError::Unreachable(format!("{url}: no answer within {:?}", self.timeout))
            })?
    }

    async fn get_inner(&self, url: &str) -> Result<Response, GetError> {
        let http_err = |m: String| GetError::Http(format!("{url}: {m}"));
        let uri: Uri = url.parse().map_err(|e| http_err(format!("bad URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(http_err("not an http:// or https:// URL".into())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| http_err("no host".into()))?
            .clone();
        let host = authority.host();
        // `[::1]` in a URL, `::1` for connecting and for the certificate check.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = Request::get(path)
            .header(header::HOST, authority.as_str())
            .header(
                header::USER_AGENT,
                concat!("sotto-attester/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| http_err(format!("building the request: {e}")))?;

        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((bare, port)))
            .await
            .map_err(|_| {
                GetError::Unreachable(format!(
                    "{url}: connecting to {bare}:{port} timed out after {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(|e| {
                GetError::Unreachable(format!("{url}: connecting to {bare}:{port}: {e}"))
            })?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return send(TokioIo::new(tcp), req, url).await;
        }
        let name = ServerName::try_from(bare.to_string()).map_err(|e| {
            GetError::Tls(format!(
                "{url}: {bare:?} is not a valid TLS server name: {e}"
            ))
        })?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| GetError::Tls(tls_message(url, &e, self.tls.describe())))?;
        send(TokioIo::new(tls), req, url).await
    }
}

/// A handshake failure in words: the rustls error (e.g. `invalid peer certificate:
/// UnknownIssuer`, `certificate not valid for name ...`) and the trust anchors used.
fn tls_message(url: &str, e: &std::io::Error, trust: &str) -> String {
    use rustls::{CertificateError, Error};
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        // Not from rustls: the connection broke during the handshake.
        return format!("{url}: TLS handshake failed: {e}");
    };
    let mut m = format!("{url}: TLS handshake failed: {err}");
    if let Error::InvalidCertificate(c) = err {
        m.push_str(&format!("; trust anchors: {trust}"));
        if *c == CertificateError::UnknownIssuer {
            m.push_str(
                "; a PCCS with its own CA needs that CA as an extra trust anchor \
                 (`sotto enclave --pccs-ca FILE`)",
            );
        }
    }
    m
}

/// Send one request on a fresh connection and read the whole response.
async fn send<T>(io: T, req: Request<Empty<Bytes>>, url: &str) -> Result<Response, GetError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http_err = |m: String| GetError::Http(format!("{url}: {m}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| http_err(e.to_string()))?;
    // The connection future moves the bytes; it ends with the connection (aborted on return).
    let conn = AbortOnDrop(tokio::spawn(conn));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| http_err(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| http_err(format!("reading the body: {e}")))?
        .to_bytes();
    drop(conn);
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: body.to_vec(),
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let ok = |u: &str, base: &str, https: bool| {
            assert_eq!(check_base_url(u), Some((base.to_string(), https)), "{u}");
        };
        ok("http://127.0.0.1:8081", "http://127.0.0.1:8081", false);
        ok("http://127.0.0.1:8081/", "http://127.0.0.1:8081", false);
        ok(
            "https://api.trustedservices.intel.com",
            "https://api.trustedservices.intel.com",
            true,
        );
        ok("https://[::1]:8443/pccs/", "https://[::1]:8443/pccs", true);
        for bad in [
            "",
            "ftp://x",
            "HTTPS//x",
            "https://",
            "https:///x",
            "http://user@host",
            "https://host/?x=1",
            "https://host/#f",
            "file:///etc/passwd",
        ] {
            assert_eq!(check_base_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_ca_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let check = |bytes: Option<&[u8]>, needle: &str| {
            let p = dir.path().join("ca.pem");
            let _ = std::fs::remove_file(&p);
            if let Some(b) = bytes {
                std::fs::write(&p, b).unwrap();
            }
            let err = TlsTrust::new(Some(&p)).unwrap_err();
            assert_eq!(err.code(), "PCCS_CA_INVALID", "{err}");
            assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
            assert!(err.to_string().contains("ca.pem"), "{err}");
        };
        check(None, "No such file");
        check(Some(b""), "no PEM certificate");
        check(Some(b"garbage, not a certificate"), "no PEM certificate");
        check(
            Some(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            "not PEM",
        );
        // Valid PEM whose content is not a certificate.
        check(
            Some(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "certificate 1",
        );
        // A directory is not a file.
        let err = TlsTrust::new(Some(dir.path())).unwrap_err();
        assert_eq!(err.code(), "PCCS_CA_INVALID", "{err}");
    }

    #[test]
    fn default_trust_is_the_compiled_in_roots() {
        let t = TlsTrust::new(None).unwrap();
        assert!(t.describe().contains("Mozilla roots compiled in"));
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }
}
