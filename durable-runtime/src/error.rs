//! Errors: one type for everything a call, a stub or the storage API can report.
//!
//! The model follows Durable Objects: an error either comes from the object's own code
//! ([`Error::is_remote`]), from the platform refusing work ([`Error::is_overloaded`]), or from
//! infrastructure that may succeed on a second try ([`Error::is_retryable`]).
//!
//! Like `anyhow::Error`, [`Error`] does not implement [`std::error::Error`] itself, so that `?`
//! converts any ordinary error into an application error; it dereferences to
//! `dyn std::error::Error` and converts into `Box<dyn std::error::Error>` where one is needed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `Result<T, durable_runtime::Error>`, with the error type overridable.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for matching. See [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Raised by the object's own code, with [`Error::app`] or `?` on an ordinary error.
    App,
    /// The object's code panicked; its uncommitted writes were discarded and it was reset.
    Panicked,
    /// An object ID string was malformed or belongs to another class.
    InvalidId,
    /// A storage key is longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    KeyTooLarge,
    /// A stored value is larger than [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES).
    ValueTooLarge,
    /// An argument broke a documented rule (for example `start` with `start_after`).
    InvalidArgument,
    /// A value could not be encoded or decoded with postcard.
    Codec,
    /// The storage backend failed (I/O error, failed sync).
    Storage,
    /// The object's queue is full: the call was refused without running.
    Overloaded,
    /// The runtime was shut down or dropped.
    Closed,
    /// The call did not complete within its timeout (it may still have run).
    Timeout,
    /// The call would close a cycle (A calls B calls A while A is in an exclusive call) and
    /// was refused instead of deadlocking.
    Cycle,
    /// The runtime was configured wrongly (for example two classes with one name).
    Config,
    /// A broken internal invariant; please report it.
    Internal,
    /// The peer does not hold the runtime's secret (or holds another one). Not retryable.
    Unauthenticated,
    /// The connection to the object's runtime was lost before the reply arrived. Retryable:
    /// the call may or may not have run.
    Disconnected,
    /// The peer does not know the class or the method ID: a peer of another build.
    UnknownMethod,
    /// Cluster mode: no node of the cluster owned the object's shard, or none could be
    /// reached, within the call's time (a node failing over, etcd unreachable, this node's
    /// lease lapsed). The call did not run. Retryable.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
