//! The handshake: both ends prove they hold the runtime's secret before the first call.
//!
//! ```text
//! client -> Hello     { nonce_c }
//! server -> Challenge { nonce_s, mac_s = HMAC-SHA256(secret, "durable/v1/server" | nonce_c | nonce_s) }
//! client -> Proof     { mac_c = HMAC-SHA256(secret, "durable/v1/client" | nonce_s | nonce_c) }
//! server -> Welcome   (or Refused { reason }, then closes)
//! ```
//!
//! Each side draws a fresh 32-byte nonce from the OS for every connection, so a recorded
//! exchange proves nothing on another connection; the two MACs are bound to their direction
//! by their labels, so a server's proof cannot be reflected as a client's. The secret itself
//! never crosses the wire, and MACs are compared in constant time. A runtime without a
//! secret uses the empty one: peers without a secret talk to each other, and a peer with a
//! secret refuses one without.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{self, ClientFrame, FrameBuffer, FrameError, ServerFrame, Token};
use crate::error::{Error, Result};

const SERVER_LABEL: &[u8] = b"durable/v1/server";
const CLIENT_LABEL: &[u8] = b"durable/v1/client";

/// A fresh nonce from the operating system.
fn nonce() -> Result<Token> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::internal(format!("the OS random source failed: {e}")))?;
    Ok(nonce)
}

fn mac(secret: &[u8], label: &[u8], first: &Token, second: &Token) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac
}

fn sign(secret: &[u8], label: &[u8], first: &Token, second: &Token) -> Token {
    mac(secret, label, first, second)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of `proof` against the expected MAC.
fn verify(secret: &[u8], label: &[u8], first: &Token, second: &Token, proof: &Token) -> bool {
    mac(secret, label, first, second)
        .verify_slice(proof)
        .is_ok()
}

/// What went wrong while reading a frame.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    Frame(FrameError),
    /// The peer closed the connection.
    Eof,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Frame(e) => write!(f, "{e}"),
            ReadError::Eof => f.write_str("the peer closed the connection"),
        }
    }
}

/// Reads until `buffer` holds a whole frame; returns its body. Not cancel safe on its own
/// (use it where nothing else is awaited), but the buffer keeps any bytes read.
pub(crate) async fn read_frame<'b, R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &'b mut FrameBuffer,
) -> Result<&'b [u8], ReadError> {
    loop {
        // `next_frame` borrows the buffer; check first, then re-borrow to return.
        if buffer.next_frame_ready().map_err(ReadError::Frame)? {
            return match buffer.next_frame() {
                Ok(Some(body)) => Ok(body),
                Ok(None) => unreachable!("a frame was ready"),
                Err(e) => Err(ReadError::Frame(e)),
            };
        }
        let spare = buffer.spare().map_err(ReadError::Frame)?;
        let n = reader.read_buf(spare).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
    }
}

/// A handshake cut short by the connection.
fn broken(e: ReadError) -> Error {
    Error::disconnected(format!("handshake: {e}"))
}

/// Whether a frame's length prefix is the start of a TLS record instead (content type 20 to
/// 23, then version 3.x): the peer speaks TLS. Such a length is always over the handshake's
/// frame limit, so it is seen before anything else is read.
fn is_tls_record(len: usize) -> bool {
    let [kind, major, minor, _] = u32::try_from(len).unwrap_or(0).to_be_bytes();
    (20..=23).contains(&kind) && major == 3 && minor <= 4
}

/// A TLS alert record: fatal (2), `protocol_version` (70). What a runtime without TLS
/// answers a TLS client with, so that the client reads a clear refusal rather than a closed
/// connection.
const TLS_REFUSAL: [u8; 7] = [21, 3, 3, 0, 2, 2, 70];

async fn send<W: AsyncWrite + Unpin, T: serde::Serialize>(writer: &mut W, body: &T) -> Result<()> {
    let mut out = Vec::with_capacity(80);
    frame::encode(body, &mut out)?;
    writer
        .write_all(&out)
        .await
        .map_err(|e| Error::disconnected(format!("handshake: {e}")))?;
    writer
        .flush()
        .await
        .map_err(|e| Error::disconnected(format!("handshake: {e}")))
}

/// The client's side. `Err` is [`Unauthenticated`](crate::ErrorKind::Unauthenticated) when
/// the server does not hold the secret or refused ours, and
/// [`Disconnected`](crate::ErrorKind::Disconnected) when the connection broke.
pub(crate) async fn client<R, W>(
    reader: &mut R,
    writer: &mut W,
    buffer: &mut FrameBuffer,
    secret: &[u8],
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = nonce()?;
    send(writer, &ClientFrame::Hello { nonce: ours }).await?;
    let body = read_frame(reader, buffer).await.map_err(|e| match e {
        ReadError::Frame(FrameError::TooLarge { len, .. }) if is_tls_record(len) => {
            Error::unauthenticated(
                "the server speaks TLS and this runtime does not: give it .tls(..) too",
            )
        }
        e => broken(e),
    })?;
    let theirs = match frame::decode::<ServerFrame<'_>>(body) {
        Ok(ServerFrame::Challenge { nonce, mac }) => {
            if !verify(secret, SERVER_LABEL, &ours, &nonce, &mac) {
                return Err(Error::unauthenticated(
                    "the server does not hold this runtime's secret",
                ));
            }
            nonce
        }
        Ok(ServerFrame::Refused { reason }) => return Err(Error::unauthenticated(reason)),
        Ok(other) => {
            return Err(Error::disconnected(format!(
                "handshake: the server sent {other:?} instead of a challenge"
            )))
        }
        Err(e) => return Err(Error::disconnected(format!("handshake: {e}"))),
    };
    let proof = sign(secret, CLIENT_LABEL, &theirs, &ours);
    send(writer, &ClientFrame::Proof { mac: proof }).await?;
    let body = read_frame(reader, buffer).await.map_err(|e| match e {
        // A server that refuses closes right after saying so; a bare close means the same.
        ReadError::Eof => {
            Error::unauthenticated("the server closed the connection at the handshake")
        }
        e => broken(e),
    })?;
    match frame::decode::<ServerFrame<'_>>(body) {
        Ok(ServerFrame::Welcome) => Ok(()),
        Ok(ServerFrame::Refused { reason }) => Err(Error::unauthenticated(reason.to_owned())),
        Ok(other) => Err(Error::disconnected(format!(
            "handshake: the server sent {other:?} instead of a welcome"
        ))),
        Err(e) => Err(Error::disconnected(format!("handshake: {e}"))),
    }
}

