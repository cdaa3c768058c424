//! The seed's counter in two processes over TLS, as the README runs it: an object server
//! (`--listen` with `--tls-cert`, `--tls-key`, `--tls-ca`) and a front end (`--connect` with
//! `--tls-ca`), both the real example binary, on loopback, with certificates made for the
//! test.
//!
//! The front end's increments reach the server's counters; a front end without TLS, or one
//! that trusts another CA, is refused and its calls fail (the count stays where it was); a
//! server whose certificate file cannot be read does not start, and says why. And two
//! cluster nodes (a private etcd and PostgreSQL) forward calls to each other over TLS, as
//! the README's "Encrypted between nodes" runs them.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{assert_json, assert_text, count, free_addr, send, Process};
use durable_tests::certs::Ca;
use durable_tests::etcd::EtcdServer;
use durable_tests::postgres::PgServer;

/// The secret the server and its front ends share.
const SECRET: &str = "s3cret";

/// A `counter` process whose stderr (logs at `info`) goes to a file.
struct Counter {
    process: Process,
    log: PathBuf,
}

impl Counter {
    /// Starts the counter with `args` and nothing from the test's `DURABLE_*` environment,
    /// logging into `log`.
    fn start(args: &[&str], log: impl Into<PathBuf>) -> Counter {
        let log = log.into();
        let mut command = Command::new(common::example_binary("counter"));
        for (name, _) in std::env::vars() {
            if name.starts_with("DURABLE_") {
                command.env_remove(name);
            }
        }
        let stderr = File::create(&log).expect("the counter's log file");
        let child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the counter example");
        Counter {
            process: Process(child),
            log,
        }
    }

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it answers HTTP on `http`; panics with its log if it exits first.
    async fn wait_up(&mut self, http: SocketAddr) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(http).await.is_err() {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                panic!("the counter exited ({status}):\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the counter does not answer on {http}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for it to exit by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the counter is still running:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The PEM files of a CA and of a node certificate for 127.0.0.1 it signed: `ca.pem`,
/// `node.pem`, `node.key` in `dir`; and `other-ca.pem`, a CA that signed nothing here.
fn write_certificates(dir: &Path) {
    let ca = Ca::new("durable examples test CA");
    let (cert, key) = ca.node(&["127.0.0.1"]);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("node.pem"), cert).unwrap();
    std::fs::write(dir.join("node.key"), key).unwrap();
    std::fs::write(dir.join("other-ca.pem"), Ca::new("another CA").pem()).unwrap();
}

#[tokio::test]
async fn a_front_end_reaches_the_object_server_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (data, ca, cert, key, other_ca) = (
        file("data"),
        file("ca.pem"),
        file("node.pem"),
        file("node.key"),
        file("other-ca.pem"),
    );
    let (objects, server_http, front_http) = (free_addr(), free_addr(), free_addr());
    let (objects_s, server_http_s, front_http_s) = (
        objects.to_string(),
        server_http.to_string(),
        front_http.to_string(),
    );
    let mut server = Counter::start(
        &[
            "--addr",
            &server_http_s,
            "--data-dir",
            &data,
            "--listen",
            &objects_s,
            "--secret",
            SECRET,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
        ],
        file("server.log"),
    );
    let front_end = |http: &str, tls: &[&str], log: &str| {
        let args = [
            &["--addr", http, "--connect", &objects_s, "--secret", SECRET][..],
            tls,
        ]
        .concat();
        Counter::start(&args, file(log))
    };
    let mut front = front_end(&front_http_s, &["--tls-ca", &ca], "front.log");
    server.wait_up(server_http).await;
    front.wait_up(front_http).await;
    let serving =
        format!("object server: serving counters to other processes on {objects} over TLS");
    assert!(server.log().contains(&serving), "{}", server.log());
    let calling = format!("front end: holding no counters; every call goes to {objects} over TLS");
    assert!(front.log().contains(&calling), "{}", front.log());

    // The front end's increments are the server's counters.
    assert_text(
        &send(front_http, "GET", "/increment?name=A").await,
        200,
        &count("A", 1),
    );
    assert_text(
        &send(server_http, "GET", "/increment?name=A").await,
        200,
        &count("A", 2),
    );
    assert_json(&send(front_http, "POST", "/A/increment").await, 3);
    assert_text(
        &send(front_http, "GET", "/?name=A").await,
        200,
        &count("A", 3),
    );

    // A front end speaking plain TCP to the TLS server, and one trusting another CA: the
    // server refuses them (`Unauthenticated`: not retryable, so 500 rather than 503), their
    // logs say why, and they count nothing.
    for (name, tls, why) in [
        (
            "plain",
            &[][..],
            "counter call failed error=unauthenticated: the handshake with {objects} failed: \
             the server speaks TLS and this runtime does not",
        ),
        (
            "other-ca",
            &["--tls-ca", other_ca.as_str()][..],
            "counter call failed error=unauthenticated: TLS with {objects} failed: invalid \
             peer certificate: UnknownIssuer",
        ),
    ] {
        let why = why.replace("{objects}", &objects_s);
        let http = free_addr();
        let mut refused = front_end(&http.to_string(), tls, &format!("{name}.log"));
        refused.wait_up(http).await;
        assert_text(
            &send(http, "GET", "/increment?name=A").await,
            500,
            "Internal Server Error",
        );
        assert!(
            refused.log().contains(&why),
            "{name}: no {why:?} in\n{}",
            refused.log()
        );
    }
    assert_text(
        &send(front_http, "GET", "/?name=A").await,
        200,
        &count("A", 3),
    );
}

#[tokio::test]
async fn a_server_whose_tls_files_are_wrong_does_not_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (data, ca, cert, key, missing) = (
        file("data"),
        file("ca.pem"),
        file("node.pem"),
        file("node.key"),
        file("missing.pem"),
    );
    let (objects, http) = (free_addr().to_string(), free_addr().to_string());
    let server = |tls: &[&str], log: &str| {
        let args = [
            &["--addr", &http, "--data-dir", &data, "--listen", &objects][..],
            &["--secret", SECRET],
            tls,
        ]
        .concat();
        Counter::start(&args, file(log))
    };

