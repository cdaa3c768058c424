//! A connection's two halves, plain TCP or TLS, and how a connection is set up on each side.
//!
//! Plain TCP is split by the socket itself (`TcpStream::into_split`): its write half can be
//! written by anyone without waiting (see [`outbox`](super::outbox)), and nothing stands
//! between the halves and the socket. A TLS stream keeps one state for both directions, so
//! it is split with [`tokio::io::split`], and only the outbox's writer task writes to it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::TransportConfig;
use crate::error::Result;

/// A TLS connection, client or server side.
#[cfg(feature = "tls")]
pub(crate) type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// The half of a connection that reads.
pub(crate) enum ReadHalf {
    Tcp(OwnedReadHalf),
    #[cfg(feature = "tls")]
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The half of a connection that writes.
pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<TlsStream>),
}

/// The server's side: with TLS configured, the TLS handshake; then the halves. The caller
/// bounds the time it takes.
pub(crate) async fn accept(
    stream: TcpStream,
    config: &TransportConfig,
) -> Result<(ReadHalf, WriteHalf)> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return Ok(split(tls.accept(stream).await?));
    }
    let _ = config;
    let (reader, writer) = stream.into_split();
    Ok((ReadHalf::Tcp(reader), WriteHalf::Tcp(writer)))
}

/// The client's side, connected to `addr`: with TLS configured, the TLS handshake (the
/// server's certificate must name `addr`'s host); then the halves. The caller bounds the
/// time it takes.
pub(crate) async fn connect(
    stream: TcpStream,
    addr: &str,
    config: &TransportConfig,
) -> Result<(ReadHalf, WriteHalf)> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return Ok(split(tls.connect(stream, addr).await?));
    }
    let _ = (addr, config);
    let (reader, writer) = stream.into_split();
    Ok((ReadHalf::Tcp(reader), WriteHalf::Tcp(writer)))
}

#[cfg(feature = "tls")]
fn split(stream: TlsStream) -> (ReadHalf, WriteHalf) {
    let (reader, writer) = tokio::io::split(stream);
    (ReadHalf::Tls(reader), WriteHalf::Tls(writer))
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
