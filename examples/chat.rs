//! Cloudflare's workers-chat-demo, served by `durable`: `cargo run --example chat`, then open
//! `http://127.0.0.1:8788/?room=lobby&name=ann` and `http://127.0.0.1:8788/?room=lobby&name=bob`
//! in two tabs (or `http://127.0.0.1:8788/` for the join form).
//!
//! ```text
//! GET  /                              the chat page (?room=R&name=N joins at once)
//! GET  /api/room/R/websocket          room R's WebSocket (the demo's protocol)
//! GET  /metrics                       the runtime's counters, Prometheus text format
//! ```
//!
//! Each room is a `ChatRoom` Durable Object (`durable_examples::chat`): its WebSockets stay
//! open while it hibernates, its messages are in its storage (the last 100 greet a newcomer).
//!
//! Options (a flag wins over its environment variable):
//!
//! - `--addr ADDR` or `DURABLE_ADDR`: where to listen (default `127.0.0.1:8788`);
//! - `--data-dir PATH` or `DURABLE_DATA_DIR`: where the rooms are stored (default
//!   `./chat-data`);
//! - `--postgres URL` or `DURABLE_POSTGRES`: store the rooms in PostgreSQL instead
//!   (`postgres://user:password@host:port/database`; tables created on first use);
//! - `--idle-timeout SECS` or `DURABLE_IDLE_TIMEOUT`: a room without events for this long
//!   hibernates (leaves memory; its sockets stay open). Default: the runtime's (70 s);
//! - `--listen ADDR` or `DURABLE_LISTEN`: also serve the rooms to other processes on ADDR
//!   (an object server, like the Durable Objects behind a Worker);
//! - `--connect ADDR` or `DURABLE_CONNECT`: hold no rooms; every call goes to the object
//!   server at ADDR (a front end, like a stateless Worker). No data directory is opened;
//! - `--secret S` or `DURABLE_SECRET`: the secret the object server and its front ends share,
//!   or the nodes of a cluster (needed to listen on anything but loopback);
//! - `--cluster ETCD_URLS` or `DURABLE_CLUSTER`: run as a node of a cluster coordinated by
//!   these etcd endpoints (comma-separated, `http://127.0.0.1:2379`). Every node keeps the
//!   rooms in one PostgreSQL database (`--postgres`, required; no `--data-dir`) and
//!   answers for every one of them, forwarding each call to the node that holds the room
//!   on the others' `--listen` address (required: one they can reach). No `--connect`;
//! - `--node-id ID` or `DURABLE_NODE_ID`: this node's ID in the cluster (default random);
//! - `--lease-ttl SECS` or `DURABLE_LEASE_TTL`: the TTL of the node's etcd lease, in whole
//!   seconds (default 10): a node that dies loses its rooms to the others this long after;
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
//! DURABLE_SECRET=s3cret cargo run --example chat -- --addr 127.0.0.1:8789 --listen 127.0.0.1:7002
//! DURABLE_SECRET=s3cret cargo run --example chat -- --connect 127.0.0.1:7002
//! # open http://127.0.0.1:8788/?room=lobby&name=ann: the rooms live in the object server
//! ```
//!
//! Ctrl-C or SIGTERM stops the server (open connections get 10 s to finish), then shuts the
//! runtime down, so every write is synced and the data directory released (a cluster node
//! hands its rooms over to the other nodes, then leaves the cluster); a second signal
//! exits at once. Logs go to stderr; `RUST_LOG` sets their level (`target=level` directives,
//! for example `RUST_LOG=debug` or `RUST_LOG=info,durable_runtime=trace`).

use std::process::ExitCode;

use durable_examples::cli::{self, Program};
use durable_examples::{chat_app, metrics_app, ChatRoom};

const PROGRAM: Program = Program {
    name: "chat",
    default_addr: "127.0.0.1:8788",
    default_data_dir: "./chat-data",
    objects: "rooms",
    idle_timeout: true,
};

#[tokio::main]
async fn main() -> ExitCode {
    cli::main(
        &PROGRAM,
        |builder| builder.register::<ChatRoom>(),
        |rt| chat_app(rt.namespace::<ChatRoom>()).merge(metrics_app(rt.clone())),
    )
    .await
}
