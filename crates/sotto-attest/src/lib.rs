//! Sans-I/O attestation for Sotto: evidence formats and the verifier a client runs before
//! it sends a single byte to an enclave.
//!
//! - [`snp`]: the AMD SEV-SNP `ATTESTATION_REPORT` (versions 2–5), parsed and re-encoded
//!   byte for byte.
//! - [`EvidenceBundle`]: the canonical, versioned container an enclave sends (report,
//!   certificates, extensible extras). Layout in `docs/protocol.md`, section 6.
//! - [`verify`]: checks a bundle against a [`Policy`] at a caller-supplied time.
//! - [`amd`]: AMD certificate conventions (VCEK TCB extensions).
//! - [`tdx`]: Intel TDX DCAP quotes (versions 4 and 5), verified offline against Intel's
//!   collateral and the built-in Intel SGX Root CA.
//!
//! No filesystem, clock, network or global state: the crate builds for
//! `wasm32-unknown-unknown`. Every rejection is an [`AttestError`] with a stable
//! [`code`](AttestError::code).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod amd;
mod bundle;
mod error;
pub mod snp;
pub mod tdx;
mod verify;

pub use bundle::{EvidenceBundle, Extra, MAX_EXTRAS, MAX_FIELD_LEN, tags};
pub use error::AttestError;
pub use verify::{
    ChainCache, Policy, SimulationPin, Step, TrustRoots, Verified, verify, verify_cached,
};

use sha2::{Digest, Sha256};

/// The kind of TEE that produced a piece of evidence. The discriminant is the bundle's
/// platform byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Platform {
    /// Sotto's simulated SEV-SNP: real report layout and certificate chain, local root.
    SimulatedSnp = 1,
    /// AMD SEV-SNP hardware.
    SevSnp = 2,
    /// Intel TDX: the report is a DCAP quote, verified by [`tdx`].
    Tdx = 3,
}

impl Platform {
    /// The platform for a bundle platform byte, if known.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Platform::SimulatedSnp),
            2 => Some(Platform::SevSnp),
            3 => Some(Platform::Tdx),
            _ => None,
        }
    }
}

/// SHA-256 of a certificate's DER encoding (how roots are pinned).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}
