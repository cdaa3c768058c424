//! The seed's counter, served over HTTP: `cargo run --example counter`.
//!
//! ```text
//! curl 'http://127.0.0.1:8787/increment?name=A'   # Durable Object 'A' count: 1
//! curl 'http://127.0.0.1:8787/?name=A'            # Durable Object 'A' count: 1
//! curl -X POST http://127.0.0.1:8787/A/increment  # {"value":2}
//! curl http://127.0.0.1:8787/metrics              # durable_calls_total 3, ... (Prometheus)
//! ```
//!
//! Options (a flag wins over its environment variable):
//!
//! - `--addr ADDR` or `DURABLE_ADDR`: where to listen (default `127.0.0.1:8787`);
//! - `--data-dir PATH` or `DURABLE_DATA_DIR`: where the counters are stored (default `./data`);
//! - `--postgres URL` or `DURABLE_POSTGRES`: store the counters in PostgreSQL instead
//!   (`postgres://user:password@host:port/database`; tables created on first use);
//! - `--listen ADDR` or `DURABLE_LISTEN`: also serve the counters to other processes on ADDR
//!   (an object server, like the Durable Objects behind a Worker);
//! - `--connect ADDR` or `DURABLE_CONNECT`: hold no counters; every call goes to the object
//!   server at ADDR (a front end, like a stateless Worker). No data directory is opened;
//! - `--secret S` or `DURABLE_SECRET`: the secret the object server and its front ends share
//!   (needed to listen on anything but loopback).
//!
//! Two processes, a front end and an object server:
//!
//! ```text
//! DURABLE_SECRET=s3cret cargo run --example counter -- --addr 127.0.0.1:8788 --listen 127.0.0.1:7001
//! DURABLE_SECRET=s3cret cargo run --example counter -- --connect 127.0.0.1:7001
//! curl 'http://127.0.0.1:8787/increment?name=A'   # answered by the object server
//! ```
//!
//! Ctrl-C or SIGTERM stops the server (open connections get 10 s to finish), then shuts the
//! runtime down, so every write is synced and the data directory released; a second signal
//! exits at once. Logs go to stderr; `RUST_LOG` sets their level (`target=level` directives,
//! for example `RUST_LOG=debug` or `RUST_LOG=info,durable_runtime=trace`).

use std::process::ExitCode;

use durable_examples::cli::{self, Program};
use durable_examples::{counter_app, metrics_app, Counter};

const PROGRAM: Program = Program {
    name: "counter",
    default_addr: "127.0.0.1:8787",
    default_data_dir: "./data",
    objects: "counters",
    idle_timeout: false,
};

#[tokio::main]
async fn main() -> ExitCode {
    cli::main(
        &PROGRAM,
        |builder| builder.register::<Counter>(),
        |rt| counter_app(rt.namespace::<Counter>()).merge(metrics_app(rt.clone())),
    )
    .await
}
