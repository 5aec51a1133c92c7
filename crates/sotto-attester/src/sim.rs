//! The simulated SEV-SNP TEE.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use p384::ecdsa::signature::Signer;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::RsaPrivateKey;
use rsa::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256, Sha384};
use spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use sotto_attest::amd::{self, VcekExtensions};
use sotto_attest::snp::{self, Generation, Report, TcbParts, TcbVersion};
use sotto_attest::{EvidenceBundle, Platform, fingerprint};

use crate::{Attester, AttesterError};

/// Subject CN of the simulated ARK.
pub const SIM_ARK_CN: &str = "SEV-Sotto-Simulated-ARK";
const NAME_SUFFIX: &str = "OU=Engineering,O=Sotto Simulated TEE (NOT AMD),L=Nowhere,ST=CA,C=US";
const DAY: u64 = 24 * 60 * 60;
const YEAR: u64 = 365 * DAY;

const ARK_KEY: &str = "ark.key.der";
const ASK_KEY: &str = "ask.key.der";
const VCEK_KEY: &str = "vcek.key.der";
const ARK_CERT: &str = "ark.cert.der";
const ASK_CERT: &str = "ask.cert.der";
const VCEK_CERT: &str = "vcek.cert.der";
const ALL_FILES: [&str; 6] = [ARK_KEY, ASK_KEY, VCEK_KEY, ARK_CERT, ASK_CERT, VCEK_CERT];

/// The TCB the simulated platform reports (Genoa layout; values like a 2024 Genoa).
const SIM_TCB: TcbParts = TcbParts {
    fmc: None,
    bootloader: 10,
    tee: 0,
    snp: 23,
    microcode: 84,
};
/// CPUID family/model/stepping of the simulated processor (Genoa B1).
const SIM_CPUID: (u8, u8, u8) = (0x19, 0x11, 0x01);

/// A simulated AMD SEV-SNP platform.
///
/// On first use in a directory it generates a simulated ARK (RSA, self-signed with
/// RSASSA-PSS/SHA-384), ASK (RSA, signed by the ARK) and VCEK (P-384, signed by the ASK,
/// carrying AMD's TCB and hwID extensions) and persists keys (PKCS#8 DER, mode 0600) and
/// certificates (DER) there; later starts reload them, so the root fingerprint is stable.
/// Evidence is a version 3 report in the real layout, signed by the VCEK.
///
/// Anyone with the directory can sign anything with these keys: the simulated root must
/// never be trusted except by an explicit, pinned opt-in.
pub struct SimulatedTee {
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    vcek_key: p384::ecdsa::SigningKey,
    chip_id: [u8; 64],
    tcb: TcbVersion,
    measurement: [u8; 48],
    report_id: [u8; 32],
}

impl std::fmt::Debug for SimulatedTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTee")
            .field("root_fingerprint", &hex::encode(self.root_fingerprint()))
            .field("measurement", &hex::encode(self.measurement))
            .finish_non_exhaustive()
    }
}

fn crypto(e: impl std::fmt::Display) -> AttesterError {
    AttesterError::Crypto(e.to_string())
}

fn cert_err(e: impl std::fmt::Display) -> AttesterError {
    AttesterError::CertBuild(e.to_string())
}

fn invalid(e: impl std::fmt::Display) -> AttesterError {
    AttesterError::SimStateInvalid(e.to_string())
}

/// An AMD VCEK SVN extension: a DER INTEGER.
macro_rules! spl_extension {
    ($name:ident, $oid:expr) => {
        struct $name(u8);
        impl der::oid::AssociatedOid for $name {
            const OID: ObjectIdentifier = $oid;
        }
        impl Encode for $name {
            fn encoded_len(&self) -> der::Result<der::Length> {
                self.0.encoded_len()
            }
            fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
                self.0.encode(w)
            }
        }
        impl AsExtension for $name {
            fn critical(&self, _: &Name, _: &[Extension]) -> bool {
                false
            }
        }
    };
}
spl_extension!(BlSpl, amd::OID_BL_SPL);
spl_extension!(TeeSpl, amd::OID_TEE_SPL);
spl_extension!(SnpSpl, amd::OID_SNP_SPL);
spl_extension!(UcodeSpl, amd::OID_UCODE_SPL);

/// AMD's productName extension: IA5String.
struct ProductName(Ia5String);
impl der::oid::AssociatedOid for ProductName {
    const OID: ObjectIdentifier = amd::OID_PRODUCT_NAME;
}
impl Encode for ProductName {
    fn encoded_len(&self) -> der::Result<der::Length> {
        self.0.encoded_len()
    }
    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        self.0.encode(w)
    }
}
impl AsExtension for ProductName {
    fn critical(&self, _: &Name, _: &[Extension]) -> bool {
        false
    }
}

