//! Frames: the plaintext of one transport record.
//!
//! `u8 type || u32 stream_id (big endian) || payload`. One record carries exactly one frame,
//! followed by zero padding and a `u16` padding length (added and removed by the connection,
//! see `docs/protocol.md` section 3).

use crate::error::WireError;

/// Frame type bytes.
pub(crate) mod ty {
    pub const REQUEST_HEAD: u8 = 0x01;
    pub const RESPONSE_HEAD: u8 = 0x02;
    pub const DATA: u8 = 0x03;
    pub const END: u8 = 0x04;
    pub const CANCEL: u8 = 0x05;
    pub const REKEY: u8 = 0x06;
    pub const CLOSE: u8 = 0x07;
}

/// Frame header size (type + stream id).
pub const FRAME_HEADER: usize = 5;
/// Maximum header fields in a head.
pub const MAX_HEADERS: usize = 64;
/// Maximum header name length.
pub const MAX_HEADER_NAME: usize = 64;
/// Maximum header value length.
pub const MAX_HEADER_VALUE: usize = 8192;
/// Maximum path length.
pub const MAX_PATH: usize = 4096;
/// Maximum method length.
pub const MAX_METHOD: usize = 16;

/// A request's method, path and headers.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// HTTP method, upper case (e.g. `POST`).
    pub method: String,
    /// Absolute path with optional query (e.g. `/v1/chat/completions`).
    pub path: String,
    /// Header fields, names lower case.
    pub headers: Vec<(String, String)>,
}

/// A response's status and headers.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status code (100..=599).
    pub status: u16,
    /// Header fields, names lower case.
    pub headers: Vec<(String, String)>,
}

/// Why a stream was cancelled (carried in CANCEL frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelCode {
    /// The sender no longer wants the stream (e.g. the user pressed Ctrl-C).
    Cancelled,
    /// The server refused the stream (concurrency limit).
    Refused,
    /// A body exceeded the receiver's limit.
    BodyTooLarge,
    /// The sender failed internally.
    Internal,
    /// The transport ended before the stream's end (local only, never sent).
    ConnectionLost,
    /// A code this version does not know.
    Other(u32),
}

