//! Frames: what crosses a connection between runtimes, and how it is cut into pieces.
//!
//! A frame is a 4-byte big-endian length `L`, then `L` bytes: a version byte
//! ([`VERSION`]) and a postcard body (a [`ClientFrame`] or a [`ServerFrame`]). The length is
//! checked against the connection's `max_frame_bytes` before a single byte of the body is
//! buffered, so a peer can never make us allocate more than that limit. Bodies borrow from the
//! read buffer (`&[u8]`, `&str`): decoding a call copies nothing.
//!
//! Every enum here is encoded by its variant's position: new variants go at the end, and the
//! golden-byte tests below pin the encoding of each, so a change that would break a peer of
//! the previous build fails a test.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::ID_BYTES;

/// The frame format version: the first byte of every frame's body.
pub(crate) const VERSION: u8 = 1;

/// Bytes of the length prefix.
pub(crate) const LENGTH_BYTES: usize = 4;

/// The default bound on one frame (length prefix excluded).
pub(crate) const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The bound on a frame before the peer proved it holds the secret: handshake frames are
/// under 100 bytes, so an unauthenticated peer cannot make us buffer more than this.
pub(crate) const HANDSHAKE_FRAME_BYTES: usize = 256;

/// How many callers a call chain may list (cycle detection across processes).
pub(crate) const MAX_CHAIN_LINKS: usize = 256;

/// A 32-byte nonce or message authentication code of the handshake.
pub(crate) type Token = [u8; 32];

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ClientFrame<'a> {
    /// Handshake, first step: the client's fresh nonce.
    Hello { nonce: Token },
    /// Handshake, third step: the client's proof that it holds the secret.
    Proof { mac: Token },
    /// A call of one object's method.
    #[serde(borrow)]
    Call(CallFrame<'a>),
    /// `Namespace::list_ids` of the class with this tag.
    ListIds { request: u64, class: [u8; 8] },
    /// `Namespace::delete_all_objects` of the class with this tag.
    DeleteAll { request: u64, class: [u8; 8] },
    /// Who holds the client's WebSockets: sent once after the handshake. The same holder
    /// reconnecting takes its sockets back; a holder gone for good has its sockets closed.
    Holder { id: [u8; 16] },
    /// An event of a WebSocket the client holds, for its object; answered once the object
    /// handled it.
    #[serde(borrow)]
    SocketEvent(SocketEventFrame<'a>),
    /// The WebSockets the client holds (after a reconnect: a restarted server learns them
    /// again). Sent before any other frame of the connection but `Holder`.
    #[serde(borrow)]
    Sockets(Vec<HeldRecord<'a>>),
    /// Cluster mode: the client is the node with this ID, forwarding calls it routed here.
    /// Sent once, after `Holder`. A call of such a connection for a shard this node does not
    /// own is refused unrun (the sender looks again), never forwarded a second time.
    Node { id: &'a str },
}

/// An event of a WebSocket, for its object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SocketEventFrame<'a> {
    pub(crate) request: u64,
    pub(crate) object: [u8; ID_BYTES],
    pub(crate) name: Option<&'a str>,
    pub(crate) socket: [u8; 16],
    #[serde(borrow)]
    pub(crate) event: WireEvent<'a>,
}

/// What happened on a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireEvent<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Close { code: u16, reason: &'a str },
}

/// One WebSocket a client holds, as its object knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldRecord<'a> {
    pub(crate) object: [u8; ID_BYTES],
    pub(crate) name: Option<&'a str>,
    pub(crate) socket: [u8; 16],
    #[serde(borrow)]
    pub(crate) tags: Vec<&'a str>,
    pub(crate) attachment: Option<&'a [u8]>,
}

