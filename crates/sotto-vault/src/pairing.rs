//! Device pairing: an existing device (the *approver*) hands the account keys of every epoch
//! to a new device (the *requester*) through the untrusted store, authenticated by a short
//! code the user reads on the new device and types on the existing one.
//!
//! The code is the password of a SPAKE2 exchange (RustCrypto `spake2`), so an active
//! store gets one guess per session (probability 10⁻⁸) and no offline dictionary attack.
//! The payload key also mixes an ephemeral-static X25519 with the requester's wrapping
//! key, and everything is bound to a transcript hash of both devices' public keys and
//! both SPAKE2 messages. Protocol, argument and limits: `docs/vault.md` §5.
//!
//! ```text
//! requester (new)                       store                      approver (existing)
//! start(): code shown, request  ───────────────────────────────▶  respond(code typed)
//!         finish(response) ◀────────────────────────────────────  response (sealed keys)
//!         confirm ─────────────────────────────────────────────▶  finish(confirm) → add device
//! ```

use core::fmt;

use rand_chacha_0_3::ChaCha20Rng;
use rand_chacha_0_3::rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{Reader, check_id, labelled, put_id};
use crate::crypto::{NONCE_LEN, TAG_LEN, aead_open, aead_seal, hkdf32, x25519};
use crate::error::{Result, VaultError};
use crate::item::Vault;
use crate::keys::{AccountKey, CredentialKeys, CredentialPublic};

/// Number of decimal digits in a pairing code.
pub const CODE_DIGITS: usize = 8;
/// Magic of a pairing request.
pub const REQUEST_MAGIC: &[u8; 4] = b"SVPQ";
/// Magic of a pairing response.
pub const RESPONSE_MAGIC: &[u8; 4] = b"SVPS";
/// Magic of a pairing confirmation.
pub const CONFIRM_MAGIC: &[u8; 4] = b"SVPC";
/// Pairing message format version.
pub const PAIRING_FORMAT: u8 = 1;

/// SPAKE2 identity label of the approver (side A), followed by `id(account)`.
pub const LABEL_PAIR_APPROVER: &[u8] = b"sotto-vault/v1/pair-approver";
/// SPAKE2 identity label of the requester (side B), followed by `id(account)`.
pub const LABEL_PAIR_REQUESTER: &[u8] = b"sotto-vault/v1/pair-requester";
/// Transcript hash label.
pub const LABEL_PAIR_TRANSCRIPT: &[u8] = b"sotto-vault/v1/pair-transcript";
/// HKDF info label of the payload key.
pub const LABEL_PAIR_PAYLOAD_KEY: &[u8] = b"sotto-vault/v1/pair-payload-key";
/// HKDF info label of the requester's confirmation.
pub const LABEL_PAIR_CONFIRM: &[u8] = b"sotto-vault/v1/pair-confirm";
/// Associated-data label of the payload.
pub const LABEL_PAIR_AD: &[u8] = b"sotto-vault/v1/pair-ad";

const SPAKE_MSG_LEN: usize = 33;
const MAX_EPOCHS: usize = u16::MAX as usize;

/// A pairing code: [`CODE_DIGITS`] decimal digits (≈26.6 bits), single use. Redacted in
/// `Debug`, zeroized on drop.
pub struct PairingCode(Zeroizing<[u8; CODE_DIGITS]>);

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(<redacted>)")
    }
}

impl PairingCode {
    /// A uniformly distributed code from 8 random bytes: `u64be(bytes) mod 10^8`, written
    /// with leading zeros (bias < 2⁻³⁷, negligible).
    pub fn from_random(bytes: [u8; 8]) -> Self {
        let n = u64::from_be_bytes(bytes) % 100_000_000;
        let mut d = [0u8; CODE_DIGITS];
        let mut v = n;
        for slot in d.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        PairingCode(Zeroizing::new(d))
    }

    /// Parses what the user typed: exactly 8 digits; spaces and dashes are ignored.
    pub fn parse(s: &str) -> Result<Self> {
        let mut d = Zeroizing::new([0u8; CODE_DIGITS]);
        let mut n = 0;
        for c in s.bytes() {
            match c {
                b'0'..=b'9' => {
                    if n == CODE_DIGITS {
                        return Err(VaultError::PairingCodeInvalid);
                    }
                    d[n] = c;
                    n += 1;
                }
                b' ' | b'-' => {}
                _ => return Err(VaultError::PairingCodeInvalid),
            }
        }
        if n != CODE_DIGITS {
            return Err(VaultError::PairingCodeInvalid);
        }
        Ok(PairingCode(d))
    }

