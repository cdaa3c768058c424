//! TLS between runtimes: [`Tls`], the certificate a runtime presents and the CA it trusts.
//!
//! The server presents its certificate; the client checks it against the CA, for the host
//! it dialed (an IP address must be an IP SAN of the certificate, a DNS name a DNS SAN). No
//! client certificate is asked for: inside TLS, the shared secret's challenge-response (see
//! [`handshake`](super::handshake)) still authenticates both ends.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::stream::TlsStream;
use crate::error::{Error, Result};
use crate::pem::{certificates, private_key, provider, read, roots};

/// TLS for the connections between runtimes: give it to
/// [`RuntimeBuilder::tls`](crate::RuntimeBuilder::tls) on every runtime that listens or
/// connects.
///
/// A runtime that listens (a server, a cluster node) presents a certificate and key
/// ([`from_pem`](Self::from_pem)); a runtime that only connects needs only the CA that
/// servers' certificates chain to ([`client`](Self::client)). Cheap to clone.
///
/// ```no_run
/// use durable_runtime::{Runtime, Tls};
///
/// # fn main() -> durable_runtime::Result<()> {
/// let tls = Tls::from_pem_files("node.crt", "node.key", "ca.crt")?;
/// let rt = Runtime::builder()
///     .data_dir("./data")
///     .listen("10.0.0.1:7001")
///     .secret("a shared secret")
///     .tls(tls)
///     .open()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    /// What a listening runtime presents; `None` for a client only.
    server: Option<Arc<rustls::ServerConfig>>,
    /// What a connecting runtime trusts.
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// A runtime that listens and connects (a cluster node, or a server): its certificate
    /// chain and private key (PEM; the runtime's own certificate first), and the CA
    /// certificate(s) (PEM) that peers' certificates must chain to.
    ///
    /// The certificate must name the address peers dial: an IP SAN for an IP address
    /// (`127.0.0.1`), a DNS SAN for a host name.
    ///
    /// # Errors
    ///
    /// A [`Config`](crate::ErrorKind::Config) error naming what is wrong: no certificate in
    /// `cert_chain_pem` or `ca_pem`, no private key in `key_pem`, a key that does not match
    /// the certificate, or a CA certificate that cannot be used.
    pub fn from_pem(
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
        ca_pem: impl AsRef<[u8]>,
    ) -> Result<Tls> {
        let chain = certificates(cert_chain_pem.as_ref(), "the certificate chain")?;
        let key = private_key(key_pem.as_ref(), "the key PEM")?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                Error::config(format!(
                    "TLS: the certificate and the private key cannot be used together: {e}"
                ))
            })?;
        Ok(Tls {
            server: Some(Arc::new(server)),
            client: client_config(ca_pem.as_ref())?,
        })
    }

    /// [`from_pem`](Self::from_pem), with each PEM read from its file.
    ///
    /// # Errors
    ///
    /// A [`Config`](crate::ErrorKind::Config) error if a file cannot be read, or for any
    /// reason of [`from_pem`](Self::from_pem).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: impl AsRef<Path>,
    ) -> Result<Tls> {
        Tls::from_pem(
            read(cert_chain.as_ref(), "certificate chain")?,
            read(key.as_ref(), "private key")?,
            read(ca.as_ref(), "CA certificate")?,
        )
    }

    /// A runtime that only connects ([`RuntimeBuilder::connect`](crate::RuntimeBuilder::connect)):
    /// trusts servers whose certificates chain to `ca_pem` (one or more CA certificates,
    /// PEM). A runtime that listens with it is refused at open: it has no certificate.
    ///
    /// # Errors
    ///
    /// A [`Config`](crate::ErrorKind::Config) error if `ca_pem` holds no certificate, or one
    /// that cannot be used as a CA.
    pub fn client(ca_pem: impl AsRef<[u8]>) -> Result<Tls> {
        Ok(Tls {
            server: None,
            client: client_config(ca_pem.as_ref())?,
        })
    }

    /// Ready-made rustls configurations: `server` for a runtime that listens (`None` for one
    /// that only connects), `client` for connecting. The server's name is taken from the
    /// address dialed, as with the other constructors. The configurations are used as they
    /// are: what they trust and offer is theirs.
    pub fn from_rustls(
        server: Option<Arc<rustls::ServerConfig>>,
        client: Arc<rustls::ClientConfig>,
    ) -> Tls {
        Tls { server, client }
    }

    /// Checks, at open, that a runtime listening with this TLS has a certificate to present.
    pub(crate) fn check_listen(&self) -> Result<()> {
        if self.server.is_none() {
            return Err(Error::config(
                "a runtime that listens with TLS presents a certificate: Tls::client(..) has \
                 none; use Tls::from_pem(cert_chain, key, ca) or Tls::from_pem_files",
            ));
        }
        Ok(())
    }

    /// The server's side of the TLS handshake.
    pub(crate) async fn accept(&self, stream: TcpStream) -> Result<TlsStream> {
        let Some(server) = &self.server else {
            return Err(Error::config("TLS: this runtime has no certificate"));
        };
        tokio_rustls::TlsAcceptor::from(server.clone())
            .accept(stream)
            .await
            .map(TlsStream::Server)
            .map_err(|e| handshake_error("the client", e))
    }

    /// The client's side of the TLS handshake with the server at `addr`.
    pub(crate) async fn connect(&self, stream: TcpStream, addr: &str) -> Result<TlsStream> {
        let name = server_name(addr)?;
        tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, stream)
            .await
            .map(TlsStream::Client)
            .map_err(|e| handshake_error(addr, e))
    }
}

