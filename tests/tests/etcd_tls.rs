//! A cluster node's connection to etcd, encrypted and authenticated: over TLS (the node checks
//! etcd's certificate against `Cluster::etcd_ca`, and presents its own to an etcd with
//! `--client-cert-auth`), and with etcd's users and passwords (`Cluster::etcd_user`).
//!
//! Each test runs one node (a runtime in this process) against a private etcd, serving TLS or
//! with authentication enabled through its API, and a private PostgreSQL. A node etcd refuses
//! is an `Unauthenticated` error naming the endpoint and what to check; settings that cannot
//! work are a `Config` error before anything is opened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use durable_runtime::{Cluster, ErrorKind, Runtime};
use durable_tests::certs::Ca;
use durable_tests::etcd::{EtcdServer, EtcdTls};
use durable_tests::postgres::PgServer;
use durable_tests::{within, Counter, GENEROUS};
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, Permission, TlsOptions,
};

/// The cluster's name: its keys in etcd start with `etcd-tls/`.
const NAME: &str = "etcd-tls";

/// The cluster's shards.
const SHARDS: usize = 8;

/// Opens node `n1` of the cluster `cluster` sets up, on `pg`. Its lease keeps the default
/// TTL, 10 s: longer than a restart of etcd.
fn node(pg: &PgServer, cluster: Cluster) -> durable_runtime::Result<Runtime> {
    Runtime::builder()
        .postgres(pg.url("postgres"))
        .cluster(cluster.name(NAME).node_id("n1").shards(SHARDS as u32))
        .listen("127.0.0.1:0")
        .secret("etcd tls test secret")
        .register::<Counter>()
        .open()
}

/// The error of opening `n1` as `cluster` sets up, which must fail.
fn refused(pg: &PgServer, what: &str, cluster: Cluster) -> durable_runtime::Error {
    match node(pg, cluster) {
        Ok(_) => panic!("{what}: the node joined"),
        Err(e) => e,
    }
}

/// Checks that `err` is an `Unauthenticated` error naming `endpoint` and saying each of
/// `says`.
fn assert_refused(what: &str, err: &durable_runtime::Error, endpoint: &str, says: &[&str]) {
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{what}: {err}");
    for text in std::iter::once(endpoint).chain(says.iter().copied()) {
        assert!(
            err.to_string().contains(text),
            "{what}: no {text:?} in: {err}"
        );
    }
}

/// A TLS etcd with a certificate for 127.0.0.1 signed by `ca`, asking for client
/// certificates signed by `clients` if given.
fn tls_etcd(ca: &Ca, clients: Option<&Ca>) -> EtcdServer {
    let (cert_pem, key_pem) = ca.node(&["127.0.0.1"]);
    EtcdServer::start_tls(EtcdTls {
        cert_pem,
        key_pem,
        client_ca_pem: clients.map(Ca::pem),
    })
}

/// A client of `etcd` with `options`, or panics saying why.
async fn client(etcd: &EtcdServer, options: ConnectOptions) -> Client {
    let options = options.with_connect_timeout(Duration::from_secs(5));
    Client::connect([etcd.endpoint()], Some(options))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", etcd.endpoint()))
}

/// The owners of the cluster's shards in etcd: owner key → node.
async fn owners(client: &mut Client) -> BTreeMap<String, String> {
    let prefix = format!("{NAME}/shards/");
    let got = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap_or_else(|e| panic!("read the shard owners: {e}"));
    got.kvs()
        .iter()
        .map(|kv| {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (text(kv.key()), text(kv.value()))
        })
        .collect()
}

/// Waits until `node` owns every shard in etcd, for at most [`GENEROUS`].
async fn until_all_shards_owned_by(client: &mut Client, node: &str) {
    let deadline = Instant::now() + GENEROUS;
    loop {
        let owners = owners(client).await;
        if owners.len() == SHARDS && owners.values().all(|owner| owner == node) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} does not own every shard after {GENEROUS:?}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The counter `name` on `rt`.
async fn increment(rt: &Runtime, name: &str) -> i64 {
    let stub = rt.namespace::<Counter>().get_by_name(name);
    within(&format!("increment {name}"), stub.increment(1)).await
}

/// Over TLS, with a client certificate: the node joins, takes every shard and serves its
/// objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_and_takes_shards_over_tls_with_a_client_certificate() {
    let pg = PgServer::start();
    let (etcd_ca, clients) = (Ca::new("etcd CA"), Ca::new("etcd clients' CA"));
    let etcd = tls_etcd(&etcd_ca, Some(&clients));
    assert!(
        etcd.endpoint().starts_with("https://"),
        "{}",
        etcd.endpoint()
    );
    let (cert, key) = clients.node(&["n1"]);

    let rt = node(
        &pg,
        Cluster::etcd([etcd.endpoint()])
            .etcd_ca(etcd_ca.pem())
            .etcd_identity(cert.clone(), key.clone()),
    )
    .unwrap_or_else(|e| panic!("n1 joins over TLS: {e}"));

    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(etcd_ca.pem()))
        .identity(Identity::from_pem(&cert, &key));
    let mut etcd_client = client(&etcd, ConnectOptions::new().with_tls(tls)).await;
    until_all_shards_owned_by(&mut etcd_client, "n1").await;
    assert_eq!(increment(&rt, "A").await, 1);
    assert_eq!(increment(&rt, "A").await, 2);
    rt.shutdown().await.expect("n1 leaves");
    assert!(
        owners(&mut etcd_client).await.is_empty(),
        "n1 handed its shards over"
    );
}