    /// The digits, e.g. `"01234567"`.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.0.as_ref()).expect("ASCII digits")
    }

    /// For display: `"0123 4567"`.
    pub fn display(&self) -> String {
        let s = self.as_str();
        format!("{} {}", &s[..4], &s[4..])
    }
}

fn identities(account_id: &[u8]) -> (Identity, Identity) {
    let mut a = labelled(LABEL_PAIR_APPROVER);
    put_id(&mut a, account_id);
    let mut b = labelled(LABEL_PAIR_REQUESTER);
    put_id(&mut b, account_id);
    (Identity::new(&a), Identity::new(&b))
}

struct Transcript<'a> {
    account_id: &'a [u8],
    requester: &'a CredentialPublic,
    requester_spake: &'a [u8],
    approver_id: &'a [u8],
    approver_public: &'a [u8; 32],
    ephemeral_public: &'a [u8; 32],
    approver_spake: &'a [u8],
}

impl Transcript<'_> {
    fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(labelled(LABEL_PAIR_TRANSCRIPT));
        let mut ids = Vec::new();
        put_id(&mut ids, self.account_id);
        put_id(&mut ids, &self.requester.credential_id);
        h.update(&ids);
        h.update(self.requester.wrap_public);
        h.update(self.requester_spake);
        let mut a = Vec::new();
        put_id(&mut a, self.approver_id);
        h.update(&a);
        h.update(self.approver_public);
        h.update(self.ephemeral_public);
        h.update(self.approver_spake);
        h.finalize().into()
    }
}

/// `(payload key, confirmation)` from the SPAKE2 key, the X25519 result and the transcript.
fn session_keys(
    spake_key: &[u8],
    dh: &[u8; 32],
    th: &[u8; 32],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(spake_key);
    ikm[32..].copy_from_slice(dh);
    (
        hkdf32(th, ikm.as_ref(), &labelled(LABEL_PAIR_PAYLOAD_KEY)),
        hkdf32(th, ikm.as_ref(), &labelled(LABEL_PAIR_CONFIRM)),
    )
}

fn payload_aad(th: &[u8; 32]) -> Vec<u8> {
    let mut aad = labelled(LABEL_PAIR_AD);
    aad.extend_from_slice(th);
    aad
}

fn spake_key(state: Spake2<Ed25519Group>, msg: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    state
        .finish(msg)
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Malformed("bad SPAKE2 message"))
}

/// The new device's side of a pairing, between [`Requester::start`] and
/// [`Requester::finish`]. Single use: `finish` consumes it whatever the outcome.
pub struct Requester {
    account_id: Vec<u8>,
    public: CredentialPublic,
    secret: x25519_dalek::StaticSecret,
    spake: Spake2<Ed25519Group>,
    request_spake: Vec<u8>,
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("credential", &self.public)
            .finish_non_exhaustive()
    }
}

/// What a requester obtains from a successful pairing.
#[derive(Debug)]
pub struct Paired {
    /// Every epoch's account key (wrap them for this credential with
    /// [`Vault::wrap_all`] and upload the records).
    pub vault: Vault,
    /// The approver's credential, authenticated by the pairing.
    pub approver: CredentialPublic,
}

impl Requester {
    /// Starts pairing on the new device. `code_random`: 8 random bytes for the code that
    /// the device displays; `spake_seed`: 32 random bytes for the SPAKE2 scalar. Returns
    /// the state, the code to show, and the request to post to the store.
    pub fn start(
        keys: &CredentialKeys,
        code_random: [u8; 8],
        spake_seed: [u8; 32],
    ) -> (Requester, PairingCode, Vec<u8>) {
        let code = PairingCode::from_random(code_random);
        let account_id = keys.account_id().to_vec();
        let (id_a, id_b) = identities(&account_id);
        let (spake, msg) = Spake2::<Ed25519Group>::start_b_with_rng(
            &Password::new(code.as_str()),
            &id_a,
            &id_b,
            ChaCha20Rng::from_seed(spake_seed),
        );
        let public = keys.public();
        let mut req = Vec::with_capacity(128 + account_id.len() + public.credential_id.len());
        req.extend_from_slice(REQUEST_MAGIC);
        req.push(PAIRING_FORMAT);
        put_id(&mut req, &account_id);
        put_id(&mut req, &public.credential_id);
        req.extend_from_slice(&public.wrap_public);
        req.extend_from_slice(&msg);
        (
            Requester {
                account_id,
                public,
                secret: keys.wrap_secret().clone(),
                spake,
                request_spake: msg,
            },
            code,
            req,
        )
    }

