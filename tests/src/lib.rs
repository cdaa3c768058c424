//! Objects and helpers shared by the integration tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use durable_runtime::{durable_object, Context, Result, Runtime, RuntimeBuilder};

/// The seed's counter.
#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    /// The current value.
    pub async fn get_counter_value(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    }

    /// Adds `amount`, returns the new value.
    pub async fn increment(&mut self, amount: i64) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }
}

pub mod certs;
pub mod cluster;
pub mod etcd;
pub mod faults;
pub mod held_sync;
pub mod postgres;
mod process;
pub mod room;
pub mod torture;

/// How long a test waits for a reply before calling it a hang.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// Opens a runtime on the data directory `dir`, or panics saying why.
pub fn open(dir: &Path) -> Runtime {
    Runtime::builder()
        .data_dir(dir)
        .open()
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Awaits `f` (a call), panicking with `what` on an error or on no reply within [`GENEROUS`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> T {
    match tokio::time::timeout(GENEROUS, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no reply within {GENEROUS:?}"),
    }
}

/// fjall's journal files (`<number>.jnl`) in a data directory: how many, and their bytes in
/// total. What a closed directory holds here is what the next open replays.
pub fn journal_files(dir: &std::path::Path) -> (usize, u64) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut count = 0;
    let mut bytes = 0;
    for entry in entries {
        let entry = entry.expect("a directory entry");
        if entry.path().extension().is_some_and(|x| x == "jnl") {
            count += 1;
            bytes += entry.metadata().expect("journal metadata").len();
        }
    }
    (count, bytes)
}

/// Starts the program at `path` with `args` and its stdout piped; a thread sends each line it
/// prints whole. A line cut short by a kill was never printed whole, so it is not sent (for
/// the crash tests, such a line is no acknowledgement).
pub fn spawn_with_lines(path: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if tx.send(line.trim_end().to_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    (child, rx)
}

/// An object server opened from `server` (its classes and storage), listening on a free
/// loopback port with `secret`, and a runtime connected to it: the front end.
pub fn server_and_front(server: RuntimeBuilder, secret: &str) -> (Runtime, Runtime) {
    let server = server
        .listen("127.0.0.1:0")
        .secret(secret)
        .open()
        .expect("open the object server");
    let front = Runtime::builder()
        .connect(server.local_addr().expect("the server listens").to_string())
        .secret(secret)
        .open()
        .expect("open the connected runtime");
    (server, front)
}
