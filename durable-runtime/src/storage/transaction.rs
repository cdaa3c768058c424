//! [`Transaction`]: a unit of writes inside a call.
//!
//! A transaction's writes join the call's only if it returns `Ok` without calling
//! [`Transaction::rollback`]; otherwise the call's writes are back to what they were when it
//! began. Either way nothing is durable before the call returns: the call's writes, the
//! transaction's included, commit together.

use super::Storage;
use crate::error::Result;

/// A transaction inside a call: the [`Storage`] API plus [`rollback`](Self::rollback).
pub struct Transaction<'a> {
    storage: &'a mut Storage,
    rolled_back: bool,
}

impl Transaction<'_> {
    /// Undoes this transaction's writes when it ends, even if it returns `Ok`.
    pub fn rollback(&mut self) {
        self.rolled_back = true;
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Storage;
    fn deref(&self) -> &Storage {
        self.storage
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Storage {
        self.storage
    }
}

impl Storage {
    /// Runs `f` as a unit inside the call: if it returns `Err` or calls
    /// [`Transaction::rollback`], its writes are undone; otherwise they join the call's
    /// writes (which commit atomically when the call returns).
    ///
    /// ```
    /// # use durable_runtime::{durable_object, Context, Error, Result};
    /// # #[durable_object] pub struct Bank { ctx: Context }
    /// # #[durable_object] impl Bank {
    /// #   pub fn new(ctx: Context) -> Self { Bank { ctx } }
    /// pub async fn transfer(&mut self, from: String, to: String, amount: i64) -> Result<()> {
    ///     self.ctx.storage_mut().transaction(|txn| {
    ///         let a: i64 = txn.get(&from)?.unwrap_or(0);
    ///         if a < amount {
    ///             return Err(Error::app("InsufficientFunds", format!("{from} has {a}")));
    ///         }
    ///         let b: i64 = txn.get(&to)?.unwrap_or(0);
    ///         txn.put(&from, &(a - amount))?;
    ///         txn.put(&to, &(b + amount))?;
    ///         Ok(())
    ///     })
    /// }
    /// # }
    /// ```
    pub fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<R> {
        let saved = self.store.layers().call.clone();
        let mut txn = Transaction {
            storage: self,
            rolled_back: false,
        };
        let result = f(&mut txn);
        if result.is_err() || txn.rolled_back {
            self.store.layers().call = saved;
        }
        result
    }
}