enum Repr {
    #[error("{kind}: {message}")]
    App { kind: String, message: String },
    #[error("durable object {class} {id} panicked in `{method}`: {message} (its uncommitted writes were discarded and the object was reset)")]
    Panicked {
        class: String,
        id: String,
        method: String,
        message: String,
    },
    #[error("invalid object ID: {0}")]
    InvalidId(String),
    #[error("storage key is {len} bytes; the limit is {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value for key {key:?} is {len} bytes once encoded; the limit is {max} bytes")]
    ValueTooLarge { key: String, len: usize, max: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("could not {action} the value of key {key:?}: {message}")]
    Codec {
        action: String,
        key: String,
        message: String,
    },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("Durable Object is overloaded. Too many requests queued.")]
    Overloaded,
    #[error("the durable runtime is closed")]
    Closed,
    #[error("the call to `{method}` did not complete within {timeout_ms} ms; it may still run and commit")]
    Timeout { method: String, timeout_ms: u64 },
    #[error("call cycle: {0}")]
    Cycle(String),
    #[error("runtime configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
    // Variants are encoded by position on the wire: new ones go at the end, never between.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("disconnected: {0}")]
    Disconnected(String),
    #[error("unknown method: {0}")]
    UnknownMethod(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Cluster mode: this node refused the call without running it (the object's shard is
    /// not owned here, or the node's lease lapsed). Its kind is `Unavailable`; a routed call
    /// that meets it looks for the owner again.
    #[error("unavailable: {0}")]
    NotHere(String),
}

/// The error of every fallible operation in `durable_runtime`.
///
/// ```
/// use durable_runtime::{Error, ErrorKind};
///
/// let e = Error::app("NotFound", "no such user");
/// assert!(e.is_remote());
/// assert_eq!(e.kind(), ErrorKind::App);
/// assert_eq!(e.app_kind(), Some("NotFound"));
/// assert_eq!(e.to_string(), "NotFound: no such user");
///
/// // `?` turns ordinary errors into application errors.
/// fn parse(s: &str) -> durable_runtime::Result<i64> {
///     Ok(s.parse::<i64>()?)
/// }
/// assert!(parse("x").unwrap_err().is_remote());
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Error {
    repr: Box<Repr>,
}

impl Error {
    fn new(repr: Repr) -> Self {
        Error {
            repr: Box::new(repr),
        }
    }

    /// An application error with a kind (a short machine-readable name) and a message.
    /// It crosses the stub intact: the caller sees the same kind and message.
    pub fn app(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(Repr::App {
            kind: kind.into(),
            message: message.into(),
        })
    }

    /// What went wrong, for matching.
    pub fn kind(&self) -> ErrorKind {
        match &*self.repr {
            Repr::App { .. } => ErrorKind::App,
            Repr::Panicked { .. } => ErrorKind::Panicked,
            Repr::InvalidId(_) => ErrorKind::InvalidId,
            Repr::KeyTooLarge { .. } => ErrorKind::KeyTooLarge,
            Repr::ValueTooLarge { .. } => ErrorKind::ValueTooLarge,
            Repr::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Repr::Codec { .. } => ErrorKind::Codec,
            Repr::Storage(_) => ErrorKind::Storage,
            Repr::Overloaded => ErrorKind::Overloaded,
            Repr::Closed => ErrorKind::Closed,
            Repr::Timeout { .. } => ErrorKind::Timeout,
            Repr::Cycle(_) => ErrorKind::Cycle,
            Repr::Config(_) => ErrorKind::Config,
            Repr::Internal(_) => ErrorKind::Internal,
            Repr::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Repr::Disconnected(_) => ErrorKind::Disconnected,
            Repr::UnknownMethod(_) => ErrorKind::UnknownMethod,
            Repr::Unavailable(_) | Repr::NotHere(_) => ErrorKind::Unavailable,
        }
    }

    /// `true` when the error was raised by the object's own code (an application error or a
    /// panic), as opposed to the runtime or the storage.
    pub fn is_remote(&self) -> bool {
        matches!(&*self.repr, Repr::App { .. } | Repr::Panicked { .. })
    }

    /// `true` when the same call may succeed if sent again: a transient storage failure, a
    /// connection lost before the reply (the call may have run: retry only what is safe to
    /// run twice), or an object unavailable in a cluster (it did not run). Overloaded errors
    /// are not retryable: sending more work makes overload worse.
    pub fn is_retryable(&self) -> bool {
        matches!(
            &*self.repr,
            Repr::Storage(_) | Repr::Disconnected(_) | Repr::Unavailable(_) | Repr::NotHere(_)
        )
    }

    /// `true` when the object refused the call because its queue was full.
    pub fn is_overloaded(&self) -> bool {
        matches!(&*self.repr, Repr::Overloaded)
    }

    /// The kind given to [`Error::app`], for application errors.
    pub fn app_kind(&self) -> Option<&str> {
        match &*self.repr {
            Repr::App { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The message of an application error, or the whole description otherwise.
    pub fn message(&self) -> String {
        match &*self.repr {
            Repr::App { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn panicked(class: &str, id: &str, method: &str, message: String) -> Self {
        Error::new(Repr::Panicked {
            class: class.to_owned(),
            id: id.to_owned(),
            method: method.to_owned(),
            message,
        })
    }

    pub(crate) fn invalid_id(reason: impl Into<String>) -> Self {
        Error::new(Repr::InvalidId(reason.into()))
    }

    pub(crate) fn key_too_large(len: usize, max: usize) -> Self {
        Error::new(Repr::KeyTooLarge { len, max })
    }

    pub(crate) fn value_too_large(key: &str, len: usize, max: usize) -> Self {
        Error::new(Repr::ValueTooLarge {
            key: key.to_owned(),
            len,
            max,
        })
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(Repr::InvalidArgument(message.into()))
    }

    pub(crate) fn codec(action: &str, key: &str, err: impl fmt::Display) -> Self {
        Error::new(Repr::Codec {
            action: action.to_owned(),
            key: key.to_owned(),
            message: err.to_string(),
        })
    }

    /// A storage failure, for [`Backend`](crate::Backend) implementations.
    pub fn storage(message: impl fmt::Display) -> Self {
        Error::new(Repr::Storage(message.to_string()))
    }

    pub(crate) fn overloaded() -> Self {
        Error::new(Repr::Overloaded)
    }

    pub(crate) fn closed() -> Self {
        Error::new(Repr::Closed)
    }

    pub(crate) fn timeout(method: &str, timeout: std::time::Duration) -> Self {
        Error::new(Repr::Timeout {
            method: method.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    pub(crate) fn cycle(path: String) -> Self {
        Error::new(Repr::Cycle(path))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(Repr::Config(message.into()))
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(Repr::Unauthenticated(message.into()))
    }

    pub(crate) fn disconnected(message: impl Into<String>) -> Self {
        Error::new(Repr::Disconnected(message.into()))
    }

    pub(crate) fn unknown_method(message: impl Into<String>) -> Self {
        Error::new(Repr::UnknownMethod(message.into()))
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::new(Repr::Unavailable(message.into()))
    }

    /// A cluster node refused a call without running it: the caller may look for the owner
    /// again (see `Repr::NotHere`).
    pub(crate) fn not_here(message: impl Into<String>) -> Self {
        Error::new(Repr::NotHere(message.into()))
    }

    /// Whether a cluster node refused the call without running it.
    pub(crate) fn is_not_here(&self) -> bool {
        matches!(&*self.repr, Repr::NotHere(_))
    }

    /// A broken internal invariant. Public for the code `#[durable_object]` generates.
    #[doc(hidden)]
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Repr::Internal(message.into()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.repr, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {})", self.kind(), self.repr)
    }
}

impl std::ops::Deref for Error {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.repr
    }
}

impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Error {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.repr
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    /// Any ordinary error becomes an application error whose kind is the error's type name.
    fn from(err: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.rsplit("::").next().unwrap_or(full);
        Error::app(short, err.to_string())
    }
}

impl From<Error> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(err: Error) -> Self {
        err.repr
    }
}

impl From<Error> for Box<dyn std::error::Error + 'static> {
    fn from(err: Error) -> Self {
        err.repr
    }
}

/// Turns a runtime error into the return type of a stub method. Implemented for every
/// `Result<T, E>` whose `E: From<Error>`, which lets a typed user error cross the stub intact.
#[doc(hidden)]
pub trait FromRuntimeError {
    fn from_runtime_error(err: Error) -> Self;
}

impl<T, E: From<Error>> FromRuntimeError for std::result::Result<T, E> {
    fn from_runtime_error(err: Error) -> Self {
        Err(E::from(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_errors_become_app_errors_named_after_their_type() {
        let err: Error = "x".parse::<i64>().unwrap_err().into();
        assert_eq!(err.app_kind(), Some("ParseIntError"));
        assert!(err.is_remote());
        assert!(!err.is_retryable());
    }

    #[test]
    fn errors_survive_a_postcard_round_trip() {
        let err = Error::app("Conflict", "version 3 is stale");
        let bytes = postcard::to_allocvec(&err).unwrap();
        let back: Error = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, err);
        assert_eq!(back.message(), "version 3 is stale");
    }

    #[test]
    fn overloaded_is_not_retryable() {
        let err = Error::overloaded();
        assert!(err.is_overloaded());
        assert!(!err.is_retryable());
        assert!(!err.is_remote());
    }
}
