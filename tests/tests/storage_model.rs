//! `Storage` against a model: a `BTreeMap<String, i64>`, for the in-memory, fjall and
//! PostgreSQL backends.
//!
//! Each case is a few calls on a fresh object. Each call applies random writes (put, delete,
//! delete_all, put_many, delete_many, transactions that commit, roll back or fail, nested)
//! interleaved with reads, then runs random `list` queries and `get`s inside the call (the
//! uncommitted layer over committed state); a shared call then runs the same queries against
//! committed state. Keys come from a tiny alphabet with multi-byte characters, so prefixes and
//! ranges collide a lot, and `list`'s prefix and range arithmetic works on multi-byte UTF-8
//! (`¿` is c2 bf: the byte successor of a prefix ending in it is not UTF-8). On fjall and
//! PostgreSQL, the runtime is then reopened and the committed state checked once more.
//!
//! On PostgreSQL the object reads its stored state from the storage cache loaded at
//! activation; an idle timeout of zero-ish evicts objects between steps now and then, so that
//! both the cache and SQL's own scans (the load) are exercised.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use durable_runtime::{
    durable_object, Context, Error, ListOptions, ObjectId, PostgresBackend, PostgresOptions,
    Result, Runtime, Storage, MAX_BATCH_KEYS,
};
use durable_tests::postgres::PgServer;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Operations, list queries and their results.

/// `list` options; `start` and `start_after` are never both set (that is an error, tested in
/// `errors.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSpec {
    start: Option<String>,
    start_after: Option<String>,
    end: Option<String>,
    prefix: Option<String>,
    reverse: bool,
    limit: Option<usize>,
}

impl ListSpec {
    fn all() -> ListSpec {
        ListSpec {
            start: None,
            start_after: None,
            end: None,
            prefix: None,
            reverse: false,
            limit: None,
        }
    }

    fn options(&self) -> ListOptions {
        let mut o = ListOptions::default().reverse(self.reverse);
        if let Some(s) = &self.start {
            o = o.start(s);
        }
        if let Some(s) = &self.start_after {
            o = o.start_after(s);
        }
        if let Some(s) = &self.end {
            o = o.end(s);
        }
        if let Some(s) = &self.prefix {
            o = o.prefix(s);
        }
        if let Some(l) = self.limit {
            o = o.limit(l);
        }
        o
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        [&self.start, &self.start_after, &self.end, &self.prefix]
            .into_iter()
            .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnEnd {
    /// Returns `Ok`: the writes join the call's.
    Commit,
    /// Calls `rollback()` and returns `Ok`: the writes are undone.
    Rollback,
    /// Returns `Err`: the writes are undone.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put(String, i64),
    Get(String),
    Delete(String),
    DeleteAll,
    PutMany(Vec<(String, i64)>),
    DeleteMany(Vec<String>),
    GetMany(Vec<String>),
    List(ListSpec),
    Txn(Vec<Op>, TxnEnd),
}

impl Op {
    fn keys(&self, out: &mut BTreeSet<String>) {
        match self {
            Op::Put(k, _) | Op::Get(k) | Op::Delete(k) => {
                out.insert(k.clone());
            }
            Op::DeleteAll => {}
            Op::PutMany(entries) => out.extend(entries.iter().map(|(k, _)| k.clone())),
            Op::DeleteMany(keys) | Op::GetMany(keys) => out.extend(keys.iter().cloned()),
            Op::List(spec) => out.extend(spec.keys().cloned()),
            Op::Txn(ops, _) => ops.iter().for_each(|op| op.keys(out)),
        }
    }
}

/// What one operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Out {
    Unit,
    Value(Option<i64>),
    Existed(bool),
    Count(usize),
    Many(BTreeMap<String, i64>),
    List(Vec<(String, i64)>),
    /// The transaction's inner results, and whether `transaction` returned `Ok`.
    Txn(Vec<Out>, bool),
}

/// What a call sees: list results, `get` of each key, `get_many` of all keys, a full list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    lists: Vec<Vec<(String, i64)>>,
    gets: Vec<(String, Option<i64>)>,
    many: BTreeMap<String, i64>,
    all: Vec<(String, i64)>,
}

