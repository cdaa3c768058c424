//! kill -9 of the object server under a remote client's load, five times.
//!
//! The object server is a child process (`remote_server`, fjall, fsync'ed); this test is the
//! connected runtime, with 16 callers incrementing 4 counters through one connection. Each
//! cycle kills the server with SIGKILL while calls are in flight and starts it again on the
//! same port; the callers keep calling, through the connection the client makes again by
//! itself. What must hold:
//! - every call in flight when the server dies fails with `Disconnected` (retryable), and
//!   no call fails any other way or hangs;
//! - every acknowledged increment survives: a counter's acknowledged values are distinct
//!   (a lost write would make the counter hand out a value twice) and none is above the
//!   counter's final value.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_runtime::{ErrorKind, Runtime};
use durable_tests::{spawn_with_lines, Counter, GENEROUS};

const SERVER: &str = env!("CARGO_BIN_EXE_remote_server");
const SECRET: &str = "crash secret";
const OBJECTS: [&str; 4] = ["r0", "r1", "r2", "r3"];
const CALLERS: usize = 16;
const CYCLES: usize = 5;

fn start_server(dir: &Path, addr: &str) -> Child {
    let dir = dir.to_str().expect("UTF-8 temp dir");
    let (mut child, lines) = spawn_with_lines(SERVER, &[dir, addr, SECRET]);
    match lines.recv_timeout(GENEROUS) {
        Ok(line) if line.starts_with("LISTENING ") => child,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the object server did not start: {other:?}");
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[derive(Default)]
struct Tally {
    acks: Mutex<BTreeMap<&'static str, Vec<i64>>>,
    disconnected: AtomicUsize,
    /// Calls that failed after being sent (the server died under them), not at connect.
    lost_in_flight: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_remote_increment_survives_kill_9_of_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = start_server(dir.path(), &addr);
    let front = Runtime::builder()
        .connect(addr.clone())
        .secret(SECRET)
        .open()
        .expect("connect");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let counters = front.namespace::<Counter>();
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (tally, stop) = (tally.clone(), stop.clone());
            let object = OBJECTS[i % OBJECTS.len()];
            let stub = counters.get_by_name(object);
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    match tokio::time::timeout(GENEROUS, stub.increment(1)).await {
                        Ok(Ok(n)) => tally
                            .acks
                            .lock()
                            .unwrap()
                            .entry(object)
                            .or_default()
                            .push(n),
                        Ok(Err(e)) if e.kind() == ErrorKind::Disconnected => {
                            assert!(e.is_retryable());
                            tally.disconnected.fetch_add(1, Ordering::Relaxed);
                            // Sent before the loss (not refused at connect): it may have run.
                            if e.to_string().contains("may or may not have run") {
                                tally.lost_in_flight.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(Err(e)) => panic!("a remote increment failed otherwise: {e}"),
                        Err(_) => panic!("a remote increment hung"),
                    }
                }
            })
        })
        .collect();

    let acked = || {
        tally
            .acks
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>()
    };
    for cycle in 0..CYCLES {
        let before = acked();
        let lost_before = tally.lost_in_flight.load(Ordering::Relaxed);
        let start = std::time::Instant::now();
        while acked() < before + 200 {
            assert!(start.elapsed() < GENEROUS, "cycle {cycle}: no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.kill().expect("kill -9");
        server.wait().expect("reap");
        let start = std::time::Instant::now();
        while tally.lost_in_flight.load(Ordering::Relaxed) == lost_before {
            assert!(
                start.elapsed() < GENEROUS,
                "cycle {cycle}: no call in flight failed with Disconnected"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server = start_server(dir.path(), &addr);
    }
    let before = acked();
    let start = std::time::Instant::now();
    while acked() < before + 100 {
        assert!(
            start.elapsed() < GENEROUS,
            "no progress after the last restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Release);
    for caller in callers {
        caller.await.expect("a caller panicked");
    }

    let acks = tally.acks.lock().unwrap().clone();
    let mut total = 0;
    for object in OBJECTS {
        let mut values = acks.get(object).cloned().unwrap_or_default();
        let final_value = counters
            .get_by_name(object)
            .get_counter_value()
            .await
            .expect("read");
        values.sort_unstable();
        let n = values.len();
        values.dedup();
        assert_eq!(
            values.len(),
            n,
            "{object}: a value was acknowledged twice (a lost write)"
        );
        let max = values.last().copied().unwrap_or(0);
        assert!(
            max <= final_value,
            "{object}: acknowledged {max}, but the counter is {final_value}"
        );
        total += n;
    }
    assert!(tally.disconnected.load(Ordering::Relaxed) >= CYCLES);
    eprintln!(
        "{CYCLES} kills, {total} acknowledged increments, {} calls lost with their connection, none lost after acknowledgement",
        tally.lost_in_flight.load(Ordering::Relaxed)
    );
    let _ = server.kill();
    let _ = server.wait();
}
