//! TLS between runtimes (DESIGN.md "Cluster mode", point 7; `RuntimeBuilder::tls`): calls
//! cross TLS unchanged, and every mismatch — a peer without TLS, a certificate the CA did
//! not sign, a wrong secret inside TLS, a peer that never finishes its handshake — is
//! refused clearly, without holding up anyone else. Certificates are made here with rcgen:
//! a CA, a certificate for 127.0.0.1 signed by it, and an unrelated second CA.

use std::time::{Duration, Instant};

use durable_runtime::{durable_object, ErrorKind, Result, Runtime, Tls};
use durable_tests::certs::Ca;
use durable_tests::{within, Counter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "a test secret";

/// An object that sends and takes large values (frames over many TLS records).
#[durable_object]
pub struct Blobs {}

#[durable_object]
impl Blobs {
    pub fn new(_ctx: durable_runtime::Context) -> Self {
        Blobs {}
    }

    pub async fn length(&self, bytes: Vec<u8>) -> Result<usize> {
        Ok(bytes.len())
    }

    pub async fn blob(&self, len: usize) -> Result<Vec<u8>> {
        Ok((0..len).map(|i| i as u8).collect())
    }
}

/// A server on loopback (in memory), over TLS when `tls` is given.
fn server(tls: Option<Tls>) -> Runtime {
    let mut builder = Runtime::builder()
        .in_memory()
        .register::<Counter>()
        .register::<Blobs>()
        .listen("127.0.0.1:0")
        .secret(SECRET);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.open().expect("open the server")
}

/// A runtime connected to `server`, over TLS when `tls` is given.
fn front(server: &Runtime, tls: Option<Tls>, secret: &str) -> Runtime {
    let addr = server.local_addr().expect("the server listens");
    let mut builder = Runtime::builder().connect(addr.to_string()).secret(secret);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.open().expect("open the connected runtime")
}

/// The error of one call through `front`, which must fail within a moment.
async fn refused(front: &Runtime) -> durable_runtime::Error {
    let stub = front.namespace::<Counter>().get_by_name("x");
    match tokio::time::timeout(durable_tests::GENEROUS, stub.increment(1)).await {
        Ok(Ok(v)) => panic!("the call went through: {v}"),
        Ok(Err(e)) => e,
        Err(_) => panic!("the call hung"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tls_returns_what_it_returns_locally() {
    let ca = Ca::new("test CA");
    let server = server(Some(ca.node_tls()));
    // A front end that only connects, and a node's Tls (certificate and CA) used to connect.
    for tls in [ca.client_tls(), ca.node_tls()] {
        let front = front(&server, Some(tls), SECRET);
        let remote = front.namespace::<Counter>().get_by_name("A");
        let local = server.namespace::<Counter>().get_by_name("A");
        let before = within("a local read", local.get_counter_value()).await;
        assert_eq!(
            within("a call over TLS", remote.increment(1)).await,
            before + 1
        );
        assert_eq!(within("a local call", local.increment(1)).await, before + 2);
        let after = within("a read over TLS", remote.get_counter_value()).await;
        assert_eq!(after, before + 2);
    }

    // Many callers at once on one TLS connection: every increment exactly once.
    let front = front(&server, Some(ca.client_tls()), SECRET);
    let stub = front.namespace::<Counter>().get_by_name("hot");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let stub = stub.clone();
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(40);
                for _ in 0..40 {
                    seen.push(within("increment over TLS", stub.increment(1)).await);
                }
                seen
            })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.extend(task.await.expect("caller"));
    }
    values.sort_unstable();
    assert_eq!(values, (1..=1280).collect::<Vec<i64>>());

    // Frames of many TLS records, both ways, while small calls cross too.
    let blobs = front.namespace::<Blobs>().get_by_name("b");
    let big = vec![7u8; 3 * 1024 * 1024];
    let (sent, got, n) = tokio::join!(
        within("3 MiB to the server", blobs.length(big)),
        within("2 MiB from the server", blobs.blob(2 * 1024 * 1024 + 5)),
        within("a small call meanwhile", stub.increment(1))
    );
    assert_eq!(sent, 3 * 1024 * 1024);
    assert_eq!(got.len(), 2 * 1024 * 1024 + 5);
    assert!(got.iter().enumerate().all(|(i, b)| *b == i as u8));
    assert_eq!(n, 1281);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_is_refused_by_a_tls_server_which_serves_on() {
    let ca = Ca::new("test CA");
    let server = server(Some(ca.node_tls()));
    let plain = front(&server, None, SECRET);
    let err = refused(&plain).await;
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.to_string().contains("speaks TLS"), "{err}");
    assert!(!err.is_retryable());
    // The server serves TLS clients as before.
    let tls = front(&server, Some(ca.client_tls()), SECRET);
    let counter = tls.namespace::<Counter>().get_by_name("x");
    assert_eq!(within("a TLS call", counter.increment(1)).await, 1);
    assert_eq!(server.metrics().calls, 1, "only the TLS call ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_is_refused_by_a_plaintext_server() {
    let ca = Ca::new("test CA");
    let server = server(None);
    let tls = front(&server, Some(ca.client_tls()), SECRET);
    let err = refused(&tls).await;
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    let message = err.to_string();
    assert!(message.contains("TLS"), "{message}");
    assert!(message.contains("without .tls(..)"), "{message}");
    // Plaintext clients are served as before.
    let plain = front(&server, None, SECRET);
    let counter = plain.namespace::<Counter>().get_by_name("x");
    assert_eq!(within("a plaintext call", counter.increment(1)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_ca_did_not_sign_is_refused() {
    let ca = Ca::new("test CA");
    let stranger = Ca::new("another CA");
    // The server's certificate is for 127.0.0.1, but from another CA.
    let server = server(Some(stranger.node_tls()));
    let front = front(&server, Some(ca.client_tls()), SECRET);
    let err = refused(&front).await;
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");

    // Signed by the CA, but for another address than the one dialed.
    let (cert, key) = ca.node(&["127.0.0.2", "node-2.example"]);
    let elsewhere = self::server(Some(Tls::from_pem(cert, key, ca.pem()).unwrap()));
    let front2 = self::front(&elsewhere, Some(ca.client_tls()), SECRET);
    let err = refused(&front2).await;
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    assert_eq!(server.metrics().calls, 0);
    assert_eq!(elsewhere.metrics().calls, 0);
    // A front end trusting the right CA is served.
    let trusting = self::front(&server, Some(stranger.client_tls()), SECRET);
    let counter = trusting.namespace::<Counter>().get_by_name("x");
    assert_eq!(within("a trusted call", counter.increment(1)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_inside_tls_is_still_unauthenticated() {
    let ca = Ca::new("test CA");
    let server = server(Some(ca.node_tls()));
    for secret in ["not the secret", ""] {
        let intruder = front(&server, Some(ca.client_tls()), secret);
        let err = refused(&intruder).await;
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert!(err.to_string().contains("secret"), "{err}");
    }
    assert_eq!(server.metrics().calls, 0, "a refused call ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_garbage_peer_on_the_tls_port_holds_up_no_one() {
    let ca = Ca::new("test CA");
    let server = server(Some(ca.node_tls()));
    let addr = server.local_addr().unwrap();
    // Connected and silent; a TLS record header promising more than it sends; garbage.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[22, 3, 1, 0x40, 0]).await.unwrap();
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();

    // Meanwhile a TLS client is served at once.
    let front = front(&server, Some(ca.client_tls()), SECRET);
    let counter = front.namespace::<Counter>().get_by_name("x");
    let started = Instant::now();
    assert_eq!(within("a TLS call", counter.increment(1)).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the call waited {:?} behind peers that do not handshake",
        started.elapsed()
    );

    // Garbage is answered (a TLS alert) and closed at once; the others within the
    // handshake timeout (10 s).
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a connection that sent garbage"
    );
    for (what, mut stream) in [("silent", silent), ("partial", partial)] {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut buf));
        assert!(
            closed.await.is_ok(),
            "the server kept a {what} connection past its handshake timeout"
        );
    }
    assert_eq!(within("a TLS call", counter.increment(1)).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_say_what_is_wrong() {
    let ca = Ca::new("test CA");
    let (cert, key) = ca.node(&["127.0.0.1"]);
    let config = |result: Result<Tls>, says: &str| {
        let err = result.expect_err(says);
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains(says), "{err} (expected: {says})");
    };

    // Listening with a client-only Tls: no certificate to present.
    let err = Runtime::builder()
        .in_memory()
        .listen("127.0.0.1:0")
        .tls(ca.client_tls())
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // TLS does not replace the secret beyond loopback.
    let err = Runtime::builder()
        .in_memory()
        .listen("0.0.0.0:0")
        .tls(ca.node_tls())
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("secret"), "{err}");

    // Garbage PEM, each part in turn.
    config(
        Tls::from_pem("garbage", &key, ca.pem()),
        "no certificate in the certificate chain",
    );
    config(
        Tls::from_pem(&cert, "garbage", ca.pem()),
        "no usable private key",
    );
    config(
        Tls::from_pem(&cert, &key, "garbage"),
        "no certificate in the CA",
    );
    config(Tls::client(""), "no certificate in the CA");
    // A key that is not the certificate's.
    let (_, other_key) = ca.node(&["127.0.0.1"]);
    config(
        Tls::from_pem(&cert, other_key, ca.pem()),
        "cannot be used together",
    );
    // A certificate given as the key, and a key given as the certificate.
    config(
        Tls::from_pem(&cert, &cert, ca.pem()),
        "no usable private key",
    );
    config(
        Tls::from_pem(&key, &key, ca.pem()),
        "no certificate in the certificate chain",
    );
    // A truncated PEM section.
    let truncated = &cert[..cert.len() - 30];
    config(Tls::from_pem(truncated, &key, ca.pem()), "not valid PEM");
    // Files that are not there.
    config(
        Tls::from_pem_files("/nonexistent/node.crt", "/nonexistent/node.key", "/x"),
        "/nonexistent/node.crt",
    );

    // The same PEM from files works.
    let dir = tempfile::tempdir().unwrap();
    let paths = ["node.crt", "node.key", "ca.crt"].map(|name| dir.path().join(name));
    for (path, pem) in paths.iter().zip([&cert, &key, &ca.pem()]) {
        std::fs::write(path, pem).unwrap();
    }
    let tls = Tls::from_pem_files(&paths[0], &paths[1], &paths[2]).expect("from files");
    let server = server(Some(tls));
    let front = front(&server, Some(ca.client_tls()), SECRET);
    let counter = front.namespace::<Counter>().get_by_name("x");
    assert_eq!(within("a call", counter.increment(1)).await, 1);

    // An address TLS cannot check a certificate for.
    let err = Runtime::builder()
        .connect("not a host:7001")
        .tls(ca.client_tls())
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_disconnected_and_retryable_over_tls_too() {
    let ca = Ca::new("test CA");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let front = Runtime::builder()
        .connect(format!("127.0.0.1:{port}"))
        .tls(ca.client_tls())
        .open()
        .unwrap();
    let err = refused(&front).await;
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert!(err.is_retryable());
}
