//! The counter as a cluster node whose connection to etcd is encrypted and authenticated, as
//! the README runs it: the real binary with `--etcd-ca`, `--etcd-cert`, `--etcd-key` and
//! `--etcd-user` (the password in `DURABLE_ETCD_PASSWORD`), against a private etcd that serves
//! TLS, asks for client certificates and has authentication enabled, and a private
//! PostgreSQL.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{count, free_addr, send, wait_listening, Process};
use durable_tests::certs::Ca;
use durable_tests::etcd::{EtcdServer, EtcdTls};
use durable_tests::postgres::PgServer;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, Permission, TlsOptions};

/// How long the node may take to start, or to exit when etcd refuses it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A counter node: its HTTP address and its log.
struct Node {
    http: SocketAddr,
    log: PathBuf,
    process: Process,
}

impl Node {
    /// Starts the counter as node `n1` of the cluster at `etcd`, with the TLS files in `dir`
    /// and `password` for etcd user `counter`; its log goes to `dir/<log>`.
    fn start(etcd: &str, postgres: &str, dir: &Path, password: &str, log: &str) -> Node {
        let (http, listen) = (free_addr(), free_addr());
        let log = dir.join(log);
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let mut command = Command::new(common::example_binary("counter"));
        // Nothing from the test's environment: only these flags and the password.
        for (name, _) in std::env::vars() {
            if name.starts_with("DURABLE_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["--cluster", etcd, "--node-id", "n1", "--postgres", postgres])
            .args(["--listen", &listen.to_string(), "--secret", "s3cret"])
            .args(["--addr", &http.to_string()])
            .args(["--etcd-ca", &file("etcd-ca.crt")])
            .args([
                "--etcd-cert",
                &file("node.crt"),
                "--etcd-key",
                &file("node.key"),
            ])
            .args(["--etcd-user", "counter"])
            .env("DURABLE_ETCD_PASSWORD", password)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("the node's log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start the counter: {e}"));
        Node {
            http,
            log,
            process: Process(child),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Increments counter `name` through `node`, waiting out 503s (the node still taking its
/// shards); returns the reply's body.
async fn increment(node: &Node, name: &str) -> String {
    let start = Instant::now();
    loop {
        let reply = send(node.http, "GET", &format!("/increment?name={name}")).await;
        match reply.status {
            200 => return reply.body().to_owned(),
            503 if start.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => panic!("{reply:?}; the node's log:\n{}", node.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_node_reaches_etcd_over_tls_with_a_client_certificate_and_a_password() {
    let (etcd_ca, clients) = (Ca::new("etcd CA"), Ca::new("etcd clients' CA"));
    let (cert_pem, key_pem) = etcd_ca.node(&["127.0.0.1"]);
    let etcd = EtcdServer::start_tls(EtcdTls {
        cert_pem,
        key_pem,
        client_ca_pem: Some(clients.pem()),
    });
    let endpoint = etcd.endpoint();
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = clients.node(&["n1"]);
    std::fs::write(dir.path().join("etcd-ca.crt"), etcd_ca.pem()).unwrap();
    std::fs::write(dir.path().join("node.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("node.key"), &key).unwrap();

    // Authentication: root, and the node's user with read and write on the cluster's keys.
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(etcd_ca.pem()))
        .identity(Identity::from_pem(&cert, &key));
    let mut admin = Client::connect(
        [endpoint.clone()],
        Some(ConnectOptions::new().with_tls(tls)),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
    admin.user_add("root", "root pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("durable").await.unwrap();
    let keys = Permission::read_write("durable/").with_prefix();
    admin.role_grant_permission("durable", keys).await.unwrap();
    admin.user_add("counter", "counter pw", None).await.unwrap();
    admin.user_grant_role("counter", "durable").await.unwrap();
    admin.auth_enable().await.unwrap();

    // A wrong password: the node exits at start, saying why.
    let postgres = pg.url("postgres");
    let mut refused = Node::start(&endpoint, &postgres, dir.path(), "wrong", "refused.log");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = refused.process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "still running with a wrong password; its log:\n{}",
            refused.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "{status}");
    let log = refused.log();
    assert!(
        log.contains(&format!("etcd at {endpoint}: refused user `counter`")),
        "{log}"
    );

    // The right one: the node joins over TLS, logged in, and counts.
    let node = Node::start(&endpoint, &postgres, dir.path(), "counter pw", "n1.log");
    wait_listening(node.http).await;
    assert_eq!(increment(&node, "A").await, count("A", 1));
    assert_eq!(increment(&node, "A").await, count("A", 2));
    let log = node.log();
    assert!(
        log.contains(&format!(
            "etcd {endpoint} (TLS with a client certificate, as user `counter`)"
        )),
        "{log}"
    );
    assert!(!log.contains("counter pw"), "{log}");
    assert!(node.process.terminate(PATIENCE).success());
}