/// What an object sends one of its WebSockets (see `sockets::Outgoing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireOutput<'a> {
    Accepted {
        #[serde(borrow)]
        tags: Vec<&'a str>,
        auto_response: Option<(&'a str, &'a str)>,
    },
    Text(&'a str),
    Binary(&'a [u8]),
    Close {
        code: u16,
        reason: &'a str,
    },
    Attachment(Option<&'a [u8]>),
    AutoResponse(Option<(&'a str, &'a str)>),
}

/// A call of one object's method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallFrame<'a> {
    /// Chosen by the client, strictly increasing on a connection; the reply carries it.
    pub(crate) request: u64,
    /// The object's ID; its first 8 bytes are its class's tag.
    pub(crate) object: [u8; ID_BYTES],
    /// The name the ID was made from, if the caller knows it (checked against the ID).
    pub(crate) name: Option<&'a str>,
    /// The stable method ID (wire.rs).
    pub(crate) method: u64,
    /// The time the caller still waits, in milliseconds (`None`: no timeout).
    pub(crate) timeout_ms: Option<u64>,
    /// The calls waiting on this one, innermost first (cycle detection).
    pub(crate) chain: Vec<ChainLink<'a>>,
    /// The arguments, encoded by the class's generated code.
    pub(crate) args: &'a [u8],
}

/// One caller of a call chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChainLink<'a> {
    pub(crate) class: &'a str,
    pub(crate) object: [u8; ID_BYTES],
    pub(crate) name: Option<&'a str>,
    pub(crate) exclusive: bool,
}

/// What a server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ServerFrame<'a> {
    /// Handshake, second step: the server's fresh nonce and its proof.
    Challenge { nonce: Token, mac: Token },
    /// Handshake, last step: the client proved it holds the secret.
    Welcome,
    /// The handshake failed (wrong secret, another protocol version); the server closes.
    Refused { reason: &'a str },
    /// The answer to the request with this ID.
    Reply {
        request: u64,
        #[serde(borrow)]
        body: ReplyBody<'a>,
    },
    /// Output of an object for one of the WebSockets the client holds.
    Socket {
        socket: [u8; 16],
        #[serde(borrow)]
        output: WireOutput<'a>,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ReplyBody<'a> {
    /// A call's return value, encoded by the class's generated code.
    Output(&'a [u8]),
    /// The call failed in the runtime (overloaded, timeout, cycle, ...): a postcard
    /// [`Error`], decoded on its own so that an error kind this build does not know does not
    /// break the connection.
    Error(&'a [u8]),
    /// The answer to `ListIds`.
    Ids(Vec<[u8; ID_BYTES]>),
    /// The answer to `DeleteAll`: how many objects had data.
    Count(u64),
}

/// Appends one frame (length, version, body) to `out`.
pub(crate) fn encode<T: Serialize>(body: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_BYTES]);
    out.push(VERSION);
    let taken = std::mem::take(out);
    *out = postcard::to_extend(body, taken)
        .map_err(|e| Error::internal(format!("a frame could not be encoded: {e}")))?;
    let len = out.len() - start - LENGTH_BYTES;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(Error::invalid_argument(format!(
            "a frame of {len} bytes is over the 4 GiB the format allows"
        )));
    };
    out[start..start + LENGTH_BYTES].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

/// Encodes a runtime error for a [`ReplyBody::Error`].
pub(crate) fn encode_error(err: &Error) -> Vec<u8> {
    // An `Error` holds strings and integers only: postcard cannot fail on it.
    postcard::to_allocvec(err).unwrap_or_default()
}

/// Decodes a [`ReplyBody::Error`]; an error of a kind this build does not know becomes an
/// [`UnknownMethod`](crate::ErrorKind::UnknownMethod)-free internal error naming the problem.
pub(crate) fn decode_error(bytes: &[u8]) -> Error {
    match postcard::from_bytes::<Error>(bytes) {
        Ok(err) => err,
        Err(e) => Error::internal(format!(
            "the peer sent an error this build cannot decode ({e}); is it of a newer build?"
        )),
    }
}

/// Why bytes from a peer are not a frame. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("a frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("an empty frame (no version byte)")]
    Empty,
    #[error("frame version {0} is not supported (this build speaks version {VERSION})")]
    Version(u8),
    #[error("a frame body does not decode: {0}")]
    Body(String),
}

/// Decodes one frame body (version byte included) into `T`; the whole body must be used.
pub(crate) fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, FrameError> {
    let (&version, body) = frame.split_first().ok_or(FrameError::Empty)?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Body(format!(
            "{} bytes after the end of the body",
            rest.len()
        ))),
        Err(e) => Err(FrameError::Body(e.to_string())),
    }
}

