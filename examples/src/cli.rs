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
use durable_runtime::{Cluster, Runtime, RuntimeBuilder, Tls};
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
        usage.push_str(" [--listen ADDR | --connect ADDR] [--secret S]\n");
        let indent = "usage: ".len() + name.len() + 1;
        usage.push_str(&format!(
            "{:indent$}[--cluster ETCD_URLS [--node-id ID] [--lease-ttl SECS] [--cluster-name NAME]]\n",
            ""
        ));
        usage.push_str(&format!(
            "{:indent$}[--etcd-ca FILE [--etcd-cert FILE --etcd-key FILE]] [--etcd-user NAME]\n",
            ""
        ));
        usage.push_str(&format!(
            "{:indent$}[--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n\n",
            ""
        ));
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
            format!("also serve the {objects} to front ends or other nodes (env DURABLE_LISTEN)"),
        );
        line(
            "--connect ADDR",
            format!("hold no {objects}: call the object server at ADDR (env DURABLE_CONNECT)"),
        );
        line(
            "--secret S",
            "the secret shared with the object server, front ends or other nodes \
             (env DURABLE_SECRET)"
                .into(),
        );
        line(
            "--cluster ETCD_URLS",
            "run as a cluster node; comma-separated etcd endpoints (env DURABLE_CLUSTER); \
             needs --postgres and --listen"
                .into(),
        );
        line(
            "--node-id ID",
            "this node's ID in the cluster (env DURABLE_NODE_ID, default random)".into(),
        );
        line(
            "--lease-ttl SECS",
            format!(
                "a dead node's {objects} move to the others after this long (env \
                 DURABLE_LEASE_TTL, default {})",
                DEFAULT_LEASE_TTL.as_secs()
            ),
        );
        line(
            "--cluster-name NAME",
            format!(
                "the cluster's key prefix in etcd (env DURABLE_CLUSTER_NAME, default \
                 {DEFAULT_CLUSTER_NAME})"
            ),
        );
        line(
            "--etcd-ca FILE",
            "TLS to etcd (https:// endpoints): the CA of etcd's certificate, PEM (env \
             DURABLE_ETCD_CA)"
                .into(),
        );
        line(
            "--etcd-cert FILE",
            "a client certificate for etcd's --client-cert-auth, PEM (env DURABLE_ETCD_CERT); \
             with --etcd-key and --etcd-ca"
                .into(),
        );
        line(
            "--etcd-key FILE",
            "the client certificate's private key, PEM (env DURABLE_ETCD_KEY)".into(),
        );
        line(
            "--etcd-user NAME",
            format!(
                "log in to etcd as NAME (env DURABLE_ETCD_USER), with the password in env \
                 {ETCD_PASSWORD}"
            ),
        );
        line(
            "--tls-cert FILE",
            "TLS between runtimes: this runtime's certificate chain, PEM, naming its --listen \
             address (env DURABLE_TLS_CERT)"
                .into(),
        );
        line(
            "--tls-key FILE",
            "the certificate's private key, PEM (env DURABLE_TLS_KEY)".into(),
        );
        line(
            "--tls-ca FILE",
            "the CA the other runtimes' certificates chain to, PEM (env DURABLE_TLS_CA); \
             --listen (a server, a cluster node) needs all three --tls-* flags, --connect \
             only --tls-ca (or all three)"
                .into(),
        );
        usage
    }
}

/// The runtime's own idle timeout (`RuntimeBuilder::idle_timeout`), shown in the usage
/// text; without `--idle-timeout` the runtime keeps its default.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(70);

/// The library's lease TTL (`Cluster::lease_ttl`), shown in the usage text; without
/// `--lease-ttl` the cluster keeps its default.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The library's cluster name (`Cluster::name`), shown in the usage text.
const DEFAULT_CLUSTER_NAME: &str = "durable";

/// The longest lease TTL `--lease-ttl` takes, in seconds (a day): a node that dies keeps its
/// objects unavailable this long, so anything longer is a typo.
const MAX_LEASE_TTL_SECS: u64 = 86_400;

/// The environment variable of `--etcd-user`'s password: never a flag, which anyone on the
/// machine could read in the process list.
pub const ETCD_PASSWORD: &str = "DURABLE_ETCD_PASSWORD";

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
    /// `--cluster`: run as a node of a cluster (with `postgres` and `listen` set).
    pub cluster: Option<ClusterOptions>,
    /// `--tls-cert`, `--tls-key`, `--tls-ca`: TLS for the calls between runtimes (with
    /// `listen` or `connect` set).
    pub tls: Option<TlsOptions>,
}

/// TLS for the connections between runtimes, from `--tls-cert`, `--tls-key` and `--tls-ca`
/// (PEM files, read when the runtime opens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOptions {
    /// All three: the certificate chain and key this runtime presents when it listens, and
    /// the CA that the certificates of the runtimes it calls chain to. A front end given
    /// them (a node's files) uses the CA only.
    Node {
        /// `--tls-cert`: the certificate chain, this runtime's own certificate first.
        cert: PathBuf,
        /// `--tls-key`: the certificate's private key.
        key: PathBuf,
        /// `--tls-ca`: the CA certificate(s).
        ca: PathBuf,
    },
    /// `--tls-ca` alone, for a front end (`--connect`): it trusts the servers whose
    /// certificates chain to this CA, and presents none itself.
    Client {
        /// `--tls-ca`: the CA certificate(s).
        ca: PathBuf,
    },
}

impl TlsOptions {
    /// The runtime's [`Tls`] ([`Tls::from_pem_files`] or [`Tls::client`]), from the files.
    ///
    /// # Errors
    ///
    /// The runtime's configuration error, as a message, when a file cannot be read or holds
    /// no usable PEM (no certificate, no key, a key that does not match the certificate).
    pub fn tls(&self) -> Result<Tls, String> {
        match self {
            TlsOptions::Node { cert, key, ca } => {
                Tls::from_pem_files(cert, key, ca).map_err(|e| e.to_string())
            }
            TlsOptions::Client { ca } => {
                // The runtime's own words for an unreadable file (`Tls::from_pem_files`).
                let pem = std::fs::read(ca).map_err(|e| {
                    format!(
                        "runtime configuration: TLS: cannot read the CA certificate {}: {e}",
                        ca.display()
                    )
                })?;
                Tls::client(pem).map_err(|e| e.to_string())
            }
        }
    }
}

/// How a node joins its cluster: `--cluster` and the flags that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `--cluster`: the etcd endpoints (`http://127.0.0.1:2379`), at least one.
    pub etcd: Vec<String>,
    /// `--node-id`: this node's ID; `None` lets the runtime pick a random one.
    pub node_id: Option<String>,
    /// `--lease-ttl`: the node's lease TTL; `None` keeps the library's default (10 s).
    pub lease_ttl: Option<Duration>,
    /// `--cluster-name`: the cluster's key prefix in etcd; `None` keeps the library's
    /// default (`durable`).
    pub name: Option<String>,
    /// `--etcd-ca`, `--etcd-cert`, `--etcd-key`: TLS to etcd; `None` for plaintext.
    pub etcd_tls: Option<EtcdTlsOptions>,
    /// `--etcd-user` and its password: etcd's user authentication.
    pub etcd_user: Option<EtcdUser>,
}

/// TLS to etcd, from `--etcd-ca`, `--etcd-cert` and `--etcd-key` (PEM files, read when the
/// runtime opens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTlsOptions {
    /// `--etcd-ca`: the CA certificate(s) etcd's certificate chains to.
    pub ca: PathBuf,
    /// `--etcd-cert` and `--etcd-key`: the client certificate chain presented to etcd, and
    /// its private key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// `--etcd-user` (or `DURABLE_ETCD_USER`) and its password, from [`ETCD_PASSWORD`]. Its
