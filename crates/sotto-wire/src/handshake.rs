//! The Noise NX handshake that opens a channel, and the REPORT_DATA binding rule.
//!
//! ```text
//! client                                   enclave
//!   -> e                 [ClientHello, cleartext]
//!   <- e, ee, s, es      [ServerHello: claims + evidence, encrypted]
//! ```
//!
//! The client learns the enclave's static key from the second message and must verify the
//! evidence (whose REPORT_DATA binds that key, the client's nonce and the enclave's claims)
//! before it calls [`ServerHello::accept`]; nothing can be sent until then.

use core::cell::Cell;
use core::fmt;

use sha2::{Digest, Sha256, Sha512};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use zeroize::{Zeroize, Zeroizing};

use crate::conn::{Connection, Limits, Role};
use crate::error::{WireError, snow_err};
use crate::{MAX_RECORD, PROLOGUE, PROTOCOL_NAME, PROTOCOL_VERSION};

/// Length of X25519 keys.
pub const KEY_LEN: usize = 32;
/// Length of the client's optional freshness nonce.
pub const NONCE_LEN: usize = 32;
/// Domain-separation label for REPORT_DATA.
pub const REPORT_DATA_LABEL: &[u8] = b"sotto-report-data-v1\0";

const FLAG_NONCE: u8 = 0x01;
/// Size of `-> e` (32) and `<- e, ee, s, es` overhead (32 + 32 + 16 + 16).
const MSG1_OVERHEAD: usize = KEY_LEN;
const MSG2_OVERHEAD: usize = KEY_LEN + KEY_LEN + 16 + 16;
/// Largest ServerHello payload that fits one Noise message.
pub const MAX_SERVER_HELLO: usize = MAX_RECORD - MSG2_OVERHEAD;

/// Computes the 64 bytes an enclave must place in its hardware report's REPORT_DATA:
///
/// `SHA-512(REPORT_DATA_LABEL || static_pub (32) || u8 nonce_len || nonce || SHA-256(claims))`
///
/// `nonce_len` is 0 (no nonce, evidence cached per boot) or 32.
pub fn report_data(
    static_pub: &[u8; KEY_LEN],
    nonce: Option<&[u8; NONCE_LEN]>,
    claims: &[u8],
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_LABEL);
    h.update(static_pub);
    match nonce {
        Some(n) => {
            h.update([NONCE_LEN as u8]);
            h.update(n);
        }
        None => h.update([0u8]),
    }
    h.update(Sha256::digest(claims));
    h.finalize().into()
}

/// Caller-supplied entropy for one key generation. Sans-I/O: the library never reads an OS
/// RNG; the shell passes 32 fresh random bytes. The X25519 private key is those bytes
/// (clamped by the DH), which also makes test vectors reproducible.
struct OneShotRng(Option<Zeroizing<[u8; 32]>>);

impl Random for OneShotRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(seed) if dest.len() == seed.len() => {
                dest.copy_from_slice(&seed[..]);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

struct Resolver {
    entropy: Cell<Option<[u8; 32]>>,
}

impl Resolver {
    fn boxed(entropy: [u8; 32]) -> Box<Self> {
        Box::new(Resolver {
            entropy: Cell::new(Some(entropy)),
        })
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(mut e) = self.entropy.take() {
            e.zeroize();
        }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OneShotRng(
            self.entropy.take().map(Zeroizing::new),
        )))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder(entropy: [u8; 32]) -> Result<Builder<'static>, WireError> {
    let params = PROTOCOL_NAME.parse().map_err(snow_err)?;
    Builder::with_resolver(params, Resolver::boxed(entropy))
        .prologue(PROLOGUE)
        .map_err(snow_err)
}

/// The enclave's long-term (per boot) X25519 static key.
pub struct StaticKeypair {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
}

impl StaticKeypair {
    /// Derives the keypair from 32 bytes of fresh entropy.
    pub fn from_entropy(entropy: [u8; 32]) -> Result<Self, WireError> {
        let kp = builder(entropy)?.generate_keypair().map_err(snow_err)?;
        let mut private = Zeroizing::new([0u8; KEY_LEN]);
        let mut public = [0u8; KEY_LEN];
        if kp.private.len() != KEY_LEN || kp.public.len() != KEY_LEN {
            return Err(WireError::Handshake("unexpected key length"));
        }
        private.copy_from_slice(&kp.private);
        public.copy_from_slice(&kp.public);
        let mut kp_private = kp.private;
        kp_private.zeroize();
        Ok(StaticKeypair { private, public })
    }

    /// The public key, bound into attestation evidence.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &HexFmt(&self.public))
            .finish_non_exhaustive()
    }
}