/// Cuts frames out of a byte stream. Bytes are read into one buffer, which never holds more
/// than one frame beyond the limit's worth: the length prefix is checked before the body is
/// awaited.
#[derive(Debug)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
    /// Where the next unparsed frame starts in `buf`.
    start: usize,
    max_frame_bytes: usize,
}

impl FrameBuffer {
    pub(crate) fn new(max_frame_bytes: usize) -> Self {
        FrameBuffer {
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
            max_frame_bytes,
        }
    }

    /// The next complete frame's body (version byte first), if one is buffered. An error
    /// means the stream is garbage: close it.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let Some(len) = self.pending_len()? else {
            return Ok(None);
        };
        let begin = self.start + LENGTH_BYTES;
        if self.buf.len() < begin + len {
            return Ok(None);
        }
        self.start = begin + len;
        Ok(self.buf.get(begin..begin + len))
    }

    /// Raises (or lowers) the bound on frames: after the handshake, to the connection's own.
    pub(crate) fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.max_frame_bytes = max_frame_bytes;
    }

    /// `true` when a whole frame is buffered (`next_frame` will return it).
    pub(crate) fn next_frame_ready(&self) -> Result<bool, FrameError> {
        Ok(self
            .pending_len()?
            .is_some_and(|len| self.buf.len() >= self.start + LENGTH_BYTES + len))
    }

    /// The length of the frame at `start`, once its prefix is buffered.
    fn pending_len(&self) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = self.buf.get(self.start..self.start + LENGTH_BYTES) else {
            return Ok(None);
        };
        let mut word = [0u8; LENGTH_BYTES];
        word.copy_from_slice(prefix);
        let len = u32::from_be_bytes(word) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(len))
    }

    /// Room to read more bytes into: compacts consumed frames away and reserves only what
    /// the pending frame (whose length is checked) still needs, or a small chunk.
    pub(crate) fn spare(&mut self) -> Result<&mut Vec<u8>, FrameError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let want = match self.pending_len()? {
            Some(len) => (LENGTH_BYTES + len).saturating_sub(self.buf.len()),
            None => 0,
        };
        self.buf.reserve(want.clamp(4 * 1024, 64 * 1024));
        Ok(&mut self.buf)
    }

    /// Bytes buffered and not yet returned as frames.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The buffer's capacity: never far above the frame limit.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<T: Serialize>(body: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode(body, &mut out).unwrap();
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn id(byte: u8) -> [u8; ID_BYTES] {
        [byte; ID_BYTES]
    }

    // Golden bytes: each frame kind as this build puts it on the wire. A failure here means
    // peers of the previous build can no longer talk to this one: bump VERSION instead.
    #[test]
    fn golden_client_frames() {
        let ones = "01".repeat(32);
        assert_eq!(
            hex(&frame(&ClientFrame::Hello { nonce: [1; 32] })),
            "0000002201".to_owned() /* len 34, version 1 */ + "00" + &ones
        );
        assert_eq!(
            hex(&frame(&ClientFrame::Proof { mac: [1; 32] })),
            "000000220101".to_owned() + &ones
        );
        let call = ClientFrame::Call(CallFrame {
            request: 300,
            object: id(7),
            name: Some("A"),
            method: 0x0c85_a089_0772_435a,
            timeout_ms: Some(1500),
            chain: vec![ChainLink {
                class: "Ping",
                object: id(9),
                name: None,
                exclusive: true,
            }],
            args: &[10],
        });
        assert_eq!(
            hex(&frame(&call)),
            "0000005d".to_owned()
                + "01"
                + "02"
                + "ac02"
                + &"07".repeat(32)
                + "010141"
                + "da86c9bb9091e8c20c"
                + "01dc0b"
                + "01"
                + "0450696e67"
                + &"09".repeat(32)
                + "00"
                + "01"
                + "010a"
        );
        assert_eq!(
            hex(&frame(&ClientFrame::ListIds {
                request: 1,
                class: [2; 8]
            })),
            "0000000b010301".to_owned() + &"02".repeat(8)
        );
        assert_eq!(
            hex(&frame(&ClientFrame::DeleteAll {
                request: 1,
                class: [2; 8]
            })),
            "0000000b010401".to_owned() + &"02".repeat(8)
        );
        assert_eq!(
            hex(&frame(&ClientFrame::Holder { id: [3; 16] })),
            "0000001201".to_owned() + "05" + &"03".repeat(16)
        );
        let event = |event| {
            hex(&frame(&ClientFrame::SocketEvent(SocketEventFrame {
                request: 2,
                object: id(4),
                name: None,
                socket: [5; 16],
                event,
            })))
        };
        let head = |len: &str| {
            len.to_owned() + "01" + "06" + "02" + &"04".repeat(32) + "00" + &"05".repeat(16)
        };
        assert_eq!(
            event(WireEvent::Text("hi")),
            head("00000038") + "00" + "026869"
        );
        assert_eq!(
            event(WireEvent::Binary(&[9])),
            head("00000037") + "01" + "0109"
        );
        assert_eq!(
            event(WireEvent::Close {
                code: 1000,
                reason: "x"
            }),
            head("00000039") + "02" + "e807" + "0178"
        );
        assert_eq!(
            hex(&frame(&ClientFrame::Sockets(vec![HeldRecord {
                object: id(4),
                name: Some("r"),
                socket: [5; 16],
                tags: vec!["t"],
                attachment: Some(&[6]),
            }]))),
            "0000003c0107".to_owned()
                + "01"
                + &"04".repeat(32)
                + "010172"
                + &"05".repeat(16)
                + "010174"
                + "010106"
        );
        assert_eq!(
            hex(&frame(&ClientFrame::Node { id: "n1" })),
            "000000050108".to_owned() + "026e31"
        );
    }

    #[test]
    fn golden_server_frames() {
        assert_eq!(
            hex(&frame(&ServerFrame::Challenge {
                nonce: [1; 32],
                mac: [2; 32]
            })),
            "0000004201".to_owned() + "00" + &"01".repeat(32) + &"02".repeat(32)
        );
        assert_eq!(hex(&frame(&ServerFrame::Welcome)), "000000020101");
        assert_eq!(
            hex(&frame(&ServerFrame::Refused { reason: "no" })),
            "0000000501".to_owned() + "02" + "026e6f"
        );
        let reply = |body| hex(&frame(&ServerFrame::Reply { request: 5, body }));
        assert_eq!(reply(ReplyBody::Output(&[1, 2])), "0000000701030500020102");
        assert_eq!(reply(ReplyBody::Error(&[4])), "00000006010305010104");
        assert_eq!(
            reply(ReplyBody::Ids(vec![id(3)])),
            "0000002501030502".to_owned() + "01" + &"03".repeat(32)
        );
        assert_eq!(reply(ReplyBody::Count(7)), "000000050103050307");
        let output = |output| {
            hex(&frame(&ServerFrame::Socket {
                socket: [5; 16],
                output,
            }))
        };
        let head = |len: &str| len.to_owned() + "01" + "04" + &"05".repeat(16);
        assert_eq!(
            output(WireOutput::Accepted {
                tags: vec!["t"],
                auto_response: Some(("a", "b")),
            }),
            head("0000001b") + "00" + "010174" + "0101610162"
        );
        assert_eq!(
            output(WireOutput::Text("hi")),
            head("00000016") + "01" + "026869"
        );
        assert_eq!(
            output(WireOutput::Binary(&[9])),
            head("00000015") + "02" + "0109"
        );
        assert_eq!(
            output(WireOutput::Close {
                code: 4000,
                reason: ""
            }),
            head("00000016") + "03" + "a01f" + "00"
        );
        assert_eq!(
            output(WireOutput::Attachment(None)),
            head("00000014") + "04" + "00"
        );
        assert_eq!(
            output(WireOutput::AutoResponse(None)),
            head("00000014") + "05" + "00"
        );
    }

    /// Every error kind's encoding, pinned: a reordered or inserted `Repr` variant fails here.
    #[test]
    fn golden_errors() {
        use std::time::Duration;
        let cases: Vec<(Error, &str)> = vec![
            (Error::app("K", "m"), "00014b016d"),
            (
                Error::panicked("C", "i", "f", "p".into()),
                "010143016901660170",
            ),
            (Error::invalid_id("x"), "020178"),
            (Error::key_too_large(3000, 2048), "03b8178010"),
            (Error::value_too_large("k", 5, 4), "04016b0504"),
            (Error::invalid_argument("x"), "050178"),
            (Error::codec("decode", "k", "e"), "06066465636f6465016b0165"),
            (Error::storage("x"), "070178"),
            (Error::overloaded(), "08"),
            (Error::closed(), "09"),
            (
                Error::timeout("f", Duration::from_millis(300)),
                "0a0166ac02",
            ),
            (Error::cycle("x".into()), "0b0178"),
            (Error::config("x"), "0c0178"),
            (Error::internal("x"), "0d0178"),
            (Error::unauthenticated("x"), "0e0178"),
            (Error::disconnected("x"), "0f0178"),
            (Error::unknown_method("x"), "100178"),
            (Error::unavailable("x"), "110178"),
            (Error::not_here("x"), "120178"),
        ];
        for (err, golden) in cases {
            let bytes = encode_error(&err);
            assert_eq!(hex(&bytes), golden, "{err:?}");
            let back = decode_error(&bytes);
            assert_eq!(back, err);
            assert_eq!(back.kind(), err.kind());
            assert_eq!(back.is_retryable(), err.is_retryable());
            assert_eq!(back.is_remote(), err.is_remote());
            assert_eq!(back.is_overloaded(), err.is_overloaded());
        }
    }

    #[test]
    fn an_error_of_an_unknown_kind_decodes_to_an_internal_error() {
        let err = decode_error(&[0x7f, 1, b'x']);
        assert_eq!(err.kind(), crate::ErrorKind::Internal);
        assert!(err.to_string().contains("newer build"), "{err}");
    }

    #[test]
    fn frames_round_trip_through_the_buffer_in_pieces() {
        let mut stream = Vec::new();
        for request in 0..50u64 {
            encode(
                &ServerFrame::Reply {
                    request,
                    body: ReplyBody::Output(&request.to_le_bytes()),
                },
                &mut stream,
            )
            .unwrap();
        }
        let mut fb = FrameBuffer::new(1024);
        let mut seen = 0u64;
        for chunk in stream.chunks(7) {
            fb.spare().unwrap().extend_from_slice(chunk);
            while let Some(body) = fb.next_frame().unwrap() {
                let frame: ServerFrame<'_> = decode(body).unwrap();
                assert_eq!(
                    frame,
                    ServerFrame::Reply {
                        request: seen,
                        body: ReplyBody::Output(&seen.to_le_bytes())
                    }
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 50);
        assert_eq!(fb.buffered(), 0);
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_body_is_buffered() {
        let mut fb = FrameBuffer::new(1024);
        fb.spare()
            .unwrap()
            .extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            fb.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
        assert!(fb.spare().is_err());
        assert!(fb.capacity() < 128 * 1024);
    }

    #[test]
    fn bad_versions_and_bodies_are_errors() {
        assert_eq!(decode::<ServerFrame<'_>>(&[]), Err(FrameError::Empty));
        assert_eq!(
            decode::<ServerFrame<'_>>(&[2, 1]),
            Err(FrameError::Version(2))
        );
        assert!(matches!(
            decode::<ServerFrame<'_>>(&[VERSION, 1, 0]),
            Err(FrameError::Body(_))
        ));
        assert!(matches!(
            decode::<ServerFrame<'_>>(&[VERSION, 9]),
            Err(FrameError::Body(_))
        ));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        const MAX: usize = 4096;

        /// Feeds `bytes` in chunks of `chunk` and decodes every frame as both kinds. Returns
        /// how many frames came out. Never panics; the buffer never grows past the limit's
        /// worth.
        fn feed(bytes: &[u8], chunk: usize) -> usize {
            let mut fb = FrameBuffer::new(MAX);
            let mut frames = 0;
            for piece in bytes.chunks(chunk.max(1)) {
                let Ok(spare) = fb.spare() else { return frames };
                spare.extend_from_slice(piece);
                loop {
                    match fb.next_frame() {
                        Ok(Some(body)) => {
                            let _ = decode::<ClientFrame<'_>>(body);
                            let _ = decode::<ServerFrame<'_>>(body);
                            frames += 1;
                        }
                        Ok(None) => break,
                        Err(_) => return frames,
                    }
                }
                assert!(fb.capacity() <= 2 * (MAX + 64 * 1024), "{}", fb.capacity());
            }
            frames
        }

        fn valid_frames() -> Vec<u8> {
            let mut out = Vec::new();
            let call = ClientFrame::Call(CallFrame {
                request: 9,
                object: [3; ID_BYTES],
                name: Some("room"),
                method: 77,
                timeout_ms: Some(10),
                chain: vec![ChainLink {
                    class: "C",
                    object: [4; ID_BYTES],
                    name: Some("x"),
                    exclusive: false,
                }],
                args: &[1, 2, 3],
            });
            encode(&call, &mut out).unwrap();
            encode(
                &ClientFrame::ListIds {
                    request: 10,
                    class: [1; 8],
                },
                &mut out,
            )
            .unwrap();
            encode(
                &ServerFrame::Reply {
                    request: 9,
                    body: ReplyBody::Ids(vec![[5; ID_BYTES]; 3]),
                },
                &mut out,
            )
            .unwrap();
            out
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
                feed(&bytes, chunk);
            }

            #[test]
            fn huge_length_prefixes_are_refused(len in (MAX as u32 + 1)..=u32::MAX, rest in proptest::collection::vec(any::<u8>(), 0..64)) {
                let mut bytes = len.to_be_bytes().to_vec();
                bytes.extend_from_slice(&rest);
                prop_assert_eq!(feed(&bytes, 7), 0);
            }

            #[test]
            fn truncated_frames_yield_only_whole_frames(cut in 0usize..200) {
                let frames = valid_frames();
                let cut = cut.min(frames.len());
                let got = feed(&frames[..cut], 5);
                let whole = feed(&frames, 5);
                prop_assert_eq!(whole, 3);
                prop_assert!(got <= whole);
                if cut < frames.len() {
                    prop_assert!(got < whole);
                }
            }

            #[test]
            fn mutated_frames_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), chunk in 1usize..64) {
                let mut frames = valid_frames();
                let len = frames.len();
                for (at, byte) in flips {
                    frames[at % len] ^= byte | 1;
                }
                feed(&frames, chunk);
            }

            #[test]
            fn mutated_bodies_decode_or_fail_cleanly(at in 0usize..120, byte in 1u8..=255) {
                let frames = valid_frames();
                let mut fb = FrameBuffer::new(MAX);
                fb.spare().unwrap().extend_from_slice(&frames);
                let body = fb.next_frame().unwrap().unwrap().to_vec();
                let mut body = body;
                let at = at % body.len();
                body[at] ^= byte;
                let _ = decode::<ClientFrame<'_>>(&body);
                let _ = decode::<ServerFrame<'_>>(&body);
                let _ = decode_error(&body);
            }
        }
    }
}
