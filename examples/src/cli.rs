//! What the example servers share: their flags and environment variables, their logs, and
//! serving an app until Ctrl-C or SIGTERM with a graceful shutdown.
//!
//! ```no_run
//! use durable_examples::cli::{self, Program};
//! use durable_examples::{counter_app, metrics_app, Counter};
//!
//! const PROGRAM: Program = Program {
//!     name: "counter",
//!     default_addr: "127.0.0.1:8787",
//!     default_data_dir: "./data",
//!     objects: "counters",
//!     idle_timeout: false,
//! };
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     cli::main(
//!         &PROGRAM,
//!         |builder| builder.register::<Counter>(),
//!         |rt| counter_app(rt.namespace::<Counter>()).merge(metrics_app(rt.clone())),
//!     )
//!     .await
//! }
//! ```

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use durable_runtime::{Runtime, RuntimeBuilder};
use tokio::sync::oneshot;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// How long a graceful shutdown waits for open connections.
pub const GRACE: Duration = Duration::from_secs(10);

/// One example server: its name, its defaults, and what its objects are called in messages.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The binary's name (`counter`), for the usage text and errors.
    pub name: &'static str,
    /// Where it listens for HTTP without `--addr` or `DURABLE_ADDR`.
    pub default_addr: &'static str,
    /// Its data directory without `--data-dir` or `DURABLE_DATA_DIR`.
    pub default_data_dir: &'static str,
    /// Its objects, plural (`counters`, `rooms`).
    pub objects: &'static str,
    /// Whether it takes `--idle-timeout SECS` (or `DURABLE_IDLE_TIMEOUT`).
    pub idle_timeout: bool,
}

impl Program {
    /// The `--help` text.
    pub fn usage(&self) -> String {
        let Program {
            name,
            default_addr,
            default_data_dir,
            objects,
            idle_timeout,
        } = *self;
        let mut usage = format!("usage: {name} [--addr ADDR] [--data-dir PATH | --postgres URL]");
        if idle_timeout {
            usage.push_str(" [--idle-timeout SECS]");
        }
        usage.push_str(" [--listen ADDR | --connect ADDR] [--secret S]\n\n");
        let mut line = |flag: &str, text: String| {
            usage.push_str(&format!("  {flag:<20} {text}\n"));
        };
        line(
            "--addr ADDR",
            format!("HTTP listen address (env DURABLE_ADDR, default {default_addr})"),
        );
        line(
            "--data-dir PATH",
            format!("data directory (env DURABLE_DATA_DIR, default {default_data_dir})"),
        );
        line(
            "--postgres URL",
            format!("store the {objects} in PostgreSQL instead (env DURABLE_POSTGRES)"),
        );
        if idle_timeout {
            line(
                "--idle-timeout SECS",
                format!(
                    "unload {objects} idle this many seconds (env DURABLE_IDLE_TIMEOUT, default {})",
                    DEFAULT_IDLE_TIMEOUT.as_secs()
                ),
            );
        }
        line(
            "--listen ADDR",
            format!("also serve the {objects} to other processes (env DURABLE_LISTEN)"),
        );
        line(
            "--connect ADDR",
            format!("hold no {objects}: call the object server at ADDR (env DURABLE_CONNECT)"),
        );
        line(
            "--secret S",
            "the secret shared with the object server or front ends (env DURABLE_SECRET)".into(),
        );
        usage
    }
}

/// The runtime's own idle timeout (`RuntimeBuilder::idle_timeout`), shown in the usage
/// text; without `--idle-timeout` the runtime keeps its default.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(70);

/// A server's settings, from its flags, then the environment, then the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where to listen for HTTP.
    pub addr: String,
    /// The data directory (unused by a front end, or with `--postgres`).
    pub data_dir: PathBuf,
    /// `--postgres`: store the objects in the PostgreSQL database at this URL.
    pub postgres: Option<String>,
    /// `--listen`: also serve the objects to other processes on this address.
    pub listen: Option<String>,
    /// `--connect`: hold no objects; call the object server at this address.
    pub connect: Option<String>,
    /// `--secret`: shared by an object server and its front ends.
    pub secret: Option<String>,
    /// `--idle-timeout`: the runtime's idle timeout; `None` keeps the runtime's default.
    pub idle_timeout: Option<Duration>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve with these options.
    Run(Options),
    /// Print the usage text (`-h`, `--help`).
    Help,
}