/// AMD's hwID extension: the 64 raw chip-ID bytes as the extension value (not wrapped in
/// a DER OCTET STRING, like AMD's KDS certificates).
struct HwId([u8; 64]);
impl der::oid::AssociatedOid for HwId {
    const OID: ObjectIdentifier = amd::OID_HW_ID;
}
impl Encode for HwId {
    fn encoded_len(&self) -> der::Result<der::Length> {
        OctetString::new(self.0.to_vec())?.encoded_len()
    }
    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        OctetString::new(self.0.to_vec())?.encode(w)
    }
}
impl AsExtension for HwId {
    fn critical(&self, _: &Name, _: &[Extension]) -> bool {
        false
    }
    fn to_extension(&self, _: &Name, _: &[Extension]) -> der::Result<Extension> {
        Ok(Extension {
            extn_id: amd::OID_HW_ID,
            critical: false,
            extn_value: OctetString::new(self.0.to_vec())?,
        })
    }
}

fn name(cn: &str) -> Result<Name, AttesterError> {
    Name::from_str(&format!("CN={cn},{NAME_SUFFIX}")).map_err(cert_err)
}

fn validity(from: u64, years: u64) -> Result<Validity, AttesterError> {
    let t = |secs: u64| -> Result<Time, AttesterError> {
        Ok(Time::GeneralTime(
            GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).map_err(cert_err)?,
        ))
    };
    Ok(Validity {
        not_before: t(from)?,
        not_after: t(from + years * YEAR)?,
    })
}

fn serial() -> Result<SerialNumber, AttesterError> {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[0] &= 0x7F;
    b[0] |= 0x01;
    SerialNumber::new(&b).map_err(cert_err)
}

fn write_file(dir: &Path, file: &str, bytes: &[u8], mode: u32) -> Result<(), AttesterError> {
    let tmp = dir.join(format!("{file}.tmp"));
    let path = dir.join(file);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AttesterError::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| AttesterError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, &path)
        .map_err(|e| AttesterError::io(format!("renaming to {}", path.display()), e))
}