    /// Processes the approver's response: on success returns the account keys and the
    /// confirmation to post back. Any failure (wrong code typed, a substituted key, a
    /// forged or altered response) is [`VaultError::PairingAuthFailed`] or a parse error,
    /// and the session is over: start again with a new code.
    pub fn finish(self, response: &[u8]) -> Result<(Paired, Vec<u8>)> {
        let mut r = Reader::new(response, "pairing response");
        if r.take(4)? != RESPONSE_MAGIC {
            return Err(VaultError::Malformed("not a pairing response"));
        }
        let format = r.u8()?;
        if format != PAIRING_FORMAT {
            return Err(VaultError::UnsupportedFormat(format));
        }
        let approver_id = r.id()?.to_vec();
        let approver_public = r.array::<32>()?;
        let ephemeral_public = r.array::<32>()?;
        let approver_spake = r.take(SPAKE_MSG_LEN)?;
        let nonce = r.array::<NONCE_LEN>()?;
        let ct = r.rest();
        if ct.len() < 2 + TAG_LEN {
            return Err(VaultError::Truncated("pairing payload"));
        }
        if approver_id == self.public.credential_id {
            return Err(VaultError::Malformed(
                "approver and requester are the same credential",
            ));
        }
        let k = spake_key(self.spake, approver_spake)?;
        let dh = x25519(&self.secret, &ephemeral_public)?;
        let th = Transcript {
            account_id: &self.account_id,
            requester: &self.public,
            requester_spake: &self.request_spake,
            approver_id: &approver_id,
            approver_public: &approver_public,
            ephemeral_public: &ephemeral_public,
            approver_spake,
        }
        .hash();
        let (payload_key, confirm) = session_keys(&k, &dh, &th);
        let pt = aead_open(&payload_key, &nonce, &payload_aad(&th), ct)
            .ok_or(VaultError::PairingAuthFailed)?;
        let keys = decode_payload(&pt)?;
        let vault = Vault::from_keys(&self.account_id, keys)?;
        let mut c = Vec::with_capacity(37);
        c.extend_from_slice(CONFIRM_MAGIC);
        c.push(PAIRING_FORMAT);
        c.extend_from_slice(confirm.as_ref());
        Ok((
            Paired {
                vault,
                approver: CredentialPublic {
                    account_id: self.account_id,
                    credential_id: approver_id,
                    wrap_public: approver_public,
                },
            },
            c,
        ))
    }
}

/// A parsed pairing request (unauthenticated until the pairing completes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingRequest {
    /// The requester's credential (account id, credential id, wrapping public key).
    pub credential: CredentialPublic,
    spake: Vec<u8>,
}

impl PairingRequest {
    /// Parses a request.
    pub fn parse(request: &[u8]) -> Result<Self> {
        let mut r = Reader::new(request, "pairing request");
        if r.take(4)? != REQUEST_MAGIC {
            return Err(VaultError::Malformed("not a pairing request"));
        }
        let format = r.u8()?;
        if format != PAIRING_FORMAT {
            return Err(VaultError::UnsupportedFormat(format));
        }
        let account_id = r.id()?.to_vec();
        let credential_id = r.id()?.to_vec();
        let wrap_public = r.array::<32>()?;
        let spake = r.take(SPAKE_MSG_LEN)?.to_vec();
        r.finish()?;
        Ok(PairingRequest {
            credential: CredentialPublic {
                account_id,
                credential_id,
                wrap_public,
            },
            spake,
        })
    }
}