impl CancelCode {
    pub(crate) fn to_u32(self) -> u32 {
        match self {
            CancelCode::Cancelled => 0,
            CancelCode::Refused => 1,
            CancelCode::BodyTooLarge => 2,
            CancelCode::Internal => 3,
            CancelCode::ConnectionLost => 4,
            CancelCode::Other(c) => c,
        }
    }
    pub(crate) fn from_u32(c: u32) -> Self {
        match c {
            0 => CancelCode::Cancelled,
            1 => CancelCode::Refused,
            2 => CancelCode::BodyTooLarge,
            3 => CancelCode::Internal,
            4 => CancelCode::ConnectionLost,
            c => CancelCode::Other(c),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    RequestHead(u32, RequestHead),
    ResponseHead(u32, ResponseHead),
    Data(u32, &'a [u8]),
    End(u32),
    Cancel(u32, CancelCode),
    Rekey,
    Close(u32),
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_method(m: &str) -> Result<(), WireError> {
    if m.is_empty() || m.len() > MAX_METHOD || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(WireError::MalformedFrame("invalid method"));
    }
    Ok(())
}

fn check_path(p: &str) -> Result<(), WireError> {
    if !p.starts_with('/') || p.len() > MAX_PATH || !p.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(WireError::MalformedFrame("invalid path"));
    }
    Ok(())
}

fn check_headers(h: &[(String, String)]) -> Result<(), WireError> {
    if h.len() > MAX_HEADERS {
        return Err(WireError::MalformedFrame("too many headers"));
    }
    for (name, value) in h {
        if name.is_empty()
            || name.len() > MAX_HEADER_NAME
            || !name
                .bytes()
                .all(|b| is_token_char(b) && !b.is_ascii_uppercase())
        {
            return Err(WireError::MalformedFrame("invalid header name"));
        }
        if value.len() > MAX_HEADER_VALUE
            || !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
        {
            return Err(WireError::MalformedFrame("invalid header value"));
        }
    }
    Ok(())
}

impl RequestHead {
    /// Checks the head against the wire rules (also applied when decoding).
    pub fn validate(&self) -> Result<(), WireError> {
        check_method(&self.method)?;
        check_path(&self.path)?;
        check_headers(&self.headers)
    }
}

impl ResponseHead {
    /// Checks the head against the wire rules (also applied when decoding).
    pub fn validate(&self) -> Result<(), WireError> {
        if !(100..=599).contains(&self.status) {
            return Err(WireError::MalformedFrame("invalid status"));
        }
        check_headers(&self.headers)
    }
}

fn put_headers(out: &mut Vec<u8>, h: &[(String, String)]) {
    out.push(h.len() as u8);
    for (n, v) in h {
        out.push(n.len() as u8);
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::MalformedFrame("truncated frame"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self, n: usize) -> Result<String, WireError> {
        let b = self.take(n)?;
        // Heads are ASCII by construction; reject anything else rather than guessing.
        if !b.is_ascii() {
            return Err(WireError::MalformedFrame("non-ASCII head field"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| WireError::MalformedFrame("non-ASCII head field"))
    }
    fn headers(&mut self) -> Result<Vec<(String, String)>, WireError> {
        let count = self.u8()? as usize;
        if count > MAX_HEADERS {
            return Err(WireError::MalformedFrame("too many headers"));
        }
        let mut h = Vec::with_capacity(count);
        for _ in 0..count {
            let nl = self.u8()? as usize;
            let name = self.string(nl)?;
            let vl = self.u16()? as usize;
            let value = self.string(vl)?;
            h.push((name, value));
        }
        check_headers(&h)?;
        Ok(h)
    }
    fn finish(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::MalformedFrame("trailing bytes"))
        }
    }
}

impl Frame<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (t, id) = match self {
            Frame::RequestHead(id, _) => (ty::REQUEST_HEAD, *id),
            Frame::ResponseHead(id, _) => (ty::RESPONSE_HEAD, *id),
            Frame::Data(id, _) => (ty::DATA, *id),
            Frame::End(id) => (ty::END, *id),
            Frame::Cancel(id, _) => (ty::CANCEL, *id),
            Frame::Rekey => (ty::REKEY, 0),
            Frame::Close(_) => (ty::CLOSE, 0),
        };
        let mut out = Vec::with_capacity(64);
        out.push(t);
        out.extend_from_slice(&id.to_be_bytes());
        match self {
            Frame::RequestHead(_, h) => {
                out.push(h.method.len() as u8);
                out.extend_from_slice(h.method.as_bytes());
                out.extend_from_slice(&(h.path.len() as u16).to_be_bytes());
                out.extend_from_slice(h.path.as_bytes());
                put_headers(&mut out, &h.headers);
            }
            Frame::ResponseHead(_, h) => {
                out.extend_from_slice(&h.status.to_be_bytes());
                put_headers(&mut out, &h.headers);
            }
            Frame::Data(_, d) => out.extend_from_slice(d),
            Frame::Cancel(_, c) => out.extend_from_slice(&c.to_u32().to_be_bytes()),
            Frame::Close(c) => out.extend_from_slice(&c.to_be_bytes()),
            Frame::End(_) | Frame::Rekey => {}
        }
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Frame<'_>, WireError> {
        let mut r = Reader(b);
        let t = r.u8()?;
        let id = r.u32()?;
        let frame = match t {
            ty::REQUEST_HEAD => {
                let ml = r.u8()? as usize;
                let method = r.string(ml)?;
                let pl = r.u16()? as usize;
                let path = r.string(pl)?;
                let headers = r.headers()?;
                let head = RequestHead {
                    method,
                    path,
                    headers,
                };
                head.validate()?;
                Frame::RequestHead(id, head)
            }
            ty::RESPONSE_HEAD => {
                let status = r.u16()?;
                let headers = r.headers()?;
                let head = ResponseHead { status, headers };
                head.validate()?;
                Frame::ResponseHead(id, head)
            }
            ty::DATA => {
                let d = r.0;
                r.0 = &[];
                if d.is_empty() {
                    return Err(WireError::MalformedFrame("empty data frame"));
                }
                Frame::Data(id, d)
            }
            ty::END => Frame::End(id),
            ty::CANCEL => Frame::Cancel(id, CancelCode::from_u32(r.u32()?)),
            ty::REKEY => Frame::Rekey,
            ty::CLOSE => Frame::Close(r.u32()?),
            _ => return Err(WireError::MalformedFrame("unknown frame type")),
        };
        if matches!(frame, Frame::Rekey | Frame::Close(_)) && id != 0 {
            return Err(WireError::MalformedFrame(
                "connection frame with a stream id",
            ));
        }
        if !matches!(frame, Frame::Rekey | Frame::Close(_)) && id == 0 {
            return Err(WireError::MalformedFrame("stream id 0"));
        }
        r.finish()?;
        Ok(frame)
    }
}

// Debug output never shows paths, header values or body bytes: heads and frames may end up
// in panic messages or logs, and they carry the user's data.
impl core::fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("path_len", &self.path.len())
            .field(
                "header_names",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl core::fmt::Debug for ResponseHead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResponseHead")
            .field("status", &self.status)
            .field(
                "header_names",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl core::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Frame::RequestHead(id, h) => write!(f, "RequestHead({id}, {h:?})"),
            Frame::ResponseHead(id, h) => write!(f, "ResponseHead({id}, {h:?})"),
            Frame::Data(id, d) => write!(f, "Data({id}, {} bytes)", d.len()),
            Frame::End(id) => write!(f, "End({id})"),
            Frame::Cancel(id, c) => write!(f, "Cancel({id}, {c:?})"),
            Frame::Rekey => f.write_str("Rekey"),
            Frame::Close(c) => write!(f, "Close({c})"),
        }
    }
}
