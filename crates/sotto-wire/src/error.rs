//! The channel's single error type.

/// Everything that can go wrong in the channel.
///
/// Errors carry no application data (no header values, no body bytes): they may be logged
/// outside the enclave. Every variant has a stable machine-readable [`WireError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The Noise handshake failed (bad message, wrong key, tampered payload).
    #[error("handshake failed: {0}")]
    Handshake(&'static str),
    /// The peer speaks a protocol version this implementation does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A handshake payload did not parse.
    #[error("malformed handshake payload: {0}")]
    MalformedHello(&'static str),
    /// A transport record failed authentication: tampered, replayed, reordered or dropped
    /// records all end here, because the Noise nonce is implicit.
    #[error("record failed authentication (tampered, replayed, reordered or dropped)")]
    Decrypt,
    /// A record or frame exceeds the size limit.
    #[error("record of {size} bytes exceeds the limit of {limit}")]
    RecordTooLarge {
        /// Size seen.
        size: usize,
        /// Limit in force.
        limit: usize,
    },
    /// A decrypted frame is not well formed.
    #[error("malformed frame: {0}")]
    MalformedFrame(&'static str),
    /// The peer broke the stream state machine (e.g. data after end, reused stream id).
    #[error("protocol violation: {0}")]
    ProtocolViolation(&'static str),
    /// The local side tried something the stream state does not allow.
    #[error("invalid stream operation: {0}")]
    InvalidOperation(&'static str),
    /// No such open stream.
    #[error("unknown or closed stream {0}")]
    UnknownStream(u32),
    /// Opening another stream would exceed the concurrent stream limit.
    #[error("too many concurrent streams (limit {0})")]
    TooManyStreams(usize),
    /// A body exceeded the reassembly limit.
    #[error("body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// The connection is closed (gracefully or after a fatal error).
    #[error("connection closed")]
    Closed,
    /// The caller-supplied entropy was used up (each handshake needs fresh entropy).
    #[error("entropy exhausted")]
    Entropy,
}

impl WireError {
    /// Stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Handshake(_) => "HANDSHAKE_FAILED",
            WireError::UnsupportedVersion(_) => "UNSUPPORTED_VERSION",
            WireError::MalformedHello(_) => "MALFORMED_HELLO",
            WireError::Decrypt => "RECORD_AUTH_FAILED",
            WireError::RecordTooLarge { .. } => "RECORD_TOO_LARGE",
            WireError::MalformedFrame(_) => "MALFORMED_FRAME",
            WireError::ProtocolViolation(_) => "PROTOCOL_VIOLATION",
            WireError::InvalidOperation(_) => "INVALID_OPERATION",
            WireError::UnknownStream(_) => "UNKNOWN_STREAM",
            WireError::TooManyStreams(_) => "TOO_MANY_STREAMS",
            WireError::BodyTooLarge(_) => "BODY_TOO_LARGE",
            WireError::Closed => "CONNECTION_CLOSED",
            WireError::Entropy => "ENTROPY_EXHAUSTED",
        }
    }
}

pub(crate) fn snow_err(e: snow::Error) -> WireError {
    match e {
        snow::Error::Decrypt => WireError::Handshake("payload failed authentication"),
        snow::Error::Dh => WireError::Handshake("Diffie-Hellman failed (invalid public key)"),
        snow::Error::Input => WireError::Handshake("message has the wrong length"),
        snow::Error::Rng => WireError::Entropy,
        snow::Error::State(_) => WireError::Handshake("handshake state error"),
        _ => WireError::Handshake("noise error"),
    }
}