/// Randomness for [`approve`]: fresh random bytes from the caller.
pub struct ApproveRandomness {
    /// Seed of the SPAKE2 scalar.
    pub spake_seed: [u8; 32],
    /// X25519 ephemeral secret.
    pub ephemeral: [u8; 32],
    /// XChaCha20 nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// The approver's state after [`approve`]: waits for the requester's confirmation before
/// the new device may be added to the device directory. Single use.
pub struct PendingApproval {
    device: CredentialPublic,
    confirm: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for PendingApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingApproval")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The existing device's side: with the code the user typed, answers `request` with every
/// epoch key of `vault` sealed for the requester, and returns the state that checks the
/// requester's confirmation. Use one typed code for exactly one request: after a failure
/// the user must start again with a new code on the new device.
pub fn approve(
    vault: &Vault,
    own: &CredentialKeys,
    request: &[u8],
    code: &PairingCode,
    random: ApproveRandomness,
) -> Result<(PendingApproval, Vec<u8>)> {
    let req = PairingRequest::parse(request)?;
    if req.credential.account_id != vault.account_id() || own.account_id() != vault.account_id() {
        return Err(VaultError::Malformed("pairing request for another account"));
    }
    if req.credential.credential_id == own.credential_id() {
        return Err(VaultError::Malformed(
            "approver and requester are the same credential",
        ));
    }
    check_id(&req.credential.credential_id, "credential id")?;
    let (id_a, id_b) = identities(vault.account_id());
    let (spake, approver_spake) = Spake2::<Ed25519Group>::start_a_with_rng(
        &Password::new(code.as_str()),
        &id_a,
        &id_b,
        ChaCha20Rng::from_seed(random.spake_seed),
    );
    let k = spake_key(spake, &req.spake)?;
    let eph_secret = x25519_dalek::StaticSecret::from(random.ephemeral);
    let ephemeral_public = x25519_dalek::PublicKey::from(&eph_secret).to_bytes();
    let dh = x25519(&eph_secret, &req.credential.wrap_public)?;
    let approver = own.public();
    let th = Transcript {
        account_id: vault.account_id(),
        requester: &req.credential,
        requester_spake: &req.spake,
        approver_id: &approver.credential_id,
        approver_public: &approver.wrap_public,
        ephemeral_public: &ephemeral_public,
        approver_spake: &approver_spake,
    }
    .hash();
    let (payload_key, confirm) = session_keys(&k, &dh, &th);
    let payload = encode_payload(vault);
    let ct = aead_seal(&payload_key, &random.nonce, &payload_aad(&th), &payload);
    let mut resp = Vec::with_capacity(160 + approver.credential_id.len() + ct.len());
    resp.extend_from_slice(RESPONSE_MAGIC);
    resp.push(PAIRING_FORMAT);
    put_id(&mut resp, &approver.credential_id);
    resp.extend_from_slice(&approver.wrap_public);
    resp.extend_from_slice(&ephemeral_public);
    resp.extend_from_slice(&approver_spake);
    resp.extend_from_slice(&random.nonce);
    resp.extend_from_slice(&ct);
    Ok((
        PendingApproval {
            device: req.credential,
            confirm,
        },
        resp,
    ))
}

impl PendingApproval {
    /// The device that asked (not yet authenticated).
    pub fn device(&self) -> &CredentialPublic {
        &self.device
    }

    /// Checks the requester's confirmation. On success the returned credential (its
    /// wrapping public key proven to belong to whoever knew the code) may be added to the
    /// device directory; on failure ([`VaultError::PairingConfirmFailed`]) do not add it.
    pub fn finish(self, confirm: &[u8]) -> Result<CredentialPublic> {
        let mut r = Reader::new(confirm, "pairing confirmation");
        if r.take(4)? != CONFIRM_MAGIC {
            return Err(VaultError::Malformed("not a pairing confirmation"));
        }
        let format = r.u8()?;
        if format != PAIRING_FORMAT {
            return Err(VaultError::UnsupportedFormat(format));
        }
        let tag = r.array::<32>()?;
        r.finish()?;
        if !bool::from(tag.ct_eq(self.confirm.as_ref())) {
            return Err(VaultError::PairingConfirmFailed);
        }
        Ok(self.device)
    }
}

/// `u16 count || count × (u32 epoch || key[32])`, ascending epochs.
fn encode_payload(vault: &Vault) -> Zeroizing<Vec<u8>> {
    let keys: Vec<&AccountKey> = vault.keys().take(MAX_EPOCHS).collect();
    let mut p = Zeroizing::new(Vec::with_capacity(2 + keys.len() * 36));
    p.extend_from_slice(&(keys.len() as u16).to_be_bytes());
    for k in keys {
        p.extend_from_slice(&k.epoch().to_be_bytes());
        p.extend_from_slice(k.bytes());
    }
    p
}

fn decode_payload(p: &[u8]) -> Result<Vec<AccountKey>> {
    let mut r = Reader::new(p, "pairing payload");
    let n = r.u16()? as usize;
    if n == 0 {
        return Err(VaultError::Malformed("no account key"));
    }
    let mut out: Vec<AccountKey> = Vec::with_capacity(n);
    for _ in 0..n {
        let epoch = r.u32()?;
        let key = Zeroizing::new(r.array::<32>()?);
        if out.last().is_some_and(|k| k.epoch() >= epoch) {
            return Err(VaultError::Malformed("epochs not ascending"));
        }
        out.push(AccountKey::new(epoch, *key)?);
    }
    r.finish()?;
    Ok(out)
}
