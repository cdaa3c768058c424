//! The PostgreSQL backend on a private server ([`PgServer`]): concurrency, restarts of the
//! runtime and of the server, the output gate held by a real lock in PostgreSQL, the storage
//! cache, the advisory lock, the schema version, clear errors for bad URLs and closed ports,
//! alarms, listings, and reading objects with SQL.
//!
//! The storage API's model test runs on PostgreSQL in `storage_model.rs`, the byte-level scan
//! model in `backend_model.rs`, the kill -9 tortures in `pg_torture.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use durable_runtime::{
    durable_object, AlarmInfo, Context, Durability, ErrorKind, ListOptions, ObjectStub,
    PostgresBackend, PostgresOptions, Result, Runtime,
};
use durable_tests::postgres::{connect, PgServer};
use durable_tests::{within, Counter};
use tokio_postgres::Client;

fn server(db: &str) -> PgServer {
    let pg = PgServer::start();
    pg.create_database(db);
    pg
}

fn open(pg: &PgServer, db: &str) -> Runtime {
    Runtime::builder()
        .postgres(pg.url(db))
        .register::<Counter>()
        .register::<Notes>()
        .open()
        .unwrap_or_else(|e| panic!("open on PostgreSQL: {e}"))
}

/// Keys and values, with a reminder.
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

    pub async fn list(&self, prefix: String, reverse: bool) -> Result<Vec<(String, String)>> {
        self.ctx
            .storage()
            .list(ListOptions::default().prefix(&prefix).reverse(reverse))
    }

    pub async fn remind_in(&mut self, ms: u64) -> Result<()> {
        let at = SystemTime::now() + Duration::from_millis(ms);
        self.ctx.storage_mut().set_alarm(at)
    }

    /// How many times the alarm fired.
    pub async fn fired(&self) -> Result<Option<u32>> {
        self.ctx.storage().get("fired")
    }

    pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let fired: u32 = self.ctx.storage().get("fired")?.unwrap_or(0);
        self.ctx.storage_mut().put("fired", &(fired + 1))?;
        self.ctx.storage_mut().put("retry", &info.retry_count)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_each_get_a_distinct_value_and_survive_a_restart() {
    let pg = server("app");
    let rt = open(&pg, "app");
    let ns = rt.namespace::<Counter>();
    let mut tasks = Vec::new();
    for caller in 0..32 {
        let stub = ns.get_by_name(&format!("c{}", caller % 4));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..50 {
                seen.push(within("increment", stub.increment(1)).await);
            }
            (caller % 4, seen)
        }));
    }
    let mut per_object: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); 4];
    for task in tasks {
        let (object, seen) = task.await.unwrap();
        for value in seen {
            // One live instance, calls never race: every acknowledged value is new.
            assert!(per_object[object].insert(value), "value {value} twice");
        }
    }
    for values in &per_object {
        assert_eq!(*values, (1..=400).collect::<BTreeSet<i64>>());
    }
    rt.shutdown().await.unwrap();

    let rt = open(&pg, "app");
    for object in 0..4 {
        let stub = rt.namespace::<Counter>().get_by_name(&format!("c{object}"));
        assert_eq!(within("read", stub.get_counter_value()).await, 400);
    }
    let mut ids: Vec<String> = within("list_ids", rt.namespace::<Counter>().list_ids())
        .await
        .iter()
        .map(|id| id.to_string())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..4)
        .map(|i| {
            rt.namespace::<Counter>()
                .id_from_name(&format!("c{i}"))
                .to_string()
        })
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_by_a_lock_in_postgres_holds_the_reply() {
    let pg = server("app");
    let rt = open(&pg, "app");
    let stub = rt.namespace::<Counter>().get_by_name("held");
    assert_eq!(within("first", stub.increment(1)).await, 1);

    // Another session locks the table: our next commit waits inside PostgreSQL.
    let mut locker = connect(&pg.url("app")).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE durable_kv IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let call = tokio::spawn({
        let stub = stub.clone();
        async move { stub.increment(1).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !call.is_finished(),
        "the reply left before its write was committed"
    );
    tx.rollback().await.unwrap();
    let value = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the reply never came after the lock was released")
        .unwrap()
        .unwrap();
    assert_eq!(value, 2);
    rt.shutdown().await.unwrap();
}

/// Waits until the runtime's sessions are gone: a server process publishes its statistics
/// when it exits at the latest.
async fn sessions_gone(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'durable'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if sessions == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the runtime's sessions linger");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
}

/// Reads of `durable_kv` (index and sequential scans) so far, once the runtime's sessions
/// are gone.
async fn table_reads(client: &Client) -> i64 {
    sessions_gone(client).await;
    client
        .query_one(
            "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_user_tables \
             WHERE relname = 'durable_kv'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_object_reads_from_its_storage_cache_not_from_postgres() {
    let pg = server("app");
    let client = connect(&pg.url("app")).await;
    let rt = open(&pg, "app");
    let notes = rt.namespace::<Notes>().get_by_name("hot");
    for i in 0..20 {
        within("put", notes.put(format!("k{i:02}"), format!("v{i}"))).await;
    }
    rt.shutdown().await.unwrap();
    let start = table_reads(&client).await;

    // What activating the object costs: it loads its stored state.
    let rt = open(&pg, "app");
    let notes = rt.namespace::<Notes>().get_by_name("hot");
    assert_eq!(
        within("get", notes.get("k07".into())).await,
        Some("v7".into())
    );
    rt.shutdown().await.unwrap();
    let activation = table_reads(&client).await - start;
    assert!(activation > 0, "the activation did not read PostgreSQL");

    // The same activation, then 150 reads: they cost nothing more.
    let before = table_reads(&client).await;
    let rt = open(&pg, "app");
    let notes = rt.namespace::<Notes>().get_by_name("hot");
    assert_eq!(
        within("get", notes.get("k07".into())).await,
        Some("v7".into())
    );
    for round in 0..50 {
        let i = round % 20;
        assert_eq!(
            within("get", notes.get(format!("k{i:02}"))).await,
            Some(format!("v{i}"))
        );
        assert_eq!(within("get absent", notes.get("nope".into())).await, None);
        let listed = within("list", notes.list("k".into(), round % 2 == 0)).await;
        assert_eq!(listed.len(), 20);
    }
    rt.shutdown().await.unwrap();
    let reads = table_reads(&client).await - before;
    assert_eq!(
        reads, activation,
        "150 reads of an active object reached PostgreSQL ({reads} table reads, the \
         activation alone makes {activation})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runtime_on_the_same_schema_is_refused_and_another_schema_is_not() {
    let pg = server("app");
    let rt = open(&pg, "app");
    within(
        "increment",
        rt.namespace::<Counter>().get_by_name("a").increment(5),
    )
    .await;

    let err = Runtime::builder()
        .postgres(pg.url("app"))
        .open()
        .expect_err("a second runtime opened on the same schema");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("another runtime holds"), "{err}");

    // Another schema of the same database is another store.
    let client = connect(&pg.url("app")).await;
    client.batch_execute("CREATE SCHEMA tenant2").await.unwrap();
    let url = format!("{}?options=-csearch_path%3Dtenant2", pg.url("app"));
    let other = Runtime::builder()
        .postgres(&url)
        .register::<Counter>()
        .open()
        .unwrap_or_else(|e| panic!("open on schema tenant2: {e}"));
    assert_eq!(
        within(
            "increment in tenant2",
            other.namespace::<Counter>().get_by_name("a").increment(1)
        )
        .await,
        1
    );
    other.shutdown().await.unwrap();

    // Once the first runtime is gone, the schema can be opened again.
    rt.shutdown().await.unwrap();
    let rt = open(&pg, "app");
    assert_eq!(
        within(
            "read",
            rt.namespace::<Counter>()
                .get_by_name("a")
                .get_counter_value()
        )
        .await,
        5
    );
    rt.shutdown().await.unwrap();
}

#[test]
fn a_malformed_url_and_a_closed_port_are_clear_errors_within_seconds() {
    let started = Instant::now();
    let err = Runtime::builder()
        .postgres("postgres://user@127.0.0.1:notaport/db")
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("malformed PostgreSQL URL"),
        "{err}"
    );

    // A port nobody listens on: bind one, note it, close it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = Runtime::builder()
        .postgres(format!("postgres://user@127.0.0.1:{port}/db"))
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let text = err.to_string();
    assert!(text.contains("connect"), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // A server that accepts connections and never answers: the deadline ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let options = PostgresOptions::default().timeout(Duration::from_secs(1));
    let err =
        PostgresBackend::connect_with(&format!("postgres://user@127.0.0.1:{port}/db"), options)
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_version_is_refused() {
    let pg = server("app");
    open(&pg, "app").shutdown().await.unwrap();
    let client = connect(&pg.url("app")).await;
    let version: i64 = client
        .query_one(
            "SELECT value FROM durable_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
    client
        .batch_execute("UPDATE durable_meta SET value = 99 WHERE name = 'schema_version'")
        .await
        .unwrap();
    let err = Runtime::builder()
        .postgres(pg.url("app"))
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_can_be_read_with_sql() {
    let pg = server("app");
    let rt = open(&pg, "app");
    let notes = rt.namespace::<Notes>().get_by_name("sql");
    within("put", notes.put("greeting".into(), "hello".into())).await;
    let counter = rt.namespace::<Counter>().get_by_name("sql-counter");
    within("increment", counter.increment(42)).await;
    let id = counter.id().to_string();
    rt.shutdown().await.unwrap();

    let client = connect(&pg.url("app")).await;
    let rows = client
        .query(
            "SELECT d.key, d.value FROM durable_data d JOIN durable_objects o USING (object_id) \
             WHERE o.name = 'sql' ORDER BY d.key",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "greeting");
    // Values are postcard: a string is its length, then its bytes.
    assert_eq!(rows[0].get::<_, Vec<u8>>(1), b"\x05hello");
    let row = client
        .query_one(
            "SELECT value FROM durable_data WHERE object_id = $1 AND key = 'value'",
            &[&id],
        )
        .await
        .unwrap();
    // postcard encodes an i64 as a zigzag varint: 42 → 84.
    assert_eq!(row.get::<_, Vec<u8>>(0), vec![84]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_fire_on_postgres_and_survive_a_restart() {
    let pg = server("app");
    let rt = open(&pg, "app");
    let notes = rt.namespace::<Notes>().get_by_name("alarm");
    within("remind", notes.remind_in(50)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while within("fired", notes.fired()).await.is_none() {
        assert!(Instant::now() < deadline, "the alarm never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Scheduled, then the runtime stops before it is due: the next runtime fires it.
    let later = rt.namespace::<Notes>().get_by_name("later");
    within("remind", later.remind_in(600)).await;
    rt.shutdown().await.unwrap();
    let rt = open(&pg, "app");
    let later = rt.namespace::<Notes>().get_by_name("later");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Reading activates the object; the alarm must come from the stored index anyway.
        if within("fired", later.fired()).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alarm did not survive the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_all_objects_empties_the_table() {
    let pg = server("app");
    let rt = open(&pg, "app");
    let ns = rt.namespace::<Counter>();
    for i in 0..10 {
        within("increment", ns.get_by_name(&format!("d{i}")).increment(1)).await;
    }
    assert_eq!(within("list_ids", ns.list_ids()).await.len(), 10);
    assert_eq!(within("delete_all", ns.delete_all_objects()).await, 10);
    assert!(within("list_ids", ns.list_ids()).await.is_empty());
    rt.shutdown().await.unwrap();
    let client = connect(&pg.url("app")).await;
    let left: i64 = client
        .query_one("SELECT count(*) FROM durable_data", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_fails_calls_retryably_and_the_runtime_reconnects() {
    let mut pg = server("app");
    let backend = PostgresBackend::connect_with(
        &pg.url("app"),
        PostgresOptions::default().timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let rt = Runtime::builder()
        .backend(Arc::new(backend))
        .register::<Counter>()
        .open()
        .unwrap();
    let stub = rt.namespace::<Counter>().get_by_name("r");
    assert_eq!(within("before", stub.increment(1)).await, 1);

    pg.stop();
    let started = Instant::now();
    let err = stub.increment(1).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failing took {:?}",
        started.elapsed()
    );

    pg.restart();
    // The failed call was never acknowledged; its write may or may not have landed. The
    // runtime reconnects on its own: the next calls succeed, and count on from the truth.
    let deadline = Instant::now() + Duration::from_secs(20);
    let value = loop {
        match stub.increment(1).await {
            Ok(v) => break v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after the restart: {e}"),
        }
    };
    assert!(value == 2 || value == 3, "value {value}");
    assert_eq!(within("after", stub.increment(1)).await, value + 1);
    rt.shutdown().await.unwrap();
}

/// WAL flushes so far (`pg_stat_wal.wal_sync`), once the runtime's sessions are gone.
async fn wal_syncs(client: &Client) -> i64 {
    sessions_gone(client).await;
    client
        .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_durability_commits_without_waiting_for_the_wal_and_keeps_the_data() {
    let pg = server("app");
    let client = connect(&pg.url("app")).await;
    let mut flushes = Vec::new();
    for durability in [Durability::Fsync, Durability::Buffered] {
        let before = wal_syncs(&client).await;
        let rt = Runtime::builder()
            .postgres(pg.url("app"))
            .durability(durability)
            .register::<Counter>()
            .open()
            .unwrap();
        let stub = rt
            .namespace::<Counter>()
            .get_by_name(&format!("{durability:?}"));
        for i in 1..=40 {
            assert_eq!(within("increment", stub.increment(1)).await, i);
        }
        rt.shutdown().await.unwrap();
        flushes.push(wal_syncs(&client).await - before);
    }
    // Fsync: each of the 40 sequential commits flushed the WAL; Buffered: the server's WAL
    // writer flushed now and then.
    assert!(flushes[0] >= 40, "{flushes:?}");
    assert!(flushes[1] < 20, "{flushes:?}");
    let rt = open(&pg, "app");
    let stub = rt.namespace::<Counter>().get_by_name("Buffered");
    assert_eq!(within("read", stub.get_counter_value()).await, 40);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_fails_every_reply_of_its_round_and_the_objects_recover() {
    let pg = server("app");
    let rt = open(&pg, "app");
    let ns = rt.namespace::<Counter>();
    let stubs: Vec<_> = (0..8).map(|i| ns.get_by_name(&format!("f{i}"))).collect();
    for stub in &stubs {
        assert_eq!(within("first", stub.increment(1)).await, 1);
    }
    // Hold the next round inside PostgreSQL, with every object's increment in it.
    let mut locker = connect(&pg.url("app")).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE durable_kv IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let calls: Vec<_> = stubs
        .iter()
        .map(|stub| {
            let stub = stub.clone();
            tokio::spawn(async move { stub.increment(1).await })
        })
        .collect();
    // Wait until the commit statement is waiting for the lock, then end its session: the
    // round fails, its transaction rolled back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'durable' \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the commit never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'durable' AND wait_event_type = 'Lock'",
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let mut failed = 0;
    for call in calls {
        match tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("a call hung")
            .unwrap()
        {
            Ok(v) => assert_eq!(v, 2, "only a call in a later round may succeed"),
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "no reply of the failed round failed");
    // Every object recovers from what PostgreSQL holds: a failed increment left no trace.
    let mut values = Vec::new();
    for stub in &stubs {
        values.push(within("after", stub.get_counter_value()).await);
    }
    assert_eq!(
        values.iter().filter(|v| **v == 1).count(),
        failed,
        "{values:?}"
    );
    for stub in &stubs {
        let before = within("read", stub.get_counter_value()).await;
        assert_eq!(within("increment", stub.increment(1)).await, before + 1);
    }
    rt.shutdown().await.unwrap();
}