/// etcd's certificate must chain to the CA the node trusts, and name the host dialed; and a
/// TLS etcd refuses a plaintext node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_the_node_does_not_trust_is_refused() {
    let pg = PgServer::start();
    let etcd_ca = Ca::new("etcd CA");
    let etcd = tls_etcd(&etcd_ca, None);
    let endpoint = etcd.endpoint();

    let other = Ca::new("another CA");
    let err = refused(
        &pg,
        "another CA",
        Cluster::etcd([endpoint.clone()]).etcd_ca(other.pem()),
    );
    assert_refused(
        "another CA",
        &err,
        &endpoint,
        &["TLS failed", "UnknownIssuer", "Cluster::etcd_ca"],
    );

    // The right CA, but a certificate for another host.
    let (cert_pem, key_pem) = etcd_ca.node(&["etcd.example"]);
    let misnamed = EtcdServer::start_tls(EtcdTls {
        cert_pem,
        key_pem,
        client_ca_pem: None,
    });
    let err = refused(
        &pg,
        "another host",
        Cluster::etcd([misnamed.endpoint()]).etcd_ca(etcd_ca.pem()),
    );
    assert_refused(
        "another host",
        &err,
        &misnamed.endpoint(),
        &["not valid for name", "name the host"],
    );

    let plain = endpoint.replace("https://", "http://");
    let err = refused(&pg, "plaintext", Cluster::etcd([plain.clone()]));
    assert_refused("plaintext", &err, &plain, &["serve TLS", "https://"]);

    // The CA it trusts lets it in.
    let rt = node(&pg, Cluster::etcd([endpoint]).etcd_ca(etcd_ca.pem()))
        .unwrap_or_else(|e| panic!("n1 joins with etcd's CA: {e}"));
    assert_eq!(increment(&rt, "A").await, 1);
}

/// An etcd with `--client-cert-auth` refuses a node that presents no certificate, or one its
/// `--trusted-ca-file` did not sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_an_accepted_client_certificate_is_refused() {
    let pg = PgServer::start();
    let (etcd_ca, clients) = (Ca::new("etcd CA"), Ca::new("etcd clients' CA"));
    let etcd = tls_etcd(&etcd_ca, Some(&clients));
    let endpoint = etcd.endpoint();

    let err = refused(
        &pg,
        "no certificate",
        Cluster::etcd([endpoint.clone()]).etcd_ca(etcd_ca.pem()),
    );
    assert_refused(
        "no certificate",
        &err,
        &endpoint,
        &["client certificate", "Cluster::etcd_identity"],
    );

    let (cert, key) = Ca::new("another CA").node(&["n1"]);
    let err = refused(
        &pg,
        "a certificate of another CA",
        Cluster::etcd([endpoint.clone()])
            .etcd_ca(etcd_ca.pem())
            .etcd_identity(cert, key),
    );
    assert_refused(
        "a certificate of another CA",
        &err,
        &endpoint,
        &["client certificate", "--trusted-ca-file"],
    );
}

