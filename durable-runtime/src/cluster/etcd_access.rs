//! How a node reaches etcd beyond its endpoints: TLS, a client certificate and a user
//! ([`EtcdAccess`], set with `Cluster::etcd_ca`, `etcd_identity` and `etcd_user`), the
//! client options they make, and the errors that say what to check when etcd refuses the
//! node.

use std::fmt;

/// How a node reaches etcd beyond its endpoints: TLS and credentials. Its `Debug` shows
/// neither the private key nor the password.
#[derive(Clone, Default)]
pub(crate) struct EtcdAccess {
    /// The CA certificate(s), PEM, that etcd's server certificates must chain to: the
    /// connection is TLS.
    pub(crate) ca: Option<Vec<u8>>,
    /// The client certificate chain and its private key, PEM.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The etcd user and its password.
    pub(crate) user: Option<(String, String)>,
}

impl fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(user, _password)| user))
            .finish()
    }
}

#[cfg(feature = "cluster")]
pub(crate) use self::client::{connect_options, refusal, Reach};

/// The etcd client's side (cluster mode built in).
#[cfg(feature = "cluster")]
mod client {
    use etcd_client::ConnectOptions;

    use super::super::membership::{CONNECT_TIMEOUT, PING_INTERVAL, PING_TIMEOUT};
    use super::EtcdAccess;
    use crate::error::{Error, Result};

