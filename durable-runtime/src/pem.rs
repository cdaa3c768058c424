//! PEM certificates and keys, and the crypto provider, for every rustls configuration the
//! runtime makes: TLS between runtimes (`transport/tls.rs`) and to PostgreSQL
//! (`storage/pg_tls.rs`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

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
