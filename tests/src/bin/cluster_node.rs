//! One node of the cluster tests (`tests/tests/cluster.rs`): serves `durable_tests::cluster::Tally`
//! in cluster mode, on PostgreSQL and etcd, on a free loopback port.
//!
//! `cluster_node --etcd URL --postgres URL --node-id ID --secret S --lease-ttl SECS --shards N
//! --name NAME [--tls DIR]`: prints `LISTENING <addr> HTTP <http addr>` once open (or `ERR <message>` and
//! exits with status 2), serves `durable_tests::room::app` (WebSockets to `Room`s) and
//! `/metrics` (Prometheus text) on the HTTP address, until SIGTERM; then shuts down cleanly (hands its shards over), prints `LEFT` and
//! exits.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use durable_runtime::{Cluster, Runtime, Tls};
use durable_tests::cluster::{NodeInfo, Tally};
use durable_tests::room::{app, Room};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: HashMap<&str, &str> = args
        .chunks(2)
        .filter_map(|pair| match pair {
            [flag, value] => Some((flag.trim_start_matches("--"), value.as_str())),
            _ => None,
        })
        .collect();
    let flag = |name: &str| flags.get(name).copied().unwrap_or_default();
    let ttl: u64 = flag("lease-ttl").parse().unwrap_or(10);
    let shards: u32 = flag("shards").parse().unwrap_or(16);
    let node = flag("node-id").to_owned();
    let mut builder = Runtime::builder();
    if let Some(dir) = flags.get("tls") {
        let dir = std::path::Path::new(dir);
        match Tls::from_pem_files(
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        ) {
            Ok(tls) => builder = builder.tls(tls),
            Err(e) => {
                say(&format!("ERR {e}"));
                return ExitCode::from(2);
            }
        }
    }
    let rt = builder
        .postgres(flag("postgres"))
        .cluster(
            Cluster::etcd([flag("etcd")])
                .name(flag("name"))
                .node_id(&node)
                .lease_ttl(Duration::from_secs(ttl))
                .shards(shards),
        )
        .listen("127.0.0.1:0")
        .secret(flag("secret"))
        .env(NodeInfo { id: node })
        .register::<Tally>()
        .register::<Room>()
        .open();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("ERR {e}"));
            return ExitCode::from(2);
        }
    };
    let http = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => {
            say(&format!("ERR {e}"));
            return ExitCode::from(2);
        }
    };
    let http_addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let metrics = rt.clone();
    let rooms = app(rt.namespace::<Room>()).route(
        "/metrics",
        axum::routing::get(move || {
            let text = metrics.metrics().to_prometheus();
            async move { text }
        }),
    );
    tokio::spawn(async move { axum::serve(http, rooms).await });
    say(&format!(
        "LISTENING {} HTTP {http_addr}",
        rt.local_addr().map(|a| a.to_string()).unwrap_or_default()
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    term.recv().await;
    match rt.shutdown().await {
        Ok(()) => {
            say("LEFT");
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("ERR shutdown: {e}"));
            ExitCode::from(1)
        }
    }
}
