//! TLS to PostgreSQL, as libpq's connection parameters ask for it.
//!
//! | `sslmode` | TLS | server certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` (the default) | if the server offers it | checked against `sslrootcert` if given, else not checked |
//! | `require` | always | as `prefer` |
//! | `verify-ca` | always | chains to `sslrootcert` |
//! | `verify-full` | always | chains to `sslrootcert` and names the host connected to |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` (the platform's trusted roots);
//! the verifying modes without it read `~/.postgresql/root.crt`, as libpq does. `sslcert`
//! and `sslkey` (PEM files) give a client certificate, for servers that ask for one (`cert`
//! in `pg_hba.conf`). `allow` tries TLS first (libpq tries plain text first).
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, and none of the files:
//! [`split`] takes these parameters out of the connection string, leaving the rest to
//! tokio-postgres, and [`PgTls::connector`] builds the rustls configuration they describe.
//! A connection without TLS is exactly what it was before TLS existed here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::pem::{certificates, private_key, provider, read, roots};

/// The TLS a connection string asks for; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgTls {
    mode: Mode,
    /// `sslrootcert`.
    root: Option<Root>,
    /// `sslcert` and `sslkey`.
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    File(PathBuf),
    System,
}

/// Takes libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) out of a
/// connection string (a URL's query, or the `key=value` form): returns the string for
/// tokio-postgres (its `sslmode` one it knows) and the TLS asked for.
///
/// # Errors
///
/// [`Config`](crate::ErrorKind::Config): an unknown `sslmode`, `sslcert` without `sslkey`
/// (or the reverse), or a `key=value` string whose quotes do not close.
pub(crate) fn split(url: &str) -> Result<(String, PgTls)> {
    let mut tls = PgTls {
        mode: Mode::Prefer,
        root: None,
        cert: None,
        key: None,
    };
    let mut take = |key: &str, value: &str| -> Result<bool> {
        match key {
            "sslmode" => {
                tls.mode = match value {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(Error::config(format!(
                            "PostgreSQL URL: unknown sslmode `{other}`; expected disable, allow, \
                             prefer, require, verify-ca or verify-full"
                        )))
                    }
                }
            }
            "sslrootcert" => {
                tls.root = Some(if value == "system" {
                    Root::System
                } else {
                    Root::File(value.into())
                })
            }
            "sslcert" => tls.cert = Some(value.into()),
            "sslkey" => tls.key = Some(value.into()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url, &mut take)?
    } else {
        split_key_values(url, &mut take)?
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(Error::config(
            "PostgreSQL URL: a client certificate needs both sslcert and sslkey",
        ));
    }
    let ssl_mode = match tls.mode {
        Mode::Disable => "disable",
        Mode::Prefer => "prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "require",
    };
    Ok((with_param(&rest, "sslmode", ssl_mode), tls))
}

/// The URL without the parameters `take` took.
fn split_url(url: &str, take: &mut impl FnMut(&str, &str) -> Result<bool>) -> Result<String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if !take(&percent_decode(key), &percent_decode(value))? {
            kept.push(param);
        }
    }
    Ok(if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// The `key=value` string without the parameters `take` took.
fn split_key_values(s: &str, take: &mut impl FnMut(&str, &str) -> Result<bool>) -> Result<String> {
    let mut kept = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // Not ours to judge: tokio-postgres reports it.
            return Ok(s.to_owned());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::config(
                            "PostgreSQL connection string: a quoted value does not end",
                        ))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if !take(&key, &value)? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(kept.join(" "))
}

