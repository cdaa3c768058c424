//! Crash torture: `torture_child` runs 32 callers over 1,000 objects (increments, puts,
//! deletes, multi-key transactions, rolled-back transactions) and prints every call before
//! sending it and every reply; this test kills it with SIGKILL at random moments (seeded, the
//! seed is printed), reopens the data directory and checks each object against its history:
//!
//! - nothing acknowledged is missing: the recovered state is the state after the last
//!   acknowledged call, or after the one call in flight at the kill (sent, not acknowledged);
//! - nothing half-applied: a transaction writes the same fresh token to 4 keys, and the 4
//!   keys agree (all there with one token, or none) — also after rolled-back transactions;
//! - nothing invented: every value is one the child sent (the model holds nothing else);
//! - every reply was right: each acknowledged increment returned the model's value, each
//!   delete whether the key was set, across restarts.
//!
//! `DURABLE_TORTURE_CYCLES=200 cargo test -p durable-tests --test torture -- --nocapture`
//! runs the long version (default 20 cycles); `DURABLE_TORTURE_SEED=N` replays a seed. As in
//! `crash.rs`, SIGKILL cannot catch a missing fsync (the page cache survives the process);
//! `output_gate.rs` proves the sync.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable_runtime::Runtime;
use durable_tests::spawn_with_lines;
use durable_tests::torture::{Op, Tortured, OBJECTS, TXN_KEYS};

const CHILD: &str = env!("CARGO_BIN_EXE_torture_child");
/// Turns a hang into a failure.
const GENEROUS: Duration = Duration::from_secs(60);

type State = BTreeMap<String, u64>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one cycle saw: every line the child printed whole, in order.
fn run_child(dir: &Path, seed: u64, first: bool, rng: &mut Rng) -> (Vec<String>, String) {
    let seed = seed.to_string();
    let (mut child, rx) = spawn_with_lines(CHILD, &[dir.to_str().expect("UTF-8 temp dir"), &seed]);
    let mut lines = Vec::new();
    // One kill in five comes early, from the start: maybe while the child opens and
    // recovers the directory. The others come a random time after its first reply. Not in
    // the first cycle, so that every run has data to check; kills while a directory is
    // created are `a_kill_while_a_data_directory_is_created_leaves_it_openable`'s job.
    let when = if !first && rng.next().is_multiple_of(5) {
        let after = Duration::from_millis(rng.next() % 150);
        std::thread::sleep(after);
        format!("{after:?} after start")
    } else {
        let deadline = Instant::now() + GENEROUS;
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
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the child acknowledged nothing within {GENEROUS:?}: {e:?} {lines:?}");
                }
            }
        }
        let run = Duration::from_millis(rng.next() % 400);
        let deadline = Instant::now() + run;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!(
                        "the child stopped by itself: {status:?}; last {:?}",
                        lines.last()
                    );
                }
            }
        }
        format!("{run:?} after its first reply")
    };
    child.kill().expect("kill -9 the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed: {status:?}");
    lines.extend(rx);
    (lines, when)
}

/// Reads every object's keys through a runtime reopened on `dir`, then shuts it down.
fn recover(dir: &Path) -> Vec<State> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let work = async {
            let rt = Runtime::builder().data_dir(dir).open().expect("reopen");
            let ns = rt.namespace::<Tortured>();
            let mut states = Vec::with_capacity(OBJECTS);
            for i in 0..OBJECTS {
                let dump = ns.get_by_name(&format!("o{i}")).dump().await.expect("dump");
                states.push(dump.into_iter().collect::<State>());
            }
            rt.shutdown().await.expect("shutdown");
            states
        };
        tokio::time::timeout(GENEROUS, work)
            .await
            .expect("recovery hung")
    })
}

