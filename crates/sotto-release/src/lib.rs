//! Sotto releases, sans-I/O.
//!
//! A release is a [`Manifest`]: the enclave build, the model, the launch measurements a
//! genuine launch produces, and the minimum platform policy. This crate encodes it
//! canonically, applies it to an attestation [`Policy`](sotto_attest::Policy), and checks
//! verified evidence and the enclave's claims against it. Signatures and the transparency
//! log proofs live in [`proof`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod manifest;
pub mod proof;

pub use error::ReleaseError;
pub use manifest::{Manifest, Measurement, ModelRef, simulated_measurement};
pub use proof::{
    ReleaseProof, ReleaseTrust, VerifiedRelease, check_consistency, consistency_needed,
    open_release, sign_release, verify_release,
};

use sotto_attest::snp::TcbParts;
use sotto_attest::{Platform, Policy, Verified};

impl Manifest {
    /// Tightens `policy` with the release's minimum policy: the SNP minimum TCB becomes the
    /// component-wise maximum of both, and the TDX status allow-list the intersection of
    /// both (a client can be stricter than a release, never laxer).
    pub fn apply_to(&self, policy: &mut Policy) {
        if let Some(m) = &self.min_tcb {
            policy.min_tcb = Some(match &policy.min_tcb {
                None => *m,
                Some(c) => TcbParts {
                    fmc: match (c.fmc, m.fmc) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    },
                    bootloader: c.bootloader.max(m.bootloader),
                    tee: c.tee.max(m.tee),
                    snp: c.snp.max(m.snp),
                    microcode: c.microcode.max(m.microcode),
                },
            });
        }
        if !self.tdx_tcb_statuses.is_empty() {
            policy
                .tdx
                .allowed_tcb_statuses
                .retain(|s| self.tdx_tcb_statuses.contains(s));
        }
    }

    /// Checks that verified evidence is a launch of this release: its measurement (and, on
    /// TDX, the pinned RTMRs) equals one of the release's for its platform.
    pub fn check_measurement(&self, v: &Verified) -> Result<(), ReleaseError> {
        let ok = self.measurements.iter().any(|m| match (m, v.platform) {
            (Measurement::Simulated(x), Platform::SimulatedSnp) => *x == v.measurement,
            (Measurement::Snp(x), Platform::SevSnp) => *x == v.measurement,
            (Measurement::Tdx { mrtd, rtmrs }, Platform::Tdx) => {
                *mrtd == v.measurement
                    && v.tdx.as_ref().is_some_and(|t| {
                        rtmrs
                            .iter()
                            .zip(&t.report.rtmrs)
                            .all(|(want, got)| want.is_none_or(|w| w == *got))
                    })
            }
            _ => false,
        });
        if ok {
            Ok(())
        } else {
            Err(ReleaseError::MeasurementMismatch {
                measurement: hex::encode(v.measurement),
                version: self.version.clone(),
            })
        }
    }

    /// Checks the enclave's claimed model (id, weights and tokenizer digests) against the
    /// release's.
    pub fn check_model(
        &self,
        model_id: &str,
        weights_sha256: &[u8; 32],
        tokenizer_sha256: &[u8; 32],
    ) -> Result<(), ReleaseError> {
        if model_id != self.model.name {
            return Err(ReleaseError::ModelMismatch(format!(
                "model id {model_id:?}, release has {:?}",
                self.model.name
            )));
        }
        if *weights_sha256 != self.model.weights_sha256 {
            return Err(ReleaseError::ModelMismatch(format!(
                "weights {}, release has {}",
                hex::encode(weights_sha256),
                hex::encode(self.model.weights_sha256)
            )));
        }
        if *tokenizer_sha256 != self.model.tokenizer_sha256 {
            return Err(ReleaseError::ModelMismatch(format!(
                "tokenizer {}, release has {}",
                hex::encode(tokenizer_sha256),
                hex::encode(self.model.tokenizer_sha256)
            )));
        }
        Ok(())
    }
}