/// The server's side. `Ok` once the client proved it holds the secret; on `Err` the caller
/// closes the connection (the client was told why, when it got that far).
pub(crate) async fn server<R, W>(
    reader: &mut R,
    writer: &mut W,
    buffer: &mut FrameBuffer,
    secret: &[u8],
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let body = match read_frame(reader, buffer).await {
        Ok(body) => body,
        Err(ReadError::Frame(FrameError::TooLarge { len, .. })) if is_tls_record(len) => {
            // Best effort: the client learns it from the alert, or from the close.
            let _ = writer.write_all(&TLS_REFUSAL).await;
            let _ = writer.flush().await;
            return Err(Error::unauthenticated(
                "the client speaks TLS and this runtime does not: give it .tls(..) too",
            ));
        }
        Err(e) => return Err(broken(e)),
    };
    let theirs = match frame::decode::<ClientFrame<'_>>(body) {
        Ok(ClientFrame::Hello { nonce }) => nonce,
        Ok(_) => {
            let reason = "the first frame must be a Hello";
            send(writer, &ServerFrame::Refused { reason }).await?;
            return Err(Error::unauthenticated(reason));
        }
        Err(e) => {
            let reason = format!("handshake: {e}");
            send(writer, &ServerFrame::Refused { reason: &reason }).await?;
            return Err(Error::unauthenticated(reason));
        }
    };
    let ours = nonce()?;
    let mac = sign(secret, SERVER_LABEL, &theirs, &ours);
    send(writer, &ServerFrame::Challenge { nonce: ours, mac }).await?;
    let body = read_frame(reader, buffer).await.map_err(broken)?;
    match frame::decode::<ClientFrame<'_>>(body) {
        Ok(ClientFrame::Proof { mac }) if verify(secret, CLIENT_LABEL, &ours, &theirs, &mac) => {
            send(writer, &ServerFrame::Welcome).await
        }
        _ => {
            let reason = "the client does not hold this runtime's secret";
            send(writer, &ServerFrame::Refused { reason }).await?;
            Err(Error::unauthenticated(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        client_secret: &'static [u8],
        server_secret: &'static [u8],
    ) -> (Result<()>, Result<()>) {
        let (a, b) = tokio::io::duplex(1024);
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let server = tokio::spawn(async move {
            let mut fb = FrameBuffer::new(1024);
            server(&mut br, &mut bw, &mut fb, server_secret).await
        });
        let mut fb = FrameBuffer::new(1024);
        let c = client(&mut ar, &mut aw, &mut fb, client_secret).await;
        drop((ar, aw));
        (c, server.await.unwrap())
    }

    #[tokio::test]
    async fn the_same_secret_is_welcome() {
        let (c, s) = run(b"s3cret", b"s3cret").await;
        c.unwrap();
        s.unwrap();
        let (c, s) = run(b"", b"").await;
        c.unwrap();
        s.unwrap();
    }

    #[tokio::test]
    async fn another_secret_is_refused_on_both_sides() {
        for (c, s) in [(&b"a"[..], &b"b"[..]), (b"", b"b"), (b"a", b"")] {
            let (c, s) = run(c, s).await;
            assert_eq!(c.unwrap_err().kind(), crate::ErrorKind::Unauthenticated);
            // The server learns it from the client's proof, or from the client hanging up
            // on a server proof it could not verify.
            assert!(s.is_err());
        }
    }

    #[test]
    fn tls_records_are_told_from_frame_lengths() {
        // A ClientHello (handshake, TLS 1.0 record version) and a fatal alert.
        assert!(is_tls_record(0x1603_0100 | 0xf1));
        assert!(is_tls_record(0x1503_0300));
        assert!(!is_tls_record(34));
        assert!(!is_tls_record(0xffff_ffff));
        assert!(!is_tls_record(0x1604_0000));
    }

    #[test]
    fn proofs_depend_on_secret_label_and_both_nonces() {
        let (x, y) = ([1u8; 32], [2u8; 32]);
        let base = sign(b"k", CLIENT_LABEL, &x, &y);
        assert_ne!(base, sign(b"K", CLIENT_LABEL, &x, &y));
        assert_ne!(base, sign(b"k", SERVER_LABEL, &x, &y));
        assert_ne!(base, sign(b"k", CLIENT_LABEL, &y, &x));
        assert!(verify(b"k", CLIENT_LABEL, &x, &y, &base));
        let mut forged = base;
        forged[31] ^= 1;
        assert!(!verify(b"k", CLIENT_LABEL, &x, &y, &forged));
    }
}
