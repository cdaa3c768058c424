//! The child process of `tests/tests/torture.rs`, killed with SIGKILL while it works.
//!
//! `torture_child <data dir> <seed>`: opens a fjall runtime (default durability: fsync) and
//! runs 32 callers over 1,000 `Tortured` objects, forever: increments, puts, deletes and
//! multi-key transactions (some rolled back). Caller `c` owns the objects `i` with
//! `i % 32 == c` and has one call in flight at a time. Before each call it prints
//! `S <object> <op>`, after the reply `A <object> <result>`, one whole line per write,
//! flushed (see `durable_tests::torture`). On an error it prints `E <message>`, exits 2.

use std::io::Write;
use std::process::ExitCode;

use durable_runtime::Runtime;
use durable_tests::torture::{run, Op, Tortured, CALLERS, OBJECTS, SLOTS};

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

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, seed] = args.as_slice() else {
        eprintln!("usage: torture_child <data dir> <seed>");
        return ExitCode::from(64);
    };
    let seed: u64 = seed.parse().expect("a numeric seed");
    let rt = match Runtime::builder().data_dir(dir).open() {
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
                match run(&stubs[pick], op).await {
                    Ok(ack) => say(format!("A {object} {ack}")),
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
