//! The evidence bundle: everything an enclave sends so that a client can verify it offline.
//!
//! The byte layout is specified in `docs/protocol.md` (section 6) at the repository root. In short:
//! magic `SOTE`, format version 1, platform byte, length-prefixed (u32 big-endian) report
//! and endorsement certificate, a flags byte for the optional ASK and ARK, then a u16 count
//! of `(u16 tag, u32 length, bytes)` extra items. Every variable field is capped at
//! [`MAX_FIELD_LEN`] bytes, there are at most [`MAX_EXTRAS`] extras, and the decoder
//! rejects unknown versions, unknown platforms, unknown flag bits and trailing bytes. The
//! encoding of a given [`EvidenceBundle`] value is unique.

use crate::{AttestError, Platform};

/// Magic prefix of an encoded bundle.
pub const MAGIC: [u8; 4] = *b"SOTE";
/// Current (and only) bundle format version.
pub const FORMAT_VERSION: u8 = 1;
/// Largest allowed length of any single variable-length field, in bytes.
pub const MAX_FIELD_LEN: usize = 64 * 1024;
/// Largest allowed number of extra items.
pub const MAX_EXTRAS: usize = 16;

const FLAG_ASK: u8 = 0b01;
const FLAG_ARK: u8 = 0b10;

/// Well-known tags for [`Extra`] items. Unknown tags are carried through unchanged.
pub mod tags {
    /// Intel TDX collateral: JSON, `dcap-qvl` `QuoteCollateralV3` layout (see [`crate::tdx`]).
    pub const TDX_COLLATERAL: u16 = 0x0001;
    /// NVIDIA GPU attestation evidence (reserved).
    pub const GPU_EVIDENCE: u16 = 0x0002;
    /// Signed release manifest (reserved).
    pub const RELEASE_MANIFEST: u16 = 0x0003;
    /// AMD SEV-SNP: AMD's certificate revocation list for the report's processor generation
    /// (DER `CertificateList`, as served by AMD's KDS at `/vcek/v1/{product}/crl` or
    /// `/vlek/v1/{product}/crl`), signed by the ARK. Optional; see [`crate::amd::check_crl`].
    pub const AMD_CRL: u16 = 0x0004;
}

/// An extensible `(tag, bytes)` item carried by a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    /// What the bytes are (see [`tags`]).
    pub tag: u16,
    /// The item's bytes.
    pub value: Vec<u8>,
}