    /// How a client reaches etcd (what [`EtcdAccess`] says, without the secrets): what a
    /// refusal is likely about.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Reach {
        /// Over TLS.
        tls: bool,
        /// Presenting a client certificate.
        client_certificate: bool,
        /// Logged in as this user.
        user: Option<String>,
    }

    impl Reach {
        pub(crate) fn of(access: &EtcdAccess) -> Reach {
            Reach {
                tls: access.ca.is_some(),
                client_certificate: access.identity.is_some(),
                user: access.user.as_ref().map(|(user, _password)| user.clone()),
            }
        }
    }

    /// etcd at `endpoints`, reached as `reach` says, refusing a request as `e` tells: a TLS
    /// handshake that failed (an untrusted certificate, a client certificate missing or refused,
    /// TLS on one side only), or a user, a password or a permission refused. An
    /// [`Unauthenticated`](crate::ErrorKind::Unauthenticated) error saying so and what to check;
    /// `None` for any other failure.
    ///
    /// A connection that closes as it opens counts as a refusal only while `joining`: that is
    /// what etcd does to a client certificate it refuses, and to a client speaking TLS to a
    /// plaintext etcd or the reverse; once joined, it is etcd restarting or going away.
    pub(crate) fn refusal(
        e: &etcd_client::Error,
        endpoints: &str,
        reach: &Reach,
        joining: bool,
    ) -> Option<Error> {
        let refused = |why: String| {
            Some(Error::unauthenticated(format!(
                "etcd at {endpoints}: {why}"
            )))
        };
        let user = reach.user.as_deref().unwrap_or_default();
        if let etcd_client::Error::GRpcStatus(status) = e {
            let message = status.message();
            if message.contains("authentication failed") {
                return refused(format!(
                    "refused user `{user}`: wrong user name or password ({message})"
                ));
            }
            if message.contains("user name is empty") {
                return refused(format!(
                    "etcd has authentication enabled and this node logs in as no user \
                     ({message}): give it an etcd user with Cluster::etcd_user"
                ));
            }
            if message.contains("permission denied") {
                let who = match &reach.user {
                    Some(user) => format!("user `{user}`"),
                    // etcd takes a client certificate's common name for the user's name.
                    None if reach.client_certificate => {
                        "the user named by the common name of this node's client certificate"
                            .to_owned()
                    }
                    None => "this node".to_owned(),
                };
                return refused(format!(
                    "{who} may not read and write the cluster's keys ({message}): grant it a role \
                     with readwrite permission on the cluster's prefix"
                ));
            }
        }
        let root: &(dyn std::error::Error + 'static) = match e {
            etcd_client::Error::GRpcStatus(status) => status,
            etcd_client::Error::TransportError(transport) => transport,
            etcd_client::Error::IoError(io) => io,
            other => other,
        };
        let chain: Vec<&(dyn std::error::Error + 'static)> =
            std::iter::successors(Some(root), |e| e.source()).collect();
        #[cfg(feature = "tls")]
        for e in &chain {
            // An I/O error's `source` is its inner error's source: the inner error itself is
            // looked at here.
            let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
                e.downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::get_ref)
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            let Some(tls) = tls else { continue };
            let hint = match tls {
                rustls::Error::InvalidCertificate(_) => {
                    "; etcd's certificate must chain to the CA given to Cluster::etcd_ca, and name \
                     the host of the endpoint"
                }
                rustls::Error::InvalidMessage(_)
                | rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. } => {
                    "; etcd does not speak TLS there: does it have --cert-file and https:// \
                     --listen-client-urls?"
                }
                rustls::Error::AlertReceived(_) if reach.client_certificate => {
                    "; etcd refused this node's client certificate: it must be signed by the CA of \
                     etcd's --trusted-ca-file"
                }
                rustls::Error::AlertReceived(_) => {
                    "; does etcd ask for a client certificate (--client-cert-auth)? Give one with \
                     Cluster::etcd_identity"
                }
                _ => "",
            };
            return refused(format!("TLS failed: {tls}{hint}"));
        }
        if !joining {
            return None;
        }
        let io_kind = |kinds: &[std::io::ErrorKind]| {
            chain.iter().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| kinds.contains(&io.kind()))
            })
        };
        // The connection broke right after it opened: etcd hung up. The client sees it in one of
        // several ways, depending on whether it was writing or reading then.
        let closed = io_kind(&[
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::ConnectionReset,
        ]) || chain.iter().any(|e| {
            let text = e.to_string();
            text.contains("connection closed") || text.contains("operation was canceled")
        });
        if !reach.tls {
            if closed {
                return refused(
                    "etcd closed the connection: does it serve TLS there? Then write the endpoint \
                     https://, and give the CA of etcd's certificate with Cluster::etcd_ca"
                        .to_owned(),
                );
            }
            return None;
        }
        // The client tells why a connection closed only in part (depending on what it was
        // doing then), and often in text.
        let not_tls = "does etcd not speak TLS there (--cert-file, and https:// in \
                       --listen-client-urls)?";
        let certificate = if reach.client_certificate {
            "did etcd refuse this node's client certificate? It must be signed by the CA of etcd's \
             --trusted-ca-file"
        } else {
            "does etcd ask for a client certificate (--client-cert-auth)? Give one with \
             Cluster::etcd_identity"
        };
        let alert = chain.iter().find_map(|e| {
            let text = e.to_string();
            let (_, rest) = text.split_once("received fatal alert: ")?;
            Some(
                rest.chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect::<String>(),
            )
        });
        if let Some(alert) = alert {
            // An alert etcd sent after the handshake: TLS 1.3 checks the client's certificate
            // then.
            return refused(format!(
                "etcd refused the TLS connection (alert {alert}): {certificate}"
            ));
        }
        if chain
            .iter()
            .any(|e| e.to_string().contains("tls handshake eof"))
        {
            return refused(format!(
                "etcd closed the connection during the TLS handshake: {not_tls}"
            ));
        }
        if closed || io_kind(&[std::io::ErrorKind::UnexpectedEof]) {
            return refused(format!(
                "etcd closed the connection as it opened: {certificate}; or {not_tls}"
            ));
        }
        None
    }

    /// The options of the connection to etcd at `endpoints`, reached as `access` says (checked
    /// here: TLS only with `https://` endpoints, and all of them; certificates and keys that
    /// rustls can use; a user name).
    pub(crate) fn connect_options(
        endpoints: &[String],
        access: &EtcdAccess,
    ) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(PING_INTERVAL, PING_TIMEOUT);
        if let Some((user, password)) = &access.user {
            if user.is_empty() {
                return Err(Error::config("Cluster::etcd_user: the user name is empty"));
            }
            // etcd's tokens expire, and a restarted etcd forgets its simple tokens: a request
            // refused for its token logs in again and is sent once more.
            options = options
                .with_user(user.as_str(), password.as_str())
                .with_auto_token_refresh(true);
        }
        let https = |endpoint: &String| endpoint.starts_with("https://");
        let Some(ca) = &access.ca else {
            if access.identity.is_some() {
                return Err(Error::config(
                    "Cluster::etcd_identity needs Cluster::etcd_ca: the client certificate is \
                     presented over TLS, and TLS needs the CA that signed etcd's certificate",
                ));
            }
            if let Some(endpoint) = endpoints.iter().find(|e| https(e)) {
                return Err(Error::config(format!(
                    "etcd endpoint {endpoint} is https://: give the CA that signed etcd's \
                     certificate with Cluster::etcd_ca (the platform's CAs are not used for etcd)"
                )));
            }
            return Ok(options);
        };
        if let Some(endpoint) = endpoints.iter().find(|e| !https(e)) {
            return Err(Error::config(format!(
                "Cluster::etcd_ca makes the connection to etcd TLS, but the etcd endpoint \
                 {endpoint} is not https://: write it https://host:port"
            )));
        }
        #[cfg(feature = "tls")]
        {
            use etcd_client::{Certificate, Identity, TlsOptions};
            let identity = access.identity.as_ref();
            // Checked with rustls, as the client will use them: it would skip what it cannot
            // parse, and fail every handshake later for want of a CA.
            crate::transport::tls::check_client(
                ca,
                "the etcd CA (Cluster::etcd_ca)",
                identity.map(|(cert, key)| (cert.as_slice(), key.as_slice())),
                "the etcd client certificate (Cluster::etcd_identity)",
            )?;
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            Ok(options.with_tls(tls))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = ca;
            Err(Error::config(
                "Cluster::etcd_ca: this build has no TLS: enable durable-runtime's `tls` feature",
            ))
        }
    }
}