fn read_file(dir: &Path, file: &str) -> Result<Zeroizing<Vec<u8>>, AttesterError> {
    let path = dir.join(file);
    fs::read(&path)
        .map(Zeroizing::new)
        .map_err(|e| AttesterError::io(format!("reading {}", path.display()), e))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SimulatedTee {
    /// Default RSA modulus size for the simulated ARK and ASK (as AMD uses).
    pub const DEFAULT_RSA_BITS: usize = 4096;

    /// Load the simulated platform from `dir`, creating it (with RSA-4096 ARK/ASK keys) on
    /// first use. `measurement` is the launch digest the reports will carry.
    pub fn load_or_create(dir: &Path, measurement: [u8; 48]) -> Result<Self, AttesterError> {
        Self::load_or_create_with_key_bits(dir, measurement, Self::DEFAULT_RSA_BITS)
    }

    /// Like [`load_or_create`](Self::load_or_create) with a chosen RSA modulus size for a
    /// newly created ARK/ASK (tests use 2048: RSA-4096 generation takes seconds). Existing
    /// state is loaded whatever its key size.
    pub fn load_or_create_with_key_bits(
        dir: &Path,
        measurement: [u8; 48],
        rsa_bits: usize,
    ) -> Result<Self, AttesterError> {
        let present: Vec<bool> = ALL_FILES.iter().map(|f| dir.join(f).exists()).collect();
        if present.iter().all(|&p| p) {
            Self::load(dir, measurement)
        } else if present.iter().all(|&p| !p) {
            Self::create(dir, rsa_bits)?;
            Self::load(dir, measurement)
        } else {
            Err(AttesterError::SimStateIncomplete(dir.to_path_buf()))
        }
    }

    fn create(dir: &Path, rsa_bits: usize) -> Result<(), AttesterError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AttesterError::io(format!("creating {}", dir.display()), e))?;
        let mut rng = OsRng;
        let ark_key = RsaPrivateKey::new(&mut rng, rsa_bits).map_err(crypto)?;
        let ask_key = RsaPrivateKey::new(&mut rng, rsa_bits).map_err(crypto)?;
        let vcek_secret = p384::SecretKey::random(&mut rng);
        let mut chip_id = [0u8; 64];
        rng.fill_bytes(&mut chip_id);

        // Backdate a day to tolerate clock skew between enclave and clients.
        let start = now_unix().saturating_sub(DAY);
        let ark_name = name(SIM_ARK_CN)?;
        let ask_name = name("SEV-Sotto-Simulated-ASK")?;
        let vcek_name = name("SEV-VCEK")?;

        let ark_signer = rsa::pss::SigningKey::<Sha384>::new(ark_key.clone());
        let ask_signer = rsa::pss::SigningKey::<Sha384>::new(ask_key.clone());
        let spki_of = |k: &RsaPrivateKey| {
            SubjectPublicKeyInfoOwned::from_key(k.to_public_key()).map_err(cert_err)
        };

        let ark = CertificateBuilder::new(
            Profile::Root,
            serial()?,
            validity(start, 25)?,
            ark_name.clone(),
            spki_of(&ark_key)?,
            &ark_signer,
        )
        .map_err(cert_err)?
        .build_with_rng::<rsa::pss::Signature>(&mut rng)
        .map_err(cert_err)?;

        let ask = CertificateBuilder::new(
            Profile::SubCA {
                issuer: ark_name,
                path_len_constraint: Some(0),
            },
            serial()?,
            validity(start, 25)?,
            ask_name.clone(),
            spki_of(&ask_key)?,
            &ark_signer,
        )
        .map_err(cert_err)?
        .build_with_rng::<rsa::pss::Signature>(&mut rng)
        .map_err(cert_err)?;

        let vcek_spki = vcek_secret
            .public_key()
            .to_public_key_der()
            .map_err(cert_err)
            .and_then(|d| SubjectPublicKeyInfoOwned::from_der(d.as_bytes()).map_err(cert_err))?;
        let mut vcek_builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: ask_name,
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            serial()?,
            validity(start, 7)?,
            vcek_name,
            vcek_spki,
            &ask_signer,
        )
        .map_err(cert_err)?;
        vcek_builder
            .add_extension(&BlSpl(SIM_TCB.bootloader))
            .and_then(|()| vcek_builder.add_extension(&TeeSpl(SIM_TCB.tee)))
            .and_then(|()| vcek_builder.add_extension(&SnpSpl(SIM_TCB.snp)))
            .and_then(|()| vcek_builder.add_extension(&UcodeSpl(SIM_TCB.microcode)))
            .and_then(|()| vcek_builder.add_extension(&HwId(chip_id)))
            .map_err(cert_err)?;
        let product = Ia5String::new("Genoa").map_err(cert_err)?;
        vcek_builder
            .add_extension(&ProductName(product))
            .map_err(cert_err)?;
        let vcek = vcek_builder
            .build_with_rng::<rsa::pss::Signature>(&mut rng)
            .map_err(cert_err)?;

        let ark_pk8 = ark_key.to_pkcs8_der().map_err(crypto)?;
        let ask_pk8 = ask_key.to_pkcs8_der().map_err(crypto)?;
        let vcek_pk8 = vcek_secret.to_pkcs8_der().map_err(crypto)?;
        write_file(dir, ARK_KEY, ark_pk8.as_bytes(), 0o600)?;
        write_file(dir, ASK_KEY, ask_pk8.as_bytes(), 0o600)?;
        write_file(dir, VCEK_KEY, vcek_pk8.as_bytes(), 0o600)?;
        write_file(dir, ARK_CERT, &ark.to_der().map_err(cert_err)?, 0o644)?;
        write_file(dir, ASK_CERT, &ask.to_der().map_err(cert_err)?, 0o644)?;
        write_file(dir, VCEK_CERT, &vcek.to_der().map_err(cert_err)?, 0o644)?;
        Ok(())
    }

    fn load(dir: &Path, measurement: [u8; 48]) -> Result<Self, AttesterError> {
        let ark_der = read_file(dir, ARK_CERT)?.to_vec();
        let ask_der = read_file(dir, ASK_CERT)?.to_vec();
        let vcek_der = read_file(dir, VCEK_CERT)?.to_vec();
        let vcek_secret = p384::SecretKey::from_pkcs8_der(&read_file(dir, VCEK_KEY)?)
            .map_err(|_| invalid("VCEK private key does not parse"))?;
        // The CA keys are only needed to re-issue; check they parse.
        RsaPrivateKey::from_pkcs8_der(&read_file(dir, ARK_KEY)?)
            .map_err(|_| invalid("ARK private key does not parse"))?;
        RsaPrivateKey::from_pkcs8_der(&read_file(dir, ASK_KEY)?)
            .map_err(|_| invalid("ASK private key does not parse"))?;

        let vcek_cert = Certificate::from_der(&vcek_der).map_err(invalid)?;
        let cert_key = vcek_cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let own_key = vcek_secret.public_key().to_sec1_bytes();
        if cert_key != &*own_key {
            return Err(invalid(
                "VCEK certificate does not match the VCEK private key",
            ));
        }
        let ext = VcekExtensions::from_cert(&vcek_cert).map_err(invalid)?;
        let chip_id: [u8; 64] = ext
            .hw_id
            .as_deref()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| invalid("VCEK has no 64-byte hwID"))?;
        let parts = TcbParts {
            fmc: None,
            bootloader: ext.bootloader.ok_or_else(|| invalid("VCEK lacks blSPL"))?,
            tee: ext.tee.ok_or_else(|| invalid("VCEK lacks teeSPL"))?,
            snp: ext.snp.ok_or_else(|| invalid("VCEK lacks snpSPL"))?,
            microcode: ext
                .microcode
                .ok_or_else(|| invalid("VCEK lacks ucodeSPL"))?,
        };
        let tcb = TcbVersion::encode(&parts, Generation::Genoa)
            .ok_or_else(|| invalid("cannot encode TCB"))?;
        let report_id: [u8; 32] = Sha256::new()
            .chain_update(b"sotto-sim-report-id")
            .chain_update(&vcek_der)
            .finalize()
            .into();
        Ok(SimulatedTee {
            ark_der,
            ask_der,
            vcek_der,
            vcek_key: p384::ecdsa::SigningKey::from(vcek_secret),
            chip_id,
            tcb,
            measurement,
            report_id,
        })
    }

    /// SHA-256 of the simulated ARK certificate (what a client pins to opt in).
    pub fn root_fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.ark_der)
    }

    /// The simulated ARK certificate (DER).
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// The simulated ASK certificate (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }

    /// The simulated VCEK certificate (DER).
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }

    /// The simulated chip ID (also the VCEK's hwID).
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip_id
    }

    /// The measurement this instance reports.
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The unsigned version 3 report this platform would produce for `report_data`.
    /// Guest policy: SMT allowed, reserved bit 17 set, debug and migration agent off.
    pub fn report_template(&self, report_data: &[u8; 64]) -> Report {
        Report {
            version: 3,
            guest_svn: 1,
            policy: snp::POLICY_SMT | snp::POLICY_RESERVED_1,
            vmpl: 0,
            signature_algo: snp::SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: self.tcb,
            platform_info: 0b1,  // SMT enabled
            author_key_flags: 0, // signed by the VCEK
            report_data: *report_data,
            measurement: self.measurement,
            report_id: self.report_id,
            report_id_ma: [0xFF; 32],
            reported_tcb: self.tcb,
            cpuid_fam_id: SIM_CPUID.0,
            cpuid_mod_id: SIM_CPUID.1,
            cpuid_step: SIM_CPUID.2,
            chip_id: self.chip_id,
            committed_tcb: self.tcb,
            current_build: 21,
            current_minor: 55,
            current_major: 1,
            committed_build: 21,
            committed_minor: 55,
            committed_major: 1,
            launch_tcb: self.tcb,
            ..Report::default()
        }
    }

    /// Sign an arbitrary report with the simulated VCEK (ECDSA P-384/SHA-384 over bytes
    /// 0x000..0x2A0), replacing its signature. Simulation only: tests use it to build
    /// correctly signed negative cases (debug policy, wrong TCB, ...).
    pub fn sign_report(&self, report: &mut Report) {
        let signed = report.signed_bytes();
        let sig: p384::ecdsa::Signature = self.vcek_key.sign(&signed);
        let mut rs = [0u8; 96];
        rs.copy_from_slice(&sig.to_bytes());
        report.signature = snp::Signature::from_p384_be(&rs);
    }

    /// Bundle a (signed) report with this platform's certificates.
    pub fn bundle(&self, report: &Report) -> EvidenceBundle {
        EvidenceBundle {
            platform: Platform::SimulatedSnp,
            report: report.to_bytes(),
            vcek: self.vcek_der.clone(),
            ask: Some(self.ask_der.clone()),
            ark: Some(self.ark_der.clone()),
            extras: Vec::new(),
        }
    }

    /// The state directory layout (file names) this type uses, for documentation/tests.
    pub fn state_files(dir: &Path) -> Vec<PathBuf> {
        ALL_FILES.iter().map(|f| dir.join(f)).collect()
    }
}

impl Attester for SimulatedTee {
    fn platform(&self) -> Platform {
        Platform::SimulatedSnp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<EvidenceBundle, AttesterError> {
        let mut report = self.report_template(report_data);
        self.sign_report(&mut report);
        Ok(self.bundle(&report))
    }
}
