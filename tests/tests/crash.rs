//! Crash test with real processes: a child writes through the runtime and prints each
//! acknowledged write; the test kills it with SIGKILL at a random moment, reopens the data
//! directory and checks that every acknowledged write is there, whole, and nothing more.
//!
//! What this catches: a reply that leaves before its write has left the process (the output
//! gate opened early, a batch kept in a user-space buffer, a write lost or half-applied on
//! recovery, a counter that restarts from an older state). What it cannot catch: a missing
//! fsync. SIGKILL ends the process, not the machine, so the kernel's page cache survives it
//! and `Durability::Buffered` would pass this test too. That the default mode really syncs
//! before each reply is proven in `output_gate.rs` (`every_reply_follows_a_sync_of_its_writes`
//! and the held-sync tests), where a backend sees each sync.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable_tests::spawn_with_lines;

const CHILD: &str = env!("CARGO_BIN_EXE_crash_child");
const OBJECTS: [&str; 4] = ["o0", "o1", "o2", "o3"];
const CYCLES: usize = 5;
/// Turns a hang into a failure: the child's start (first cycle builds nothing, but opens a
/// fresh fjall directory) and the verification.
const GENEROUS: Duration = Duration::from_secs(60);

/// Starts the child with stdout piped; a thread sends each complete line it prints.
fn spawn_child(dir: &Path, mode: &str) -> (Child, Receiver<String>) {
    let dir = dir.to_str().expect("UTF-8 temp dir");
    spawn_with_lines(CHILD, &[dir, mode])
}

/// A small xorshift generator: no crate needed; the seed is printed for reproduction.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one killed child acknowledged: object → every `n` it printed.
type Acks = BTreeMap<String, Vec<i64>>;

fn parse_ack(line: &str, acks: &mut Acks) {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["ACK", object, n] => {
            let n: i64 = n
                .parse()
                .unwrap_or_else(|e| panic!("bad ACK {line:?}: {e}"));
            acks.entry((*object).to_owned()).or_default().push(n);
        }
        _ => panic!("the writing child printed {line:?}"),
    }
}

/// Runs the child in write mode for `run` after its first acknowledgement, kills it with
/// SIGKILL, and returns every acknowledgement it printed, including those still in the
/// pipe when it died.
fn write_then_kill(dir: &Path, run: Duration) -> Acks {
    let (mut child, lines) = spawn_child(dir, "write");
    let mut acks = Acks::new();
    let first = match lines.recv_timeout(GENEROUS) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the writing child acknowledged nothing within {GENEROUS:?}: {e:?}");
        }
    };
    parse_ack(&first, &mut acks);
    let deadline = Instant::now() + run;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match lines.recv_timeout(left) {
            Ok(line) => parse_ack(&line, &mut acks),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait();
                panic!("the writing child stopped by itself: {status:?}");
            }
        }
    }
    // SIGKILL on unix: no destructor, no flush, no shutdown runs in the child.
    child.kill().expect("kill -9 the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed: {status:?}");
    // The lines already in the pipe were acknowledged too.
    for line in lines {
        parse_ack(&line, &mut acks);
    }
    acks
}

/// What the verifying child found: object → (counter, key → value).
type Recovered = BTreeMap<String, (i64, BTreeMap<String, i64>)>;

fn verify(dir: &Path) -> Recovered {
    let (mut child, lines) = spawn_child(dir, "verify");
    let mut recovered = Recovered::new();
    let mut done = false;
    let deadline = Instant::now() + GENEROUS;
    while !done {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the verifying child did not finish: {e:?}");
            }
        };
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["COUNTER", object, counter] => {
                let counter = counter.parse().expect("a counter");
                recovered.insert((*object).to_owned(), (counter, BTreeMap::new()));
            }
            ["KEY", object, key, value] => {
                let value = value.parse().expect("a value");
                let (_, keys) = recovered.get_mut(*object).expect("KEY after its COUNTER");
                assert!(
                    keys.insert((*key).to_owned(), value).is_none(),
                    "{object}: key {key} listed twice"
                );
            }
            ["DONE"] => done = true,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the verifying child printed {line:?}");
            }
        }
    }
    let status = child.wait().expect("reap the verifying child");
    assert!(status.success(), "the verifying child failed: {status:?}");
    recovered
}

