//! The transport-mode connection: multiplexed request/response streams over Noise records.
//!
//! Sans-I/O in the style of `quinn-proto`: feed received records to
//! [`Connection::handle_record`], drain [`Connection::poll_event`] and send every record
//! from [`Connection::poll_transmit`] in order, on one reliable ordered transport.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use crate::MAX_RECORD;
use crate::error::WireError;
use crate::frame::{CancelCode, FRAME_HEADER, Frame, RequestHead, ResponseHead};

const TAG_LEN: usize = 16;
/// Size of the padding trailer (`u16` padding length) that ends every record plaintext.
pub(crate) const PAD_TRAILER: usize = 2;
/// Smallest record that can hold a frame: frame header, padding trailer and tag.
pub(crate) const MIN_RECORD: usize = FRAME_HEADER + PAD_TRAILER + TAG_LEN;
/// Default padding granularity ([`Limits::pad_to`]).
pub const DEFAULT_PAD_TO: usize = 256;
/// Largest frame one record can carry (record minus tag and padding trailer).
pub const MAX_FRAME: usize = MAX_RECORD - TAG_LEN - PAD_TRAILER;
/// Largest DATA payload in one frame.
pub const MAX_DATA_PER_FRAME: usize = MAX_FRAME - FRAME_HEADER;

/// Which end of the channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens streams (sends requests).
    Client,
    /// Answers streams (sends responses).
    Server,
}

/// Resource bounds. Every one is enforced against the peer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest record accepted or produced (at most 65535, the Noise maximum).
    pub max_record: usize,
    /// Most streams open at once. A server refuses extra streams; a client cannot open them.
    pub max_concurrent_streams: usize,
    /// Most bytes of request body a server reassembles per stream.
    pub max_request_body: usize,
    /// Most bytes of response body a client accepts per stream.
    pub max_response_body: usize,
    /// Rekey the sending direction after this many records.
    pub rekey_after_records: u64,
    /// Rekey the sending direction after this many plaintext bytes (padding included).
    pub rekey_after_bytes: u64,
    /// Pad every record this end sends so that its plaintext (frame, zero padding and the
    /// 2-byte padding length) is a multiple of this many bytes, capped at `max_record` minus
    /// the tag. Hides the exact size of frames (e.g. of each streamed token) from the relay,
    /// up to this granularity. `1` disables padding (`0` is treated as `1`). Only the sender
    /// applies it: a receiver accepts any well-formed padding.
    pub pad_to: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record: MAX_RECORD,
            max_concurrent_streams: 32,
            max_request_body: 1 << 20,
            max_response_body: 64 << 20,
            rekey_after_records: 1 << 16,
            rekey_after_bytes: 1 << 30,
            pad_to: DEFAULT_PAD_TO,
        }
    }
}

/// Something the peer did.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: a new request stream.
    Request {
        /// Stream id.
        id: u32,
        /// Method, path, headers.
        head: RequestHead,
    },
    /// Client: the response head for a stream.
    Response {
        /// Stream id.
        id: u32,
        /// Status and headers.
        head: ResponseHead,
    },
    /// A chunk of body.
    Data {
        /// Stream id.
        id: u32,
        /// Bytes (non-empty).
        data: Vec<u8>,
    },
    /// The peer's side of the stream ended cleanly: the body is complete.
    End {
        /// Stream id.
        id: u32,
    },
    /// The stream was cancelled (by the peer, by a limit, or by loss of the transport);
    /// any body received is incomplete.
    Reset {
        /// Stream id.
        id: u32,
        /// Why.
        code: CancelCode,
    },
    /// The peer closed the connection gracefully.
    Closed {
        /// Close code (0 = normal).
        code: u32,
    },
}

#[derive(Debug, Default)]
struct Stream {
    recv_head: bool,
    recv_ended: bool,
    send_head: bool,
    send_ended: bool,
    recv_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We or the peer closed gracefully.
    Closed,
    /// A fatal error; nothing more is read or sent.
    Failed,
}

