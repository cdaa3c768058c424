//! An object's storage: a typed key/value API (serde + postcard) over a byte-level
//! [`Backend`].
//!
//! Reads go through three layers, newest first: the writes of the running call (not yet
//! committed), the object's committed batches still on their way to the backend
//! ("in flight", see `commit.rs`), and the backend. So a call always reads its own writes and
//! every earlier write of its object, durable or still flushing.
//!
//! One concept per file: `store.rs` holds those layers (an object's write buffer and
//! in-flight batches), `api.rs` the typed [`Storage`] API, `list.rs` its [`ListOptions`],
//! `transaction.rs` [`Transaction`], `alarms.rs` the alarm and schedule API; `batch.rs`,
//! `keys.rs` and the backends the byte level below.

use std::ops::Bound;

mod alarms;
mod api;
mod backend;
mod batch;
mod fjall;
pub(crate) mod keys;
mod list;
mod memory;
#[cfg(feature = "postgres")]
mod pg_tls;
#[cfg(feature = "postgres")]
mod postgres;
mod resident;
mod store;
mod transaction;

pub(crate) use self::alarms::now_ms;
pub use self::api::Storage;
pub use self::backend::{
    Backend, Durability, Entry, Fence, RangeRead, ScanEachFuture, ScanIter, Write,
};
pub(crate) use self::batch::Batch;
pub use self::fjall::FjallBackend;
pub use self::list::ListOptions;
pub use self::memory::MemoryBackend;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresBackend, PostgresOptions};
pub(crate) use self::store::{stored_object_ids, ObjectStore};
pub use self::transaction::Transaction;

/// Runs a read that may block on a network: on a worker of a multi-threaded tokio runtime,
/// through `block_in_place` (the worker's other tasks move to another thread meanwhile);
/// elsewhere in place.
pub(crate) fn block_outside_async<R>(read: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(read)
        }
        _ => read(),
    }
}

/// Whether `(start, end)` is inverted or holds nothing between equal bounds: such a range is
/// empty, and `BTreeMap::range` panics on it instead.
pub(crate) fn empty_range<K: Ord + ?Sized>(start: Bound<&K>, end: Bound<&K>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
            s >= e
        }
        _ => false,
    }
}

/// The longest key, in bytes of UTF-8, as in Durable Objects.
pub const MAX_KEY_BYTES: usize = 2 * 1024;
/// The largest value, in bytes once encoded with postcard.
pub const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;
/// The most keys one `get_many`, `put_many` or `delete_many` takes, as in Durable Objects.
pub const MAX_BATCH_KEYS: usize = 128;

/// The longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 256;
