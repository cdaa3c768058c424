//! The crash torture: its object, its line protocol, and the checks shared by
//! `tests/tests/torture.rs` (fjall) and `tests/tests/pg_torture.rs` (PostgreSQL), which drive
//! `src/bin/torture_child.rs`.
//!
//! Each of the child's callers owns a disjoint set of objects and has at most one call in
//! flight, so every object's history is one sequence of operations. The child prints one
//! whole, flushed line per event:
//!
//! - `S <object> <op>` before a call;
//! - `A <object> <result> <ms>` after its reply (`<ms>`: how long the call took);
//! - with `--survive` only, `F <object> <kind> <ms> <message>` when a call failed. Its outcome
//!   is unknown (a commit cut off by a lost connection may have landed), so the child then
//!   reads the object's keys (`dump`, retried until it answers; each failed try is one more
//!   `F` line) and prints `R <object> <key>=<value>,...` (`-`: no keys), which settles it;
//! - without `--survive`, on any error: `E <object> <message>`, and the child exits 2.
//!
//! An object's state is therefore exactly the state after its last acknowledged (or settled)
//! operation, or that plus the one call outstanding when the child was killed. [`History`]
//! replays the lines against a model and checks the replies and the recovered state.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable_runtime::{
    durable_object, Context, Error, ErrorKind, ListOptions, PostgresBackend, PostgresOptions,
    Result, Runtime,
};
use futures_util::StreamExt;

use crate::spawn_with_lines;

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

/// Opens a runtime on `target`: a fjall data directory, or a `postgres://` URL (with
/// `timeout` as [`PostgresOptions::timeout`] and `connect_timeout`, if given). A runtime
/// killed a moment ago may still hold the schema's advisory lock: its sessions end only once
/// the server notices their closed sockets (at once on loopback, normally), so an open
/// refused for that is retried for up to [`LOCK_PATIENCE`].
pub fn open(target: &str, timeout: Option<Duration>) -> Result<Runtime> {
    if !is_postgres(target) {
        return Runtime::builder().data_dir(target).open();
    }
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        let opened = match timeout {
            None => Runtime::builder().postgres(target).open(),
            Some(t) => {
                let options = PostgresOptions::default().timeout(t).connect_timeout(t);
                PostgresBackend::connect_with(target, options)
                    .and_then(|b| Runtime::builder().backend(Arc::new(b)).open())
            }
        };
        match opened {
            Err(e)
                if e.kind() == ErrorKind::Config
                    && e.to_string().contains("another runtime holds")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// How long [`open`] waits for a killed runtime's advisory lock to be released.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// Whether `target` names a PostgreSQL database rather than a data directory.
pub fn is_postgres(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// An object's keys and values.
pub type State = BTreeMap<String, u64>;

/// `State` as an `R` line prints it: `key=value,...`, or `-` when empty.
pub fn encode_state(state: &State) -> String {
    if state.is_empty() {
        return "-".into();
    }
    let pairs: Vec<String> = state.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// Parses [`encode_state`]'s output.
pub fn decode_state(text: &str) -> Option<State> {
    if text == "-" {
        return Some(State::new());
    }
    text.split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Turns a hang of the child or of a recovery into a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// xorshift64: the test's random choices, replayable from the printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration of `0..max_ms` milliseconds.
    pub fn millis(&mut self, max_ms: u64) -> Duration {
        Duration::from_millis(self.next_u64() % max_ms)
    }
}

/// `DURABLE_TORTURE_SEED`, or a fresh seed from the clock (odd, never 0).
pub fn seed_from_env() -> u64 {
    std::env::var("DURABLE_TORTURE_SEED").ok().map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
                | 1
        },
        |v| v.parse().expect("DURABLE_TORTURE_SEED: a number"),
    )
}

/// `DURABLE_TORTURE_CYCLES`, or `default`.
pub fn cycles_from_env(default: usize) -> usize {
    std::env::var("DURABLE_TORTURE_CYCLES")
        .ok()
        .map_or(default, |v| {
            v.parse().expect("DURABLE_TORTURE_CYCLES: a number")
        })
}

/// Runs the child at `path` with `args` and kills it with SIGKILL at a random moment: one
/// time in five (never when `first`) 0–150 ms after start, maybe while it opens and recovers
/// its storage; otherwise 0–400 ms after its first reply. Returns every line it printed
/// whole, in order, and when it was killed.
pub fn run_child_and_kill(
    path: &str,
    args: &[&str],
    first: bool,
    rng: &mut Rng,
) -> (Vec<String>, String) {
    let (mut child, rx) = spawn_with_lines(path, args);
    let mut lines = Vec::new();
    let when = if !first && rng.next_u64().is_multiple_of(5) {
        let after = rng.millis(150);
        std::thread::sleep(after);
        format!("{after:?} after start")
    } else {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let ack = line.starts_with("A ");
                    lines.push(line);
                    if ack {
                        break;
                    }
                }
                Err(e) => {
                    kill(&mut child);
                    panic!("the child acknowledged nothing within {PATIENCE:?}: {e:?} {lines:?}");
                }
            }
        }
        let run = rng.millis(400);
        collect_for(&rx, run, &mut lines, &mut child);
        format!("{run:?} after its first reply")
    };
    kill(&mut child);
    lines.extend(rx);
    (lines, when)
}

