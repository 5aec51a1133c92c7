//! AMD SEV-SNP `ATTESTATION_REPORT` (SEV-SNP firmware ABI, table "ATTESTATION_REPORT
//! Structure"), versions 2, 3, 4 and 5.
//!
//! The report is 1184 (0x4A0) bytes, little-endian. Bytes `0x000..0x2A0` are signed with
//! ECDSA P-384/SHA-384 by the VCEK (or VLEK); the signature's `r` and `s` are stored at 0x2A0
//! and 0x2E8, each as 72 little-endian bytes of which only the first 48 are used.
//!
//! [`parse`] keeps every byte, including reserved areas, so that [`Report::to_bytes`] is an
//! exact inverse. Reserved areas are not required to be zero: newer firmware assigns
//! meaning to them (e.g. version 5's mitigation vectors) and the policy layer decides.

use crate::AttestError;

/// Total size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed region (exclusive).
pub const SIGNED_LEN: usize = 0x2A0;
/// `signature_algo` value for ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Guest policy bit: SMT allowed.
pub const POLICY_SMT: u64 = 1 << 16;
/// Guest policy bit 17: reserved, must be one.
pub const POLICY_RESERVED_1: u64 = 1 << 17;
/// Guest policy bit: association with a migration agent allowed.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// Guest policy bit: debugging allowed.
pub const POLICY_DEBUG: u64 = 1 << 19;

/// Processor generation, as far as it matters for decoding TCB values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// Zen 3 (family 0x19, models 0x00..=0x0F).
    Milan,
    /// Zen 4 (family 0x19, models 0x10..=0x1F and 0xA0..=0xAF).
    Genoa,
    /// Zen 5 (family 0x1A, models 0x00..=0x11).
    Turin,
    /// Unknown: version 2 reports carry no CPUID, or an unrecognised family/model.
    Unknown,
}

impl Generation {
    /// Generation from the CPUID family/model carried by version 3+ reports (the same
    /// model ranges as the `sev` crate's `Generation::identify_cpu`). Family 0x1A models
    /// outside Turin's (Venice and later) are [`Generation::Unknown`]: no root is built in.
    pub fn from_cpuid(family: u8, model: u8) -> Self {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Generation::Milan,
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Generation::Genoa,
            (0x1A, 0x00..=0x11) => Generation::Turin,
            _ => Generation::Unknown,
        }
    }

    /// The product name AMD uses for this generation ("Milan", "Genoa", "Turin").
    pub fn name(self) -> &'static str {
        match self {
            Generation::Milan => "Milan",
            Generation::Genoa => "Genoa",
            Generation::Turin => "Turin",
            Generation::Unknown => "unknown",
        }
    }

    /// Whether TCB values of this generation carry an FMC SVN.
    pub fn has_fmc(self) -> bool {
        self == Generation::Turin
    }
}

impl core::fmt::Display for Generation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which key signed a report (the report's SIGNING_KEY field, bits 4:2 of 0x048).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningKey {
    /// 0: the Versioned Chip Endorsement Key, unique to the chip and its TCB; its
    /// certificate carries the chip's hwID and the TCB it was derived for.
    Vcek,
    /// 1: the Versioned Loaded Endorsement Key, provisioned by AMD to a cloud provider
    /// and shared by its machines; its certificate carries the TCB but no hwID, and is
    /// issued by AMD's ASVK (which the ARK signs) instead of the ASK.
    Vlek,
}

impl SigningKey {
    /// The key for a SIGNING_KEY field value, `None` for 7 ("no key") and reserved values.
    pub fn from_field(v: u32) -> Option<Self> {
        match v {
            0 => Some(SigningKey::Vcek),
            1 => Some(SigningKey::Vlek),
            _ => None,
        }
    }

    /// "VCEK" or "VLEK".
    pub fn name(self) -> &'static str {
        match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
        }
    }

    /// Name of the certificate that issues this key: "ASK" (VCEK) or "ASVK" (VLEK).
    pub fn issuer_name(self) -> &'static str {
        match self {
            SigningKey::Vcek => "ASK",
            SigningKey::Vlek => "ASVK",
        }
    }
}