/// A client's configuration trusting `roots`.
fn client_builder(
    roots: rustls::RootCertStore,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?
        .with_root_certificates(roots))
}

fn client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
    let config = client_builder(roots(ca_pem, "the CA")?)?.with_no_client_auth();
    Ok(Arc::new(config))
}

/// Checks what a TLS client is given, as rustls will use it: `ca_pem`, the CA certificate(s)
/// it trusts, and `identity`, the certificate chain and private key it presents, if any
/// (`what` names them in errors: "the etcd CA (Cluster::etcd_ca)"). For configurations handed
/// to another TLS stack, which skips what it cannot parse.
///
/// # Errors
///
/// A [`Config`](crate::ErrorKind::Config) error naming what is wrong: no certificate, one that
/// cannot be a CA, no private key, or a key that does not match the certificate.
#[cfg(feature = "cluster")]
pub(crate) fn check_client(
    ca_pem: &[u8],
    ca_what: &str,
    identity: Option<(&[u8], &[u8])>,
    identity_what: &str,
) -> Result<()> {
    let builder = client_builder(roots(ca_pem, ca_what)?)?;
    if let Some((chain_pem, key_pem)) = identity {
        let chain = certificates(
            chain_pem,
            &format!("the certificate chain of {identity_what}"),
        )?;
        let key = private_key(key_pem, &format!("the key of {identity_what}"))?;
        builder.with_client_auth_cert(chain, key).map_err(|e| {
            Error::config(format!(
                "TLS: the certificate and the private key of {identity_what} cannot be used \
                 together: {e}"
            ))
        })?;
    }
    Ok(())
}

/// The name the server's certificate must carry: the host of `addr` (`host:port`), an IP
/// address or a DNS name.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>> {
    if let Ok(socket) = addr.parse::<std::net::SocketAddr>() {
        return Ok(ServerName::IpAddress(socket.ip().into()));
    }
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        Error::config(format!(
            "TLS: cannot check a certificate for {addr}: `{host}` is neither an IP address nor \
             a DNS name ({e})"
        ))
    })
}

/// A failed TLS handshake with `peer`: [`Unauthenticated`](crate::ErrorKind::Unauthenticated)
/// when TLS itself refused (an untrusted certificate, a peer that does not speak TLS), and
/// [`Disconnected`](crate::ErrorKind::Disconnected) when the connection broke.
fn handshake_error(peer: &str, e: std::io::Error) -> Error {
    if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        let hint = match tls {
            rustls::Error::InvalidCertificate(_) => {
                "; the certificate must chain to the CA given to Tls, and name the host dialed"
            }
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => {
                "; the peer does not speak TLS: does it have .tls(..) too?"
            }
            rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
                "; a runtime listening without .tls(..) answers so"
            }
            _ => "",
        };
        return Error::unauthenticated(format!("TLS with {peer} failed: {tls}{hint}"));
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return Error::disconnected(format!(
            "TLS with {peer} failed: the connection closed during the TLS handshake"
        ));
    }
    Error::disconnected(format!("TLS with {peer} failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_dialed() {
        let ip = |s: &str| match server_name(s).unwrap() {
            ServerName::IpAddress(ip) => std::net::IpAddr::from(ip).to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(ip("127.0.0.1:7001"), "127.0.0.1");
        assert_eq!(ip("[::1]:7001"), "::1");
        match server_name("node-1.example.com:7001").unwrap() {
            ServerName::DnsName(name) => assert_eq!(name.as_ref(), "node-1.example.com"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            server_name("not a host:1").unwrap_err().kind(),
            crate::ErrorKind::Config
        );
    }

    #[test]
    fn garbage_pem_is_a_config_error_naming_what_is_missing() {
        let err = Tls::client("not pem").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.message().contains("no certificate in the CA"), "{err}");
    }
}
