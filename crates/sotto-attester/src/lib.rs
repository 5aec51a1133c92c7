//! Enclave-side producers of attestation evidence for Sotto.
//!
//! - [`SimulatedTee`]: a simulated AMD SEV-SNP platform with a local ARK → ASK → VCEK
//!   chain (real X.509, real report layout), for laptops and CI. Clients accept its
//!   evidence only when explicitly pinned to its root.
//! - [`ConfigFsTsm`]: real hardware through Linux's configfs-tsm report interface
//!   (`/sys/kernel/config/tsm/report`).
//!
//! Both produce a [`sotto_attest::EvidenceBundle`] binding the caller's 64-byte
//! REPORT_DATA.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod sim;
mod tsm;

pub use error::AttesterError;
pub use sim::SimulatedTee;
#[doc(hidden)]
pub use tsm::fs::{StdFs, TsmFs};
pub use tsm::{
    CertSource, CertTableEntry, CollateralSource, ConfigFsTsm, INTEL_PCS_URL, RefreshPolicy,
    SnpCerts, TsmReport, guids, load_certificates, parse_cert_table,
};

pub use sotto_attest::{EvidenceBundle, Platform};

/// Something that can produce attestation evidence binding caller-chosen REPORT_DATA.
pub trait Attester: Send + Sync {
    /// The platform whose evidence this attester produces.
    fn platform(&self) -> Platform;
    /// Produce evidence whose REPORT_DATA is `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<EvidenceBundle, AttesterError>;
}
