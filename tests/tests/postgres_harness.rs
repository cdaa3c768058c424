//! The private PostgreSQL of the tests ([`PgServer`]): it starts on loopback, serves queries,
//! keeps committed rows (and only those) across a SIGKILL of the postmaster (or of all its
//! processes) and a restart, hangs when frozen and answers once thawed, and leaves nothing
//! behind once dropped.

use std::time::Duration;

use durable_tests::postgres::{connect, PgServer};
use tokio_postgres::{Client, NoTls};

async fn values(client: &Client) -> Vec<(i32, String)> {
    client
        .query("SELECT k, v FROM kv ORDER BY k", &[])
        .await
        .expect("select")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_rows_survive_kill9_and_the_directory_is_removed() {
    let mut pg = PgServer::start();
    let dir = pg.dir().to_owned();
    assert!(dir.join("data/PG_VERSION").is_file());
    pg.create_database("harness");
    let url = pg.url("harness");
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/harness", pg.port())
    );

    let client = connect(&url).await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // Trust authentication is safe only because nothing but loopback is listened on.
    let listen: String = client
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "127.0.0.1");

    client
        .batch_execute(
            "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
             INSERT INTO kv VALUES (1, 'committed');",
        )
        .await
        .unwrap();
    // A second connection holds a transaction open, never committed, when the kill comes.
    let mut other = connect(&url).await;
    let open = other.transaction().await.unwrap();
    open.execute("INSERT INTO kv VALUES (2, 'uncommitted')", &[])
        .await
        .unwrap();
    assert_eq!(values(&client).await, [(1, "committed".to_owned())]);

    pg.kill9();
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "a query answered after the postmaster was killed"
    );
    drop(open);
    drop(other);
    drop(client);

    pg.restart();
    let client = connect(&url).await;
    let after = values(&client).await;
    assert_eq!(after, [(1, "committed".to_owned())]);
    assert_ne!(after, [(1, "something else".to_owned())]);
    // psql, from the same binaries, sees the same row.
    assert_eq!(pg.psql("harness", "SELECT v FROM kv").trim(), "committed");

    // A clean stop and a restart keep it too.
    pg.stop();
    assert!(connect_fails(&url).await, "connected to a stopped server");
    pg.restart();
    let client = connect(&url).await;
    assert_eq!(values(&client).await, [(1, "committed".to_owned())]);
    drop(client);

    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_server_answers_once_thawed_and_kill9_all_keeps_committed_rows() {
    let mut pg = PgServer::start();
    pg.create_database("harness");
    let url = pg.url("harness");
    let client = connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
             INSERT INTO kv VALUES (1, 'committed');",
        )
        .await
        .unwrap();

    pg.freeze();
    let query = tokio::spawn(async move {
        let answer = values(&client).await;
        (client, answer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!query.is_finished(), "a frozen server answered");
    pg.thaw();
    let (client, answer) = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .expect("the thawed server answers")
        .unwrap();
    assert_eq!(answer, [(1, "committed".to_owned())]);

    pg.kill9_all();
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "a query answered after every server process was killed"
    );
    pg.restart();
    let client = connect(&url).await;
    assert_eq!(values(&client).await, [(1, "committed".to_owned())]);
}

async fn connect_fails(url: &str) -> bool {
    tokio_postgres::connect(url, NoTls).await.is_err()
}

#[test]
fn two_servers_run_side_by_side() {
    let a = PgServer::start();
    let b = PgServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    a.create_database("a");
    assert_eq!(a.psql("a", "SELECT 40 + 2").trim(), "42");
    // A database created on one is not on the other.
    assert_eq!(
        b.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'a'"
        )
        .trim(),
        "0"
    );
}

#[test]
#[should_panic(expected = "psql -c")]
fn a_failing_statement_panics() {
    let pg = PgServer::start();
    pg.psql("postgres", "SELECT * FROM no_such_table");
}
