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
//! - `--secret S` or `DURABLE_SECRET`: the secret the object server and its front ends share,
//!   or the nodes of a cluster (needed to listen on anything but loopback);
//! - `--cluster ETCD_URLS` or `DURABLE_CLUSTER`: run as a node of a cluster coordinated by
//!   these etcd endpoints (comma-separated, `http://127.0.0.1:2379`). Every node keeps the
//!   counters in one PostgreSQL database (`--postgres`, required; no `--data-dir`) and
//!   answers for every one of them, forwarding each call to the node that holds the counter
//!   on the others' `--listen` address (required: one they can reach). No `--connect`;
//! - `--node-id ID` or `DURABLE_NODE_ID`: this node's ID in the cluster (default random);
//! - `--lease-ttl SECS` or `DURABLE_LEASE_TTL`: the TTL of the node's etcd lease, in whole
//!   seconds (default 10): a node that dies loses its counters to the others this long after;
//! - `--cluster-name NAME` or `DURABLE_CLUSTER_NAME`: the cluster's key prefix in etcd
//!   (default `durable`), for several clusters on one etcd;
//! - `--tls-cert FILE`, `--tls-key FILE`, `--tls-ca FILE` or `DURABLE_TLS_CERT`,
//!   `DURABLE_TLS_KEY`, `DURABLE_TLS_CA`: TLS between runtimes (PEM files). A runtime that
//!   listens (`--listen`, a cluster node) needs all three: its certificate chain (naming its
//!   `--listen` address), its key, and the CA; a front end (`--connect`) needs only the CA
//!   that the server's certificate chains to (a node's three files work too).
//!
//! Two processes, a front end and an object server:
//!
//! ```text
//! DURABLE_SECRET=s3cret cargo run --example counter -- --addr 127.0.0.1:8788 --listen 127.0.0.1:7001
//! DURABLE_SECRET=s3cret cargo run --example counter -- --connect 127.0.0.1:7001
//! curl 'http://127.0.0.1:8787/increment?name=A'   # answered by the object server
//! ```
//!
//! A cluster of three nodes on one machine (etcd and PostgreSQL running; see the README's
//! "Run a cluster"):
//!
//! ```text
//! export DURABLE_CLUSTER=http://127.0.0.1:2379 DURABLE_POSTGRES=postgres://app@127.0.0.1/app DURABLE_SECRET=s3cret
//! cargo run --example counter -- --node-id n1 --addr 127.0.0.1:8787 --listen 127.0.0.1:7001
//! cargo run --example counter -- --node-id n2 --addr 127.0.0.1:8788 --listen 127.0.0.1:7002
//! cargo run --example counter -- --node-id n3 --addr 127.0.0.1:8789 --listen 127.0.0.1:7003
//! curl 'http://127.0.0.1:8788/increment?name=A'   # any node answers for any counter
//! ```
//!
//! Ctrl-C or SIGTERM stops the server (open connections get 10 s to finish), then shuts the
//! runtime down, so every write is synced and the data directory released (a cluster node
//! hands its counters over to the other nodes, then leaves the cluster); a second signal
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