/// `s` with `key=value` added (a URL's query parameter, or a `key=value` pair).
fn with_param(s: &str, key: &str, value: &str) -> String {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let separator = if s.contains('?') { '&' } else { '?' };
        format!("{s}{separator}{key}={value}")
    } else if s.is_empty() {
        format!("{key}={value}")
    } else {
        format!("{s} {key}={value}")
    }
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PgTls {
    /// The connector for tokio-postgres.
    ///
    /// # Errors
    ///
    /// [`Config`](crate::ErrorKind::Config): a file that cannot be read or holds no usable
    /// certificate or key, or a verifying mode with no CA to verify against.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = provider();
        let roots = match (&self.root, self.mode) {
            (Some(root), _) => Some(root_store(root)?),
            (None, Mode::VerifyCa | Mode::VerifyFull) => {
                let default = std::env::var_os("HOME")
                    .map(|home| Path::new(&home).join(".postgresql/root.crt"))
                    .filter(|path| path.exists())
                    .ok_or_else(|| {
                        Error::config(
                            "PostgreSQL URL: sslmode=verify-ca and verify-full check the \
                             server's certificate against a CA: give sslrootcert=FILE (PEM) or \
                             sslrootcert=system (~/.postgresql/root.crt does not exist)",
                        )
                    })?;
                Some(root_store(&Root::File(default))?)
            }
            (None, _) => None,
        };
        let chain = match roots {
            None => None,
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::config(format!("PostgreSQL TLS: {e}")))?,
            ),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match chain {
            Some(chain) if self.mode == Mode::VerifyFull => chain,
            chain => Arc::new(Lenient {
                provider: provider.clone(),
                chain,
            }),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("PostgreSQL TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(
                    &read(cert, "client certificate")?,
                    &format!("sslcert {}", cert.display()),
                )?;
                let key = private_key(
                    &read(key, "client key")?,
                    &format!("sslkey {}", key.display()),
                )?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::config(format!("PostgreSQL TLS: the client certificate: {e}"))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

/// The CA certificates of `sslrootcert`.
fn root_store(root: &Root) -> Result<rustls::RootCertStore> {
    match root {
        Root::File(path) => {
            let what = format!("sslrootcert {}", path.display());
            roots(&read(path, "CA file (sslrootcert)")?, &what)
        }
        Root::System => {
            let mut store = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::config(format!(
                    "PostgreSQL TLS: sslrootcert=system found no trusted certificate on this \
                     machine{}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )));
            }
            Ok(store)
        }
    }
}

/// The checks of the modes below `verify-full`: with no CA (`prefer`, `require` without
/// `sslrootcert`), none, for encryption without knowing whom it is with (libpq's behaviour);
/// with a CA (`verify-ca`, or `require` with `sslrootcert`), the chain but not the name. The
/// handshake's signatures are checked either way, against the certificate presented.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> (String, Mode) {
        let (rest, tls) = split(url).unwrap();
        (rest, tls.mode)
    }

    #[test]
    fn libpq_parameters_are_taken_out_and_sslmode_rewritten() {
        assert_eq!(
            mode("postgres://app@db/app"),
            ("postgres://app@db/app?sslmode=prefer".into(), Mode::Prefer)
        );
        let (rest, tls) = split(
            "postgres://app@db/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20b.pem&sslcert=/c.pem&sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://app@db/app?application_name=x&sslmode=require"
        );
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root, Some(Root::File("/etc/ca b.pem".into())));
        assert_eq!(tls.cert, Some("/c.pem".into()));
        assert_eq!(tls.key, Some("/k.pem".into()));
        assert_eq!(mode("postgresql://db/app?sslmode=disable").1, Mode::Disable);
        assert_eq!(
            mode("postgres://db/app?sslmode=verify-ca").1,
            Mode::VerifyCa
        );
        assert_eq!(mode("postgres://db/app?sslmode=allow").1, Mode::Prefer);
        let (rest, tls) =
            split("host=db user=app sslmode = verify-ca sslrootcert='/a b/c\\'s.pem' dbname=x")
                .unwrap();
        assert_eq!(rest, "host='db' user='app' dbname='x' sslmode=require");
        assert_eq!(tls.mode, Mode::VerifyCa);
        assert_eq!(tls.root, Some(Root::File("/a b/c's.pem".into())));
        let (_, tls) = split("host=db sslrootcert=system").unwrap();
        assert_eq!(tls.root, Some(Root::System));
        // What it rewrote, tokio-postgres reads.
        for url in [
            "postgres://app@db/app?sslmode=verify-full&connect_timeout=3",
            "host=db user=app password='a b' sslmode=verify-ca",
        ] {
            let (rest, _) = split(url).unwrap();
            let config: tokio_postgres::Config = rest.parse().unwrap();
            assert_eq!(
                config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require,
                "{rest}"
            );
        }
    }

    #[test]
    fn bad_tls_parameters_are_config_errors() {
        for (url, says) in [
            ("postgres://db/app?sslmode=maybe", "unknown sslmode `maybe`"),
            (
                "postgres://db/app?sslcert=/c.pem",
                "needs both sslcert and sslkey",
            ),
            ("host=db sslkey=/k.pem", "needs both sslcert and sslkey"),
            ("host=db password='open", "a quoted value does not end"),
        ] {
            let err = split(url).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{url}");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
        let (_, tls) = split("postgres://db/app?sslrootcert=/nonexistent/ca.pem").unwrap();
        let err = tls.connector().err().expect("an unreadable CA");
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let (_, tls) = split(&format!(
            "postgres://db/app?sslmode=verify-full&sslrootcert={}",
            empty.display()
        ))
        .unwrap();
        let err = tls.connector().err().expect("no certificate");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