/// Reads the flags (`--flag VALUE` or `--flag=VALUE`; a flag wins over its environment
/// variable), then the environment (`env`, for example `|name| std::env::var(name).ok()`;
/// empty values count as unset), then the defaults.
///
/// # Errors
///
/// A message for an unknown flag, a missing or invalid value, or flags that do not go
/// together (`--listen` with `--connect`; `--data-dir`, `--postgres` or `--idle-timeout` with
/// `--connect`; `--data-dir` with `--postgres`).
pub fn parse(
    program: &Program,
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut addr = None;
    let mut data_dir = None;
    let mut postgres = None;
    let mut idle_timeout = None;
    let mut listen = None;
    let mut connect = None;
    let mut secret = None;
    let mut args = args.into_iter();
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
            "--postgres" => &mut postgres,
            "--idle-timeout" if program.idle_timeout => &mut idle_timeout,
            "--listen" => &mut listen,
            "--connect" => &mut connect,
            "--secret" => &mut secret,
            "-h" | "--help" => return Ok(Command::Help),
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
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let objects = program.objects;
    let data_dir = data_dir.or_else(|| env("DURABLE_DATA_DIR"));
    let postgres = postgres.or_else(|| env("DURABLE_POSTGRES"));
    if postgres.is_some() && data_dir.is_some() {
        return Err(format!(
            "`--postgres` and `--data-dir` do not go together: the {objects} are stored in one \
             place"
        ));
    }
    let idle_timeout = match program.idle_timeout {
        true => idle_timeout.or_else(|| env("DURABLE_IDLE_TIMEOUT")),
        false => None,
    };
    let listen = listen.or_else(|| env("DURABLE_LISTEN"));
    let connect = connect.or_else(|| env("DURABLE_CONNECT"));
    if listen.is_some() && connect.is_some() {
        return Err(format!(
            "`--listen` and `--connect` do not go together: a front end \
             (--connect) holds no {objects} to serve"
        ));
    }
    if connect.is_some() && data_dir.is_some() {
        return Err(format!(
            "`--connect` holds no {objects}, so it takes no `--data-dir`"
        ));
    }
    if connect.is_some() && postgres.is_some() {
        return Err(format!(
            "`--connect` holds no {objects}, so it takes no `--postgres`"
        ));
    }
    if connect.is_some() && idle_timeout.is_some() {
        return Err(format!(
            "`--connect` holds no {objects}, so it takes no `--idle-timeout`"
        ));
    }
    let idle_timeout = idle_timeout
        .map(|secs| match secs.parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs <= 1e9 => Ok(Duration::from_secs_f64(secs)),
            _ => Err(format!(
                "`--idle-timeout` takes a positive number of seconds, not `{secs}`"
            )),
        })
        .transpose()?;
    Ok(Command::Run(Options {
        addr: addr
            .or_else(|| env("DURABLE_ADDR"))
            .unwrap_or_else(|| program.default_addr.to_owned()),
        data_dir: data_dir
            .unwrap_or_else(|| program.default_data_dir.to_owned())
            .into(),
        postgres,
        listen,
        connect,
        secret: secret.or_else(|| env("DURABLE_SECRET")),
        idle_timeout,
    }))
}