/// Collects the child's lines for `run`; panics if it stops by itself.
pub fn collect_for(
    rx: &Receiver<String>,
    run: Duration,
    lines: &mut Vec<String>,
    child: &mut Child,
) {
    let deadline = Instant::now() + run;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(RecvTimeoutError::Timeout) => return,
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait();
                panic!(
                    "the child stopped by itself: {status:?}; its last lines: {:?}",
                    &lines[lines.len().saturating_sub(5)..]
                );
            }
        }
    }
}

/// SIGKILLs the child and reaps it.
pub fn kill(child: &mut Child) {
    child.kill().expect("kill -9 the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed: {status:?}");
}

/// Reads every object's keys through a runtime opened on `target` (see [`open`]), then shuts
/// it down.
pub fn recover(target: &str) -> Vec<State> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let work = async {
            let rt = open(target, None).unwrap_or_else(|e| panic!("reopen {target}: {e}"));
            let ns = rt.namespace::<Tortured>();
            // A few at a time: on PostgreSQL each activation loads the object (round trips).
            let states: Vec<State> = futures_util::stream::iter(0..OBJECTS)
                .map(|i| {
                    let stub = ns.get_by_name(&format!("o{i}"));
                    async move {
                        let dump = stub
                            .dump()
                            .await
                            .unwrap_or_else(|e| panic!("dump o{i}: {e}"));
                        dump.into_iter().collect::<State>()
                    }
                })
                .buffered(16)
                .collect()
                .await;
            rt.shutdown().await.expect("shutdown");
            states
        };
        tokio::time::timeout(PATIENCE, work)
            .await
            .expect("recovery hung")
    })
}

/// The call an object has outstanding.
#[derive(Debug, Clone, Copy)]
enum Outstanding {
    /// Sent, no reply yet.
    Sent(Op),
    /// Failed; not yet settled by a dump.
    Failed(Op),
}

impl Outstanding {
    fn op(self) -> Op {
        match self {
            Outstanding::Sent(op) | Outstanding::Failed(op) => op,
        }
    }
}

/// What checking the child's histories counted.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: usize,
    pub acked: usize,
    /// Failed calls (the dumps that settle them included), by error kind: how many, and the
    /// first message.
    pub failed: BTreeMap<String, (usize, String)>,
    /// Failed calls that the dump after them found applied (their commit had landed), and
    /// not applied.
    pub failed_applied: usize,
    pub failed_not_applied: usize,
    /// Calls outstanding at a kill that the recovery found applied, and not (or no-ops).
    pub in_flight_applied: usize,
    pub in_flight_lost: usize,
    /// Keys checked at recoveries, and object checks that found a whole 4-key transaction.
    pub verified_keys: usize,
    pub txn_objects: usize,
    /// The longest call, as the child timed it (replies and failures).
    pub slowest: Duration,
}

impl Tally {
    /// Failed calls of every kind.
    pub fn failures(&self) -> usize {
        self.failed.values().map(|(n, _)| n).sum()
    }
}

/// Every object's history as the child's lines tell it, checked as it goes; see the module
/// documentation.
pub struct History {
    model: Vec<State>,
    outstanding: BTreeMap<usize, Outstanding>,
    pub tally: Tally,
}

impl Default for History {
    fn default() -> Self {
        History {
            model: vec![State::new(); OBJECTS],
            outstanding: BTreeMap::new(),
            tally: Tally::default(),
        }
    }
}