/// A channel in transport mode.
pub struct Connection {
    transport: snow::TransportState,
    role: Role,
    limits: Limits,
    streams: BTreeMap<u32, Stream>,
    /// Highest stream id opened (client) or seen (server); ids only grow.
    last_id: u32,
    events: VecDeque<Event>,
    transmit: VecDeque<Vec<u8>>,
    sent_records: u64,
    sent_bytes: u64,
    state: State,
    rekeys_sent: u64,
    rekeys_received: u64,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("open_streams", &self.streams.len())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        transport: snow::TransportState,
        role: Role,
        mut limits: Limits,
    ) -> Result<Self, WireError> {
        // The smallest useful record carries one byte of DATA.
        if limits.max_record > MAX_RECORD || limits.max_record < MIN_RECORD + 1 {
            return Err(WireError::InvalidOperation("max_record out of range"));
        }
        limits.rekey_after_records = limits.rekey_after_records.max(1);
        limits.rekey_after_bytes = limits.rekey_after_bytes.max(1);
        limits.pad_to = limits.pad_to.max(1);
        Ok(Connection {
            transport,
            role,
            limits,
            streams: BTreeMap::new(),
            last_id: 0,
            events: VecDeque::new(),
            transmit: VecDeque::new(),
            sent_records: 0,
            sent_bytes: 0,
            state: State::Open,
            rekeys_sent: 0,
            rekeys_received: 0,
        })
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Number of streams currently open.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Rekeys performed (sent, received); for tests and metrics.
    pub fn rekey_counts(&self) -> (u64, u64) {
        (self.rekeys_sent, self.rekeys_received)
    }

    /// Whether the connection can still carry streams.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Next event from the peer, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Next record to send, if any. Records must be sent in this order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    fn check_open(&self) -> Result<(), WireError> {
        if self.state == State::Open {
            Ok(())
        } else {
            Err(WireError::Closed)
        }
    }

    /// The record plaintext for a frame: `frame || p zero bytes || u16 p`, where `p` makes
    /// the length a multiple of `pad_to` without exceeding `max_record - TAG_LEN`.
    fn padded(&self, frame: &Frame<'_>) -> Result<Vec<u8>, WireError> {
        let mut plain = frame.encode();
        let max_plain = self.limits.max_record - TAG_LEN;
        let unpadded = plain.len() + PAD_TRAILER;
        if unpadded > max_plain {
            return Err(WireError::RecordTooLarge {
                size: unpadded + TAG_LEN,
                limit: self.limits.max_record,
            });
        }
        let pad_to = self.limits.pad_to;
        let target = unpadded
            .div_ceil(pad_to)
            .saturating_mul(pad_to)
            .min(max_plain);
        let p = target - unpadded;
        // max_plain < 65536, so p fits the u16 trailer.
        plain.resize(plain.len() + p, 0);
        plain.extend_from_slice(&(p as u16).to_be_bytes());
        Ok(plain)
    }

    /// Encrypts one record plaintext under the sending key (no framing, no padding).
    fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut rec = vec![0u8; plain.len() + TAG_LEN];
        let n = self
            .transport
            .write_message(plain, &mut rec)
            .map_err(|_| WireError::Closed)?;
        rec.truncate(n);
        Ok(rec)
    }

    fn encrypt(&mut self, frame: &Frame<'_>) -> Result<(), WireError> {
        let plain = self.padded(frame)?;
        let rec = self.seal(&plain)?;
        self.transmit.push_back(rec);
        self.sent_records += 1;
        self.sent_bytes += plain.len() as u64;
        if !matches!(frame, Frame::Rekey)
            && (self.sent_records >= self.limits.rekey_after_records
                || self.sent_bytes >= self.limits.rekey_after_bytes)
        {
            // Announce, then switch: the peer switches after decrypting this frame.
            self.encrypt(&Frame::Rekey)?;
            self.transport.rekey_outgoing();
            self.rekeys_sent += 1;
            self.sent_records = 0;
            self.sent_bytes = 0;
        }
        Ok(())
    }

    fn fail(&mut self, e: WireError) -> WireError {
        self.state = State::Failed;
        self.transmit.clear();
        for id in std::mem::take(&mut self.streams).into_keys() {
            self.events.push_back(Event::Reset {
                id,
                code: CancelCode::ConnectionLost,
            });
        }
        e
    }

    /// Client: opens a request stream and sends its head. Returns the stream id.
    pub fn open_stream(&mut self, head: RequestHead) -> Result<u32, WireError> {
        self.check_open()?;
        if self.role != Role::Client {
            return Err(WireError::InvalidOperation("only the client opens streams"));
        }
        head.validate()?;
        if self.streams.len() >= self.limits.max_concurrent_streams {
            return Err(WireError::TooManyStreams(
                self.limits.max_concurrent_streams,
            ));
        }
        let id = self
            .last_id
            .checked_add(1)
            .ok_or(WireError::InvalidOperation("stream ids exhausted"))?;
        self.encrypt(&Frame::RequestHead(id, head))?;
        self.last_id = id;
        self.streams.insert(
            id,
            Stream {
                send_head: true,
                ..Stream::default()
            },
        );
        Ok(id)
    }

    /// Server: sends the response head for a request stream.
    pub fn send_response(&mut self, id: u32, head: ResponseHead) -> Result<(), WireError> {
        self.check_open()?;
        if self.role != Role::Server {
            return Err(WireError::InvalidOperation(
                "only the server sends responses",
            ));
        }
        head.validate()?;
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(WireError::UnknownStream(id))?;
        if s.send_head {
            return Err(WireError::InvalidOperation("response head already sent"));
        }
        s.send_head = true;
        self.encrypt(&Frame::ResponseHead(id, head))
    }

    /// Sends body bytes on a stream, split into as many frames as needed.
    pub fn send_data(&mut self, id: u32, data: &[u8]) -> Result<(), WireError> {
        self.check_open()?;
        let s = self.streams.get(&id).ok_or(WireError::UnknownStream(id))?;
        if !s.send_head || s.send_ended {
            return Err(WireError::InvalidOperation(
                "cannot send data on this stream now",
            ));
        }
        // A full chunk fills the record exactly (padding 0); only the last one is padded.
        let per_frame = self.limits.max_record - TAG_LEN - PAD_TRAILER - FRAME_HEADER;
        for chunk in data.chunks(per_frame) {
            self.encrypt(&Frame::Data(id, chunk))?;
        }
        Ok(())
    }

    /// Ends this side of a stream: the peer learns the body is complete.
    pub fn finish(&mut self, id: u32) -> Result<(), WireError> {
        self.check_open()?;
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(WireError::UnknownStream(id))?;
        if !s.send_head || s.send_ended {
            return Err(WireError::InvalidOperation("cannot end this stream now"));
        }
        s.send_ended = true;
        let done = s.recv_ended;
        self.encrypt(&Frame::End(id))?;
        if done {
            self.streams.remove(&id);
        }
        Ok(())
    }

    /// Abandons a stream in both directions and tells the peer. Late frames from the peer
    /// for this stream are ignored.
    pub fn cancel(&mut self, id: u32, code: CancelCode) -> Result<(), WireError> {
        self.check_open()?;
        if self.streams.remove(&id).is_none() {
            return Err(WireError::UnknownStream(id));
        }
        self.encrypt(&Frame::Cancel(id, code))
    }

    /// Closes the connection gracefully; open streams are reset locally.
    pub fn close(&mut self, code: u32) -> Result<(), WireError> {
        self.check_open()?;
        self.encrypt(&Frame::Close(code))?;
        self.state = State::Closed;
        for id in std::mem::take(&mut self.streams).into_keys() {
            self.events.push_back(Event::Reset {
                id,
                code: CancelCode::ConnectionLost,
            });
        }
        Ok(())
    }

    /// The transport ended (EOF). Streams still open were truncated: each gets a
    /// [`Event::Reset`] with [`CancelCode::ConnectionLost`]. Returns an error unless the
    /// peer had closed gracefully with no stream open.
    pub fn transport_closed(&mut self) -> Result<(), WireError> {
        let was = self.state;
        let had_streams = !self.streams.is_empty();
        let _ = self.fail(WireError::Closed);
        if was == State::Closed && !had_streams {
            self.state = State::Closed;
            Ok(())
        } else {
            Err(WireError::ProtocolViolation(
                "transport ended without a graceful close",
            ))
        }
    }

    /// Decrypts and applies one record from the peer. Any error is fatal for the connection:
    /// open streams are reset and nothing more can be sent.
    pub fn handle_record(&mut self, record: &[u8]) -> Result<(), WireError> {
        if self.state != State::Open {
            return Err(WireError::Closed);
        }
        match self.handle_record_inner(record) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn handle_record_inner(&mut self, record: &[u8]) -> Result<(), WireError> {
        if record.len() > self.limits.max_record {
            return Err(WireError::RecordTooLarge {
                size: record.len(),
                limit: self.limits.max_record,
            });
        }
        if record.len() < MIN_RECORD {
            return Err(WireError::Decrypt);
        }
        let mut plain = vec![0u8; record.len()];
        let n = self
            .transport
            .read_message(record, &mut plain)
            .map_err(|_| WireError::Decrypt)?;
        plain.truncate(n);
        let frame = Frame::decode(unpad(&plain)?)?;
        self.apply(frame)
    }

    fn apply(&mut self, frame: Frame<'_>) -> Result<(), WireError> {
        match frame {
            Frame::Rekey => {
                self.transport.rekey_incoming();
                self.rekeys_received += 1;
            }
            Frame::Close(code) => {
                self.state = State::Closed;
                for id in std::mem::take(&mut self.streams).into_keys() {
                    self.events.push_back(Event::Reset {
                        id,
                        code: CancelCode::ConnectionLost,
                    });
                }
                self.events.push_back(Event::Closed { code });
            }
            Frame::RequestHead(id, head) => {
                if self.role != Role::Server {
                    return Err(WireError::ProtocolViolation(
                        "request head sent to a client",
                    ));
                }
                if id <= self.last_id {
                    return Err(WireError::ProtocolViolation("stream id not increasing"));
                }
                self.last_id = id;
                if self.streams.len() >= self.limits.max_concurrent_streams {
                    // Not fatal: refuse this stream only. Its later frames are ignored.
                    return self.encrypt(&Frame::Cancel(id, CancelCode::Refused));
                }
                self.streams.insert(
                    id,
                    Stream {
                        recv_head: true,
                        ..Stream::default()
                    },
                );
                self.events.push_back(Event::Request { id, head });
            }
            Frame::ResponseHead(id, head) => {
                if self.role != Role::Client {
                    return Err(WireError::ProtocolViolation(
                        "response head sent to a server",
                    ));
                }
                let Some(s) = self.stream_for_peer_frame(id)? else {
                    return Ok(());
                };
                if s.recv_head {
                    return Err(WireError::ProtocolViolation("second response head"));
                }
                s.recv_head = true;
                self.events.push_back(Event::Response { id, head });
            }
            Frame::Data(id, data) => {
                let limit = match self.role {
                    Role::Server => self.limits.max_request_body,
                    Role::Client => self.limits.max_response_body,
                };
                let Some(s) = self.stream_for_peer_frame(id)? else {
                    return Ok(());
                };
                if !s.recv_head || s.recv_ended {
                    return Err(WireError::ProtocolViolation("data outside a body"));
                }
                s.recv_bytes = s.recv_bytes.saturating_add(data.len());
                if s.recv_bytes > limit {
                    self.streams.remove(&id);
                    self.events.push_back(Event::Reset {
                        id,
                        code: CancelCode::BodyTooLarge,
                    });
                    return self.encrypt(&Frame::Cancel(id, CancelCode::BodyTooLarge));
                }
                self.events.push_back(Event::Data {
                    id,
                    data: data.to_vec(),
                });
            }
            Frame::End(id) => {
                let Some(s) = self.stream_for_peer_frame(id)? else {
                    return Ok(());
                };
                if !s.recv_head || s.recv_ended {
                    return Err(WireError::ProtocolViolation("end outside a body"));
                }
                s.recv_ended = true;
                if s.send_ended {
                    self.streams.remove(&id);
                }
                self.events.push_back(Event::End { id });
            }
            Frame::Cancel(id, code) => {
                if self.streams.remove(&id).is_some() {
                    self.events.push_back(Event::Reset { id, code });
                } else if id > self.last_id {
                    return Err(WireError::ProtocolViolation(
                        "cancel for a stream never opened",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Test helper: the record the peer would receive if this end sent `frame`, padded as
    /// usual, bypassing every local state check. Not queued; counters are not touched.
    #[cfg(test)]
    pub(crate) fn forge_frame(&mut self, frame: &Frame<'_>) -> Vec<u8> {
        let plain = self.padded(frame).expect("frame fits a record");
        self.seal(&plain).expect("seal")
    }

    /// Test helper: encrypts an arbitrary record plaintext (no padding added).
    #[cfg(test)]
    pub(crate) fn forge_plaintext(&mut self, plain: &[u8]) -> Vec<u8> {
        self.seal(plain).expect("seal")
    }

    /// Looks up the stream a peer frame refers to. `Ok(None)`: a stream we already closed
    /// (cancel race), so the frame is dropped. Ids never opened are a violation.
    fn stream_for_peer_frame(&mut self, id: u32) -> Result<Option<&mut Stream>, WireError> {
        if id > self.last_id {
            return Err(WireError::ProtocolViolation(
                "frame for a stream never opened",
            ));
        }
        Ok(self.streams.get_mut(&id))
    }
}

/// Strips the padding from a record plaintext and returns the frame bytes. The last two bytes
/// are the padding length `p`; the `p` bytes before them must all be zero.
fn unpad(plain: &[u8]) -> Result<&[u8], WireError> {
    let Some(split) = plain.len().checked_sub(PAD_TRAILER) else {
        return Err(WireError::MalformedFrame(
            "record shorter than the padding trailer",
        ));
    };
    let (body, trailer) = plain.split_at(split);
    let p = u16::from_be_bytes([trailer[0], trailer[1]]) as usize;
    let Some(frame_len) = body.len().checked_sub(p) else {
        return Err(WireError::MalformedFrame("padding longer than the record"));
    };
    let (frame, padding) = body.split_at(frame_len);
    if padding.iter().any(|&b| b != 0) {
        return Err(WireError::MalformedFrame("non-zero padding"));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests;

// Body bytes never appear in Debug output (see `frame.rs`).
impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Request { id, head } => write!(f, "Request {{ id: {id}, head: {head:?} }}"),
            Event::Response { id, head } => write!(f, "Response {{ id: {id}, head: {head:?} }}"),
            Event::Data { id, data } => write!(f, "Data {{ id: {id}, len: {} }}", data.len()),
            Event::End { id } => write!(f, "End {{ id: {id} }}"),
            Event::Reset { id, code } => write!(f, "Reset {{ id: {id}, code: {code:?} }}"),
            Event::Closed { code } => write!(f, "Closed {{ code: {code} }}"),
        }
    }
}
