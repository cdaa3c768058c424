//! TLS to PostgreSQL, on a private server that refuses TCP connections without TLS
//! ([`PgServer::require_tls`]), with certificates made for the test: the URL's `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` work as they do for libpq, and every refusal says
//! why.

use std::path::{Path, PathBuf};

use durable_runtime::{ErrorKind, PostgresBackend, Runtime};
use durable_tests::certs::Ca;
use durable_tests::postgres::PgServer;
use durable_tests::Counter;

/// A server whose certificate names `db.test` (not 127.0.0.1), signed by `ca`; files for the
/// clients in `dir`: `ca.pem`, `other-ca.pem` (a CA that signed nothing the server has),
/// `certuser.crt` / `certuser.key` (a client certificate of `ca` for user `certuser`).
fn tls_server(dir: &Path) -> PgServer {
    let ca = Ca::new("postgres CA");
    let (cert, key) = ca.node(&["db.test"]);
    let mut pg = PgServer::start();
    pg.create_database("app");
    pg.require_tls(&cert, &key, &ca.pem());
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), Ca::new("another CA").pem()).unwrap();
    let (client_cert, client_key) = ca.client("certuser");
    std::fs::write(dir.join("certuser.crt"), client_cert).unwrap();
    std::fs::write(dir.join("certuser.key"), client_key).unwrap();
    pg
}

/// A `key=value` connection string to database `app` on `pg`, as `user`, naming the host
/// `host` (what a verifying mode checks the certificate against) at 127.0.0.1.
fn url(pg: &PgServer, user: &str, host: &str, tls: &str) -> String {
    format!(
        "host={host} hostaddr=127.0.0.1 port={} user={user} dbname=app {tls}",
        pg.port()
    )
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// How many sessions named `durable` are connected over TLS, and how many in all.
fn durable_sessions(pg: &PgServer) -> (i64, i64) {
    let out = pg.psql(
        "postgres",
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'durable'",
    );
    let (tls, all) = out.trim().split_once('|').expect("two counts");
    (tls.parse().unwrap(), all.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_stores_its_objects_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pg = tls_server(dir.path());
    let ca = file(dir.path(), "ca.pem");
    let rt = Runtime::builder()
        .postgres(url(
            &pg,
            "postgres",
            "db.test",
            &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        ))
        .register::<Counter>()
        .open()
        .unwrap_or_else(|e| panic!("open over TLS: {e}"));
    let counter = rt.namespace::<Counter>().get_by_name("tls");
    assert_eq!(counter.increment(5).await.unwrap(), 5);
    let (tls, all) = durable_sessions(&pg);
    assert!(all > 0, "the runtime's sessions are connected");
    assert_eq!(tls, all, "every session of the runtime is encrypted");
    rt.shutdown().await.unwrap();
    // The write is in PostgreSQL: another runtime, in the URL form this time, reads it.
    let rt = Runtime::builder()
        .postgres(format!(
            "postgres://postgres@127.0.0.1:{}/app?sslmode=verify-ca&sslrootcert={}",
            pg.port(),
            ca.display()
        ))
        .register::<Counter>()
        .open()
        .unwrap_or_else(|e| panic!("open with verify-ca: {e}"));
    assert_eq!(
        rt.namespace::<Counter>()
            .get_by_name("tls")
            .get_counter_value()
            .await
            .unwrap(),
        5
    );
}

#[test]
fn each_sslmode_connects_or_refuses_as_libpq_does() {
    let dir = tempfile::tempdir().unwrap();
    let pg = tls_server(dir.path());
    let ca = file(dir.path(), "ca.pem").display().to_string();
    let other = file(dir.path(), "other-ca.pem").display().to_string();
    let connects = |tls: &str, host: &str| {
        PostgresBackend::connect(&url(&pg, "postgres", host, tls))
            .map(drop)
            .map_err(|e| (e.kind(), e.to_string()))
    };
    // Encryption without checking the certificate: prefer (the default) and require.
    for tls in ["", "sslmode=prefer", "sslmode=require"] {
        connects(tls, "127.0.0.1").unwrap_or_else(|e| panic!("{tls:?}: {e:?}"));
    }
    // The server refuses plain text: the error says so.
    let (kind, message) = connects("sslmode=disable", "127.0.0.1").unwrap_err();
    assert_eq!(kind, ErrorKind::Storage);
    assert!(
        message.contains("no encryption") || message.contains("pg_hba.conf"),
        "{message}"
    );
    // verify-full: the chain and the host name.
    connects(&format!("sslmode=verify-full sslrootcert={ca}"), "db.test").unwrap();
    let (_, message) = connects(
        &format!("sslmode=verify-full sslrootcert={ca}"),
        "127.0.0.1",
    )
    .unwrap_err();
    assert!(message.contains("not valid for name"), "{message}");
    let (_, message) = connects(
        &format!("sslmode=verify-full sslrootcert={other}"),
        "db.test",
    )
    .unwrap_err();
    assert!(message.contains("UnknownIssuer"), "{message}");
    // verify-ca: the chain only; so does require with a root certificate.
    connects(&format!("sslmode=verify-ca sslrootcert={ca}"), "127.0.0.1").unwrap();
    for mode in ["verify-ca", "require"] {
        let (_, message) =
            connects(&format!("sslmode={mode} sslrootcert={other}"), "127.0.0.1").unwrap_err();
        assert!(message.contains("UnknownIssuer"), "{mode}: {message}");
    }
}

#[test]
fn a_client_certificate_logs_in_where_the_server_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let pg = tls_server(dir.path());
    let ca = file(dir.path(), "ca.pem").display().to_string();
    let cert = file(dir.path(), "certuser.crt").display().to_string();
    let key = file(dir.path(), "certuser.key").display().to_string();
    let with_cert = format!("sslmode=verify-full sslrootcert={ca} sslcert={cert} sslkey={key}");
    PostgresBackend::connect(&url(&pg, "certuser", "db.test", &with_cert))
        .unwrap_or_else(|e| panic!("with its certificate: {e}"));
    let err = PostgresBackend::connect(&url(
        &pg,
        "certuser",
        "db.test",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Files that cannot be used are configuration errors, named.
    let err = PostgresBackend::connect(&url(
        &pg,
        "certuser",
        "db.test",
        &format!("sslmode=require sslcert={cert} sslkey={ca}"),
    ))
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains(&ca), "{err}");
}
