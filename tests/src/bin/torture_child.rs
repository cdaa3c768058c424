//! The child process of `tests/tests/torture.rs` and `tests/tests/pg_torture.rs`, killed
//! with SIGKILL while it works.
//!
//! `torture_child <data dir | postgres:// URL> <seed> [--survive] [--timeout-ms N]`: opens a
//! runtime on fjall (default durability: fsync) or on PostgreSQL (with `--timeout-ms`, as
//! the backend's operation and connect timeout), and runs 32 callers over 1,000 `Tortured`
//! objects, forever: increments, puts, deletes and multi-key transactions (some rolled back).
//! Caller `c` owns the objects `i` with `i % 32 == c` and has one call in flight at a time.
//! Before each call it prints `S <object> <op>`, after the reply `A <object> <result> <ms>`,
//! one whole line per write, flushed (see `durable_tests::torture`).
//!
//! On an error it prints `E <object> <message>` and exits 2, unless `--survive` is given
//! (the storage may go away and come back: PostgreSQL killed under it): then it prints
//! `F <object> <kind> <ms> <message>`, reads the object's keys until that succeeds (each
//! failure one more `F` line), prints them as `R <object> <keys>`, and goes on.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use durable_runtime::Error;
use durable_tests::torture::{
    encode_state, open, run, Op, State, Tortured, TorturedStub, CALLERS, OBJECTS, SLOTS,
};

/// Prints one whole line with one write, then flushes.
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let ok = out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush());
    if ok.is_err() {
        // The test stopped reading (it is killing us).
        std::process::exit(3);
    }
}

/// splitmix64: the caller's random stream, from the seed the test printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// An `F` line: the call on `object` failed with `e` after `started`.
fn failed(object: usize, started: Instant, e: &Error) {
    say(format!(
        "F {object} {:?} {} {}",
        e.kind(),
        started.elapsed().as_millis(),
        e.to_string().replace('\n', " ")
    ));
}

/// After a failed call: the object's keys, read again until a read succeeds.
async fn settle(object: usize, stub: &TorturedStub) -> State {
    loop {
        let started = Instant::now();
        match stub.dump().await {
            Ok(dump) => return dump.into_iter().collect(),
            Err(e) => {
                failed(object, started, &e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!(
            "usage: torture_child <data dir | postgres:// URL> <seed> [--survive] [--timeout-ms N]"
        );
        ExitCode::from(64)
    };
    let [_, target, seed, flags @ ..] = args.as_slice() else {
        return usage();
    };
    let seed: u64 = seed.parse().expect("a numeric seed");
    let (mut survive, mut timeout) = (false, None);
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--survive" => survive = true,
            "--timeout-ms" => {
                let ms = flags.next().and_then(|ms| ms.parse().ok());
                let Some(ms) = ms else { return usage() };
                timeout = Some(Duration::from_millis(ms));
            }
            _ => return usage(),
        }
    }
    let rt = match open(target, timeout) {
        Ok(rt) => rt,
        Err(e) => {
            say(format!("E open: {e}"));
            return ExitCode::from(2);
        }
    };
    let ns = rt.namespace::<Tortured>();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed ^ (caller as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let owned: Vec<usize> = (caller..OBJECTS).step_by(CALLERS).collect();
            let stubs: Vec<_> = owned
                .iter()
                .map(|i| ns.get_by_name(&format!("o{i}")))
                .collect();
            loop {
                let pick = (rng.next() % owned.len() as u64) as usize;
                // Fresh values and tokens: never 0, distinct per seed and caller.
                let fresh = (rng.next() >> 1) | 1;
                let op = match rng.next() % 10 {
                    0..=2 => Op::Incr(1 + rng.next() % 5),
                    3..=4 => Op::Put(rng.next() % SLOTS, fresh),
                    5 => Op::Del(rng.next() % SLOTS),
                    6..=7 => Op::Txn(fresh),
                    8 => Op::Txn(0),
                    _ => Op::Abort(fresh),
                };
                let object = owned[pick];
                say(format!("S {object} {}", op.encode()));
                let started = Instant::now();
                match run(&stubs[pick], op).await {
                    Ok(ack) => say(format!(
                        "A {object} {ack} {}",
                        started.elapsed().as_millis()
                    )),
                    Err(e) if survive => {
                        failed(object, started, &e);
                        let state = settle(object, &stubs[pick]).await;
                        say(format!("R {object} {}", encode_state(&state)));
                    }
                    Err(e) => {
                        say(format!("E {object} {e}"));
                        std::process::exit(2);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    ExitCode::SUCCESS
}