// ---------------------------------------------------------------------------------------------
// The object under test.

fn run_ops(storage: &mut Storage, ops: &[Op]) -> Result<Vec<Out>> {
    ops.iter().map(|op| run_op(storage, op)).collect()
}

fn run_op(storage: &mut Storage, op: &Op) -> Result<Out> {
    Ok(match op {
        Op::Put(k, v) => {
            storage.put(k, v)?;
            Out::Unit
        }
        Op::Get(k) => Out::Value(storage.get(k)?),
        Op::Delete(k) => Out::Existed(storage.delete(k)?),
        Op::DeleteAll => {
            storage.delete_all()?;
            Out::Unit
        }
        Op::PutMany(entries) => {
            storage.put_many(entries.iter().map(|(k, v)| (k.as_str(), *v)))?;
            Out::Unit
        }
        Op::DeleteMany(keys) => Out::Count(storage.delete_many(keys)?),
        Op::GetMany(keys) => Out::Many(storage.get_many(keys)?),
        Op::List(spec) => Out::List(storage.list(spec.options())?),
        Op::Txn(ops, end) => {
            let mut inner = Vec::new();
            let result = storage.transaction(|txn| {
                inner = run_ops(txn, ops)?;
                match end {
                    TxnEnd::Commit => Ok(()),
                    TxnEnd::Rollback => {
                        txn.rollback();
                        Ok(())
                    }
                    TxnEnd::Fail => Err(Error::app("Abort", "the test aborts this transaction")),
                }
            });
            let ok = match (result, end) {
                (Ok(()), TxnEnd::Commit | TxnEnd::Rollback) => true,
                (Err(e), TxnEnd::Fail) if e.app_kind() == Some("Abort") => false,
                // Anything else is a failure of the storage itself: report it.
                (Err(e), _) => return Err(e),
                (Ok(()), TxnEnd::Fail) => {
                    return Err(Error::app("Test", "a failing transaction returned Ok"))
                }
            };
            Out::Txn(inner, ok)
        }
    })
}

