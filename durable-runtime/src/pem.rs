//! PEM certificates and keys, and the crypto provider, for every rustls configuration the
//! runtime makes: TLS between runtimes (`transport/tls.rs`) and to PostgreSQL
//! (`storage/pg_tls.rs`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The crypto of every config made here: ring's, whatever provider the process installed as
/// its default.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes of the file at `path` (the `what` of an error message).
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "TLS: cannot read the {what} {}: {e}",
            path.display()
        ))
    })
}

/// Every certificate in `pem`; at least one.
pub(crate) fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("TLS: {what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "TLS: no certificate in {what}: expected a `-----BEGIN CERTIFICATE-----` section"
        )));
    }
    Ok(certs)
}

/// The private key in `pem` (`what`, for errors).
pub(crate) fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        Error::config(format!(
            "TLS: no usable private key in {what} ({e}); expected a \
             `-----BEGIN PRIVATE KEY-----` (PKCS#8), RSA or EC key section"
        ))
    })
}

/// The roots of trust in `ca_pem` (`what`, for errors): at least one certificate, each
/// usable as a CA.
pub(crate) fn roots(ca_pem: &[u8], what: &str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_pem, what)? {
        roots.add(cert).map_err(|e| {
            Error::config(format!(
                "TLS: a certificate of {what} cannot be used as a CA: {e}"
            ))
        })?;
    }
    Ok(roots)
}