#[test]
fn no_acknowledged_write_is_lost_and_nothing_is_half_applied_across_kill_9() {
    let cycles: usize = std::env::var("DURABLE_TORTURE_CYCLES")
        .ok()
        .map_or(20, |v| v.parse().expect("DURABLE_TORTURE_CYCLES: a number"));
    let seed: u64 = std::env::var("DURABLE_TORTURE_SEED").ok().map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
                | 1
        },
        |v| v.parse().expect("DURABLE_TORTURE_SEED: a number"),
    );
    println!("seed {seed} (DURABLE_TORTURE_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model: Vec<State> = vec![State::new(); OBJECTS];
    let (mut acked, mut sent, mut in_flight_applied, mut in_flight_lost) = (0, 0, 0, 0);
    let (mut verified_keys, mut txn_objects) = (0, 0);

    for cycle in 0..cycles {
        let (lines, when) = run_child(dir.path(), rng.next() >> 1, cycle == 0, &mut rng);
        // object → the call sent and not yet acknowledged.
        let mut pending: BTreeMap<usize, Op> = BTreeMap::new();
        for line in &lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let object = || -> usize {
                let o = fields.get(1).and_then(|o| o.parse().ok());
                o.filter(|o| *o < OBJECTS)
                    .unwrap_or_else(|| panic!("cycle {cycle}: bad line {line:?}"))
            };
            match fields.first() {
                Some(&"S") => {
                    let op = Op::decode(&fields[2..])
                        .unwrap_or_else(|| panic!("cycle {cycle}: bad op {line:?}"));
                    let before = pending.insert(object(), op);
                    assert!(
                        before.is_none(),
                        "cycle {cycle}: two calls in flight: {line}"
                    );
                    sent += 1;
                }
                Some(&"A") => {
                    let o = object();
                    let op = pending
                        .remove(&o)
                        .unwrap_or_else(|| panic!("cycle {cycle}: reply never sent: {line}"));
                    let expected = op.apply(&mut model[o]);
                    assert_eq!(
                        fields.get(2).copied(),
                        Some(expected.as_str()),
                        "cycle {cycle}: o{o}: {op:?} acknowledged wrongly (state {:?})",
                        model[o]
                    );
                    acked += 1;
                }
                _ => panic!("cycle {cycle}: the child printed {line:?}"),
            }
        }

        let recovered = recover(dir.path());
        for (o, found) in recovered.into_iter().enumerate() {
            // A transaction's keys: all there with one token, or none.
            let tokens: Vec<Option<&u64>> =
                (0..TXN_KEYS).map(|k| found.get(&format!("t{k}"))).collect();
            assert!(
                tokens.iter().all(|t| *t == tokens[0]),
                "cycle {cycle}: o{o}: a transaction is half-applied: {tokens:?}"
            );
            if tokens[0].is_some() {
                txn_objects += 1;
            }
            if found != model[o] {
                let mut with = model[o].clone();
                let op = pending.get(&o);
                if let Some(op) = op {
                    op.apply(&mut with);
                }
                assert!(
                    op.is_some() && found == with,
                    "cycle {cycle} (killed {when}): o{o} recovered {found:?}, but its \
                     acknowledged history gives {:?} (call in flight: {op:?})",
                    model[o]
                );
                model[o] = with;
                in_flight_applied += 1;
            } else if pending.contains_key(&o) {
                in_flight_lost += 1;
            }
            verified_keys += found.len();
        }
        println!(
            "cycle {cycle}: killed {when}; {} lines, {} calls in flight",
            lines.len(),
            pending.len()
        );
    }
    assert!(
        acked > 0 || cycles == 0,
        "the child never acknowledged anything"
    );
    println!(
        "torture: {cycles} kill -9 cycles survived, {sent} calls sent, {acked} acknowledged, \
         none lost; {verified_keys} keys verified ({txn_objects} whole transactions); in \
         flight at a kill: {in_flight_applied} found applied, {in_flight_lost} not (or a no-op)"
    );
}

/// SIGKILL while a fresh data directory is created (the first milliseconds of the first
/// open) used to leave a directory that no later open accepted (`FjallError: Io(..
/// AlreadyExists ..)`); the backend now creates it under a temporary name and renames it
/// into place, and this test proves every such kill leaves an openable directory.
#[test]
fn a_kill_while_a_data_directory_is_created_leaves_it_openable() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for attempt in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let mut child = Command::new(CHILD)
            .arg(&db)
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child");
        std::thread::sleep(Duration::from_millis(rng.next() % 10));
        child.kill().expect("kill -9 the child");
        let _ = child.wait();
        if let Err(e) = Runtime::builder().data_dir(&db).open() {
            panic!("attempt {attempt}: the directory cannot be opened after the kill: {e}");
        }
    }
}