fn view(storage: &Storage, lists: &[ListSpec], keys: &[String]) -> Result<View> {
    let lists = lists
        .iter()
        .map(|spec| storage.list(spec.options()))
        .collect::<Result<Vec<_>>>()?;
    let gets = keys
        .iter()
        .map(|k| Ok((k.clone(), storage.get(k)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut many = BTreeMap::new();
    for chunk in keys.chunks(MAX_BATCH_KEYS) {
        many.extend(storage.get_many(chunk)?);
    }
    let all = storage.list(ListOptions::default())?;
    Ok(View {
        lists,
        gets,
        many,
        all,
    })
}

#[durable_object]
pub struct Model {
    ctx: Context,
}

#[durable_object]
impl Model {
    pub fn new(ctx: Context) -> Self {
        Model { ctx }
    }

    /// Applies `ops` (uncommitted until this call returns), then reads inside the call.
    pub async fn apply(
        &mut self,
        ops: Vec<Op>,
        lists: Vec<ListSpec>,
        keys: Vec<String>,
    ) -> Result<(Vec<Out>, View)> {
        let outs = run_ops(self.ctx.storage_mut(), &ops)?;
        Ok((outs, view(self.ctx.storage(), &lists, &keys)?))
    }

    /// Reads committed state.
    pub async fn read(&self, lists: Vec<ListSpec>, keys: Vec<String>) -> Result<View> {
        view(self.ctx.storage(), &lists, &keys)
    }
}

// ---------------------------------------------------------------------------------------------
// The model.

type Map = BTreeMap<String, i64>;

fn model_list(map: &Map, spec: &ListSpec) -> Vec<(String, i64)> {
    // `String`'s order is the order of UTF-8 bytes.
    let mut out: Vec<(String, i64)> = map
        .iter()
        .filter(|(k, _)| spec.start.as_ref().is_none_or(|s| *k >= s))
        .filter(|(k, _)| spec.start_after.as_ref().is_none_or(|s| *k > s))
        .filter(|(k, _)| spec.end.as_ref().is_none_or(|e| *k < e))
        .filter(|(k, _)| {
            spec.prefix
                .as_ref()
                .is_none_or(|p| k.starts_with(p.as_str()))
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if spec.reverse {
        out.reverse();
    }
    if let Some(limit) = spec.limit {
        out.truncate(limit);
    }
    out
}

fn model_op(map: &mut Map, op: &Op) -> Out {
    match op {
        Op::Put(k, v) => {
            map.insert(k.clone(), *v);
            Out::Unit
        }
        Op::Get(k) => Out::Value(map.get(k).copied()),
        Op::Delete(k) => Out::Existed(map.remove(k).is_some()),
        Op::DeleteAll => {
            map.clear();
            Out::Unit
        }
        Op::PutMany(entries) => {
            map.extend(entries.iter().cloned());
            Out::Unit
        }
        Op::DeleteMany(keys) => {
            Out::Count(keys.iter().filter(|k| map.remove(*k).is_some()).count())
        }
        Op::GetMany(keys) => Out::Many(
            keys.iter()
                .filter_map(|k| map.get(k).map(|v| (k.clone(), *v)))
                .collect(),
        ),
        Op::List(spec) => Out::List(model_list(map, spec)),
        Op::Txn(ops, end) => {
            let mut inner_map = map.clone();
            let inner = ops.iter().map(|op| model_op(&mut inner_map, op)).collect();
            if *end == TxnEnd::Commit {
                *map = inner_map;
            }
            Out::Txn(inner, *end != TxnEnd::Fail)
        }
    }
}

fn model_view(map: &Map, lists: &[ListSpec], keys: &[String]) -> View {
    View {
        lists: lists.iter().map(|s| model_list(map, s)).collect(),
        gets: keys
            .iter()
            .map(|k| (k.clone(), map.get(k).copied()))
            .collect(),
        many: keys
            .iter()
            .filter_map(|k| map.get(k).map(|v| (k.clone(), *v)))
            .collect(),
        all: map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// `z` is 0x7a, `¿` is c2 bf (its prefix successor c2 c0 is not UTF-8), `é` is c3 a9.
const ALPHABET: [char; 5] = ['a', 'b', 'z', '\u{e9}', '\u{bf}'];

fn key() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), 0..=3)
        .prop_map(|chars| chars.into_iter().collect())
}

fn list_spec() -> impl Strategy<Value = ListSpec> {
    let lower = prop_oneof![
        Just((None, None)),
        key().prop_map(|k| (Some(k), None)),
        key().prop_map(|k| (None, Some(k))),
    ];
    (
        lower,
        prop::option::of(key()),
        prop::option::of(key()),
        any::<bool>(),
        // A zero limit is an error (tested apart, in errors.rs).
        prop::option::of(1usize..5),
    )
        .prop_map(
            |((start, start_after), end, prefix, reverse, limit)| ListSpec {
                start,
                start_after,
                end,
                prefix,
                reverse,
                limit,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let value = -3i64..100;
    let leaf = prop_oneof![
        6 => (key(), value.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Get),
        3 => key().prop_map(Op::Delete),
        1 => Just(Op::DeleteAll),
        2 => prop::collection::vec((key(), value), 0..6).prop_map(Op::PutMany),
        2 => prop::collection::vec(key(), 0..6).prop_map(Op::DeleteMany),
        1 => prop::collection::vec(key(), 0..6).prop_map(Op::GetMany),
        2 => list_spec().prop_map(Op::List),
    ];
    leaf.prop_recursive(2, 24, 6, |inner| {
        (
            prop::collection::vec(inner, 0..6),
            prop_oneof![
                Just(TxnEnd::Commit),
                Just(TxnEnd::Rollback),
                Just(TxnEnd::Fail)
            ],
        )
            .prop_map(|(ops, end)| Op::Txn(ops, end))
    })
}

#[derive(Debug, Clone)]
struct Step {
    ops: Vec<Op>,
    lists: Vec<ListSpec>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop::collection::vec(op(), 0..12),
            prop::collection::vec(list_spec(), 0..6),
        )
            .prop_map(|(ops, lists)| Step { ops, lists }),
        1..5,
    )
}

// ---------------------------------------------------------------------------------------------
// Running a case.

fn fail(what: &str, err: Error) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {err}"))
}

/// What a case leaves behind, to check again after a restart.
struct Outcome {
    id: ObjectId,
    model: Map,
    lists: Vec<ListSpec>,
    keys: Vec<String>,
}

type Call = Pin<Box<dyn Future<Output = Result<(Vec<Out>, View)>> + Send>>;

/// Polls `call` once, which sends it to the object; keeps it if it has not finished.
async fn send(mut call: Call) -> Call {
    std::future::poll_fn(|cx| {
        // A finished call keeps its output in a ready future.
        if let Poll::Ready(out) = call.as_mut().poll(cx) {
            call = Box::pin(std::future::ready(out));
        }
        Poll::Ready(())
    })
    .await;
    call
}

/// Runs `steps` on a fresh object: for each, an exclusive `apply` then a shared `read`,
/// checked against the model. `pipelined` sends every call before awaiting any, so that
/// calls run while the writes of earlier ones are still on their way to the backend (the
/// "in flight" layer); otherwise each call is awaited before the next is sent.
async fn run_case(
    rt: &Runtime,
    steps: &[Step],
    pipelined: bool,
) -> std::result::Result<Outcome, TestCaseError> {
    let models = rt.namespace::<Model>();
    let id = models.new_unique_id();
    let object = models.get(id.clone());
    let mut touched = BTreeSet::new();
    let mut all_lists = vec![ListSpec::all()];
    // Per step: the apply call and the read call, and the keys they read.
    let mut calls: Vec<(Call, Call, Vec<String>)> = Vec::new();
    for step in steps {
        step.ops.iter().for_each(|op| op.keys(&mut touched));
        step.lists
            .iter()
            .for_each(|spec| touched.extend(spec.keys().cloned()));
        let keys: Vec<String> = touched.iter().cloned().collect();
        let (o, ops, lists, k) = (
            object.clone(),
            step.ops.clone(),
            step.lists.clone(),
            keys.clone(),
        );
        let apply: Call = Box::pin(async move { o.apply(ops, lists, k).await });
        let (o, lists, k) = (object.clone(), step.lists.clone(), keys.clone());
        let read: Call = Box::pin(async move { Ok((Vec::new(), o.read(lists, k).await?)) });
        calls.push((apply, read, keys));
        all_lists.extend(step.lists.iter().cloned());
    }
    if pipelined {
        let mut sent = Vec::new();
        for (apply, read, keys) in calls {
            let apply = send(apply).await;
            let read = send(read).await;
            sent.push((apply, read, keys));
        }
        calls = sent;
    }

    let mut model = Map::new();
    for (i, ((apply, read, keys), step)) in calls.into_iter().zip(steps).enumerate() {
        let (outs, inside) = apply
            .await
            .map_err(|e| fail(&format!("step {i}: apply"), e))?;
        let expected_outs: Vec<Out> = step.ops.iter().map(|op| model_op(&mut model, op)).collect();
        prop_assert_eq!(
            &outs,
            &expected_outs,
            "step {}: results of the operations",
            i
        );
        let expected = model_view(&model, &step.lists, &keys);
        prop_assert_eq!(&inside, &expected, "step {}: reads inside the call", i);

        let (_, committed) = read
            .await
            .map_err(|e| fail(&format!("step {i}: read"), e))?;
        prop_assert_eq!(&committed, &expected, "step {}: reads after commit", i);
    }
    Ok(Outcome {
        id,
        model,
        lists: all_lists,
        keys: touched.into_iter().collect(),
    })
}

/// One runtime shared by every case of a test, so that each case's object lives among the
/// objects of earlier cases (its scans must not see their keys), and cases stay cheap.
struct Env {
    tokio: tokio::runtime::Runtime,
    store: Store,
    rt: Mutex<Option<Runtime>>,
}

enum Store {
    Memory,
    Fjall(PathBuf),
    /// With the storage cache's limit: 0 loads no object whole, so `list` runs in SQL.
    Postgres(PgServer, usize),
}

impl Env {
    fn new(store: Store) -> Env {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("cannot build a tokio runtime");
        let env = Env {
            tokio,
            store,
            rt: Mutex::new(None),
        };
        let rt = env.open().expect("cannot open the runtime");
        *env.lock() = Some(rt);
        env
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Runtime>> {
        self.rt.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> Result<Runtime> {
        let _in_tokio = self.tokio.enter();
        match &self.store {
            Store::Fjall(dir) => Runtime::builder().data_dir(dir).open(),
            Store::Memory => Ok(Runtime::in_memory()),
            Store::Postgres(pg, cache) => {
                let options = PostgresOptions::default().object_cache_bytes(*cache);
                let backend = PostgresBackend::connect_with(&pg.url("model"), options)?;
                Runtime::builder()
                    .backend(Arc::new(backend))
                    .idle_timeout(Duration::from_millis(50))
                    .open()
            }
        }
    }

    fn runtime(&self) -> Runtime {
        self.lock().clone().expect("the runtime is not open")
    }

    /// Shuts the runtime down and opens it again on the same directory.
    async fn restart(&self) -> Result<Runtime> {
        let old = self.lock().take().expect("the runtime is not open");
        old.shutdown().await?;
        let rt = self.open()?;
        *self.lock() = Some(rt.clone());
        Ok(rt)
    }
}

fn memory_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new(Store::Memory))
}

fn fjall_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // In the target's scratch directory, emptied at each run.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("storage_model-fjall");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("cannot empty the scratch directory");
        }
        Env::new(Store::Fjall(dir))
    })
}