/// With etcd's authentication enabled, the node logs in with its user and password; a wrong
/// password, no user, or a user without permission on the cluster's keys is refused. Once
/// etcd restarted (it forgets the tokens it gave), the node logs in again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_authentication() {
    let pg = PgServer::start();
    let mut etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    // root (etcd needs it to enable authentication), the node's user with read and write on
    // the cluster's keys, and a user with no role.
    let mut admin = client(&etcd, ConnectOptions::new()).await;
    admin.user_add("root", "root pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("durable").await.unwrap();
    let keys = Permission::read_write(format!("{NAME}/")).with_prefix();
    admin.role_grant_permission("durable", keys).await.unwrap();
    admin.user_add("node", "node pw", None).await.unwrap();
    admin.user_grant_role("node", "durable").await.unwrap();
    admin.user_add("nobody", "nobody pw", None).await.unwrap();
    admin.auth_enable().await.unwrap();

    let cluster = || Cluster::etcd([endpoint.clone()]);
    let err = refused(&pg, "wrong password", cluster().etcd_user("node", "wrong"));
    assert_refused(
        "wrong password",
        &err,
        &endpoint,
        &["user `node`", "password"],
    );
    let err = refused(&pg, "no user", cluster());
    assert_refused("no user", &err, &endpoint, &["Cluster::etcd_user"]);
    let err = refused(
        &pg,
        "no permission",
        cluster().etcd_user("nobody", "nobody pw"),
    );
    assert_refused(
        "no permission",
        &err,
        &endpoint,
        &["user `nobody`", "permission"],
    );
    // TLS to an etcd that serves none.
    let https = endpoint.replace("http://", "https://");
    let err = refused(
        &pg,
        "TLS to plaintext",
        Cluster::etcd([https.clone()])
            .etcd_ca(Ca::new("etcd CA").pem())
            .etcd_user("node", "node pw"),
    );
    assert_refused("TLS to plaintext", &err, &https, &["speak TLS"]);

    let rt = node(&pg, cluster().etcd_user("node", "node pw"))
        .unwrap_or_else(|e| panic!("n1 joins as `node`: {e}"));
    let root = || ConnectOptions::new().with_user("root", "root pw");
    until_all_shards_owned_by(&mut client(&etcd, root()).await, "n1").await;
    assert_eq!(increment(&rt, "A").await, 1);

    // etcd restarts, forgetting the node's token; the shards' keys are deleted behind the
    // node's back: it sees that and takes them again, logged in anew.
    etcd.restart();
    let mut admin = client(&etcd, root()).await;
    let prefix = format!("{NAME}/shards/");
    admin
        .delete(
            prefix,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    until_all_shards_owned_by(&mut admin, "n1").await;
    assert_eq!(increment(&rt, "A").await, 2);
}

/// Settings that cannot work are a `Config` error at open, before the node listens, connects
/// to PostgreSQL (none runs here) or to etcd; and the cluster's `Debug` shows neither the
/// password nor the private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_cannot_work_are_refused_at_open() {
    let open = |cluster: Cluster| {
        Runtime::builder()
            .postgres("postgres://nobody@127.0.0.1:1/none")
            .cluster(cluster)
            .listen("127.0.0.1:0")
            .secret("s")
            .open()
    };
    let ca = Ca::new("etcd CA");
    let (cert, key) = ca.node(&["n1"]);
    let (_, other_key) = ca.node(&["n2"]);
    let https = || Cluster::etcd(["https://127.0.0.1:2379"]);
    let cases = [
        (
            "https:// without a CA",
            https(),
            "etcd endpoint https://127.0.0.1:2379 is https://: give the CA",
        ),
        (
            "a CA with http://",
            Cluster::etcd(["http://127.0.0.1:2379"]).etcd_ca(ca.pem()),
            "the etcd endpoint http://127.0.0.1:2379 is not https://",
        ),
        (
            "a CA that is no PEM",
            https().etcd_ca("not a certificate"),
            "no certificate in the etcd CA (Cluster::etcd_ca)",
        ),
        (
            "a client certificate without a CA",
            Cluster::etcd(["http://127.0.0.1:2379"]).etcd_identity(cert.clone(), key.clone()),
            "Cluster::etcd_identity needs Cluster::etcd_ca",
        ),
        (
            "a client certificate that is no PEM",
            https()
                .etcd_ca(ca.pem())
                .etcd_identity("nothing", key.clone()),
            "no certificate in the certificate chain of the etcd client certificate",
        ),
        (
            "a key that is no PEM",
            https()
                .etcd_ca(ca.pem())
                .etcd_identity(cert.clone(), "nothing"),
            "no usable private key in the key of the etcd client certificate",
        ),
        (
            "another certificate's key",
            https()
                .etcd_ca(ca.pem())
                .etcd_identity(cert.clone(), other_key),
            "cannot be used together",
        ),
        (
            "an empty user name",
            Cluster::etcd(["http://127.0.0.1:2379"]).etcd_user("", "pw"),
            "the user name is empty",
        ),
    ];
    for (what, cluster, says) in cases {
        let err = open(cluster)
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        assert_eq!(err.kind(), ErrorKind::Config, "{what}: {err}");
        assert!(
            err.to_string().contains(says),
            "{what}: no {says:?} in: {err}"
        );
    }

    let cluster = https()
        .etcd_ca(ca.pem())
        .etcd_identity(cert, key)
        .etcd_user("node", "hunter2");
    let shown = format!("{:?}", Runtime::builder().cluster(cluster));
    assert!(shown.contains("user: Some(\"node\")"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}
