//! A clean shutdown leaves fjall's journal empty, so the next open has nothing to replay,
//! and nothing is lost by it: the data is in fjall's tables, and writes after the reopen
//! still win over what was stored before.

use std::path::Path;

use durable_runtime::Runtime;
use durable_tests::{journal_files, open, within, Counter};

const OBJECTS: i64 = 100;

/// Adds `i + 1` to counter `c{i}`, for every object.
async fn increment_all(rt: &Runtime) {
    let ns = rt.namespace::<Counter>();
    for i in 0..OBJECTS {
        within(
            "increment",
            ns.get_by_name(&format!("c{i}")).increment(i + 1),
        )
        .await;
    }
}

/// Every counter `c{i}` holds `(i + 1) * rounds`.
async fn check_all(rt: &Runtime, rounds: i64) {
    let ns = rt.namespace::<Counter>();
    for i in 0..OBJECTS {
        let value = within("read", ns.get_by_name(&format!("c{i}")).get_counter_value()).await;
        assert_eq!(value, (i + 1) * rounds, "c{i} after {rounds} rounds");
    }
}

/// One journal file (fjall's active journal must stay: it is where fjall recovers its
/// sequence numbers from), and it is empty.
fn assert_empty_journal(dir: &Path, when: &str) {
    let (count, bytes) = journal_files(dir);
    assert_eq!(
        (count, bytes),
        (1, 0),
        "{when}: expected one empty journal file, found {count} holding {bytes} bytes"
    );
}

#[tokio::test]
async fn clean_shutdown_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = open(dir.path());
    increment_all(&rt).await;
    let (_, written) = journal_files(dir.path());
    assert!(written > 0, "the writes went through fjall's journal");
    rt.shutdown().await.expect("shutdown");
    assert_empty_journal(dir.path(), "after the first shutdown");

    // Reopened: nothing replayed, nothing lost; new writes overwrite the stored values (a
    // write shadowed by an older stored one would read back the old value).
    let rt = open(dir.path());
    assert_empty_journal(dir.path(), "right after the reopen");
    check_all(&rt, 1).await;
    increment_all(&rt).await;
    check_all(&rt, 2).await;
    rt.shutdown().await.expect("shutdown");
    assert_empty_journal(dir.path(), "after the second shutdown");

    let rt = open(dir.path());
    check_all(&rt, 2).await;
    increment_all(&rt).await;
    // Dropping the last handle closes the runtime too.
    drop(rt);
    assert_empty_journal(dir.path(), "after the drop");

    let rt = open(dir.path());
    check_all(&rt, 3).await;
    rt.shutdown().await.expect("shutdown");
}
