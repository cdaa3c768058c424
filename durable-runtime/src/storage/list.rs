//! [`ListOptions`]: which keys a [`Storage::list`] reads, in which order, how many.
//!
//! The options become one byte range of user keys (with the prefix, if any, still checked
//! key by key): an empty range lists nothing without a read, and contradictory options
//! (`start` with `start_after`) or a bound longer than a key can be are errors.
//!
//! [`Storage::list`]: super::Storage::list

use std::ops::Bound;

use super::api::check_key;
use super::keys::prefix_successor;
use crate::error::{Error, Result};

/// Options of [`Storage::list`](super::Storage::list): which keys, in which order, how many.
///
/// Keys are ordered by their UTF-8 bytes. `start` (inclusive) and `start_after` (exclusive)
/// cannot be combined; `end` is exclusive; `prefix` narrows the range further.
///
/// ```
/// use durable_runtime::ListOptions;
/// let opts = ListOptions::default().prefix("user:").start_after("user:41").reverse(true).limit(10);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    start: Option<String>,
    start_after: Option<String>,
    end: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) reverse: bool,
    pub(super) limit: Option<usize>,
}

impl ListOptions {
    /// Only keys `>= start`.
    pub fn start(mut self, start: &str) -> Self {
        self.start = Some(start.to_owned());
        self
    }

    /// Only keys `> start_after`. Cannot be combined with [`start`](Self::start).
    pub fn start_after(mut self, start_after: &str) -> Self {
        self.start_after = Some(start_after.to_owned());
        self
    }

    /// Only keys `< end`.
    pub fn end(mut self, end: &str) -> Self {
        self.end = Some(end.to_owned());
        self
    }

    /// Only keys beginning with `prefix`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// Descending order (the `limit` then keeps the greatest keys).
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// At most `limit` entries. It must be positive: listing with `limit(0)` is an
    /// `InvalidArgument` error ("List limit must be positive"), as in Cloudflare's runtime.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The byte range `[lower, upper)` these options select, or `None` if it is empty.
    pub(super) fn range(&self) -> Result<Option<(Bound<String>, Bound<String>)>> {
        if self.limit == Some(0) {
            return Err(Error::invalid_argument("List limit must be positive"));
        }
        for key in [&self.start, &self.start_after, &self.end, &self.prefix]
            .into_iter()
            .flatten()
        {
            check_key(key)?;
        }
        let mut lower = match (&self.start, &self.start_after) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_argument(
                    "list: `start` and `start_after` cannot be combined",
                ))
            }
            (Some(s), None) => Bound::Included(s.clone()),
            (None, Some(s)) => Bound::Excluded(s.clone()),
            (None, None) => Bound::Unbounded,
        };
        let mut upper = match &self.end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        if let Some(prefix) = &self.prefix {
            let below = match &lower {
                Bound::Included(s) | Bound::Excluded(s) => s.as_str() < prefix.as_str(),
                Bound::Unbounded => true,
            };
            if below {
                lower = Bound::Included(prefix.clone());
            }
            // Keys are UTF-8, so the successor of a prefix is a byte string; compare in bytes.
            if let Some(succ) = prefix_successor(prefix.as_bytes()) {
                let tighter = match &upper {
                    Bound::Excluded(e) => succ.as_slice() < e.as_bytes(),
                    Bound::Included(_) | Bound::Unbounded => true,
                };
                if tighter {
                    // The successor may not be valid UTF-8; every key beginning with the
                    // prefix is still below it, so filter by prefix instead.
                    match String::from_utf8(succ) {
                        Ok(s) => upper = Bound::Excluded(s),
                        Err(_) => upper = Bound::Unbounded,
                    }
                }
            }
        }
        let empty = match (&lower, &upper) {
            (Bound::Included(l), Bound::Excluded(u)) => l >= u,
            (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        };
        Ok((!empty).then_some((lower, upper)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_limit_is_an_error() {
        let err = ListOptions::default().limit(0).range().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(
            err.to_string().contains("List limit must be positive"),
            "{err}"
        );
        assert!(ListOptions::default().limit(1).range().is_ok());
    }

    #[test]
    fn start_with_start_after_is_an_error() {
        let err = ListOptions::default()
            .start("a")
            .start_after("b")
            .range()
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
}
