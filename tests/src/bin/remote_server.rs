//! The object server of `tests/tests/remote_crash.rs`, killed with SIGKILL under a remote
//! client's load.
//!
//! `remote_server <data dir> <addr> <secret>`: opens a fjall runtime (default durability:
//! fsync) serving `durable_tests::Counter` on `addr`, prints `LISTENING <addr>`, and serves
//! until killed. On an error it prints `ERR <message>` and exits with status 2.

use std::io::Write;
use std::process::ExitCode;

use durable_runtime::Runtime;
use durable_tests::Counter;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, addr, secret] = args.as_slice() else {
        eprintln!("usage: remote_server <data dir> <addr> <secret>");
        return ExitCode::from(2);
    };
    let rt = match Runtime::builder()
        .data_dir(dir)
        .register::<Counter>()
        .listen(addr.as_str())
        .secret(secret)
        .open()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("ERR {e}");
            return ExitCode::from(2);
        }
    };
    let local = rt.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LISTENING {local}").and_then(|()| out.flush());
    drop(out);
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
