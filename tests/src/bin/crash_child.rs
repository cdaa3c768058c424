//! The child process of `tests/tests/crash.rs`, killed with SIGKILL while it writes.
//!
//! `crash_child <data dir> write`: opens a fjall runtime (default durability: fsync) and runs
//! 16 tasks calling `record()` on 4 objects, forever. After each reply it prints
//! `ACK <object> <n>` and flushes: every line printed is an acknowledged write.
//!
//! `crash_child <data dir> verify`: opens the directory and prints, for each object,
//! `COUNTER <object> <counter>` and one `KEY <object> <key> <value>` per `k…` key, then `DONE`.
//!
//! On an error it prints `ERR <message>` and exits with status 2.

use std::io::Write;
use std::process::ExitCode;

use durable_runtime::{durable_object, Context, ListOptions, Result, Runtime};

/// The objects written to; each is written by `TASKS / OBJECTS.len()` tasks at once.
const OBJECTS: [&str; 4] = ["o0", "o1", "o2", "o3"];
const TASKS: usize = 16;

/// Counts its calls: call `n` sets `counter = n` and `k{n} = n`, atomically.
#[durable_object]
pub struct CrashRecorder {
    ctx: Context,
}

#[durable_object]
impl CrashRecorder {
    pub fn new(ctx: Context) -> Self {
        CrashRecorder { ctx }
    }

    /// Increments the counter, stores `k{n} = n`, returns `n`.
    pub async fn record(&mut self) -> Result<i64> {
        let n = self.ctx.storage().get::<i64>("counter")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("counter", &n)?;
        self.ctx.storage_mut().put(&format!("k{n}"), &n)?;
        Ok(n)
    }

    /// The counter and every `k…` key.
    pub async fn dump(&self) -> Result<(i64, Vec<(String, i64)>)> {
        let counter = self.ctx.storage().get::<i64>("counter")?.unwrap_or(0);
        let keys = self
            .ctx
            .storage()
            .list(ListOptions::default().prefix("k"))?;
        Ok((counter, keys))
    }
}

/// Prints one whole line with one write, then flushes.
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let ok = out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush());
    if ok.is_err() {
        // The test stopped reading (it is killing us): nothing left to say.
        std::process::exit(3);
    }
}

async fn write(rt: Runtime) -> Result<()> {
    let ns = rt.namespace::<CrashRecorder>();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let name = OBJECTS[task % OBJECTS.len()];
        let stub = ns.get_by_name(name);
        tasks.push(tokio::spawn(async move {
            loop {
                let n = stub.record().await?;
                say(format!("ACK {name} {n}"));
            }
        }));
    }
    for task in tasks {
        match task.await {
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
            Err(e) => return Err(durable_runtime::Error::internal(e.to_string())),
        }
    }
    Ok(())
}

async fn verify(rt: Runtime) -> Result<()> {
    let ns = rt.namespace::<CrashRecorder>();
    for name in OBJECTS {
        let (counter, keys) = ns.get_by_name(name).dump().await?;
        say(format!("COUNTER {name} {counter}"));
        for (key, value) in keys {
            say(format!("KEY {name} {key} {value}"));
        }
    }
    rt.shutdown().await?;
    say("DONE".to_owned());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (dir, mode) = match args.as_slice() {
        [_, dir, mode] => (dir.clone(), mode.clone()),
        _ => {
            eprintln!("usage: crash_child <data dir> write|verify");
            return ExitCode::from(64);
        }
    };
    let result = match Runtime::builder().data_dir(&dir).open() {
        Err(e) => Err(e),
        Ok(rt) => match mode.as_str() {
            "write" => write(rt).await,
            "verify" => verify(rt).await,
            other => Err(durable_runtime::Error::app(
                "Usage",
                format!("unknown mode {other:?}"),
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format!("ERR {e}"));
            ExitCode::from(2)
        }
    }
}