/// `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    /// The etcd user's name.
    pub name: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .field("password", &"***")
            .finish()
    }
}

impl ClusterOptions {
    /// The runtime's [`Cluster`] settings, with the etcd TLS files read.
    ///
    /// # Errors
    ///
    /// A message naming the file when an etcd TLS file cannot be read (what it holds is
    /// checked when the runtime opens).
    pub fn cluster(&self) -> Result<Cluster, String> {
        let mut cluster = Cluster::etcd(self.etcd.iter().cloned());
        if let Some(name) = &self.name {
            cluster = cluster.name(name.as_str());
        }
        if let Some(node_id) = &self.node_id {
            cluster = cluster.node_id(node_id.as_str());
        }
        if let Some(ttl) = self.lease_ttl {
            cluster = cluster.lease_ttl(ttl);
        }
        if let Some(tls) = &self.etcd_tls {
            let read = |path: &PathBuf, what: &str| {
                std::fs::read(path)
                    .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
            };
            cluster = cluster.etcd_ca(read(&tls.ca, "etcd CA certificate (--etcd-ca)")?);
            if let Some((cert, key)) = &tls.identity {
                cluster = cluster.etcd_identity(
                    read(cert, "etcd client certificate (--etcd-cert)")?,
                    read(key, "etcd client key (--etcd-key)")?,
                );
            }
        }
        if let Some(user) = &self.etcd_user {
            cluster = cluster.etcd_user(user.name.as_str(), user.password.as_str());
        }
        Ok(cluster)
    }

    /// How the node reaches etcd, for its startup log: `""`, or ` (TLS with a client
    /// certificate, as user `u`)` and the like.
    fn describe_etcd_access(&self) -> String {
        let mut parts = Vec::new();
        match &self.etcd_tls {
            Some(EtcdTlsOptions {
                identity: Some(_), ..
            }) => parts.push("TLS with a client certificate".to_owned()),
            Some(_) => parts.push("TLS".to_owned()),
            None => {}
        }
        if let Some(user) = &self.etcd_user {
            parts.push(format!("as user `{}`", user.name));
        }
        match parts.is_empty() {
            true => String::new(),
            false => format!(" ({})", parts.join(", ")),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve with these options.
    Run(Box<Options>),
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
/// `--connect`; `--data-dir` with `--postgres`; `--cluster` with `--connect` or `--data-dir`,
/// or without `--postgres` or `--listen`; `--node-id`, `--lease-ttl`, `--cluster-name` or an
/// `--etcd-*` flag without `--cluster`; `--etcd-cert` and `--etcd-key` without each other or
/// without `--etcd-ca`; `--etcd-ca` with an `http://` endpoint, or an `https://` one
/// without it; `--etcd-user` without its password in [`ETCD_PASSWORD`], or the password
/// without the user; a `--tls-*` flag without `--listen` or `--connect`, `--listen` without
/// all three, `--connect` without `--tls-ca` or with only one of `--tls-cert` and
/// `--tls-key`).
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
    let mut cluster = None;
    let mut node_id = None;
    let mut lease_ttl = None;
    let mut cluster_name = None;
    let mut tls_cert = None;
    let mut tls_key = None;
    let mut tls_ca = None;
    let mut etcd_ca = None;
    let mut etcd_cert = None;
    let mut etcd_key = None;
    let mut etcd_user = None;
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
            "--cluster" => &mut cluster,
            "--node-id" => &mut node_id,
            "--lease-ttl" => &mut lease_ttl,
            "--cluster-name" => &mut cluster_name,
            "--tls-cert" => &mut tls_cert,
            "--tls-key" => &mut tls_key,
            "--tls-ca" => &mut tls_ca,
            "--etcd-ca" => &mut etcd_ca,
            "--etcd-cert" => &mut etcd_cert,
            "--etcd-key" => &mut etcd_key,
            "--etcd-user" => &mut etcd_user,
            "--etcd-password" => {
                return Err(format!(
                    "`--etcd-password` is not a flag (anyone on the machine could read it in \
                     the process list): put the password in the environment variable \
                     {ETCD_PASSWORD}"
                ))
            }
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
    let cluster = cluster.or_else(|| env("DURABLE_CLUSTER"));
    let node_id = node_id.or_else(|| env("DURABLE_NODE_ID"));
    let lease_ttl = lease_ttl.or_else(|| env("DURABLE_LEASE_TTL"));
    let cluster_name = cluster_name.or_else(|| env("DURABLE_CLUSTER_NAME"));
    let etcd_ca = etcd_ca.or_else(|| env("DURABLE_ETCD_CA"));
    let etcd_cert = etcd_cert.or_else(|| env("DURABLE_ETCD_CERT"));
    let etcd_key = etcd_key.or_else(|| env("DURABLE_ETCD_KEY"));
    let etcd_user = etcd_user.or_else(|| env("DURABLE_ETCD_USER"));
    let etcd_password = env(ETCD_PASSWORD);
    if cluster.is_some() && connect.is_some() {
        return Err(format!(
            "`--cluster` and `--connect` do not go together: a front end (--connect) holds no \
             {objects} and joins no cluster; point it at any node's `--listen` address instead"
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
    let cluster = match cluster {
        Some(endpoints) => {
            if data_dir.is_some() {
                return Err(format!(
                    "`--cluster` keeps the {objects} in PostgreSQL, shared by every node, so it \
                     takes no `--data-dir`"
                ));
            }
            if postgres.is_none() {
                return Err(format!(
                    "`--cluster` needs `--postgres URL`: every node of a cluster keeps the \
                     {objects} in one shared PostgreSQL database"
                ));
            }
            if listen.is_none() {
                return Err(
                    "`--cluster` needs `--listen ADDR`: the address the other nodes forward \
                     calls to (one they can reach)"
                        .to_owned(),
                );
            }
            let etcd: Vec<String> = endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            if etcd.is_empty() {
                return Err(format!(
                    "`--cluster` takes comma-separated etcd endpoints \
                     (http://127.0.0.1:2379,...), not `{endpoints}`"
                ));
            }
            if node_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
                return Err("`--node-id` cannot be blank".to_owned());
            }
            if cluster_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err("`--cluster-name` cannot be blank".to_owned());
            }
            let lease_ttl = lease_ttl
                .map(|secs| match secs.parse::<u64>() {
                    Ok(secs) if secs > 0 && secs <= MAX_LEASE_TTL_SECS => {
                        Ok(Duration::from_secs(secs))
                    }
                    _ => Err(format!(
                        "`--lease-ttl` takes a whole number of seconds from 1 to \
                         {MAX_LEASE_TTL_SECS}, not `{secs}`"
                    )),
                })
                .transpose()?;
            let etcd_tls = etcd_tls_options(&etcd, etcd_ca, etcd_cert, etcd_key)?;
            let etcd_user = match (etcd_user, etcd_password) {
                (Some(name), _) if name.trim().is_empty() => {
                    return Err("`--etcd-user` cannot be blank".to_owned());
                }
                (Some(name), Some(password)) => Some(EtcdUser { name, password }),
                (Some(_), None) => {
                    return Err(format!(
                        "`--etcd-user` needs its password in the environment variable \
                         {ETCD_PASSWORD} (never a flag: anyone on the machine could read it in \
                         the process list)"
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "{ETCD_PASSWORD} is the password of an etcd user: give the user with \
                         `--etcd-user NAME` (or DURABLE_ETCD_USER)"
                    ));
                }
                (None, None) => None,
            };
            Some(ClusterOptions {
                etcd,
                node_id,
                lease_ttl,
                name: cluster_name,
                etcd_tls,
                etcd_user,
            })
        }
        None => {
            for (flag, variable, value) in [
                ("--node-id", "DURABLE_NODE_ID", &node_id),
                ("--lease-ttl", "DURABLE_LEASE_TTL", &lease_ttl),
                ("--cluster-name", "DURABLE_CLUSTER_NAME", &cluster_name),
                ("--etcd-ca", "DURABLE_ETCD_CA", &etcd_ca),
                ("--etcd-cert", "DURABLE_ETCD_CERT", &etcd_cert),
                ("--etcd-key", "DURABLE_ETCD_KEY", &etcd_key),
                ("--etcd-user", "DURABLE_ETCD_USER", &etcd_user),
            ] {
                if value.is_some() {
                    return Err(format!(
                        "`{flag}` (or {variable}) is for a cluster node: it needs \
                         `--cluster ETCD_URLS`"
                    ));
                }
            }
            if etcd_password.is_some() {
                return Err(format!(
                    "{ETCD_PASSWORD} is for a cluster node's etcd user: it needs `--cluster \
                     ETCD_URLS` and `--etcd-user NAME`"
                ));
            }
            None
        }
    };
    let tls = tls_options(
        listen.is_some(),
        connect.is_some(),
        tls_cert.or_else(|| env("DURABLE_TLS_CERT")),
        tls_key.or_else(|| env("DURABLE_TLS_KEY")),
        tls_ca.or_else(|| env("DURABLE_TLS_CA")),
    )?;
    Ok(Command::Run(Box::new(Options {
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
        cluster,
        tls,
    })))
}

/// The etcd TLS flags' part of [`parse`], for a node of the cluster at `etcd`: `None`
/// without any of them. `--etcd-ca` makes the connection TLS, and goes with `https://`
/// endpoints only; `--etcd-cert` and `--etcd-key` go together, and with `--etcd-ca`.
fn etcd_tls_options(
    etcd: &[String],
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
) -> Result<Option<EtcdTlsOptions>, String> {
    for (flag, value) in [
        ("--etcd-ca", &ca),
        ("--etcd-cert", &cert),
        ("--etcd-key", &key),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(format!("`{flag}` cannot be blank"));
        }
    }
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        (cert, _) => {
            let missing = if cert.is_none() {
                "`--etcd-cert` is missing"
            } else {
                "`--etcd-key` is missing"
            };
            return Err(format!(
                "`--etcd-cert FILE` and `--etcd-key FILE` go together (the client certificate \
                 etcd's --client-cert-auth asks for, and its key): {missing}"
            ));
        }
    };
    let https = |endpoint: &&String| endpoint.starts_with("https://");
    let Some(ca) = ca else {
        if identity.is_some() {
            return Err(
                "`--etcd-cert` and `--etcd-key` need `--etcd-ca FILE`: the client certificate \
                 goes over TLS, which needs the CA of etcd's certificate"
                    .to_owned(),
            );
        }
        if let Some(endpoint) = etcd.iter().find(https) {
            return Err(format!(
                "the etcd endpoint {endpoint} is https://: give the CA of etcd's certificate \
                 with `--etcd-ca FILE`"
            ));
        }
        return Ok(None);
    };
    if let Some(endpoint) = etcd.iter().find(|e| !https(e)) {
        return Err(format!(
            "`--etcd-ca` is for TLS to etcd, but the etcd endpoint {endpoint} is not https://: \
             write it https://host:port"
        ));
    }
    Ok(Some(EtcdTlsOptions {
        ca: ca.into(),
        identity,
    }))
}

/// The TLS flags' part of [`parse`]: `None` without any of them. A runtime that listens
/// needs all three; a front end (`--connect`) needs `--tls-ca`, and takes `--tls-cert` and
/// `--tls-key` only together.
fn tls_options(
    listen: bool,
    connect: bool,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
) -> Result<Option<TlsOptions>, String> {
    let flags = [
        ("--tls-cert", "DURABLE_TLS_CERT", &cert),
        ("--tls-key", "DURABLE_TLS_KEY", &key),
        ("--tls-ca", "DURABLE_TLS_CA", &ca),
    ];
    let Some(&(first, variable, _)) = flags.iter().find(|(_, _, value)| value.is_some()) else {
        return Ok(None);
    };
    if !listen && !connect {
        return Err(format!(
            "`{first}` (or {variable}) is for TLS between runtimes: it needs `--listen ADDR` \
             or `--connect ADDR` (without them there is no connection to encrypt)"
        ));
    }
    for (flag, _, value) in flags {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(format!("`{flag}` cannot be blank"));
        }
    }
    let missing: Vec<&str> = flags
        .iter()
        .filter(|(_, _, value)| value.is_none())
        .map(|&(flag, _, _)| flag)
        .collect();
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsOptions::Node {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
        })),
        (None, None, Some(ca)) if connect => Ok(Some(TlsOptions::Client { ca: ca.into() })),
        _ if listen => Err(format!(
            "`--listen` over TLS needs `--tls-cert FILE`, `--tls-key FILE` and `--tls-ca FILE` \
             (the certificate it presents, its key, and the CA): {}",
            is_missing(&missing)
        )),
        (_, _, None) => Err(
            "`--connect` over TLS needs `--tls-ca FILE`: the CA that the object server's \
             certificate chains to"
                .to_owned(),
        ),
        _ => Err(format!(
            "`--connect` over TLS takes `--tls-ca` alone, or all three of `--tls-cert`, \
             `--tls-key` and `--tls-ca`: {}",
            is_missing(&missing)
        )),
    }
}