impl core::fmt::Display for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCB version as found in the report (`CURRENT_TCB`, `REPORTED_TCB`, ...).
///
/// The raw value is kept; its byte layout depends on the processor generation, not on the
/// report version, so decoding goes through [`TcbVersion::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcbVersion {
    /// The raw little-endian 64-bit value.
    pub raw: u64,
}

/// The security version numbers of a TCB, decoded for a given generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcbParts {
    /// FMC SVN (Turin and newer only).
    pub fmc: Option<u8>,
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level SVN.
    pub microcode: u8,
}

impl core::fmt::Display for TcbParts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

impl TcbParts {
    /// The first component (in the order fmc, bl, tee, snp, ucode) whose SVN is below
    /// `min`'s, as `(name, found, minimum)`. `min.fmc` is compared only if `self` has an
    /// FMC SVN (Turin and newer); on older generations, which have no FMC, it is ignored.
    pub fn first_below(&self, min: &TcbParts) -> Option<(&'static str, u8, u8)> {
        if let (Some(got), Some(want)) = (self.fmc, min.fmc)
            && got < want
        {
            return Some(("fmc", got, want));
        }
        [
            ("bl", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("ucode", self.microcode, min.microcode),
        ]
        .into_iter()
        .find(|&(_, got, want)| got < want)
    }
}

impl TcbVersion {
    /// Decode for a generation. Milan/Genoa: `[bl, tee, 0, 0, 0, 0, snp, ucode]`;
    /// Turin: `[fmc, bl, tee, snp, 0, 0, 0, ucode]`. Returns `None` for
    /// [`Generation::Unknown`], where the layout cannot be known from the report alone.
    pub fn decode(&self, generation: Generation) -> Option<TcbParts> {
        let b = self.raw.to_le_bytes();
        match generation {
            Generation::Milan | Generation::Genoa => Some(TcbParts {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            }),
            Generation::Turin => Some(TcbParts {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            }),
            Generation::Unknown => None,
        }
    }

    /// Encode parts for a generation (inverse of [`decode`](Self::decode)); `None` for
    /// [`Generation::Unknown`].
    pub fn encode(parts: &TcbParts, generation: Generation) -> Option<Self> {
        let b = match generation {
            Generation::Milan | Generation::Genoa => [
                parts.bootloader,
                parts.tee,
                0,
                0,
                0,
                0,
                parts.snp,
                parts.microcode,
            ],
            Generation::Turin => [
                parts.fmc.unwrap_or(0),
                parts.bootloader,
                parts.tee,
                parts.snp,
                0,
                0,
                0,
                parts.microcode,
            ],
            Generation::Unknown => return None,
        };
        Some(TcbVersion {
            raw: u64::from_le_bytes(b),
        })
    }
}

/// The report's ECDSA P-384 signature, as stored (little-endian, zero padded to 72 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `R`, little-endian, 72 bytes.
    pub r: [u8; 72],
    /// `S`, little-endian, 72 bytes.
    pub s: [u8; 72],
    /// Reserved bytes 0x330..0x4A0.
    pub reserved: [u8; 368],
}

impl Signature {
    /// The signature as a fixed-size big-endian `r || s` (96 bytes) if the padding bytes
    /// 48..72 of each component are zero.
    pub fn to_p384_be(&self) -> Option<[u8; 96]> {
        let (r_lo, r_pad) = self.r.split_at(48);
        let (s_lo, s_pad) = self.s.split_at(48);
        if r_pad.iter().chain(s_pad).any(|&b| b != 0) {
            return None;
        }
        let mut out = [0u8; 96];
        for (dst, src) in out[..48].iter_mut().zip(r_lo.iter().rev()) {
            *dst = *src;
        }
        for (dst, src) in out[48..].iter_mut().zip(s_lo.iter().rev()) {
            *dst = *src;
        }
        Some(out)
    }