impl History {
    /// Calls outstanding now (sent and not acknowledged, or failed and not settled).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Replays one line of the child; panics (saying `ctx`) on a wrong reply or a line that
    /// breaks the protocol. Returns the line's object.
    pub fn line(&mut self, line: &str, ctx: &str) -> usize {
        let fields: Vec<&str> = line.split(' ').collect();
        let o: usize = fields
            .get(1)
            .and_then(|o| o.parse().ok())
            .filter(|o| *o < OBJECTS)
            .unwrap_or_else(|| panic!("{ctx}: the child printed {line:?}"));
        let ms = |i: usize| {
            let ms: u64 = fields
                .get(i)
                .and_then(|ms| ms.parse().ok())
                .unwrap_or_else(|| panic!("{ctx}: no duration in {line:?}"));
            Duration::from_millis(ms)
        };
        match fields[0] {
            "S" => {
                let op =
                    Op::decode(&fields[2..]).unwrap_or_else(|| panic!("{ctx}: bad op {line:?}"));
                let before = self.outstanding.insert(o, Outstanding::Sent(op));
                assert!(before.is_none(), "{ctx}: two calls outstanding: {line}");
                self.tally.sent += 1;
            }
            "A" => {
                let Some(Outstanding::Sent(op)) = self.outstanding.remove(&o) else {
                    panic!("{ctx}: a reply to a call never sent (or failed): {line}");
                };
                let expected = op.apply(&mut self.model[o]);
                assert_eq!(
                    fields.get(2).copied(),
                    Some(expected.as_str()),
                    "{ctx}: o{o}: {op:?} acknowledged wrongly (state {:?})",
                    self.model[o]
                );
                self.tally.acked += 1;
                self.tally.slowest = self.tally.slowest.max(ms(3));
            }
            "F" => {
                let call = self.outstanding.get(&o).copied();
                let op = match call {
                    Some(Outstanding::Sent(op) | Outstanding::Failed(op)) => op,
                    None => panic!("{ctx}: a failure of a call never sent: {line}"),
                };
                self.outstanding.insert(o, Outstanding::Failed(op));
                let kind = fields.get(2).copied().unwrap_or_default().to_owned();
                let message = fields.get(4..).unwrap_or_default().join(" ");
                self.tally.failed.entry(kind).or_insert((0, message)).0 += 1;
                self.tally.slowest = self.tally.slowest.max(ms(3));
            }
            "R" => {
                let Some(Outstanding::Failed(op)) = self.outstanding.remove(&o) else {
                    panic!("{ctx}: a dump that follows no failure: {line}");
                };
                let found = fields
                    .get(2)
                    .and_then(|s| decode_state(s))
                    .unwrap_or_else(|| panic!("{ctx}: bad dump {line:?}"));
                if self.settle(o, op, &found) {
                    self.tally.failed_applied += 1;
                } else {
                    self.tally.failed_not_applied += 1;
                }
                assert!(
                    found == self.model[o],
                    "{ctx}: o{o}: after {op:?} failed, the object holds {found:?}, but its \
                     history gives {:?} (without the failed call) or that with it",
                    self.model[o]
                );
            }
            _ => panic!("{ctx}: the child printed {line:?}"),
        }
        o
    }

    /// Whether `found` is the model of `o` plus its outstanding `op` (and not without it):
    /// then the model takes the op.
    fn settle(&mut self, o: usize, op: Op, found: &State) -> bool {
        if *found == self.model[o] {
            return false;
        }
        let mut with = self.model[o].clone();
        op.apply(&mut with);
        if *found == with {
            self.model[o] = with;
            return true;
        }
        false
    }

    /// Checks the state recovered after the child was killed (`recovered[i]` is object
    /// `o{i}`'s) against the histories, then forgets the outstanding calls (each was
    /// applied or not; the model now says which): every acknowledged call there, at most
    /// the outstanding one besides, and each transaction's 4 keys in agreement.
    pub fn check(&mut self, recovered: Vec<State>, ctx: &str) {
        assert_eq!(recovered.len(), OBJECTS);
        for (o, found) in recovered.into_iter().enumerate() {
            let tokens: Vec<Option<&u64>> =
                (0..TXN_KEYS).map(|k| found.get(&format!("t{k}"))).collect();
            assert!(
                tokens.iter().all(|t| *t == tokens[0]),
                "{ctx}: o{o}: a transaction is half-applied: {tokens:?}"
            );
            if tokens[0].is_some() {
                self.tally.txn_objects += 1;
            }
            let call = self.outstanding.remove(&o).map(Outstanding::op);
            match call {
                Some(op) if self.settle(o, op, &found) => self.tally.in_flight_applied += 1,
                Some(_) => self.tally.in_flight_lost += 1,
                None => {}
            }
            assert!(
                found == self.model[o],
                "{ctx}: o{o} recovered {found:?}, but its acknowledged history gives {:?} \
                 (call outstanding: {call:?})",
                self.model[o]
            );
            self.tally.verified_keys += found.len();
        }
        self.outstanding.clear();
    }
}
