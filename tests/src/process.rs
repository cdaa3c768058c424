//! What the harnesses of private servers ([`PgServer`](crate::postgres::PgServer),
//! [`EtcdServer`](crate::etcd::EtcdServer)) share: a free loopback port, the tail of a log,
//! and waiting for processes.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"))
        .port()
}

/// The last 30 lines of the file at `log` (empty if there is none), for error messages.
pub fn log_tail(log: &Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Whether process `pid` still runs (a zombie, dead but not yet reaped, does not).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Waits until none of `pids` runs; after `patience`, gives up naming one still alive.
pub fn wait_gone(pids: &[i32], patience: Duration) -> Result<(), i32> {
    let deadline = Instant::now() + patience;
    while let Some(&left) = pids.iter().find(|&&p| alive(p)) {
        if Instant::now() > deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Calls `attempt` until it succeeds, every 50 ms, as long as `again` says its error is worth
/// another try and `patience` has not passed; else returns the error.
pub fn retry<T, E>(
    patience: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
    again: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = Instant::now() + patience;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() > deadline || !again(&e) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