/// One case on a backend that keeps its state: the model test, then (with `restart`) the
/// committed state read again after the runtime is reopened.
fn check_case(
    env: &Env,
    steps: &[Step],
    pipelined: bool,
    restart: bool,
) -> std::result::Result<(), TestCaseError> {
    env.tokio.block_on(async {
        let outcome = run_case(&env.runtime(), steps, pipelined).await?;
        if restart {
            // Committed state survives a restart.
            let rt = env.restart().await.map_err(|e| fail("restart", e))?;
            let object = rt.namespace::<Model>().get(outcome.id.clone());
            let after = object
                .read(outcome.lists.clone(), outcome.keys.clone())
                .await
                .map_err(|e| fail("read after restart", e))?;
            let expected = model_view(&outcome.model, &outcome.lists, &outcome.keys);
            prop_assert_eq!(after, expected, "after a restart");
        }
        Ok(())
    })
}

/// The model test on a private PostgreSQL, stopped when the test ends (a `proptest!` case
/// would keep it in a static, never dropped), with objects loaded whole into the storage
/// cache (`cache` large) or not (`cache` 0: every `list` runs in SQL).
fn model_on_postgres(cache: usize) {
    let pg = PgServer::start();
    pg.create_database("model");
    let env = Env::new(Store::Postgres(pg, cache));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        max_shrink_iters: 500,
        ..ProptestConfig::default()
    });
    let cases = (steps(), any::<bool>(), prop::bool::weighted(0.25));
    if let Err(e) = runner.run(&cases, |(steps, pipelined, restart)| {
        check_case(&env, &steps, pipelined, restart)
    }) {
        panic!("{e}");
    }
}

#[test]
fn storage_matches_a_btreemap_on_postgres_from_the_storage_cache() {
    model_on_postgres(1 << 20);
}

#[test]
fn storage_matches_a_btreemap_on_postgres_listing_in_sql() {
    model_on_postgres(0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn storage_matches_a_btreemap_in_memory(steps in steps(), pipelined in any::<bool>()) {
        let env = memory_env();
        env.tokio.block_on(async {
            run_case(&env.runtime(), &steps, pipelined).await?;
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn storage_matches_a_btreemap_on_fjall(
        steps in steps(),
        pipelined in any::<bool>(),
        restart in prop::bool::weighted(0.25),
    ) {
        check_case(fjall_env(), &steps, pipelined, restart)?;
    }
}
