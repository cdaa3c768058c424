//! Remote calls: a runtime serves its objects to other processes ([`server`]), and a
//! connected runtime sends its calls there ([`client`]), through the same typed stubs.
//!
//! The pieces, each in its file: [`frame`] (the bytes on the wire), [`handshake`] (both
//! ends prove they hold the secret), [`outbox`] (the way out of a connection, shared by its
//! writers), [`server`] and [`client`], [`peers`] (the front ends holding WebSockets for
//! a server's objects), and [`stream`] (a connection's halves, plain TCP or, with the `tls`
//! feature, TLS as [`tls`] configures it).

pub(crate) mod client;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod outbox;
pub(crate) mod peers;
pub(crate) mod server;
pub(crate) mod stream;
#[cfg(feature = "tls")]
pub(crate) mod tls;

use std::sync::Arc;

/// The settings both ends of a connection use.
#[derive(Clone)]
pub(crate) struct TransportConfig {
    /// The shared secret (empty when none was set).
    pub(crate) secret: Arc<[u8]>,
    /// The largest frame sent or accepted.
    pub(crate) max_frame_bytes: usize,
    /// Calls of one connection in flight at once.
    pub(crate) max_calls_in_flight: usize,
    /// TLS on every connection, when set.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tls::Tls>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            secret: Arc::from(&[][..]),
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            max_calls_in_flight: DEFAULT_MAX_CALLS_IN_FLIGHT,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// The default bound on calls in flight per connection.
pub(crate) const DEFAULT_MAX_CALLS_IN_FLIGHT: usize = 4096;

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        let mut f = f.debug_struct("TransportConfig");
        f.field("secret", &(!self.secret.is_empty()).then_some("<set>"))
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_calls_in_flight", &self.max_calls_in_flight);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        f.finish()
    }
}
