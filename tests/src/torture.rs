//! The object and the line protocol of the crash torture test (`tests/tests/torture.rs` drives
//! `src/bin/torture_child.rs`).
//!
//! Each of the child's callers owns a disjoint set of objects and has at most one call in
//! flight, so every object's history is one sequence of operations. Before a call the child
//! prints `S <object> <op>`; after its reply, `A <object> <result>`. An object's state is
//! therefore exactly the state after its last acknowledged operation, or after the one sent
//! but not acknowledged when the child was killed.

use std::collections::BTreeMap;

use durable_runtime::{durable_object, Context, Error, ListOptions, Result};

/// How many objects the workload spreads over.
pub const OBJECTS: usize = 1000;
/// How many concurrent callers.
pub const CALLERS: usize = 32;
/// How many single keys `put`/`delete` choose from.
pub const SLOTS: u64 = 8;
/// How many keys each transaction writes: all of them, or none.
pub const TXN_KEYS: usize = 4;

/// One operation of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `ctr += amount`; acknowledged with the new value.
    Incr(u64),
    /// `p{slot} = value`.
    Put(u64, u64),
    /// Deletes `p{slot}`; acknowledged with whether it was set.
    Del(u64),
    /// A transaction writing `token` to `t0..t{K-1}` (token 0: deleting them all).
    Txn(u64),
    /// A transaction writing `token` to every `t` key, then rolled back: changes nothing.
    Abort(u64),
}

impl Op {
    /// The op as printed after `S <object> `.
    pub fn encode(&self) -> String {
        match self {
            Op::Incr(a) => format!("I {a}"),
            Op::Put(s, v) => format!("P {s} {v}"),
            Op::Del(s) => format!("D {s}"),
            Op::Txn(t) => format!("T {t}"),
            Op::Abort(t) => format!("X {t}"),
        }
    }

    /// Parses the fields after `S <object>`.
    pub fn decode(fields: &[&str]) -> Option<Op> {
        let n = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some(match *fields.first()? {
            "I" => Op::Incr(n(1)?),
            "P" => Op::Put(n(1)?, n(2)?),
            "D" => Op::Del(n(1)?),
            "T" => Op::Txn(n(1)?),
            "X" => Op::Abort(n(1)?),
            _ => return None,
        })
    }

    /// Applies the op to a model of the object's keys; returns the acknowledgement expected.
    pub fn apply(&self, state: &mut BTreeMap<String, u64>) -> String {
        match *self {
            Op::Incr(a) => {
                let v = state.get("ctr").copied().unwrap_or(0) + a;
                state.insert("ctr".into(), v);
                v.to_string()
            }
            Op::Put(s, v) => {
                state.insert(format!("p{s}"), v);
                "ok".into()
            }
            Op::Del(s) => state.remove(&format!("p{s}")).is_some().to_string(),
            Op::Txn(t) => {
                for k in 0..TXN_KEYS {
                    if t == 0 {
                        state.remove(&format!("t{k}"));
                    } else {
                        state.insert(format!("t{k}"), t);
                    }
                }
                "ok".into()
            }
            Op::Abort(_) => "ok".into(),
        }
    }
}

/// The object of the torture workload; every value is a `u64`.
#[durable_object]
pub struct Tortured {
    ctx: Context,
}

#[durable_object]
impl Tortured {
    pub fn new(ctx: Context) -> Self {
        Tortured { ctx }
    }

    /// `ctr += amount`, returns the new value.
    pub async fn incr(&mut self, amount: u64) -> Result<u64> {
        let v = self.ctx.storage().get::<u64>("ctr")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("ctr", &v)?;
        Ok(v)
    }

    pub async fn put_slot(&mut self, slot: u64, value: u64) -> Result<()> {
        self.ctx.storage_mut().put(&format!("p{slot}"), &value)
    }

    pub async fn del_slot(&mut self, slot: u64) -> Result<bool> {
        self.ctx.storage_mut().delete(&format!("p{slot}"))
    }

    /// Writes `token` to every transaction key (0: deletes them), in one transaction.
    pub async fn txn(&mut self, token: u64) -> Result<()> {
        self.ctx.storage_mut().transaction(|txn| {
            for k in 0..TXN_KEYS {
                let key = format!("t{k}");
                if token == 0 {
                    txn.delete(&key)?;
                } else {
                    txn.put(&key, &token)?;
                }
            }
            Ok(())
        })
    }

    /// Writes `token` to every transaction key, then fails the transaction: nothing stays.
    pub async fn abort(&mut self, token: u64) -> Result<()> {
        let result = self.ctx.storage_mut().transaction(|txn| -> Result<()> {
            for k in 0..TXN_KEYS {
                txn.put(&format!("t{k}"), &token)?;
            }
            Err(Error::app("Abort", "rolled back on purpose"))
        });
        match result {
            Err(e) if e.is_remote() => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(Error::app("Abort", "the transaction did not fail")),
        }
    }

    /// Every key and value.
    pub async fn dump(&self) -> Result<Vec<(String, u64)>> {
        self.ctx.storage().list(ListOptions::default())
    }
}

/// Runs `op` on `stub`; returns the acknowledgement as [`Op::apply`] prints it.
pub async fn run(stub: &TorturedStub, op: Op) -> Result<String> {
    Ok(match op {
        Op::Incr(a) => stub.incr(a).await?.to_string(),
        Op::Put(s, v) => {
            stub.put_slot(s, v).await?;
            "ok".into()
        }
        Op::Del(s) => stub.del_slot(s).await?.to_string(),
        Op::Txn(t) => {
            stub.txn(t).await?;
            "ok".into()
        }
        Op::Abort(t) => {
            stub.abort(t).await?;
            "ok".into()
        }
    })
}