struct HexFmt<'a>(&'a [u8]);
impl fmt::Debug for HexFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the client says in the first message (sent in the clear, but bound into the
/// handshake hash, so tampering breaks the second message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Protocol version (currently 1).
    pub version: u8,
    /// Optional freshness nonce the enclave must bind into its evidence.
    pub nonce: Option<[u8; NONCE_LEN]>,
}

impl ClientHello {
    /// Encodes: `u8 version || u8 flags || [32-byte nonce if flags & 1]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.version,
            if self.nonce.is_some() { FLAG_NONCE } else { 0 },
        ];
        if let Some(n) = &self.nonce {
            out.extend_from_slice(n);
        }
        out
    }

    /// Strict decoding: unknown flags or trailing bytes are errors.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let (&version, rest) = b
            .split_first()
            .ok_or(WireError::MalformedHello("empty client hello"))?;
        if version != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let (&flags, rest) = rest
            .split_first()
            .ok_or(WireError::MalformedHello("missing flags"))?;
        if flags & !FLAG_NONCE != 0 {
            return Err(WireError::MalformedHello("unknown flags"));
        }
        let nonce = if flags & FLAG_NONCE != 0 {
            let n: [u8; NONCE_LEN] = rest
                .try_into()
                .map_err(|_| WireError::MalformedHello("nonce has the wrong length"))?;
            Some(n)
        } else {
            if !rest.is_empty() {
                return Err(WireError::MalformedHello("trailing bytes"));
            }
            None
        };
        Ok(ClientHello { version, nonce })
    }
}

fn encode_server_hello(claims: &[u8], evidence: &[u8]) -> Result<Vec<u8>, WireError> {
    let total = 1 + 4 + claims.len() + 4 + evidence.len();
    if total > MAX_SERVER_HELLO {
        return Err(WireError::RecordTooLarge {
            size: total,
            limit: MAX_SERVER_HELLO,
        });
    }
    let mut out = Vec::with_capacity(total);
    out.push(PROTOCOL_VERSION);
    out.extend_from_slice(&(claims.len() as u32).to_be_bytes());
    out.extend_from_slice(claims);
    out.extend_from_slice(&(evidence.len() as u32).to_be_bytes());
    out.extend_from_slice(evidence);
    Ok(out)
}

fn take_lv<'a>(b: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], WireError> {
    if b.len() < 4 {
        return Err(WireError::MalformedHello(what));
    }
    let (len, rest) = b.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if rest.len() < len {
        return Err(WireError::MalformedHello(what));
    }
    let (v, rest) = rest.split_at(len);
    *b = rest;
    Ok(v)
}

fn decode_server_hello(b: &[u8]) -> Result<(Vec<u8>, Vec<u8>), WireError> {
    let (&version, mut rest) = b
        .split_first()
        .ok_or(WireError::MalformedHello("empty server hello"))?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let claims = take_lv(&mut rest, "truncated claims")?.to_vec();
    let evidence = take_lv(&mut rest, "truncated evidence")?.to_vec();
    if !rest.is_empty() {
        return Err(WireError::MalformedHello("trailing bytes"));
    }
    Ok((claims, evidence))
}

/// Client side, after sending the first message.
pub struct ClientHandshake {
    hs: HandshakeState,
    nonce: Option<[u8; NONCE_LEN]>,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake").finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake. `entropy` becomes the ephemeral key and must be fresh random
    /// bytes; `nonce` asks the enclave for evidence bound to it. Returns the first record.
    pub fn start(
        entropy: [u8; 32],
        nonce: Option<[u8; NONCE_LEN]>,
    ) -> Result<(Self, Vec<u8>), WireError> {
        let mut hs = builder(entropy)?.build_initiator().map_err(snow_err)?;
        let hello = ClientHello {
            version: PROTOCOL_VERSION,
            nonce,
        }
        .encode();
        // snow wants room for a tag even where the first message has none.
        let mut msg = vec![0u8; MSG1_OVERHEAD + hello.len() + 16];
        let n = hs.write_message(&hello, &mut msg).map_err(snow_err)?;
        msg.truncate(n);
        Ok((ClientHandshake { hs, nonce }, msg))
    }