    /// Build from a big-endian `r || s` (96 bytes), as produced by P-384 signers.
    pub fn from_p384_be(rs: &[u8; 96]) -> Self {
        let mut r = [0u8; 72];
        let mut s = [0u8; 72];
        for (dst, src) in r[..48].iter_mut().zip(rs[..48].iter().rev()) {
            *dst = *src;
        }
        for (dst, src) in s[..48].iter_mut().zip(rs[48..].iter().rev()) {
            *dst = *src;
        }
        Signature {
            r,
            s,
            reserved: [0u8; 368],
        }
    }
}

/// A parsed SEV-SNP attestation report. Field names follow the AMD ABI specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// 0x000: report format version (2, 3, 4 or 5).
    pub version: u32,
    /// 0x004: guest SVN.
    pub guest_svn: u32,
    /// 0x008: guest policy (see the `POLICY_*` constants).
    pub policy: u64,
    /// 0x010: family ID supplied at launch.
    pub family_id: [u8; 16],
    /// 0x020: image ID supplied at launch.
    pub image_id: [u8; 16],
    /// 0x030: VMPL the report was requested from.
    pub vmpl: u32,
    /// 0x034: signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// 0x038: current TCB.
    pub current_tcb: TcbVersion,
    /// 0x040: platform info flags (SMT enabled, TSME enabled, ...).
    pub platform_info: u64,
    /// 0x048: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY
    /// (0 = VCEK, 1 = VLEK, 7 = none).
    pub author_key_flags: u32,
    /// 0x04C: reserved.
    pub reserved0: u32,
    /// 0x050: guest-supplied data (Sotto binds its handshake key here).
    pub report_data: [u8; 64],
    /// 0x090: launch measurement.
    pub measurement: [u8; 48],
    /// 0x0C0: host-supplied data.
    pub host_data: [u8; 32],
    /// 0x0E0: SHA-384 of the ID key.
    pub id_key_digest: [u8; 48],
    /// 0x110: SHA-384 of the author key.
    pub author_key_digest: [u8; 48],
    /// 0x140: report ID of this guest.
    pub report_id: [u8; 32],
    /// 0x160: report ID of the migration agent.
    pub report_id_ma: [u8; 32],
    /// 0x180: reported TCB (the TCB the VCEK is derived from).
    pub reported_tcb: TcbVersion,
    /// 0x188: CPUID family (version 3+; reserved before).
    pub cpuid_fam_id: u8,
    /// 0x189: CPUID model (version 3+; reserved before).
    pub cpuid_mod_id: u8,
    /// 0x18A: CPUID stepping (version 3+; reserved before).
    pub cpuid_step: u8,
    /// 0x18B..0x1A0: reserved.
    pub reserved1: [u8; 21],
    /// 0x1A0: chip identifier (zero if MASK_CHIP_ID is set).
    pub chip_id: [u8; 64],
    /// 0x1E0: committed TCB.
    pub committed_tcb: TcbVersion,
    /// 0x1E8: current firmware build.
    pub current_build: u8,
    /// 0x1E9: current firmware minor version.
    pub current_minor: u8,
    /// 0x1EA: current firmware major version.
    pub current_major: u8,
    /// 0x1EB: reserved.
    pub reserved2: u8,
    /// 0x1EC: committed firmware build.
    pub committed_build: u8,
    /// 0x1ED: committed firmware minor version.
    pub committed_minor: u8,
    /// 0x1EE: committed firmware major version.
    pub committed_major: u8,
    /// 0x1EF: reserved.
    pub reserved3: u8,
    /// 0x1F0: TCB at launch.
    pub launch_tcb: TcbVersion,
    /// 0x1F8: launch mitigation vector (version 5+; reserved before).
    pub launch_mit_vector: u64,
    /// 0x200: current mitigation vector (version 5+; reserved before).
    pub current_mit_vector: u64,
    /// 0x208..0x2A0: reserved.
    pub reserved4: [u8; 152],
    /// 0x2A0..0x4A0: signature.
    pub signature: Signature,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            version: 3,
            guest_svn: 0,
            policy: POLICY_RESERVED_1,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: TcbVersion::default(),
            platform_info: 0,
            author_key_flags: 0,
            reserved0: 0,
            report_data: [0; 64],
            measurement: [0; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: [0; 32],
            report_id_ma: [0xFF; 32],
            reported_tcb: TcbVersion::default(),
            cpuid_fam_id: 0,
            cpuid_mod_id: 0,
            cpuid_step: 0,
            reserved1: [0; 21],
            chip_id: [0; 64],
            committed_tcb: TcbVersion::default(),
            current_build: 0,
            current_minor: 0,
            current_major: 0,
            reserved2: 0,
            committed_build: 0,
            committed_minor: 0,
            committed_major: 0,
            reserved3: 0,
            launch_tcb: TcbVersion::default(),
            launch_mit_vector: 0,
            current_mit_vector: 0,
            reserved4: [0; 152],
            signature: Signature {
                r: [0; 72],
                s: [0; 72],
                reserved: [0; 368],
            },
        }
    }
}