/// Attestation evidence as transported between enclave and client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceBundle {
    /// Which kind of TEE produced `report`.
    pub platform: Platform,
    /// Raw report (SEV-SNP `ATTESTATION_REPORT`) or quote (TDX).
    pub report: Vec<u8>,
    /// DER of the certificate whose key signed the report (VCEK or VLEK); may be empty for
    /// platforms that embed their certificates in the quote.
    pub vcek: Vec<u8>,
    /// DER of the AMD SEV Signing Key certificate, if carried.
    pub ask: Option<Vec<u8>>,
    /// DER of the AMD Root Key certificate, if carried.
    pub ark: Option<Vec<u8>>,
    /// Further items, in order.
    pub extras: Vec<Extra>,
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Oversized fields get a length the decoder rejects instead of a silently wrapped one.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AttestError> {
        if self.buf.len() < n {
            return Err(AttestError::malformed(format!(
                "evidence bundle truncated in {what}"
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, AttestError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, AttestError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, AttestError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn field(&mut self, what: &str) -> Result<Vec<u8>, AttestError> {
        let len = self.u32(what)? as usize;
        if len > MAX_FIELD_LEN {
            return Err(AttestError::malformed(format!(
                "evidence bundle field {what} is {len} bytes, limit {MAX_FIELD_LEN}"
            )));
        }
        Ok(self.take(len, what)?.to_vec())
    }
}

impl EvidenceBundle {
    /// Canonical encoding (see the module documentation and `docs/protocol.md`, section 6).
    ///
    /// A bundle that exceeds the limits ([`MAX_FIELD_LEN`], [`MAX_EXTRAS`]) still encodes,
    /// but [`decode`](Self::decode) rejects the result; use
    /// [`check_limits`](Self::check_limits) before sending.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.report.len()
                + self.vcek.len()
                + self.ask.as_ref().map_or(0, Vec::len)
                + self.ark.as_ref().map_or(0, Vec::len),
        );
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.platform as u8);
        put_field(&mut out, &self.report);
        put_field(&mut out, &self.vcek);
        let mut flags = 0u8;
        if self.ask.is_some() {
            flags |= FLAG_ASK;
        }
        if self.ark.is_some() {
            flags |= FLAG_ARK;
        }
        out.push(flags);
        if let Some(ask) = &self.ask {
            put_field(&mut out, ask);
        }
        if let Some(ark) = &self.ark {
            put_field(&mut out, ark);
        }
        let count = u16::try_from(self.extras.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for extra in &self.extras {
            out.extend_from_slice(&extra.tag.to_be_bytes());
            put_field(&mut out, &extra.value);
        }
        out
    }

    /// Strictly decode an encoded bundle.
    ///
    /// Errors: `UNSUPPORTED_VERSION` for a format version other than 1, otherwise
    /// `MALFORMED_EVIDENCE` (bad magic, unknown platform or flag bits, truncation, a field
    /// over [`MAX_FIELD_LEN`], more than [`MAX_EXTRAS`] extras, trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        let mut d = Decoder { buf: bytes };
        if d.take(4, "magic")? != MAGIC {
            return Err(AttestError::malformed("not an evidence bundle (bad magic)"));
        }
        let version = d.u8("version")?;
        if version != FORMAT_VERSION {
            return Err(AttestError::UnsupportedVersion {
                what: "evidence bundle",
                version: version.into(),
            });
        }
        let platform_byte = d.u8("platform")?;
        let platform = Platform::from_u8(platform_byte)
            .ok_or_else(|| AttestError::malformed(format!("unknown platform {platform_byte}")))?;
        let report = d.field("report")?;
        let vcek = d.field("vcek")?;
        let flags = d.u8("flags")?;
        if flags & !(FLAG_ASK | FLAG_ARK) != 0 {
            return Err(AttestError::malformed(format!(
                "unknown evidence bundle flags {flags:#04x}"
            )));
        }
        let ask = if flags & FLAG_ASK != 0 {
            Some(d.field("ask")?)
        } else {
            None
        };
        let ark = if flags & FLAG_ARK != 0 {
            Some(d.field("ark")?)
        } else {
            None
        };
        let count = usize::from(d.u16("extras count")?);
        if count > MAX_EXTRAS {
            return Err(AttestError::malformed(format!(
                "{count} extra items, limit {MAX_EXTRAS}"
            )));
        }
        let mut extras = Vec::with_capacity(count);
        for _ in 0..count {
            let tag = d.u16("extra tag")?;
            let value = d.field("extra value")?;
            extras.push(Extra { tag, value });
        }
        if !d.buf.is_empty() {
            return Err(AttestError::malformed(format!(
                "{} trailing bytes after evidence bundle",
                d.buf.len()
            )));
        }
        Ok(EvidenceBundle {
            platform,
            report,
            vcek,
            ask,
            ark,
            extras,
        })
    }

    /// Check the size limits that [`decode`](Self::decode) enforces.
    pub fn check_limits(&self) -> Result<(), AttestError> {
        let fields = [
            Some(&self.report),
            Some(&self.vcek),
            self.ask.as_ref(),
            self.ark.as_ref(),
        ];
        let too_big = fields
            .iter()
            .flatten()
            .map(|f| f.len())
            .chain(self.extras.iter().map(|e| e.value.len()))
            .any(|len| len > MAX_FIELD_LEN);
        if too_big {
            return Err(AttestError::malformed(format!(
                "a field exceeds {MAX_FIELD_LEN} bytes"
            )));
        }
        if self.extras.len() > MAX_EXTRAS {
            return Err(AttestError::malformed(format!(
                "{} extra items, limit {MAX_EXTRAS}",
                self.extras.len()
            )));
        }
        Ok(())
    }
}