/// "`--a` is missing", "`--a` and `--b` are missing".
fn is_missing(flags: &[&str]) -> String {
    let quoted: Vec<String> = flags.iter().map(|flag| format!("`{flag}`")).collect();
    match quoted.as_slice() {
        [one] => format!("{one} is missing"),
        [init @ .., last] => format!("{} and {last} are missing", init.join(", ")),
        [] => "nothing is missing".to_owned(),
    }
}

/// A PostgreSQL connection string without its password, for logs and errors: the password
/// of a URL's user (`postgres://app:***@db:5432/app`), a URL's `password=` parameter
/// (`postgres://db/app?password=***`) and a key=value string's `password=` (quoted or not:
/// `host=db password=***`) are masked.
pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    };
    mask_password_values(&url)
}

/// Replaces the value of every `password=` (a URL parameter or a key=value pair, with
/// spaces around `=` allowed, the value quoted in `'` or not) with `***`.
fn mask_password_values(s: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(found) = rest.to_ascii_lowercase().find(KEY) {
        let before = &rest[..found];
        let starts_word = before
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '?' || c == '&');
        let after_key = &rest[found + KEY.len()..];
        let trimmed = after_key.trim_start();
        if !starts_word || !trimmed.starts_with('=') {
            out.push_str(&rest[..found + KEY.len()]);
            rest = after_key;
            continue;
        }
        let value = trimmed[1..].trim_start();
        let prefix_len = rest.len() - value.len();
        out.push_str(&rest[..prefix_len]);
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // A quoted value ends at the first quote not escaped by a backslash.
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let closes = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            });
            close.map_or(value.len(), |(i, _)| i + 2)
        } else {
            value
                .find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(value.len())
        };
        out.push_str(if value.starts_with('\'') {
            "'***'"
        } else {
            "***"
        });
        rest = &value[end..];
    }
    out.push_str(rest);
    out
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
        Ok(Command::Run(options)) => *options,
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
/// processes), a front end's (`--connect`: no storage, every call goes to the server), or a
/// cluster node's (`--cluster`: PostgreSQL shared with the other nodes, etcd, and `--listen`
/// for the calls they forward); over TLS with `--tls-*`.
///
/// # Errors
///
/// A message naming the data directory, the server or the cluster when the runtime does not
/// open (a TLS file that cannot be read, or holds no usable PEM, among the reasons).
pub fn open_runtime(
    program: &Program,
    options: &Options,
    register: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
) -> Result<Runtime, String> {
    let objects = program.objects;
    let secret = options.secret.as_deref().unwrap_or_default();
    let over_tls = if options.tls.is_some() {
        " over TLS"
    } else {
        ""
    };
    if let Some(server) = &options.connect {
        let cannot = |e: String| format!("cannot connect to {server}: {e}");
        let mut builder = Runtime::builder().connect(server.as_str()).secret(secret);
        if let Some(tls) = &options.tls {
            builder = builder.tls(tls.tls().map_err(cannot)?);
        }
        let rt = builder.open().map_err(|e| cannot(e.to_string()))?;
        tracing::info!("front end: holding no {objects}; every call goes to {server}{over_tls}");
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
    let cannot = |e: String| match &options.cluster {
        Some(cluster) => format!(
            "cannot join the cluster at {} as {}, with {storage}: {e}",
            cluster.etcd.join(","),
            describe_node(cluster)
        ),
        None => format!("cannot open the runtime on {storage}: {e}"),
    };
    if let Some(cluster) = &options.cluster {
        builder = builder.cluster(cluster.cluster().map_err(cannot)?);
    }
    if let Some(tls) = &options.tls {
        builder = builder.tls(tls.tls().map_err(cannot)?);
    }
    let rt = builder.open().map_err(|e| cannot(e.to_string()))?;
    if let Some(cluster) = &options.cluster {
        let node = describe_node(cluster);
        let etcd = cluster.etcd.join(",");
        let listen = rt
            .local_addr()
            .map_or_else(|| "?".to_owned(), |addr| addr.to_string());
        tracing::info!(
            "cluster node {node} of cluster `{}`: etcd {etcd}{}, {objects} in {storage}, \
             serving the other nodes on {listen}{over_tls}{}",
            cluster.name.as_deref().unwrap_or(DEFAULT_CLUSTER_NAME),
            cluster.describe_etcd_access(),
            if secret.is_empty() {
                " (no secret: loopback only)"
            } else {
                ""
            }
        );
        return Ok(rt);
    }
    tracing::info!("{objects} stored in {storage}");
    if let Some(addr) = rt.local_addr() {
        tracing::info!(
            "object server: serving {objects} to other processes on {addr}{over_tls}{}",
            if secret.is_empty() {
                " (no secret: loopback only)"
            } else {
                ""
            }
        );
    }
    Ok(rt)
}

/// A cluster node's name in logs: `n1`, or `a random ID` when the runtime picks it.
fn describe_node(cluster: &ClusterOptions) -> String {
    match &cluster.node_id {
        Some(id) => format!("`{id}`"),
        None => "(a random ID)".to_owned(),
    }
}

/// Serves `app` on `options.addr` until Ctrl-C or SIGTERM; then stops taking connections,
/// gives open ones [`GRACE`] to finish, and shuts `rt` down (queued calls finish, writes are
/// synced, the data directory is released). A cluster node hands its shards over to the
/// other nodes in that shutdown, after its HTTP server stopped and before it leaves the
/// cluster. A second signal exits at once.
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
    // HTTP first: no new requests, the open ones finish (their calls still reach the
    // objects, here or on other nodes).
    let served = serve_http(program, options, app).await;
    // Then the runtime, even if the server failed: queued calls finish, writes are synced.
    // A cluster node hands its shards over first (calls meanwhile go to their new owners),
    // then leaves the cluster.
    if options.cluster.is_some() {
        tracing::info!("handing shards over to the other nodes");
    }
    let closed = rt.shutdown().await;
    if closed.is_ok() && options.cluster.is_some() {
        tracing::info!("left the cluster");
    }
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
            Command::Run(options) => Ok(*options),
            Command::Help => Err("help".into()),
        }
    }

    /// The arguments of `parts`, one after the other.
    fn join(parts: &[&[&'static str]]) -> Vec<&'static str> {
        parts.concat()
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
                cluster: None,
                tls: None,
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
        assert!(
            usage.starts_with(
                "usage: chat [--addr ADDR] [--data-dir PATH | --postgres URL] \
                 [--idle-timeout SECS] [--listen ADDR | --connect ADDR] [--secret S]\n            \
                 [--cluster ETCD_URLS [--node-id ID] [--lease-ttl SECS] [--cluster-name NAME]]\n            \
                 [--etcd-ca FILE [--etcd-cert FILE --etcd-key FILE]] [--etcd-user NAME]\n            \
                 [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n\n"
            ),
            "{usage}"
        );
        assert!(usage.contains("default 127.0.0.1:8788"), "{usage}");
        assert!(
            usage.contains("--idle-timeout SECS  unload rooms idle"),
            "{usage}"
        );
        assert!(!COUNTER.usage().contains("idle"));
        // Both programs take the cluster flags, each with its variable and default.
        for program in [&CHAT, &COUNTER] {
            let usage = program.usage();
            for line in [
                "  --cluster ETCD_URLS  run as a cluster node; comma-separated etcd endpoints \
                 (env DURABLE_CLUSTER); needs --postgres and --listen\n",
                "  --node-id ID         this node's ID in the cluster (env DURABLE_NODE_ID, \
                 default random)\n",
                "  --lease-ttl SECS     a dead node's rooms move to the others after this long \
                 (env DURABLE_LEASE_TTL, default 10)\n",
                "  --cluster-name NAME  the cluster's key prefix in etcd (env \
                 DURABLE_CLUSTER_NAME, default durable)\n",
                "  --etcd-ca FILE       TLS to etcd (https:// endpoints): the CA of etcd's \
                 certificate, PEM (env DURABLE_ETCD_CA)\n",
                "  --etcd-cert FILE     a client certificate for etcd's --client-cert-auth, PEM \
                 (env DURABLE_ETCD_CERT); with --etcd-key and --etcd-ca\n",
                "  --etcd-key FILE      the client certificate's private key, PEM (env \
                 DURABLE_ETCD_KEY)\n",
                "  --etcd-user NAME     log in to etcd as NAME (env DURABLE_ETCD_USER), with the \
                 password in env DURABLE_ETCD_PASSWORD\n",
                "  --tls-cert FILE      TLS between runtimes: this runtime's certificate chain, \
                 PEM, naming its --listen address (env DURABLE_TLS_CERT)\n",
                "  --tls-key FILE       the certificate's private key, PEM (env \
                 DURABLE_TLS_KEY)\n",
                "  --tls-ca FILE        the CA the other runtimes' certificates chain to, PEM \
                 (env DURABLE_TLS_CA); --listen (a server, a cluster node) needs all three \
                 --tls-* flags, --connect only --tls-ca (or all three)\n",
            ] {
                assert!(usage.contains(line), "no {line:?} in\n{usage}");
            }
        }
        let counter = Program {
            name: "counter",
            ..COUNTER
        };
        assert!(
            counter
                .usage()
                .contains("[--secret S]\n               [--cluster ETCD_URLS [--node-id ID]"),
            "the second line lines up under the first's flags:\n{}",
            counter.usage()
        );
    }

    #[test]
    fn cluster_flags_and_environment() {
        let node = [
            "--postgres",
            "postgres://a@b/c",
            "--listen",
            "127.0.0.1:7001",
        ];
        let cluster = |args: &[&'static str], env: &[(&str, &str)]| {
            run(&COUNTER, &join(&[&node, args]), env)
                .unwrap()
                .cluster
                .expect("a cluster node")
        };
        let full = [
            ("DURABLE_CLUSTER", "http://e1:2379,http://e2:2379"),
            ("DURABLE_NODE_ID", "n-env"),
            ("DURABLE_LEASE_TTL", "3"),
            ("DURABLE_CLUSTER_NAME", "env-name"),
        ];
        for (args, env, expected) in [
            (
                &["--cluster", "http://127.0.0.1:2379"][..],
                &[][..],
                ClusterOptions {
                    etcd: vec!["http://127.0.0.1:2379".into()],
                    node_id: None,
                    lease_ttl: None,
                    name: None,
                    etcd_tls: None,
                    etcd_user: None,
                },
            ),
            (
                &[
                    "--cluster=http://e1:2379, http://e2:2379,",
                    "--node-id",
                    "n1",
                    "--lease-ttl=2",
                    "--cluster-name",
                    "app",
                ][..],
                &[][..],
                ClusterOptions {
                    etcd: vec!["http://e1:2379".into(), "http://e2:2379".into()],
                    node_id: Some("n1".into()),
                    lease_ttl: Some(Duration::from_secs(2)),
                    name: Some("app".into()),
                    etcd_tls: None,
                    etcd_user: None,
                },
            ),
            (
                &[][..],
                &full[..],
                ClusterOptions {
                    etcd: vec!["http://e1:2379".into(), "http://e2:2379".into()],
                    node_id: Some("n-env".into()),
                    lease_ttl: Some(Duration::from_secs(3)),
                    name: Some("env-name".into()),
                    etcd_tls: None,
                    etcd_user: None,
                },
            ),
            // A flag wins over its variable.
            (
                &[
                    "--cluster",
                    "http://e3:2379",
                    "--node-id",
                    "n2",
                    "--lease-ttl",
                    "20",
                ][..],
                &full[..],
                ClusterOptions {
                    etcd: vec!["http://e3:2379".into()],
                    node_id: Some("n2".into()),
                    lease_ttl: Some(Duration::from_secs(20)),
                    name: Some("env-name".into()),
                    etcd_tls: None,
                    etcd_user: None,
                },
            ),
        ] {
            assert_eq!(cluster(args, env), expected, "{args:?} {env:?}");
        }
        // The rest of a node's options are as without a cluster; the chat takes the flags too.
        let options = run(&CHAT, &join(&[&node, &["--cluster", "http://e:2379"]]), &[]).unwrap();
        assert_eq!(options.postgres.as_deref(), Some("postgres://a@b/c"));
        assert_eq!(options.listen.as_deref(), Some("127.0.0.1:7001"));
        assert!(options.cluster.is_some());
        // Without the flag and its variable, no cluster; empty variables are unset.
        let empty = [
            ("DURABLE_CLUSTER", ""),
            ("DURABLE_NODE_ID", ""),
            ("DURABLE_LEASE_TTL", ""),
            ("DURABLE_CLUSTER_NAME", ""),
        ];
        assert_eq!(run(&COUNTER, &node, &empty).unwrap().cluster, None);
    }

    #[test]
    fn cluster_misuse_is_explained() {
        let node = [
            "--postgres",
            "postgres://a@b/c",
            "--listen",
            "127.0.0.1:7001",
        ];
        let cluster = ["--cluster", "http://127.0.0.1:2379"];
        let with = join;
        // The arguments, the environment, the message.
        type Case = (
            Vec<&'static str>,
            &'static [(&'static str, &'static str)],
            String,
        );
        let cases: Vec<Case> =
            vec![
            (
                with(&[&["--cluster", "http://e:2379", "--listen", "127.0.0.1:7001"]]),
                &[],
                "`--cluster` needs `--postgres URL`: every node of a cluster keeps the rooms in \
                 one shared PostgreSQL database"
                    .into(),
            ),
            (
                with(&[&["--cluster", "http://e:2379", "--postgres", "postgres://a@b/c"]]),
                &[],
                "`--cluster` needs `--listen ADDR`: the address the other nodes forward calls \
                 to (one they can reach)"
                    .into(),
            ),
            (
                with(&[&cluster, &["--data-dir", "d", "--listen", "127.0.0.1:7001"]]),
                &[],
                "`--cluster` keeps the rooms in PostgreSQL, shared by every node, so it takes \
                 no `--data-dir`"
                    .into(),
            ),
            // The variables count as the flags.
            (
                with(&[&["--listen", "127.0.0.1:7001"]]),
                &[("DURABLE_CLUSTER", "http://e:2379"), ("DURABLE_DATA_DIR", "d")],
                "`--cluster` keeps the rooms in PostgreSQL, shared by every node, so it takes \
                 no `--data-dir`"
                    .into(),
            ),
            (
                with(&[&cluster, &["--connect", "127.0.0.1:7001"]]),
                &[],
                "`--cluster` and `--connect` do not go together: a front end (--connect) holds \
                 no rooms and joins no cluster; point it at any node's `--listen` address \
                 instead"
                    .into(),
            ),
            (
                with(&[&["--connect", "127.0.0.1:7001"]]),
                &[("DURABLE_CLUSTER", "http://e:2379")],
                "`--cluster` and `--connect` do not go together: a front end (--connect) holds \
                 no rooms and joins no cluster; point it at any node's `--listen` address \
                 instead"
                    .into(),
            ),
            (
                with(&[&node, &["--cluster", " , "]]),
                &[],
                "`--cluster` takes comma-separated etcd endpoints (http://127.0.0.1:2379,...), \
                 not ` , `"
                    .into(),
            ),
            (
                with(&[&node, &cluster, &["--node-id", " "]]),
                &[],
                "`--node-id` cannot be blank".into(),
            ),
            (
                with(&[&node, &cluster, &["--cluster-name="]]),
                &[],
                "`--cluster-name` cannot be blank".into(),
            ),
            (
                with(&[&node, &cluster, &["--lease-ttl"]]),
                &[],
                "`--lease-ttl` needs a value".into(),
            ),
            (
                with(&[&node, &["--node-id", "n1"]]),
                &[],
                "`--node-id` (or DURABLE_NODE_ID) is for a cluster node: it needs \
                 `--cluster ETCD_URLS`"
                    .into(),
            ),
            (
                with(&[&node]),
                &[("DURABLE_NODE_ID", "n1")],
                "`--node-id` (or DURABLE_NODE_ID) is for a cluster node: it needs \
                 `--cluster ETCD_URLS`"
                    .into(),
            ),
            (
                with(&[&["--lease-ttl", "5"]]),
                &[],
                "`--lease-ttl` (or DURABLE_LEASE_TTL) is for a cluster node: it needs \
                 `--cluster ETCD_URLS`"
                    .into(),
            ),
            (
                with(&[&["--cluster-name", "app"]]),
                &[],
                "`--cluster-name` (or DURABLE_CLUSTER_NAME) is for a cluster node: it needs \
                 `--cluster ETCD_URLS`"
                    .into(),
            ),
        ];
        for (args, env, message) in cases {
            assert_eq!(
                run(&CHAT, &args, env).unwrap_err(),
                message,
                "{args:?} {env:?}"
            );
        }
        for bad in [
            "0",
            "-1",
            "1.5",
            "soon",
            "",
            "86401",
            "99999999999999999999",
        ] {
            let args = [&node[..], &cluster, &["--lease-ttl", bad]].concat();
            assert_eq!(
                run(&CHAT, &args, &[]).unwrap_err(),
                format!(
                    "`--lease-ttl` takes a whole number of seconds from 1 to 86400, not `{bad}`"
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn cluster_options_make_the_runtimes_cluster() {
        let options = ClusterOptions {
            etcd: vec!["http://e1:2379".into(), "http://e2:2379".into()],
            node_id: Some("n1".into()),
            lease_ttl: Some(Duration::from_secs(2)),
            name: Some("app".into()),
            etcd_tls: None,
            etcd_user: None,
        };
        let cluster = format!("{:?}", options.cluster().unwrap());
        for part in [
            r#"endpoints: ["http://e1:2379", "http://e2:2379"]"#,
            r#"name: "app""#,
            r#"node_id: Some("n1")"#,
            "lease_ttl: 2s",
        ] {
            assert!(cluster.contains(part), "{part} in {cluster}");
        }
        // Unset, the library's defaults: a random node ID, and the constants of the usage.
        let defaults = format!(
            "{:?}",
            ClusterOptions {
                etcd: vec!["http://e1:2379".into()],
                node_id: None,
                lease_ttl: None,
                name: None,
                etcd_tls: None,
                etcd_user: None,
            }
            .cluster()
            .unwrap()
        );
        for part in [
            "node_id: None".to_owned(),
            format!("name: {DEFAULT_CLUSTER_NAME:?}"),
            format!("lease_ttl: {DEFAULT_LEASE_TTL:?}"),
        ] {
            assert!(defaults.contains(&part), "{part} in {defaults}");
        }
    }

    #[test]
    fn etcd_flags_and_environment() {
        let node = [
            "--postgres",
            "postgres://a@b/c",
            "--listen",
            "127.0.0.1:7001",
        ];
        let https = ["--cluster", "https://e1:2379,https://e2:2379"];
        let etcd = |args: &[&'static str], env: &[(&str, &str)]| {
            let cluster = run(&COUNTER, &join(&[&node, args]), env)
                .unwrap()
                .cluster
                .expect("a cluster node");
            (cluster.etcd_tls, cluster.etcd_user)
        };
        let tls = |ca: &str, identity: Option<(&str, &str)>| {
            Some(EtcdTlsOptions {
                ca: ca.into(),
                identity: identity.map(|(cert, key)| (cert.into(), key.into())),
            })
        };
        let user = |name: &str, password: &str| {
            Some(EtcdUser {
                name: name.into(),
                password: password.into(),
            })
        };
        let password = [(ETCD_PASSWORD, "pw")];
        let env = [
            ("DURABLE_CLUSTER", "https://e:2379"),
            ("DURABLE_ETCD_CA", "env-ca.pem"),
            ("DURABLE_ETCD_CERT", "env.pem"),
            ("DURABLE_ETCD_KEY", "env.key"),
            ("DURABLE_ETCD_USER", "env-user"),
            (ETCD_PASSWORD, "env pw"),
        ];
        // The arguments, the environment, the TLS and the user.
        type Case<'a> = (
            Vec<&'static str>,
            &'a [(&'static str, &'static str)],
            (Option<EtcdTlsOptions>, Option<EtcdUser>),
        );
        let cases: Vec<Case<'_>> = vec![
            // Plaintext, as before.
            (join(&[&["--cluster", "http://e:2379"]]), &[], (None, None)),
            // TLS: the CA alone, or with a client certificate.
            (
                join(&[&https, &["--etcd-ca", "ca.pem"]]),
                &[],
                (tls("ca.pem", None), None),
            ),
            (
                join(&[
                    &https,
                    &[
                        "--etcd-ca=ca.pem",
                        "--etcd-cert",
                        "n.pem",
                        "--etcd-key",
                        "n.key",
                    ],
                ]),
                &[],
                (tls("ca.pem", Some(("n.pem", "n.key"))), None),
            ),
            // A user, its password from the environment.
            (
                join(&[&["--cluster", "http://e:2379", "--etcd-user", "node"]]),
                &password,
                (None, user("node", "pw")),
            ),
            // All of it from the environment.
            (
                vec![],
                &env,
                (
                    tls("env-ca.pem", Some(("env.pem", "env.key"))),
                    user("env-user", "env pw"),
                ),
            ),
            // A flag wins over its variable.
            (
                join(&[&["--etcd-key", "n.key", "--etcd-user", "node"]]),
                &env,
                (
                    tls("env-ca.pem", Some(("env.pem", "n.key"))),
                    user("node", "env pw"),
                ),
            ),
        ];
        for (args, env, expected) in cases {
            assert_eq!(etcd(&args, env), expected, "{args:?} {env:?}");
        }
        // Empty variables are unset.
        let empty = [
            ("DURABLE_ETCD_CA", ""),
            ("DURABLE_ETCD_CERT", ""),
            ("DURABLE_ETCD_KEY", ""),
            ("DURABLE_ETCD_USER", ""),
            (ETCD_PASSWORD, ""),
        ];
        assert_eq!(etcd(&["--cluster", "http://e:2379"], &empty), (None, None));
        // The password never shows in the options' Debug.
        let options = run(&COUNTER, &join(&[&node]), &env).unwrap();
        let shown = format!("{options:?}");
        assert!(shown.contains(r#"name: "env-user""#), "{shown}");
        assert!(!shown.contains("env pw"), "{shown}");
    }

    #[test]
    fn etcd_misuse_is_explained() {
        let node = [
            "--postgres",
            "postgres://a@b/c",
            "--listen",
            "127.0.0.1:7001",
        ];
        let http = ["--cluster", "http://e:2379"];
        let https = ["--cluster", "https://e:2379"];
        let pair = |missing: &str| {
            format!(
                "`--etcd-cert FILE` and `--etcd-key FILE` go together (the client certificate \
                 etcd's --client-cert-auth asks for, and its key): {missing}"
            )
        };
        let not_a_node = |flag: &str, variable: &str| {
            format!(
                "`{flag}` (or {variable}) is for a cluster node: it needs `--cluster ETCD_URLS`"
            )
        };
        const PASSWORD: &[(&str, &str)] = &[(ETCD_PASSWORD, "pw")];
        // The arguments, the environment, the message.
        type Case = (
            Vec<&'static str>,
            &'static [(&'static str, &'static str)],
            String,
        );
        let cases: Vec<Case> = vec![
            // Not a cluster node.
            (
                join(&[&node, &["--etcd-ca", "ca.pem"]]),
                &[],
                not_a_node("--etcd-ca", "DURABLE_ETCD_CA"),
            ),
            (
                join(&[&node, &["--etcd-cert", "n.pem"]]),
                &[],
                not_a_node("--etcd-cert", "DURABLE_ETCD_CERT"),
            ),
            (
                join(&[&node]),
                &[("DURABLE_ETCD_KEY", "n.key")],
                not_a_node("--etcd-key", "DURABLE_ETCD_KEY"),
            ),
            (
                join(&[&node, &["--etcd-user", "node"]]),
                &[],
                not_a_node("--etcd-user", "DURABLE_ETCD_USER"),
            ),
            (
                join(&[&node]),
                PASSWORD,
                "DURABLE_ETCD_PASSWORD is for a cluster node's etcd user: it needs `--cluster \
                 ETCD_URLS` and `--etcd-user NAME`"
                    .into(),
            ),
            // TLS goes with https:// endpoints, all of them.
            (
                join(&[&node, &https]),
                &[],
                "the etcd endpoint https://e:2379 is https://: give the CA of etcd's \
                 certificate with `--etcd-ca FILE`"
                    .into(),
            ),
            (
                join(&[&node, &http, &["--etcd-ca", "ca.pem"]]),
                &[],
                "`--etcd-ca` is for TLS to etcd, but the etcd endpoint http://e:2379 is not \
                 https://: write it https://host:port"
                    .into(),
            ),
            (
                join(&[
                    &node,
                    &[
                        "--cluster",
                        "https://e1:2379,e2:2379",
                        "--etcd-ca",
                        "ca.pem",
                    ],
                ]),
                &[],
                "`--etcd-ca` is for TLS to etcd, but the etcd endpoint e2:2379 is not \
                 https://: write it https://host:port"
                    .into(),
            ),
            // A client certificate: both files, and the CA.
            (
                join(&[
                    &node,
                    &https,
                    &["--etcd-ca", "ca.pem", "--etcd-cert", "n.pem"],
                ]),
                &[],
                pair("`--etcd-key` is missing"),
            ),
            (
                join(&[&node, &https, &["--etcd-ca", "ca.pem"]]),
                &[("DURABLE_ETCD_KEY", "n.key")],
                pair("`--etcd-cert` is missing"),
            ),
            (
                join(&[
                    &node,
                    &https,
                    &["--etcd-cert", "n.pem", "--etcd-key", "n.key"],
                ]),
                &[],
                "`--etcd-cert` and `--etcd-key` need `--etcd-ca FILE`: the client certificate \
                 goes over TLS, which needs the CA of etcd's certificate"
                    .into(),
            ),
            // A user and its password, only from the environment.
            (
                join(&[&node, &http, &["--etcd-user", "node"]]),
                &[],
                "`--etcd-user` needs its password in the environment variable \
                 DURABLE_ETCD_PASSWORD (never a flag: anyone on the machine could read it in \
                 the process list)"
                    .into(),
            ),
            (
                join(&[&node, &http]),
                PASSWORD,
                "DURABLE_ETCD_PASSWORD is the password of an etcd user: give the user with \
                 `--etcd-user NAME` (or DURABLE_ETCD_USER)"
                    .into(),
            ),
            (
                join(&[
                    &node,
                    &http,
                    &["--etcd-user", "node", "--etcd-password", "pw"],
                ]),
                &[],
                "`--etcd-password` is not a flag (anyone on the machine could read it in the \
                 process list): put the password in the environment variable \
                 DURABLE_ETCD_PASSWORD"
                    .into(),
            ),
            // Blank values.
            (
                join(&[&node, &http, &["--etcd-user", " "]]),
                PASSWORD,
                "`--etcd-user` cannot be blank".into(),
            ),
            (
                join(&[&node, &https, &["--etcd-ca="]]),
                &[],
                "`--etcd-ca` cannot be blank".into(),
            ),
            (
                join(&[&node, &https, &["--etcd-ca"]]),
                &[],
                "`--etcd-ca` needs a value".into(),
            ),
        ];
        for (args, env, message) in cases {
            assert_eq!(
                run(&CHAT, &args, env).unwrap_err(),
                message,
                "{args:?} {env:?}"
            );
        }
    }

    #[test]
    fn etcd_options_make_the_runtimes_cluster_or_say_which_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let ca = durable_tests::certs::Ca::new("cli test etcd CA");
        let (cert, key) = ca.node(&["n1"]);
        std::fs::write(path("node.pem"), cert).unwrap();
        std::fs::write(path("node.key"), key).unwrap();
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        let options =
            |ca: &str, identity: Option<(&str, &str)>, user: Option<&str>| ClusterOptions {
                etcd: vec!["https://e:2379".into()],
                node_id: None,
                lease_ttl: None,
                name: None,
                etcd_tls: Some(EtcdTlsOptions {
                    ca: path(ca),
                    identity: identity.map(|(cert, key)| (path(cert), path(key))),
                }),
                etcd_user: user.map(|name| EtcdUser {
                    name: name.into(),
                    password: "s3cret".into(),
                }),
            };
        let full = options("ca.pem", Some(("node.pem", "node.key")), Some("node"));
        let cluster = format!("{:?}", full.cluster().unwrap());
        assert!(
            cluster.contains(
                r#"EtcdAccess { tls: true, client_certificate: true, user: Some("node") }"#
            ),
            "{cluster}"
        );
        assert!(!cluster.contains("s3cret"), "{cluster}");
        assert_eq!(
            full.describe_etcd_access(),
            " (TLS with a client certificate, as user `node`)"
        );
        let ca_only = options("ca.pem", None, None);
        assert!(format!("{:?}", ca_only.cluster().unwrap())
            .contains("EtcdAccess { tls: true, client_certificate: false, user: None }"));
        assert_eq!(ca_only.describe_etcd_access(), " (TLS)");
        // A file that cannot be read is named.
        let missing = path("missing.pem").display().to_string();
        for (options, start) in [
            (
                options("missing.pem", None, None),
                format!("cannot read the etcd CA certificate (--etcd-ca) {missing}: "),
            ),
            (
                options("ca.pem", Some(("missing.pem", "node.key")), None),
                format!("cannot read the etcd client certificate (--etcd-cert) {missing}: "),
            ),
            (
                options("ca.pem", Some(("node.pem", "missing.pem")), None),
                format!("cannot read the etcd client key (--etcd-key) {missing}: "),
            ),
        ] {
            let err = options.cluster().unwrap_err();
            assert!(err.starts_with(&start), "{err}\nshould start with\n{start}");
        }
    }

    #[test]
    fn tls_flags_and_environment() {
        let node = |cert: &str, key: &str, ca: &str| {
            Some(TlsOptions::Node {
                cert: cert.into(),
                key: key.into(),
                ca: ca.into(),
            })
        };
        let client = |ca: &str| Some(TlsOptions::Client { ca: ca.into() });
        let listen = ["--listen", "127.0.0.1:7001"];
        let connect = ["--connect", "127.0.0.1:7001"];
        let all = [
            "--tls-cert",
            "n.pem",
            "--tls-key=n.key",
            "--tls-ca",
            "ca.pem",
        ];
        let env = [
            ("DURABLE_TLS_CERT", "env.pem"),
            ("DURABLE_TLS_KEY", "env.key"),
            ("DURABLE_TLS_CA", "env-ca.pem"),
        ];
        let env_ca = [("DURABLE_TLS_CA", "env-ca.pem")];
        let empty = [
            ("DURABLE_TLS_CERT", ""),
            ("DURABLE_TLS_KEY", ""),
            ("DURABLE_TLS_CA", ""),
        ];
        // The arguments, the environment, the TLS options.
        type Case<'a> = (
            Vec<&'static str>,
            &'a [(&'static str, &'static str)],
            Option<TlsOptions>,
        );
        let cases: Vec<Case<'_>> = vec![
            // An object server, a front end, without TLS.
            (join(&[&listen]), &[], None),
            (join(&[&connect]), &[], None),
            (join(&[&listen]), &empty, None),
            // A server: all three.
            (
                join(&[&listen, &all]),
                &[],
                node("n.pem", "n.key", "ca.pem"),
            ),
            (
                join(&[&listen]),
                &env,
                node("env.pem", "env.key", "env-ca.pem"),
            ),
            // A flag wins over its variable.
            (
                join(&[&listen, &["--tls-key", "n.key"]]),
                &env,
                node("env.pem", "n.key", "env-ca.pem"),
            ),
            // A front end: the CA alone, or a node's three files.
            (
                join(&[&connect, &["--tls-ca", "ca.pem"]]),
                &[],
                client("ca.pem"),
            ),
            (join(&[&connect]), &env_ca, client("env-ca.pem")),
            (
                join(&[&connect, &all]),
                &[],
                node("n.pem", "n.key", "ca.pem"),
            ),
            (
                join(&[&connect]),
                &env,
                node("env.pem", "env.key", "env-ca.pem"),
            ),
        ];
        for program in [&COUNTER, &CHAT] {
            for (args, env, expected) in &cases {
                assert_eq!(
                    run(program, args, env).unwrap().tls,
                    *expected,
                    "{args:?} {env:?}"
                );
            }
        }
        // A cluster node listens: TLS as a server's.
        let cluster_node = [
            "--cluster",
            "http://e:2379",
            "--postgres",
            "postgres://a@b/c",
        ];
        let options = run(&COUNTER, &join(&[&cluster_node, &listen, &all]), &[]).unwrap();
        assert!(options.cluster.is_some());
        assert_eq!(options.tls, node("n.pem", "n.key", "ca.pem"));
    }

    #[test]
    fn tls_misuse_is_explained() {
        let listen = ["--listen", "127.0.0.1:7001"];
        let connect = ["--connect", "127.0.0.1:7001"];
        let cluster_node = [
            "--cluster",
            "http://e:2379",
            "--postgres",
            "postgres://a@b/c",
            "--listen",
            "127.0.0.1:7001",
        ];
        let nothing = |flag: &str, variable: &str| {
            format!(
                "`{flag}` (or {variable}) is for TLS between runtimes: it needs `--listen ADDR` \
                 or `--connect ADDR` (without them there is no connection to encrypt)"
            )
        };
        let listener = |missing: &str| {
            format!(
                "`--listen` over TLS needs `--tls-cert FILE`, `--tls-key FILE` and `--tls-ca \
                 FILE` (the certificate it presents, its key, and the CA): {missing}"
            )
        };
        let no_ca = "`--connect` over TLS needs `--tls-ca FILE`: the CA that the object \
                     server's certificate chains to"
            .to_owned();
        let half_pair = |missing: &str| {
            format!(
                "`--connect` over TLS takes `--tls-ca` alone, or all three of `--tls-cert`, \
                 `--tls-key` and `--tls-ca`: {missing}"
            )
        };
        // The arguments, the environment, the message.
        type Case = (
            Vec<&'static str>,
            &'static [(&'static str, &'static str)],
            String,
        );
        let cases: Vec<Case> = vec![
            // Nothing to encrypt: no --listen, no --connect.
            (
                vec![
                    "--tls-cert",
                    "n.pem",
                    "--tls-key",
                    "n.key",
                    "--tls-ca",
                    "ca.pem",
                ],
                &[],
                nothing("--tls-cert", "DURABLE_TLS_CERT"),
            ),
            (
                vec!["--tls-key", "n.key"],
                &[],
                nothing("--tls-key", "DURABLE_TLS_KEY"),
            ),
            (
                vec![],
                &[("DURABLE_TLS_CA", "ca.pem")],
                nothing("--tls-ca", "DURABLE_TLS_CA"),
            ),
            // A listener needs all three, and says which are missing.
            (
                join(&[&listen, &["--tls-cert", "n.pem", "--tls-ca", "ca.pem"]]),
                &[],
                listener("`--tls-key` is missing"),
            ),
            (
                join(&[&listen, &["--tls-key", "n.key", "--tls-ca", "ca.pem"]]),
                &[],
                listener("`--tls-cert` is missing"),
            ),
            (
                join(&[&listen, &["--tls-cert", "n.pem", "--tls-key", "n.key"]]),
                &[],
                listener("`--tls-ca` is missing"),
            ),
            (
                join(&[&listen, &["--tls-ca", "ca.pem"]]),
                &[],
                listener("`--tls-cert` and `--tls-key` are missing"),
            ),
            (
                join(&[&listen, &["--tls-cert", "n.pem"]]),
                &[],
                listener("`--tls-key` and `--tls-ca` are missing"),
            ),
            (
                join(&[&listen]),
                &[("DURABLE_TLS_KEY", "n.key")],
                listener("`--tls-cert` and `--tls-ca` are missing"),
            ),
            // A cluster node listens.
            (
                join(&[&cluster_node, &["--tls-ca", "ca.pem"]]),
                &[],
                listener("`--tls-cert` and `--tls-key` are missing"),
            ),
            // A front end needs the CA, and takes the certificate and key only together.
            (
                join(&[&connect, &["--tls-cert", "n.pem", "--tls-key", "n.key"]]),
                &[],
                no_ca.clone(),
            ),
            (join(&[&connect, &["--tls-key", "n.key"]]), &[], no_ca),
            (
                join(&[&connect, &["--tls-cert", "n.pem", "--tls-ca", "ca.pem"]]),
                &[],
                half_pair("`--tls-key` is missing"),
            ),
            (
                join(&[&connect, &["--tls-ca", "ca.pem"]]),
                &[("DURABLE_TLS_KEY", "n.key")],
                half_pair("`--tls-cert` is missing"),
            ),
            // Blank paths.
            (
                join(&[&listen, &["--tls-cert=", "--tls-key", "k", "--tls-ca", "c"]]),
                &[],
                "`--tls-cert` cannot be blank".into(),
            ),
            (
                join(&[&connect, &["--tls-ca", " "]]),
                &[],
                "`--tls-ca` cannot be blank".into(),
            ),
            (
                join(&[&connect, &["--tls-ca"]]),
                &[],
                "`--tls-ca` needs a value".into(),
            ),
        ];
        for (args, env, message) in cases {
            assert_eq!(
                run(&COUNTER, &args, env).unwrap_err(),
                message,
                "{args:?} {env:?}"
            );
        }
    }

    #[test]
    fn tls_options_make_the_runtimes_tls_or_say_which_file_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let ca = durable_tests::certs::Ca::new("cli test CA");
        let (cert, key) = ca.node(&["127.0.0.1"]);
        std::fs::write(path("node.pem"), cert).unwrap();
        std::fs::write(path("node.key"), key).unwrap();
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        std::fs::write(path("garbage.pem"), "not a certificate").unwrap();
        let node = |cert: &str, key: &str, ca: &str| TlsOptions::Node {
            cert: path(cert),
            key: path(key),
            ca: path(ca),
        };
        let client = |ca: &str| TlsOptions::Client { ca: path(ca) };
        let tls = |options: TlsOptions| format!("{:?}", options.tls().unwrap());
        assert!(tls(node("node.pem", "node.key", "ca.pem")).contains("server: true"));
        assert!(tls(client("ca.pem")).contains("server: false"));
        // The runtime's configuration errors, naming the file.
        let missing = path("missing.pem").display().to_string();
        for (options, start) in [
            (
                node("missing.pem", "node.key", "ca.pem"),
                format!(
                    "runtime configuration: TLS: cannot read the certificate chain {missing}: "
                ),
            ),
            (
                node("node.pem", "missing.pem", "ca.pem"),
                format!("runtime configuration: TLS: cannot read the private key {missing}: "),
            ),
            (
                node("node.pem", "node.key", "missing.pem"),
                format!("runtime configuration: TLS: cannot read the CA certificate {missing}: "),
            ),
            (
                client("missing.pem"),
                format!("runtime configuration: TLS: cannot read the CA certificate {missing}: "),
            ),
            (
                client("garbage.pem"),
                "runtime configuration: TLS: no certificate in the CA".to_owned(),
            ),
            (
                node("node.pem", "ca.pem", "ca.pem"),
                "runtime configuration: TLS: no usable private key".to_owned(),
            ),
        ] {
            let err = options.tls().unwrap_err();
            assert!(err.starts_with(&start), "{err}\nshould start with\n{start}");
        }
    }

    #[test]
    fn postgres_urls_are_logged_without_their_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact("host=db user=app"), "host=db user=app");
        assert_eq!(
            redact("postgres://db/app?user=app&password=s3cret&sslmode=require"),
            "postgres://db/app?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact("host=db PASSWORD = 's3 c\\'ret' user=app"),
            "host=db PASSWORD = '***' user=app"
        );
        assert_eq!(redact("password=s3cret"), "password=***");
        assert_eq!(redact("password='unclosed"), "password='***'");
        // Words that merely contain the key, and the key without a value, stay as they are.
        assert_eq!(redact("host=db mypassword=x"), "host=db mypassword=x");
        assert_eq!(redact("user=password host=db"), "user=password host=db");
        assert_eq!(
            redact("postgres://app:pw@db/app?password=other"),
            "postgres://app:***@db/app?password=***"
        );
        let options = run(&COUNTER, &["--postgres", "postgres://a@b/c"], &[]).unwrap();
        assert_eq!(options.postgres.as_deref(), Some("postgres://a@b/c"));
        let env = [("DURABLE_POSTGRES", "postgres://env@b/c")];
        assert_eq!(
            run(&COUNTER, &[], &env).unwrap().postgres.as_deref(),
            Some("postgres://env@b/c")
        );
    }
}