    /// Processes the enclave's reply. The result must be verified before
    /// [`ServerHello::accept`].
    pub fn read_server_hello(mut self, record: &[u8]) -> Result<ServerHello, WireError> {
        if record.len() > MAX_RECORD {
            return Err(WireError::RecordTooLarge {
                size: record.len(),
                limit: MAX_RECORD,
            });
        }
        if record.len() < MSG2_OVERHEAD {
            return Err(WireError::Handshake("message has the wrong length"));
        }
        let mut payload = vec![0u8; record.len()];
        let n = self
            .hs
            .read_message(record, &mut payload)
            .map_err(snow_err)?;
        payload.truncate(n);
        let (claims, evidence) = decode_server_hello(&payload)?;
        let rs = self
            .hs
            .get_remote_static()
            .ok_or(WireError::Handshake("no remote static key"))?;
        let server_static: [u8; KEY_LEN] = rs
            .try_into()
            .map_err(|_| WireError::Handshake("unexpected key length"))?;
        let mut handshake_hash = [0u8; 32];
        handshake_hash.copy_from_slice(self.hs.get_handshake_hash());
        let transport = self.hs.into_transport_mode().map_err(snow_err)?;
        Ok(ServerHello {
            server_static,
            claims,
            evidence,
            nonce: self.nonce,
            handshake_hash,
            transport,
        })
    }
}

/// The enclave's authenticated reply, not yet trusted: verify [`ServerHello::evidence`]
/// against [`ServerHello::expected_report_data`] first.
pub struct ServerHello {
    server_static: [u8; KEY_LEN],
    claims: Vec<u8>,
    evidence: Vec<u8>,
    nonce: Option<[u8; NONCE_LEN]>,
    handshake_hash: [u8; 32],
    transport: snow::TransportState,
}

impl fmt::Debug for ServerHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHello")
            .field("server_static", &HexFmt(&self.server_static))
            .field("claims_len", &self.claims.len())
            .field("evidence_len", &self.evidence.len())
            .finish_non_exhaustive()
    }
}

impl ServerHello {
    /// The enclave's static public key, proven by the `es` DH of the handshake.
    pub fn server_static(&self) -> &[u8; KEY_LEN] {
        &self.server_static
    }
    /// The enclave's claims (opaque to this crate; bound by REPORT_DATA).
    pub fn claims(&self) -> &[u8] {
        &self.claims
    }
    /// The attestation evidence bundle (opaque to this crate).
    pub fn evidence(&self) -> &[u8] {
        &self.evidence
    }
    /// The nonce this client sent, if any.
    pub fn nonce(&self) -> Option<&[u8; NONCE_LEN]> {
        self.nonce.as_ref()
    }
    /// The REPORT_DATA that genuine evidence for this handshake must carry.
    pub fn expected_report_data(&self) -> [u8; 64] {
        report_data(&self.server_static, self.nonce.as_ref(), &self.claims)
    }
    /// Noise handshake hash (channel binding).
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }
    /// Enters transport mode. Call only after the evidence verified.
    pub fn accept(self, limits: Limits) -> Result<Connection, WireError> {
        Connection::new(self.transport, Role::Client, limits)
    }
}

/// Enclave side, after reading the client's first message.
pub struct ServerHandshake {
    hs: HandshakeState,
    hello: ClientHello,
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("hello", &self.hello)
            .finish_non_exhaustive()
    }
}

impl ServerHandshake {
    /// Reads the first message. `entropy` (fresh random bytes) becomes the ephemeral key.
    pub fn read_client_hello(
        static_key: &StaticKeypair,
        entropy: [u8; 32],
        record: &[u8],
    ) -> Result<Self, WireError> {
        if record.len() > MSG1_OVERHEAD + 2 + NONCE_LEN {
            return Err(WireError::MalformedHello("client hello too long"));
        }
        let mut hs = builder(entropy)?
            .local_private_key(&static_key.private[..])
            .map_err(snow_err)?
            .build_responder()
            .map_err(snow_err)?;
        let mut payload = vec![0u8; record.len()];
        let n = hs.read_message(record, &mut payload).map_err(snow_err)?;
        let hello = ClientHello::decode(&payload[..n])?;
        Ok(ServerHandshake { hs, hello })
    }

    /// The client's nonce, to bind into fresh evidence.
    pub fn client_nonce(&self) -> Option<&[u8; NONCE_LEN]> {
        self.hello.nonce.as_ref()
    }

    /// Sends claims and evidence; returns the second record and the connection.
    pub fn finish(
        mut self,
        claims: &[u8],
        evidence: &[u8],
        limits: Limits,
    ) -> Result<(Vec<u8>, Connection), WireError> {
        let payload = encode_server_hello(claims, evidence)?;
        let mut msg = vec![0u8; MAX_RECORD];
        let n = self
            .hs
            .write_message(&payload, &mut msg)
            .map_err(snow_err)?;
        msg.truncate(n);
        let transport = self.hs.into_transport_mode().map_err(snow_err)?;
        Ok((msg, Connection::new(transport, Role::Server, limits)?))
    }
}