/// A PostgreSQL URL without its password, for logs and errors:
/// `postgres://app:***@db:5432/app`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise (`target=level` directives).
pub fn init_logs() {
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

/// A whole server's `main`: reads the options (printing the usage on `--help` or an error),
/// starts the logs, opens the runtime (`register` adds the program's classes to an object
/// server's builder) and serves `app(&runtime)` on `--addr` until a signal ([`serve`]).
pub async fn main(
    program: &Program,
    register: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
    app: impl FnOnce(&Runtime) -> Router,
) -> ExitCode {
    let name = program.name;
    let options = match parse(program, std::env::args().skip(1), |name| {
        std::env::var(name).ok()
    }) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{}", program.usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{name}: {e}\n\n{}", program.usage());
            return ExitCode::from(2);
        }
    };
    init_logs();
    let result = match open_runtime(program, &options, register) {
        Ok(rt) => {
            let app = app(&rt);
            serve(program, &options, rt, app).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime: an object server's (storage, and with `--listen` a server for other
/// processes), or a front end's (`--connect`: no storage, every call goes to the server).
///
/// # Errors
///
/// A message naming the data directory or the server when the runtime does not open.
pub fn open_runtime(
    program: &Program,
    options: &Options,
    register: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
) -> Result<Runtime, String> {
    let objects = program.objects;
    let secret = options.secret.as_deref().unwrap_or_default();
    if let Some(server) = &options.connect {
        let rt = Runtime::builder()
            .connect(server.as_str())
            .secret(secret)
            .open()
            .map_err(|e| format!("cannot connect to {server}: {e}"))?;
        tracing::info!("front end: holding no {objects}; every call goes to {server}");
        return Ok(rt);
    }
    let (builder, storage) = match &options.postgres {
        Some(url) => (Runtime::builder().postgres(url.as_str()), redact(url)),
        None => (
            Runtime::builder().data_dir(&options.data_dir),
            options.data_dir.display().to_string(),
        ),
    };
    let mut builder = register(builder);
    if let Some(idle_timeout) = options.idle_timeout {
        builder = builder.idle_timeout(idle_timeout);
    }
    if let Some(listen) = &options.listen {
        builder = builder.listen(listen.as_str()).secret(secret);
    }
    let rt = builder
        .open()
        .map_err(|e| format!("cannot open the runtime on {storage}: {e}"))?;
    tracing::info!("{objects} stored in {storage}");
    if let Some(addr) = rt.local_addr() {
        tracing::info!(
            "object server: serving {objects} to other processes on {addr}{}",
            if secret.is_empty() {
                " (no secret: loopback only)"
            } else {
                ""
            }
        );
    }
    Ok(rt)
}

/// Serves `app` on `options.addr` until Ctrl-C or SIGTERM; then stops taking connections,
/// gives open ones [`GRACE`] to finish, and shuts `rt` down (queued calls finish, writes are
/// synced, the data directory is released). A second signal exits at once.
///
/// # Errors
///
/// A message when the address cannot be bound, the server fails, or the shutdown fails.
pub async fn serve(
    program: &Program,
    options: &Options,
    rt: Runtime,
    app: Router,
) -> Result<(), String> {
    let served = serve_http(program, options, app).await;
    // Stop the runtime even if the server failed: queued calls finish, writes are synced.
    let closed = rt.shutdown().await;
    let data_dir = served?;
    closed.map_err(|e| format!("shutting the runtime down failed: {e}"))?;
    match &options.connect {
        Some(_) => tracing::info!("stopped"),
        None => tracing::info!("stopped; data synced in {data_dir}"),
    }
    Ok(())
}

/// The HTTP half of [`serve`]: returns where the data is, for the last log line.
async fn serve_http(program: &Program, options: &Options, app: Router) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind(&options.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let data_dir = match (&options.connect, &options.postgres) {
        (Some(server), _) => format!("the object server at {server}"),
        (None, Some(url)) => redact(url),
        (None, None) => std::fs::canonicalize(&options.data_dir)
            .unwrap_or(options.data_dir.clone())
            .display()
            .to_string(),
    };
    tracing::info!(
        "{} listening on http://{addr}, data in {data_dir}",
        program.name
    );

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
    tokio::select! {
        served = server.into_future() => served.map_err(|e| format!("the server failed: {e}"))?,
        () = grace => tracing::warn!("connections still open after {GRACE:?}: dropping them"),
    }
    Ok(data_dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: Program = Program {
        name: "chat",
        default_addr: "127.0.0.1:8788",
        default_data_dir: "./chat-data",
        objects: "rooms",
        idle_timeout: true,
    };

    const COUNTER: Program = Program {
        idle_timeout: false,
        ..CHAT
    };

    fn run(program: &Program, args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let args = args.iter().map(|a| (*a).to_owned());
        let env = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        match parse(program, args, env)? {
            Command::Run(options) => Ok(options),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_flags_and_environment() {
        let options = run(&CHAT, &[], &[]).unwrap();
        assert_eq!(
            options,
            Options {
                addr: "127.0.0.1:8788".into(),
                data_dir: "./chat-data".into(),
                postgres: None,
                listen: None,
                connect: None,
                secret: None,
                idle_timeout: None,
            }
        );
        let env = [
            ("DURABLE_ADDR", "127.0.0.1:1"),
            ("DURABLE_DATA_DIR", "/env"),
            ("DURABLE_IDLE_TIMEOUT", "5"),
            ("DURABLE_LISTEN", ""),
            ("DURABLE_SECRET", "s"),
        ];
        let options = run(
            &CHAT,
            &["--addr=127.0.0.1:2", "--idle-timeout", "0.5"],
            &env,
        )
        .unwrap();
        assert_eq!(options.addr, "127.0.0.1:2");
        assert_eq!(options.data_dir, PathBuf::from("/env"));
        assert_eq!(options.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(options.listen, None, "an empty variable is unset");
        assert_eq!(options.secret.as_deref(), Some("s"));
        assert_eq!(
            run(&CHAT, &[], &env).unwrap().idle_timeout,
            Some(Duration::from_secs(5))
        );
        // The counter takes no idle timeout, and ignores the variable.
        assert_eq!(run(&COUNTER, &[], &env).unwrap().idle_timeout, None);
        assert_eq!(
            run(&COUNTER, &["--idle-timeout", "5"], &[]).unwrap_err(),
            "unknown argument `--idle-timeout`"
        );
        assert_eq!(run(&CHAT, &["-h"], &[]).unwrap_err(), "help");
    }

    #[test]
    fn bad_options_are_explained() {
        let err = |args: &[&str]| run(&CHAT, args, &[]).unwrap_err();
        assert_eq!(err(&["--addr"]), "`--addr` needs a value");
        assert_eq!(err(&["--port", "1"]), "unknown argument `--port`");
        for bad in ["0", "-1", "soon", "NaN", "inf"] {
            assert_eq!(
                err(&["--idle-timeout", bad]),
                format!("`--idle-timeout` takes a positive number of seconds, not `{bad}`")
            );
        }
        assert!(err(&["--listen", "a", "--connect", "b"]).contains("do not go together"));
        assert_eq!(
            err(&["--connect", "b", "--data-dir", "d"]),
            "`--connect` holds no rooms, so it takes no `--data-dir`"
        );
        assert_eq!(
            err(&["--connect", "b", "--postgres", "postgres://x"]),
            "`--connect` holds no rooms, so it takes no `--postgres`"
        );
        assert!(
            err(&["--postgres", "postgres://x", "--data-dir", "d"]).contains("do not go together")
        );
        assert_eq!(
            err(&["--connect", "b", "--idle-timeout", "3"]),
            "`--connect` holds no rooms, so it takes no `--idle-timeout`"
        );
    }

    #[test]
    fn usage_lists_the_flags() {
        let usage = CHAT.usage();
        assert!(usage.starts_with(
            "usage: chat [--addr ADDR] [--data-dir PATH | --postgres URL] [--idle-timeout SECS] \
             [--listen ADDR | --connect ADDR] [--secret S]\n\n"
        ));
        assert!(usage.contains("default 127.0.0.1:8788"), "{usage}");
        assert!(
            usage.contains("--idle-timeout SECS  unload rooms idle"),
            "{usage}"
        );
        assert!(!COUNTER.usage().contains("idle"));
    }

    #[test]
    fn postgres_urls_are_logged_without_their_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact("host=db user=app"), "host=db user=app");
        let options = run(&COUNTER, &["--postgres", "postgres://a@b/c"], &[]).unwrap();
        assert_eq!(options.postgres.as_deref(), Some("postgres://a@b/c"));
        let env = [("DURABLE_POSTGRES", "postgres://env@b/c")];
        assert_eq!(
            run(&COUNTER, &[], &env).unwrap().postgres.as_deref(),
            Some("postgres://env@b/c")
        );
    }
}
