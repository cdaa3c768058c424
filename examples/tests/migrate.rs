//! The `migrate` example binary end to end: it moves a stopped runtime's data directory to a
//! new one that a runtime then reads, and it refuses, with a clear message and a failing exit
//! status, a source held by a running runtime and a destination that is not empty.

mod common;

use std::path::Path;
use std::process::Output;

use common::example_binary;
use durable_examples::Counter;
use durable_runtime::Runtime;

fn migrate(from: &Path, to: &Path) -> Output {
    std::process::Command::new(example_binary("migrate"))
        .arg("--from-data-dir")
        .arg(from)
        .arg("--to-data-dir")
        .arg(to)
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
