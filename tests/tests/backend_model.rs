//! The byte-level [`Backend`]s against a model (`BTreeMap<Vec<u8>, Vec<u8>>`): the in-memory
//! store, fjall and PostgreSQL must order keys the same way (bytewise, shorter first) and
//! answer every scan alike: each kind of bound on each side, ascending and descending, read
//! whole or only partly (PostgreSQL fetches scans in pages that grow from 16 rows). Keys are
//! drawn from bytes that sit on the edges (0x00, 0x01, 0x7f, 0x80, 0xff), so successors and
//! prefixes collide; batches mix puts and deletes; `key_prefixes` and `scan_each` (several
//! ranges in one request) are checked too.

use std::collections::BTreeMap;
use std::ops::Bound;

use durable_runtime::{
    Backend, Durability, FjallBackend, MemoryBackend, PostgresBackend, RangeRead, Write,
};
use durable_tests::postgres::PgServer;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    /// Writes (distinct keys): `Some` puts, `None` deletes.
    Commit(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    Scan {
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        reverse: bool,
        /// Read this many entries at most (the rest of the scan is dropped).
        take: usize,
    },
    Prefixes {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        len: usize,
    },
    /// Several ranges at once, each `[start, end)` with its own limit.
    ScanEach(Vec<(Vec<u8>, Option<Vec<u8>>, usize)>),
}

/// A key of up to 3 edge bytes; empty only as a bound (the runtime never stores an empty
/// key, and fjall refuses one).
fn bound_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0x00u8, 0x01, b'a', 0x7f, 0x80, 0xff]),
        0..4,
    )
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0x00u8, 0x01, b'a', 0x7f, 0x80, 0xff]),
        1..4,
    )
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        bound_key().prop_map(Bound::Included),
        bound_key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop::collection::vec(any::<u8>(), 0..6);
    prop_oneof![
        3 => prop::collection::btree_map(key(), prop::option::weighted(0.8, value), 1..40)
            .prop_map(|writes| Op::Commit(writes.into_iter().collect())),
        1 => key().prop_map(Op::Get),
        3 => (bound(), bound(), any::<bool>(), prop_oneof![Just(usize::MAX), 0..40usize])
            .prop_map(|(start, end, reverse, take)| Op::Scan { start, end, reverse, take }),
        1 => (bound_key(), prop::option::of(bound_key()), 0..4usize)
            .prop_map(|(start, end, len)| Op::Prefixes { start, end, len }),
        1 => prop::collection::vec((bound_key(), prop::option::of(bound_key()), 0..30usize), 1..4)
            .prop_map(Op::ScanEach),
    ]
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn model_scan(
    model: &Model,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let above = |k: &[u8]| match start {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    };
    let below = |k: &[u8]| match end {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    };
    let mut out: Vec<_> = model
        .iter()
        .filter(|(k, _)| above(k) && below(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        out.reverse();
    }
    out
}

fn model_prefixes(model: &Model, start: &[u8], end: Option<&[u8]>, len: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = model
        .keys()
        .filter(|k| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
        .filter(|k| k.len() >= len)
        .map(|k| k[..len].to_vec())
        .collect();
    out.dedup();
    out
}

/// Runs `ops` on `backend`, whose store starts as `model`; checks every answer.
fn check(backend: &dyn Backend, model: &mut Model, ops: &[Op]) -> Result<(), TestCaseError> {
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Commit(writes) => {
                let batch: Vec<Write<'_>> = writes
                    .iter()
                    .map(|(k, v)| Write {
                        key: k,
                        value: v.as_deref(),
                    })
                    .collect();
                backend
                    .commit(&batch, Durability::Fsync)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: commit: {e}")))?;
                for (k, v) in writes {
                    match v {
                        Some(v) => model.insert(k.clone(), v.clone()),
                        None => model.remove(k),
                    };
                }
            }
            Op::Get(key) => {
                let got = backend
                    .get(key)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: get: {e}")))?;
                prop_assert_eq!(got.as_ref(), model.get(key), "op {}: get {:?}", i, key);
            }
            Op::Scan {
                start,
                end,
                reverse,
                take,
            } => {
                let got: Vec<_> = backend
                    .scan(as_ref(start), as_ref(end), *reverse)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: scan: {e}")))?
                    .take(*take)
                    .collect::<durable_runtime::Result<_>>()
                    .map_err(|e| TestCaseError::fail(format!("op {i}: scan: {e}")))?;
                let mut expected = model_scan(model, start, end, *reverse);
                expected.truncate(*take);
                prop_assert_eq!(got, expected, "op {}: {:?}", i, op);
            }
            Op::ScanEach(ranges) => {
                let asked: Vec<RangeRead<'_>> = ranges
                    .iter()
                    .map(|(s, e, n)| RangeRead {
                        start: s,
                        end: e.as_deref(),
                        limit: *n,
                    })
                    .collect();
                let got = backend
                    .scan_each(&asked)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: scan_each: {e}")))?;
                let expected: Vec<Vec<(Vec<u8>, Vec<u8>)>> = ranges
                    .iter()
                    .map(|(s, e, n)| {
                        let end = e.clone().map_or(Bound::Unbounded, Bound::Excluded);
                        let mut page = model_scan(model, &Bound::Included(s.clone()), &end, false);
                        page.truncate(*n);
                        page
                    })
                    .collect();
                prop_assert_eq!(got, expected, "op {}: {:?}", i, op);
            }
            Op::Prefixes { start, end, len } => {
                let got = backend
                    .key_prefixes(start, end.as_deref(), *len)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: key_prefixes: {e}")))?;
                prop_assert_eq!(
                    got,
                    model_prefixes(model, start, end.as_deref(), *len),
                    "op {}: {:?}",
                    i,
                    op
                );
            }
        }
    }
    Ok(())
}

/// Each case runs on an empty store: everything it wrote is deleted afterwards.
fn run_on(backend: &dyn Backend, cases: u32) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 1000,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..30), |ops| {
        let mut model = Model::new();
        let outcome = check(backend, &mut model, &ops);
        let leftovers: Vec<Vec<u8>> = backend
            .scan(Bound::Unbounded, Bound::Unbounded, false)
            .and_then(|scan| scan.map(|e| e.map(|(k, _)| k)).collect())
            .map_err(|e| TestCaseError::fail(format!("clean-up scan: {e}")))?;
        let deletes: Vec<Write<'_>> = leftovers
            .iter()
            .map(|k| Write {
                key: k,
                value: None,
            })
            .collect();
        backend
            .commit(&deletes, Durability::Fsync)
            .map_err(|e| TestCaseError::fail(format!("clean-up: {e}")))?;
        outcome
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn memory_backend_matches_the_model() {
    run_on(&MemoryBackend::new(), 128);
}

#[test]
fn fjall_backend_matches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FjallBackend::open(dir.path()).unwrap();
    run_on(&backend, 128);
}

#[test]
fn postgres_backend_matches_the_model() {
    let pg = PgServer::start();
    pg.create_database("model");
    let backend = PostgresBackend::connect(&pg.url("model")).unwrap();
    run_on(&backend, 128);
}
