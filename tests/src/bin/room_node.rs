//! A process of the WebSocket tests across a connection (`tests/tests/websocket_remote.rs`),
//! killed with SIGKILL by them.
//!
//! - `room_node server <data dir> <addr> <secret>`: a fjall runtime serving
//!   `durable_tests::room::Room` on `addr`; prints `LISTENING <addr>`.
//! - `room_node front <server addr> <secret>`: a connected runtime (no objects) with the
//!   room router on a free loopback port; prints `HTTP <addr>`.
//!
//! Either serves until killed. On an error it prints `ERR <message>` and exits with status 2.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use durable_runtime::Runtime;
use durable_tests::room::{app, Room};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let opened = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_, "server", dir, addr, secret] => Runtime::builder()
            .data_dir(dir)
            .idle_timeout(Duration::from_millis(200))
            .register::<Room>()
            .listen(*addr)
            .secret(*secret)
            .open()
            .inspect(|rt| {
                say(&format!(
                    "LISTENING {}",
                    rt.local_addr().map(|a| a.to_string()).unwrap_or_default()
                ));
            }),
        [_, "front", server, secret] => {
            match Runtime::builder().connect(*server).secret(*secret).open() {
                Ok(rt) => {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            say(&format!("ERR {e}"));
                            return ExitCode::from(2);
                        }
                    };
                    let addr = listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let router = app(rt.namespace::<Room>());
                    tokio::spawn(async move { axum::serve(listener, router).await });
                    say(&format!("HTTP {addr}"));
                    Ok(rt)
                }
                Err(e) => Err(e),
            }
        }
        _ => {
            eprintln!("usage: room_node server <data dir> <addr> <secret> | room_node front <server addr> <secret>");
            return ExitCode::from(2);
        }
    };
    let _rt = match opened {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("ERR {e}"));
            return ExitCode::from(2);
        }
    };
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