    // An unreadable certificate: the runtime's configuration error, and exit status 1.
    let mut unreadable = server(
        &["--tls-cert", &missing, "--tls-key", &key, "--tls-ca", &ca],
        "unreadable.log",
    );
    assert_eq!(
        unreadable.wait_exit().code(),
        Some(1),
        "{}",
        unreadable.log()
    );
    let why = format!(
        "cannot open the runtime on {data}: runtime configuration: TLS: cannot read the \
         certificate chain {missing}: "
    );
    assert!(
        unreadable.log().contains(&why),
        "no {why:?} in\n{}",
        unreadable.log()
    );

    // A key without its certificate: a usage error, exit status 2, naming what is missing.
    let mut partial = server(&["--tls-key", &key, "--tls-ca", &ca], "partial.log");
    assert_eq!(partial.wait_exit().code(), Some(2), "{}", partial.log());
    let why = "counter: `--listen` over TLS needs `--tls-cert FILE`, `--tls-key FILE` and \
               `--tls-ca FILE` (the certificate it presents, its key, and the CA): \
               `--tls-cert` is missing\n\nusage: counter ";
    assert!(
        partial.log().starts_with(why),
        "no {why:?} in\n{}",
        partial.log()
    );

    // The same flags, complete: it starts.
    let mut complete = server(
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
        "complete.log",
    );
    complete.wait_up(http.parse().unwrap()).await;
}

/// Increments counter `name` through the node answering HTTP on `http`, retrying while it
/// answers 503 (a shard between owners as the nodes join); returns the new value.
async fn increment(http: SocketAddr, name: &str, node: &Counter) -> i64 {
    let start = Instant::now();
    loop {
        let reply = send(http, "POST", &format!("/{name}/increment")).await;
        if reply.status == 200 {
            let body: serde_json::Value = serde_json::from_str(reply.body()).unwrap();
            return body["value"].as_i64().expect("a value");
        }
        assert_eq!(reply.status, 503, "{reply:?}\n{}", node.log());
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "counter {name} unavailable through {http} for 30 s:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cluster_nodes_forward_calls_to_each_other_over_tls() {
    let etcd = EtcdServer::start();
    let pg = PgServer::start();
    pg.create_database("counters");
    let postgres = pg.url("counters");
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("node.pem"), file("node.key"));
    // Two nodes with the same certificate (for 127.0.0.1: a certificate names hosts, not
    // ports).
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let (http, listen) = (free_addr(), free_addr());
        let (http_s, listen_s) = (http.to_string(), listen.to_string());
        let node = Counter::start(
            &[
                "--cluster",
                &etcd.endpoint(),
                "--postgres",
                &postgres,
                "--secret",
                SECRET,
                "--node-id",
                id,
                "--addr",
                &http_s,
                "--listen",
                &listen_s,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-ca",
                &ca,
            ],
            file(&format!("{id}.log")),
        );
        nodes.push((node, http, listen));
    }
    for (node, http, listen) in &mut nodes {
        node.wait_up(*http).await;
        let line = format!("serving the other nodes on {listen} over TLS");
        assert!(node.log().contains(&line), "no {line:?} in\n{}", node.log());
    }

    // Each counter is owned by one node and incremented through both: the other node
    // forwards its calls to the owner, over TLS.
    let names = ["A", "B", "C", "D", "E"];
    for round in 0..2 {
        for name in names {
            for (i, (node, http, _)) in nodes.iter().enumerate() {
                let expected = (round * nodes.len() + i + 1) as i64;
                assert_eq!(
                    increment(*http, name, node).await,
                    expected,
                    "counter {name} through {http}"
                );
            }
        }
    }
    for (node, http, _) in &nodes {
        for name in names {
            let reply = send(*http, "GET", &format!("/{name}/value")).await;
            assert_eq!(reply.body(), "{\"value\":4}", "{name}:\n{}", node.log());
        }
    }
}
