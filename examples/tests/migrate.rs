//! The `migrate` example binary end to end: it moves a stopped runtime's data directory to a
//! new one, or to PostgreSQL and back, and a runtime then reads it; it refuses, with a clear
//! message and a failing exit status, a source held by a running runtime, a destination that
//! is not empty and a source with nothing in it.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use common::example_binary;
use durable_examples::Counter;
use durable_runtime::Runtime;
use durable_tests::postgres::PgServer;

fn migrate(from: &Path, to: &Path) -> Output {
    run(&[
        "--from-data-dir".as_ref(),
        from.as_os_str(),
        "--to-data-dir".as_ref(),
        to.as_os_str(),
    ])
}

fn run(args: &[&OsStr]) -> Output {
    std::process::Command::new(example_binary("migrate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the migrate example")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

fn open(dir: &Path) -> Runtime {
    Runtime::builder()
        .data_dir(dir)
        .register::<Counter>()
        .open()
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

const COUNTS: [(&str, i64); 3] = [("a", 1), ("b", 20), ("ü", 300)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_a_data_directory_and_refuses_a_held_source_or_a_full_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("data"), dir.path().join("data2"));
    let rt = open(&from);
    let counters = rt.namespace::<Counter>();
    for (name, amount) in COUNTS {
        counters.get_by_name(name).increment(amount).await.unwrap();
    }

    // While the runtime holds the source, nothing is copied.
    let held = migrate(&from, &to);
    let stderr = text(&held.stderr);
    assert_eq!(held.status.code(), Some(1), "{held:?}");
    assert!(
        stderr.contains("in use by another runtime") && stderr.contains("shut that runtime down"),
        "the error says the runtime must be stopped: {stderr}"
    );
    assert!(stderr.contains(&from.display().to_string()), "{stderr}");
    assert!(!to.exists(), "no destination is created for a held source");

    rt.shutdown().await.unwrap();
    let moved = migrate(&from, &to);
    assert!(moved.status.success(), "{moved:?}");
    // Each counter is one object holding one data key ("value") and its name.
    let stdout = text(&moved.stdout);
    assert!(
        stdout.starts_with("copied 3 objects, 6 keys, ") && stdout.contains("verified"),
        "the report: {stdout}"
    );

    // A second run finds the destination full, and leaves it as it is.
    let again = migrate(&from, &to);
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(stderr.contains("destination is not empty"), "{stderr}");

    let rt = open(&to);
    let counters = rt.namespace::<Counter>();
    for (name, amount) in COUNTS {
        let value = counters.get_by_name(name).get_counter_value().await;
        assert_eq!(
            value.unwrap(),
            amount,
            "counter {name} in the new directory"
        );
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_a_data_directory_to_postgres_and_back() {
    let pg = PgServer::start();
    pg.create_database("app");
    let url = pg.url("app");
    let dir = tempfile::tempdir().unwrap();
    let (from, back) = (dir.path().join("data"), dir.path().join("back"));
    let rt = open(&from);
    for (name, amount) in COUNTS {
        let stub = rt.namespace::<Counter>().get_by_name(name);
        stub.increment(amount).await.unwrap();
    }
    rt.shutdown().await.unwrap();

    // The database has no tables yet: nothing to move from it.
    let empty = run(&[
        "--from-postgres".as_ref(),
        url.as_ref(),
        "--to-data-dir".as_ref(),
        back.as_os_str(),
    ]);
    assert_eq!(empty.status.code(), Some(1), "{empty:?}");
    assert!(
        text(&empty.stderr).contains("holds nothing to move"),
        "{empty:?}"
    );
    assert!(
        !back.exists(),
        "no destination is created for an empty source"
    );

    // The private server trusts every connection: a password in the URL is ignored there,
    // and must not be printed.
    let with_password = url.replacen("postgres@", "postgres:s3cret@", 1);
    assert_ne!(with_password, url);
    let there = run(&[
        "--from-data-dir".as_ref(),
        from.as_os_str(),
        "--to-postgres".as_ref(),
        with_password.as_ref(),
    ]);
    assert!(there.status.success(), "{there:?}");
    let report = text(&there.stdout);
    assert!(report.starts_with("copied 3 objects, 6 keys, "), "{report}");
    let redacted = url.replacen("postgres@", "postgres:***@", 1);
    assert!(
        report.contains(&format!("PostgreSQL database {redacted}")),
        "the URL without its password: {report}"
    );

    // A runtime on the database: the move back waits for it to stop.
    let rt = Runtime::builder()
        .postgres(url.clone())
        .register::<Counter>()
        .open()
        .unwrap();
    let stub = rt.namespace::<Counter>().get_by_name("b");
    assert_eq!(stub.get_counter_value().await.unwrap(), 20);
    let held = run(&[
        "--from-postgres".as_ref(),
        url.as_ref(),
        "--to-data-dir".as_ref(),
        back.as_os_str(),
    ]);
    assert_eq!(held.status.code(), Some(1), "{held:?}");
    assert!(
        text(&held.stderr).contains("another runtime holds schema"),
        "{held:?}"
    );
    rt.shutdown().await.unwrap();

    let home = run(&[
        "--from-postgres".as_ref(),
        url.as_ref(),
        "--to-data-dir".as_ref(),
        back.as_os_str(),
    ]);
    assert!(home.status.success(), "{home:?}");
    // The same keys and bytes both ways.
    let sizes = |line: &str| line.split(" from ").next().unwrap().to_owned();
    assert_eq!(sizes(text(&home.stdout)), sizes(report));
    let rt = open(&back);
    for (name, amount) in COUNTS {
        let value = rt
            .namespace::<Counter>()
            .get_by_name(name)
            .get_counter_value()
            .await;
        assert_eq!(
            value.unwrap(),
            amount,
            "counter {name} back from PostgreSQL"
        );
    }
    rt.shutdown().await.unwrap();
}
