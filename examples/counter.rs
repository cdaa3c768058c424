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

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use durable_examples::{counter_app, metrics_app, Counter};
use durable_runtime::Runtime;
use tokio::sync::oneshot;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

const DEFAULT_ADDR: &str = "127.0.0.1:8787";
const DEFAULT_DATA_DIR: &str = "./data";
/// How long a graceful shutdown waits for open connections.
const GRACE: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: counter [--addr ADDR] [--data-dir PATH] [--listen ADDR | --connect ADDR] [--secret S]

  --addr ADDR       HTTP listen address (env DURABLE_ADDR, default 127.0.0.1:8787)
  --data-dir PATH   data directory (env DURABLE_DATA_DIR, default ./data)
  --listen ADDR     also serve the counters to other processes (env DURABLE_LISTEN)
  --connect ADDR    hold no counters: call the object server at ADDR (env DURABLE_CONNECT)
  --secret S        the secret shared with the object server or front ends (env DURABLE_SECRET)
";

struct Options {
    addr: String,
    data_dir: PathBuf,
    listen: Option<String>,
    connect: Option<String>,
    secret: Option<String>,
}

/// Reads the flags, then the environment, then the defaults.
fn options() -> Result<Options, String> {
    let mut addr = None;
    let mut data_dir = None;
    let mut listen = None;
    let mut connect = None;
    let mut secret = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let slot = match flag.as_str() {
            "--addr" => &mut addr,
            "--data-dir" => &mut data_dir,
            "--listen" => &mut listen,
            "--connect" => &mut connect,
            "--secret" => &mut secret,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?,
        };
        *slot = Some(value);
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let data_dir = data_dir.or_else(|| env("DURABLE_DATA_DIR"));
    let listen = listen.or_else(|| env("DURABLE_LISTEN"));
    let connect = connect.or_else(|| env("DURABLE_CONNECT"));
    if listen.is_some() && connect.is_some() {
        return Err(
            "`--listen` and `--connect` do not go together: a front end \
                    (--connect) holds no counters to serve"
                .to_owned(),
        );
    }
    if connect.is_some() && data_dir.is_some() {
        return Err("`--connect` holds no counters, so it takes no `--data-dir`".to_owned());
    }
    Ok(Options {
        addr: addr
            .or_else(|| env("DURABLE_ADDR"))
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        data_dir: data_dir
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned())
            .into(),
        listen,
        connect,
        secret: secret.or_else(|| env("DURABLE_SECRET")),
    })
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise (`target=level` directives).
fn init_logs() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();
}

/// Resolves when the process gets Ctrl-C (SIGINT) or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The server's shutdown trigger: the first signal starts a graceful shutdown (and tells
/// `started`); a second one exits at once (every write already answered is durable anyway).
async fn shutdown_signal(started: oneshot::Sender<()>) {
    signal().await;
    tracing::info!("shutting down: no new requests; syncing storage (signal again to exit now)");
    let _ = started.send(());
    tokio::spawn(async {
        signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprint!("counter: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logs();
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime: an object server's (storage, and with `--listen` a server for other
/// processes), or a front end's (`--connect`: no storage, every call goes to the server).
fn open_runtime(options: &Options) -> Result<Runtime, String> {
    let secret = options.secret.as_deref().unwrap_or_default();
    if let Some(server) = &options.connect {
        let rt = Runtime::builder()
            .connect(server.as_str())
            .secret(secret)
            .open()
            .map_err(|e| format!("cannot connect to {server}: {e}"))?;
        tracing::info!("front end: holding no counters; every call goes to {server}");
        return Ok(rt);
    }
    let mut builder = Runtime::builder()
        .data_dir(&options.data_dir)
        .register::<Counter>();
    if let Some(listen) = &options.listen {
        builder = builder.listen(listen.as_str()).secret(secret);
    }
    let rt = builder.open().map_err(|e| {
        format!(
            "cannot open the runtime on {}: {e}",
            options.data_dir.display()
        )
    })?;
    if let Some(addr) = rt.local_addr() {
        tracing::info!(
            "object server: serving counters to other processes on {addr}{}",
            if secret.is_empty() {
                " (no secret: loopback only)"
            } else {
                ""
            }
        );
    }
    Ok(rt)
}

async fn run(options: Options) -> Result<(), String> {
    let rt = open_runtime(&options)?;
    let listener = tokio::net::TcpListener::bind(&options.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let data_dir = match &options.connect {
        Some(server) => format!("the object server at {server}"),
        None => std::fs::canonicalize(&options.data_dir)
            .unwrap_or(options.data_dir.clone())
            .display()
            .to_string(),
    };
    tracing::info!("counter listening on http://{addr}, data in {data_dir}");

    let app = counter_app(rt.namespace::<Counter>()).merge(metrics_app(rt.clone()));
    let (started, shutdown_started) = oneshot::channel();
    // Small responses on keep-alive connections: send them at once (no Nagle delay).
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal(started));
    // Connections still open GRACE after the signal (a client that never finishes its
    // request) are dropped, so that a shutdown always ends.
    let grace = async {
        match shutdown_started.await {
            Ok(()) => tokio::time::sleep(GRACE).await,
            Err(_) => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        served = server.into_future() => served,
        () = grace => {
            tracing::warn!("connections still open after {GRACE:?}: dropping them");
            Ok(())
        }
    };
    // Stop the runtime even if the server failed: queued calls finish, writes are synced.
    let closed = rt.shutdown().await;
    served.map_err(|e| format!("the server failed: {e}"))?;
    closed.map_err(|e| format!("shutting the runtime down failed: {e}"))?;
    match &options.connect {
        Some(_) => tracing::info!("stopped"),
        None => tracing::info!("stopped; data synced in {data_dir}"),
    }
    Ok(())
}
