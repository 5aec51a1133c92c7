//! # sotto-wire
//!
//! The Sotto channel, sans-I/O: a Noise `NX` handshake whose second message carries the
//! enclave's attestation evidence, then multiplexed HTTP-like request/response streams in
//! Noise transport records. No sockets, no clocks, no OS randomness: callers pass bytes
//! and entropy in and get bytes out. The byte-level specification is `docs/protocol.md`.
//!
//! Layers:
//! - [`handshake`]: [`ClientHandshake`] / [`ServerHandshake`], the REPORT_DATA rule
//!   ([`report_data`]).
//! - [`conn`]: [`Connection`], record padding, streams with explicit end, cancel, limits and
//!   rekeying.
//! - [`frame`]: request/response heads and cancel codes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod claims;
pub mod conn;
mod error;
pub mod frame;
pub mod handshake;

pub use claims::Claims;
pub use conn::{Connection, Event, Limits, Role};
pub use error::WireError;
pub use frame::{CancelCode, RequestHead, ResponseHead};
pub use handshake::{
    ClientHandshake, ClientHello, ServerHandshake, ServerHello, StaticKeypair, report_data,
};

/// The Noise protocol name.
pub const PROTOCOL_NAME: &str = "Noise_NX_25519_ChaChaPoly_SHA256";
/// Noise prologue: binds the protocol identity into the handshake hash.
pub const PROLOGUE: &[u8] = b"sotto-channel-v1";
/// Version byte carried in both hellos.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest record (one Noise message), the Noise maximum.
pub const MAX_RECORD: usize = 65535;