#[test]
fn acknowledged_increments_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
        | 1;
    println!("seed {seed:#x}");
    let mut rng = Rng(seed);
    // The counters recovered after the previous cycle: each cycle continues from them.
    let mut previous: BTreeMap<&str, i64> = OBJECTS.iter().map(|o| (*o, 0)).collect();
    let mut total_acks = 0;

    for cycle in 0..CYCLES {
        let run = Duration::from_millis(100 + rng.next() % 501);
        let acks = write_then_kill(dir.path(), run);
        let recovered = verify(dir.path());
        // The verifying child shut down cleanly: nothing is left for the next open to replay.
        let (journals, journal_bytes) = durable_tests::journal_files(dir.path());
        assert_eq!(
            (journals, journal_bytes),
            (1, 0),
            "cycle {cycle}: after a clean shutdown, one empty journal file"
        );
        let acked: usize = acks.values().map(Vec::len).sum();
        total_acks += acked;
        let counters: Vec<i64> = OBJECTS
            .iter()
            .map(|o| recovered.get(*o).map_or(0, |(c, _)| *c))
            .collect();
        println!("cycle {cycle}: killed after {run:?}; {acked} acks; recovered {counters:?}");
        assert!(acked > 0, "cycle {cycle}: the child acknowledged nothing");

        for object in OBJECTS {
            let (counter, keys) = recovered
                .get(object)
                .unwrap_or_else(|| panic!("cycle {cycle}: {object} not verified"));
            let counter = *counter;
            let before = previous[object];
            let object_acks = acks.get(object).map(Vec::as_slice).unwrap_or_default();

            // The counter never goes back: what the previous cycle recovered stays.
            assert!(
                counter >= before,
                "cycle {cycle}: {object} went back from {before} to {counter}"
            );
            let unique: BTreeSet<i64> = object_acks.iter().copied().collect();
            assert_eq!(
                unique.len(),
                object_acks.len(),
                "cycle {cycle}: {object} acknowledged a value twice"
            );
            for &n in object_acks {
                // The child continued from the recovered state, not from an older one.
                assert!(
                    n > before,
                    "cycle {cycle}: {object} acknowledged {n}, but {before} was already \
                     recovered before this cycle"
                );
                // Every acknowledged write survived, whole.
                assert!(
                    n <= counter,
                    "cycle {cycle}: {object} acknowledged {n} but recovered counter {counter}"
                );
                assert_eq!(
                    keys.get(&format!("k{n}")),
                    Some(&n),
                    "cycle {cycle}: {object}: acknowledged k{n} lost"
                );
            }
            // Each call wrote `counter` and `k{n}` atomically, in order: the recovered state
            // is exactly k1..=counter, nothing half-applied, nothing beyond the counter.
            for m in 1..=counter {
                assert_eq!(
                    keys.get(&format!("k{m}")),
                    Some(&m),
                    "cycle {cycle}: {object}: counter is {counter} but k{m} is missing or wrong"
                );
            }
            assert_eq!(
                keys.len() as i64,
                counter,
                "cycle {cycle}: {object}: keys beyond the counter {counter}: {:?}",
                keys.keys()
                    .filter(|k| k[1..].parse::<i64>().map_or(true, |m| m > counter))
                    .collect::<Vec<_>>()
            );
        }
        for object in OBJECTS {
            previous.insert(object, recovered[object].0);
        }
    }
    println!("{total_acks} acknowledged writes over {CYCLES} kills, none lost");
}