/// Checked little-endian reader over the fixed-size report.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], AttestError> {
        let end = self
            .pos
            .checked_add(N)
            .ok_or_else(|| AttestError::malformed("report offset overflow"))?;
        let out: [u8; N] = self
            .buf
            .get(self.pos..end)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| AttestError::malformed("report truncated"))?;
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, AttestError> {
        Ok(self.bytes::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, AttestError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, AttestError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn tcb(&mut self) -> Result<TcbVersion, AttestError> {
        Ok(TcbVersion { raw: self.u64()? })
    }
}

/// Parse a raw 1184-byte attestation report.
///
/// Errors: `MALFORMED_EVIDENCE` if the length is not exactly 0x4A0, `UNSUPPORTED_VERSION`
/// unless the version is 2, 3, 4 (treated like 3) or 5. Nothing else is checked here.
pub fn parse(bytes: &[u8]) -> Result<Report, AttestError> {
    if bytes.len() != REPORT_LEN {
        return Err(AttestError::malformed(format!(
            "SNP report is {} bytes, expected {REPORT_LEN}",
            bytes.len()
        )));
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.u32()?;
    if !matches!(version, 2..=5) {
        return Err(AttestError::UnsupportedVersion {
            what: "SNP report",
            version,
        });
    }
    let report = Report {
        version,
        guest_svn: r.u32()?,
        policy: r.u64()?,
        family_id: r.bytes()?,
        image_id: r.bytes()?,
        vmpl: r.u32()?,
        signature_algo: r.u32()?,
        current_tcb: r.tcb()?,
        platform_info: r.u64()?,
        author_key_flags: r.u32()?,
        reserved0: r.u32()?,
        report_data: r.bytes()?,
        measurement: r.bytes()?,
        host_data: r.bytes()?,
        id_key_digest: r.bytes()?,
        author_key_digest: r.bytes()?,
        report_id: r.bytes()?,
        report_id_ma: r.bytes()?,
        reported_tcb: r.tcb()?,
        cpuid_fam_id: r.u8()?,
        cpuid_mod_id: r.u8()?,
        cpuid_step: r.u8()?,
        reserved1: r.bytes()?,
        chip_id: r.bytes()?,
        committed_tcb: r.tcb()?,
        current_build: r.u8()?,
        current_minor: r.u8()?,
        current_major: r.u8()?,
        reserved2: r.u8()?,
        committed_build: r.u8()?,
        committed_minor: r.u8()?,
        committed_major: r.u8()?,
        reserved3: r.u8()?,
        launch_tcb: r.tcb()?,
        launch_mit_vector: r.u64()?,
        current_mit_vector: r.u64()?,
        reserved4: r.bytes()?,
        signature: Signature {
            r: r.bytes()?,
            s: r.bytes()?,
            reserved: r.bytes()?,
        },
    };
    debug_assert_eq!(r.pos, REPORT_LEN);
    Ok(report)
}

impl Report {
    /// Serialise to the exact 1184-byte layout; `parse(&r.to_bytes()) == Ok(r)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(REPORT_LEN);
        o.extend_from_slice(&self.version.to_le_bytes());
        o.extend_from_slice(&self.guest_svn.to_le_bytes());
        o.extend_from_slice(&self.policy.to_le_bytes());
        o.extend_from_slice(&self.family_id);
        o.extend_from_slice(&self.image_id);
        o.extend_from_slice(&self.vmpl.to_le_bytes());
        o.extend_from_slice(&self.signature_algo.to_le_bytes());
        o.extend_from_slice(&self.current_tcb.raw.to_le_bytes());
        o.extend_from_slice(&self.platform_info.to_le_bytes());
        o.extend_from_slice(&self.author_key_flags.to_le_bytes());
        o.extend_from_slice(&self.reserved0.to_le_bytes());
        o.extend_from_slice(&self.report_data);
        o.extend_from_slice(&self.measurement);
        o.extend_from_slice(&self.host_data);
        o.extend_from_slice(&self.id_key_digest);
        o.extend_from_slice(&self.author_key_digest);
        o.extend_from_slice(&self.report_id);
        o.extend_from_slice(&self.report_id_ma);
        o.extend_from_slice(&self.reported_tcb.raw.to_le_bytes());
        o.extend_from_slice(&[self.cpuid_fam_id, self.cpuid_mod_id, self.cpuid_step]);
        o.extend_from_slice(&self.reserved1);
        o.extend_from_slice(&self.chip_id);
        o.extend_from_slice(&self.committed_tcb.raw.to_le_bytes());
        o.extend_from_slice(&[
            self.current_build,
            self.current_minor,
            self.current_major,
            self.reserved2,
            self.committed_build,
            self.committed_minor,
            self.committed_major,
            self.reserved3,
        ]);
        o.extend_from_slice(&self.launch_tcb.raw.to_le_bytes());
        o.extend_from_slice(&self.launch_mit_vector.to_le_bytes());
        o.extend_from_slice(&self.current_mit_vector.to_le_bytes());
        o.extend_from_slice(&self.reserved4);
        o.extend_from_slice(&self.signature.r);
        o.extend_from_slice(&self.signature.s);
        o.extend_from_slice(&self.signature.reserved);
        debug_assert_eq!(o.len(), REPORT_LEN);
        o
    }

    /// The signed part of the serialised report (bytes 0x000..0x2A0).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = self.to_bytes();
        b.truncate(SIGNED_LEN);
        b
    }

    /// CPUID (family, model, stepping) for version 3+ reports, `None` for version 2.
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version >= 3).then_some((self.cpuid_fam_id, self.cpuid_mod_id, self.cpuid_step))
    }

    /// Processor generation inferred from the report's CPUID (unknown for version 2).
    pub fn generation(&self) -> Generation {
        match self.cpuid() {
            Some((fam, model, _)) => Generation::from_cpuid(fam, model),
            None => Generation::Unknown,
        }
    }

    /// SIGNING_KEY field (bits 4:2 of 0x048): 0 = VCEK, 1 = VLEK, 7 = none.
    pub fn signing_key(&self) -> u32 {
        (self.author_key_flags >> 2) & 0b111
    }

    /// [`signing_key`](Self::signing_key) as a [`SigningKey`], `None` for "no key" (7) and
    /// reserved values.
    pub fn signing_key_kind(&self) -> Option<SigningKey> {
        SigningKey::from_field(self.signing_key())
    }

    /// AUTHOR_KEY_EN (bit 0 of 0x048): AUTHOR_KEY_DIGEST is present.
    pub fn author_key_enabled(&self) -> bool {
        self.author_key_flags & 1 != 0
    }

    /// MASK_CHIP_KEY (bit 1 of 0x048).
    pub fn mask_chip_key(&self) -> bool {
        self.author_key_flags & 0b10 != 0
    }

    /// Whether the guest policy allows debugging (bit 19).
    pub fn debug_allowed(&self) -> bool {
        self.policy & POLICY_DEBUG != 0
    }

    /// Whether the guest policy allows a migration agent (bit 18).
    pub fn migration_agent_allowed(&self) -> bool {
        self.policy & POLICY_MIGRATE_MA != 0
    }
}
