//! Restarts: what a runtime acknowledged is there when the data directory is reopened,
//! whether the runtime was dropped or shut down; a held directory cannot be opened twice.

use durable_runtime::{durable_object, Context, ErrorKind, ListOptions, Result, Runtime};
use durable_tests::{open, within, Counter, GENEROUS};
use tokio::time::timeout;

/// A second class, with string keys and values.
#[durable_object]
pub struct Notes {
    ctx: Context,
}

#[durable_object]
impl Notes {
    pub fn new(ctx: Context) -> Self {
        Notes { ctx }
    }

    pub async fn put(&mut self, key: String, value: String) -> Result<()> {
        self.ctx.storage_mut().put(&key, &value)
    }

    pub async fn get(&self, key: String) -> Result<Option<String>> {
        self.ctx.storage().get(&key)
    }

    pub async fn delete(&mut self, key: String) -> Result<bool> {
        self.ctx.storage_mut().delete(&key)
    }

    pub async fn delete_all(&mut self) -> Result<()> {
        self.ctx.storage_mut().delete_all()
    }

    pub async fn list(&self) -> Result<Vec<(String, String)>> {
        self.ctx.storage().list(ListOptions::default())
    }
}

fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes through two classes and several objects; returns nothing: the runtime and every
/// handle are gone when it returns.
async fn write_generation(rt: &Runtime, generation: i64) {
    let counters = rt.namespace::<Counter>();
    let notes = rt.namespace::<Notes>();
    for (name, amount) in [("a", 1), ("b", 10), ("c", 100)] {
        within("increment", counters.get_by_name(name).increment(amount)).await;
    }
    for name in ["n1", "n2"] {
        let stub = notes.get_by_name(name);
        for i in 0..5 {
            within(
                "put",
                stub.put(
                    format!("{generation}:{i}"),
                    format!("{name}/{generation}/{i}"),
                ),
            )
            .await;
        }
    }
}

/// Checks every generation up to `generations` is there.
async fn check_generations(rt: &Runtime, generations: i64) {
    let counters = rt.namespace::<Counter>();
    let notes = rt.namespace::<Notes>();
    for (name, amount) in [("a", 1), ("b", 10), ("c", 100)] {
        assert_eq!(
            within("read", counters.get_by_name(name).get_counter_value()).await,
            amount * generations,
            "counter {name} after {generations} generations"
        );
    }
    for name in ["n1", "n2"] {
        let stub = notes.get_by_name(name);
        let mut expected = Vec::new();
        for generation in 1..=generations {
            for i in 0..5 {
                expected.push((
                    format!("{generation}:{i}"),
                    format!("{name}/{generation}/{i}"),
                ));
            }
        }
        assert_eq!(within("list", stub.list()).await, expected, "notes {name}");
        assert_eq!(
            within("get", stub.get(format!("{generations}:4"))).await,
            Some(format!("{name}/{generations}/4"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");

    // Generation 1, then drop the runtime and every handle.
    {
        let rt = open(dir.path());
        write_generation(&rt, 1).await;
    }
    // Reopen: everything is there; generation 2, dropped again.
    {
        let rt = open(dir.path());
        check_generations(&rt, 1).await;
        write_generation(&rt, 2).await;
        drop(rt);
    }
    // Generation 3 through a graceful shutdown.
    {
        let rt = open(dir.path());
        check_generations(&rt, 2).await;
        write_generation(&rt, 3).await;
        within("shutdown", rt.shutdown()).await;
    }
    let rt = open(dir.path());
    check_generations(&rt, 3).await;
    within("shutdown", rt.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stubs_kept_across_a_shutdown_do_not_hold_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = open(dir.path());
    let old = rt.namespace::<Counter>().get_by_name("a");
    assert_eq!(within("increment", old.increment(1)).await, 1);
    within("shutdown", rt.shutdown()).await;

    // The old stub outlives its runtime: the directory is released all the same, and the
    // stub answers with an error, not a hang.
    let rt = open(dir.path());
    let err = timeout(GENEROUS, old.increment(1))
        .await
        .expect("a reply")
        .expect_err("a stub of a shut-down runtime cannot call");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    let stub = rt.namespace::<Counter>().get_by_name("a");
    assert_eq!(within("increment", stub.increment(1)).await, 2);
    within("shutdown", rt.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_of_a_held_directory_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = open(dir.path());
    let stub = rt.namespace::<Counter>().get_by_name("a");
    assert_eq!(within("increment", stub.increment(1)).await, 1);

    let err = Runtime::builder()
        .data_dir(dir.path())
        .open()
        .expect_err("a second runtime on a held directory must not open");
    let message = err.to_string();
    assert!(
        message.contains("in use"),
        "the error should say the directory is in use: {message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "the error should name the directory: {message}"
    );

    // The first runtime is unaffected, and once it is shut down the directory opens.
    assert_eq!(within("increment", stub.increment(1)).await, 2);
    within("shutdown", rt.shutdown()).await;
    let rt = open(dir.path());
    let stub = rt.namespace::<Counter>().get_by_name("a");
    assert_eq!(within("read", stub.get_counter_value()).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_sees_list_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let x = |rt: &Runtime| rt.namespace::<Notes>().get_by_name("x");
    let y = |rt: &Runtime| rt.namespace::<Notes>().get_by_name("y");
    let s = String::from;

    {
        let rt = open(dir.path());
        for k in ["a", "b", "c", "d"] {
            within("put", x(&rt).put(s(k), k.to_uppercase())).await;
        }
        within("put", y(&rt).put(s("p"), s("P"))).await;
        within("put", y(&rt).put(s("q"), s("Q"))).await;
    }
    {
        let rt = open(dir.path());
        assert_eq!(
            within("list", x(&rt).list()).await,
            entries(&[("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")])
        );
        assert!(within("delete", x(&rt).delete(s("b"))).await, "b existed");
        assert!(
            !within("delete", x(&rt).delete(s("zz"))).await,
            "zz did not"
        );
        within("put", x(&rt).put(s("e"), s("E"))).await;
        within("put", x(&rt).put(s("a"), s("A2"))).await;
        within("delete_all", y(&rt).delete_all()).await;
        within("shutdown", rt.shutdown()).await;
    }
    {
        let rt = open(dir.path());
        assert_eq!(
            within("list", x(&rt).list()).await,
            entries(&[("a", "A2"), ("c", "C"), ("d", "D"), ("e", "E")])
        );
        assert_eq!(within("get", x(&rt).get(s("b"))).await, None);
        assert_eq!(within("list", y(&rt).list()).await, entries(&[]));
        assert_eq!(within("get", y(&rt).get(s("p"))).await, None);
        // After delete_all, new writes to the same object.
        within("put", y(&rt).put(s("z"), s("Z"))).await;
        within("delete_all", x(&rt).delete_all()).await;
        within("put", x(&rt).put(s("f"), s("F"))).await;
    }
    let rt = open(dir.path());
    assert_eq!(within("list", x(&rt).list()).await, entries(&[("f", "F")]));
    assert_eq!(within("list", y(&rt).list()).await, entries(&[("z", "Z")]));
    within("shutdown", rt.shutdown()).await;
}
