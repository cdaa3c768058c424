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

use std::process::{Command, Stdio};
use std::time::Duration;

use durable_runtime::Runtime;
use durable_tests::torture::{
    cycles_from_env, recover, run_child_and_kill, seed_from_env, History, Rng,
};

const CHILD: &str = env!("CARGO_BIN_EXE_torture_child");

#[test]
fn no_acknowledged_write_is_lost_and_nothing_is_half_applied_across_kill_9() {
    let cycles = cycles_from_env(20);
    let seed = seed_from_env();
    println!("seed {seed} (DURABLE_TORTURE_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().to_str().expect("UTF-8 temp dir");
    let mut history = History::default();

    for cycle in 0..cycles {
        let child_seed = (rng.next_u64() >> 1).to_string();
        // Not early in the first cycle, so that every run has data to check; kills while a
        // directory is created are `a_kill_while_a_data_directory_is_created_leaves_it_openable`'s
        // job.
        let (lines, when) = run_child_and_kill(CHILD, &[target, &child_seed], cycle == 0, &mut rng);
        let ctx = format!("cycle {cycle} (killed {when})");
        for line in &lines {
            history.line(line, &ctx);
        }
        let in_flight = history.outstanding();
        history.check(recover(target), &ctx);
        println!(
            "cycle {cycle}: killed {when}; {} lines, {in_flight} calls in flight",
            lines.len(),
        );
    }
    let t = &history.tally;
    assert!(
        t.acked > 0 || cycles == 0,
        "the child never acknowledged anything"
    );
    println!(
        "torture: {cycles} kill -9 cycles survived, {} calls sent, {} acknowledged, none lost; \
         {} keys verified ({} whole transactions); in flight at a kill: {} found applied, {} \
         not (or a no-op)",
        t.sent, t.acked, t.verified_keys, t.txn_objects, t.in_flight_applied, t.in_flight_lost
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
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 10));
        child.kill().expect("kill -9 the child");
        let _ = child.wait();
        if let Err(e) = Runtime::builder().data_dir(&db).open() {
            panic!("attempt {attempt}: the directory cannot be opened after the kill: {e}");
        }
    }
}
