//! The seed's counter binary on PostgreSQL (`--postgres URL`): the routes answer from the
//! database, a `kill -9` of the binary loses no answered increment, and a second binary on
//! the same database is refused while the first runs.

mod common;

use std::time::Duration;

use common::{assert_text, count, free_addr, send, start_example, wait_listening};
use durable_tests::postgres::PgServer;

#[tokio::test]
async fn the_counter_binary_keeps_its_counts_in_postgres_across_kill_9() {
    let pg = PgServer::start();
    pg.create_database("counter");
    let url = pg.url("counter");
    let http = free_addr();
    let http_s = http.to_string();
    let args = ["--addr", http_s.as_str(), "--postgres", url.as_str()];

    let server = start_example("counter", &args);
    wait_listening(http).await;
    for n in 1..=5 {
        assert_text(
            &send(http, "GET", "/increment?name=A").await,
            200,
            &count("A", n),
        );
    }
    // A second binary on the same database and schema is refused at start.
    let other_http = free_addr().to_string();
    let other = common::example_binary("counter");
    let refused = std::process::Command::new(other)
        .args(["--addr", &other_http, "--postgres", &url])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("another runtime holds"), "{stderr}");

    // kill -9: every answered increment is in PostgreSQL. (The killed binary's session
    // holds the schema's lock until the server sees its socket closed: at once on loopback,
    // but a start in that moment is refused, so try again.)
    drop(server);
    let mut server = start_example("counter", &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::timeout(Duration::from_millis(500), wait_listening(http))
        .await
        .is_err()
    {
        if server.0.try_wait().unwrap().is_some() {
            server = start_example("counter", &args);
        }
        assert!(std::time::Instant::now() < deadline, "no restart");
    }
    loop {
        let reply = send(http, "GET", "/?name=A").await;
        if reply.status == 200 {
            assert_text(&reply, 200, &count("A", 5));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_text(
        &send(http, "GET", "/increment?name=A").await,
        200,
        &count("A", 6),
    );
    let rows = pg.psql(
        "counter",
        "SELECT count(*) FROM durable_objects WHERE name = 'A'",
    );
    assert_eq!(rows.trim(), "1", "{rows}");
    drop(server);
}
