//! Decoders of bytes from outside the process never panic and never allocate without bound:
//! object ID strings, stored values read as another type, raw garbage under data keys (values
//! and non-UTF-8 keys), garbage in the runtime's own records (the `DUE` alarm index, `ALARM`
//! times, `NAME`), and postcard-encoded `Error` values. Each decoder must answer `Ok` or a
//! clean error (`InvalidId`, `Codec`, `Storage`); a panic fails the test (the object would
//! answer `Panicked`, the runtime's own tasks would die), and the scheduler must go on firing
//! well-formed alarms past malformed index keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use durable_runtime::{
    durable_object, AlarmInfo, Backend, Context, Error, ErrorKind, ListOptions, Namespace,
    ObjectId, Result, Runtime,
};
use durable_tests::faults::{data_key, FaultyBackend};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rec {
    a: u32,
    b: String,
    c: Vec<u16>,
    d: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    Unit,
    New(u64),
    Tuple(i8, String),
    Struct { x: f32, y: Vec<u8> },
}

/// A value of one of several types, stored as that type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Typed {
    U8(u8),
    I64(i64),
    Bool(bool),
    Char(char),
    F64(f64),
    Str(String),
    Bytes(Vec<u8>),
    Rec(Rec),
    Shape(Shape),
    Opt(Option<u32>),
    Tup((u16, String)),
    Map(BTreeMap<String, u32>),
    /// Stored as `Error::app(kind, message)`.
    Err(String, String),
}

/// How many types `read_as` and `list_as` know.
const KINDS: u8 = 15;

#[durable_object]
pub struct Decoder {
    ctx: Context,
}

fn show<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}")
}

#[durable_object]
impl Decoder {
    pub fn new(ctx: Context) -> Self {
        Decoder { ctx }
    }

    pub async fn put_typed(&mut self, key: String, value: Typed) -> Result<()> {
        let s = self.ctx.storage_mut();
        match value {
            Typed::U8(v) => s.put(&key, &v),
            Typed::I64(v) => s.put(&key, &v),
            Typed::Bool(v) => s.put(&key, &v),
            Typed::Char(v) => s.put(&key, &v),
            Typed::F64(v) => s.put(&key, &v),
            Typed::Str(v) => s.put(&key, &v),
            Typed::Bytes(v) => s.put(&key, &v),
            Typed::Rec(v) => s.put(&key, &v),
            Typed::Shape(v) => s.put(&key, &v),
            Typed::Opt(v) => s.put(&key, &v),
            Typed::Tup(v) => s.put(&key, &v),
            Typed::Map(v) => s.put(&key, &v),
            Typed::Err(kind, message) => s.put(&key, &Error::app(kind, message)),
        }
    }

    /// Reads `key` as type number `kind`; the value's `Debug` text.
    pub async fn read_as(&self, key: String, kind: u8) -> Result<Option<String>> {
        let s = self.ctx.storage();
        Ok(match kind {
            0 => s.get::<u8>(&key)?.map(show),
            1 => s.get::<i64>(&key)?.map(show),
            2 => s.get::<bool>(&key)?.map(show),
            3 => s.get::<char>(&key)?.map(show),
            4 => s.get::<f64>(&key)?.map(show),
            5 => s.get::<String>(&key)?.map(show),
            6 => s.get::<Vec<u8>>(&key)?.map(show),
            7 => s.get::<Rec>(&key)?.map(show),
            8 => s.get::<Shape>(&key)?.map(show),
            9 => s.get::<Option<u32>>(&key)?.map(show),
            10 => s.get::<(u16, String)>(&key)?.map(show),
            11 => s.get::<BTreeMap<String, u32>>(&key)?.map(show),
            12 => s.get::<Error>(&key)?.map(show),
            13 => s.get::<Result<u32>>(&key)?.map(show),
            _ => s.get::<Vec<Rec>>(&key)?.map(show),
        })
    }

    /// Lists every key as type number `kind`; how many entries.
    pub async fn list_as(&self, kind: u8) -> Result<usize> {
        fn n<T: serde::de::DeserializeOwned>(s: &durable_runtime::Storage) -> Result<usize> {
            Ok(s.list::<T>(ListOptions::default())?.len())
        }
        let s = self.ctx.storage();
        match kind {
            0 => n::<u8>(s),
            1 => n::<i64>(s),
            2 => n::<bool>(s),
            3 => n::<char>(s),
            4 => n::<f64>(s),
            5 => n::<String>(s),
            6 => n::<Vec<u8>>(s),
            7 => n::<Rec>(s),
            8 => n::<Shape>(s),
            9 => n::<Option<u32>>(s),
            10 => n::<(u16, String)>(s),
            11 => n::<BTreeMap<String, u32>>(s),
            12 => n::<Error>(s),
            13 => n::<Result<u32>>(s),
            _ => n::<Vec<Rec>>(s),
        }
    }

    pub async fn get_alarm(&self) -> Result<Option<SystemTime>> {
        self.ctx.storage().get_alarm()
    }

    pub async fn schedules(&self) -> Result<Vec<(String, SystemTime)>> {
        self.ctx.storage().schedules()
    }

    pub async fn set_alarm_now(&mut self) -> Result<()> {
        self.ctx.storage_mut().set_alarm(SystemTime::now())
    }

    pub async fn fired(&self) -> Result<bool> {
        Ok(self.ctx.storage().get::<bool>("fired")?.unwrap_or(false))
    }

    pub async fn name(&self) -> Result<Option<String>> {
        Ok(self.ctx.id().name().map(str::to_owned))
    }

    pub async fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        self.ctx.storage_mut().put("fired", &true)
    }
}

struct Env {
    tokio: tokio::runtime::Runtime,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env {
        tokio: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio"),
    })
}

/// A fresh name per case.
fn fresh(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{what}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// One runtime over a fault-free `FaultyBackend` (for `inject`), shared by the cases.
fn shared() -> &'static (Arc<FaultyBackend>, Runtime, Namespace<Decoder>) {
    static SHARED: OnceLock<(Arc<FaultyBackend>, Runtime, Namespace<Decoder>)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let _in = env().tokio.enter();
        let backend = FaultyBackend::memory();
        let rt = Runtime::builder()
            .backend(backend.clone())
            .open()
            .expect("open");
        let ns = rt.namespace::<Decoder>();
        (backend, rt, ns)
    })
}

/// `Ok`, or an error of one of `allowed` kinds; anything else (a panic) fails the case.
fn clean<T: std::fmt::Debug>(
    what: &str,
    r: Result<T>,
    allowed: &[ErrorKind],
) -> std::result::Result<(), TestCaseError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if allowed.contains(&e.kind()) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("{what}: {:?}: {e}", e.kind()))),
    }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("a call hung")
}

fn typed() -> impl Strategy<Value = Typed> {
    let rec = (
        any::<u32>(),
        ".{0,8}",
        prop::collection::vec(any::<u16>(), 0..4),
        any::<Option<i64>>(),
    )
        .prop_map(|(a, b, c, d)| Rec { a, b, c, d });
    let shape = prop_oneof![
        Just(Shape::Unit),
        any::<u64>().prop_map(Shape::New),
        (any::<i8>(), ".{0,6}").prop_map(|(a, b)| Shape::Tuple(a, b)),
        (any::<f32>(), prop::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(x, y)| Shape::Struct { x, y }),
    ];
    prop_oneof![
        any::<u8>().prop_map(Typed::U8),
        any::<i64>().prop_map(Typed::I64),
        any::<bool>().prop_map(Typed::Bool),
        any::<char>().prop_map(Typed::Char),
        any::<f64>().prop_map(Typed::F64),
        ".{0,12}".prop_map(Typed::Str),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Typed::Bytes),
        rec.prop_map(Typed::Rec),
        shape.prop_map(Typed::Shape),
        any::<Option<u32>>().prop_map(Typed::Opt),
        (any::<u16>(), ".{0,6}").prop_map(Typed::Tup),
        prop::collection::btree_map(".{0,4}", any::<u32>(), 0..3).prop_map(Typed::Map),
        (".{0,6}", ".{0,12}").prop_map(|(k, m)| Typed::Err(k, m)),
    ]
}

/// Garbage, with a bias towards what breaks decoders: huge varint lengths, enum tags, `0xff`.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        // A length prefix near u32::MAX or u64::MAX, then a few bytes.
        (
            prop::sample::select(vec![
                vec![0xff, 0xff, 0xff, 0xff, 0x0f],
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                vec![0xfe, 0xff, 0xff, 0x7f],
            ]),
            prop::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(mut a, b)| {
                a.extend(b);
                a
            }),
        prop::collection::vec(
            prop::sample::select(vec![0u8, 1, 2, 3, 0x7f, 0x80, 0xff]),
            0..24
        ),
    ]
}

fn valid_id(ns: &Namespace<Decoder>) -> String {
    ns.id_from_name("some object").to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// `id_from_string` on any text (any Unicode, 64-byte strings mixing hex digits and
    /// multi-byte characters, valid IDs with one character replaced): `Ok` or `InvalidId`.
    #[test]
    fn id_from_string_never_panics(
        text in prop_oneof![
            any::<String>(),
            "[0-9a-fA-F]{64}",
            "[0-9a-fé€𝄞]{20,64}",
            "[0-9a-f]{62}[é]",
        ],
        at in 0usize..64,
        with in any::<char>(),
    ) {
        let (_, _, ns) = shared();
        clean("id_from_string", ns.id_from_string(&text), &[ErrorKind::InvalidId])?;
        // A valid ID with one character replaced.
        let mut id: Vec<char> = valid_id(ns).chars().collect();
        id[at] = with;
        let mutated: String = id.into_iter().collect();
        match ns.id_from_string(&mutated) {
            Ok(parsed) => prop_assert_eq!(parsed.to_string(), mutated.to_ascii_lowercase()),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidId),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A value stored as one type and read (`get`, `list`) as each of 15 others: `Ok` (postcard
    /// may read the bytes as that type too) or a `Codec` error, never a panic.
    #[test]
    fn a_value_read_as_another_type_is_ok_or_a_codec_error(value in typed()) {
        let (_, _, ns) = shared();
        env().tokio.block_on(async {
            let stub = ns.get_by_name(&fresh("typed"));
            timed(stub.put_typed("v".into(), value.clone())).await.expect("put");
            for kind in 0..KINDS {
                let r = timed(stub.read_as("v".into(), kind)).await;
                clean(&format!("get as {kind} of {value:?}"), r, &[ErrorKind::Codec])?;
                let r = timed(stub.list_as(kind)).await;
                clean(&format!("list as {kind} of {value:?}"), r, &[ErrorKind::Codec])?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    /// Raw garbage under data keys, injected past the runtime: values (read with `get` and
    /// `list` as every type) and keys that are not UTF-8 (a `Storage` error from `list`).
    /// Also a valid postcard `Error` cut short, flipped or extended.
    #[test]
    fn garbage_under_data_keys_fails_cleanly(
        value in garbage(),
        raw_key in prop::collection::vec(any::<u8>(), 0..12),
        raw_value in garbage(),
        (cut, flip, extra) in (any::<prop::sample::Index>(), any::<prop::sample::Index>(), garbage()),
    ) {
        let (backend, _, ns) = shared();
        env().tokio.block_on(async {
            let name = fresh("garbage");
            let id: ObjectId = ns.id_from_name(&name);
            let stub = ns.get(id.clone());
            // A valid Error, then damaged in three ways.
            timed(stub.put_typed("e".into(), Typed::Err("Kind".into(), "a message".into())))
                .await
                .expect("put");
            let good = backend.get(&data_key(&id, b"e")).expect("get").expect("stored");
            let mut flipped = good.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0x5a;
            let mut longer = good.clone();
            longer.extend(&extra);
            let injected: [(&[u8], &[u8]); 5] = [
                (b"g", &value),
                (&raw_key, &raw_value),
                (b"e1", &good[..cut.index(good.len())]),
                (b"e2", &flipped),
                (b"e3", &longer),
            ];
            for (key, bytes) in injected {
                backend.inject(&data_key(&id, key), Some(bytes)).expect("inject");
            }
            for kind in 0..KINDS {
                for key in ["g", "e1", "e2", "e3"] {
                    let r = timed(stub.read_as(key.into(), kind)).await;
                    clean(&format!("get {key} as {kind}"), r, &[ErrorKind::Codec])?;
                }
                if let Ok(key) = std::str::from_utf8(&raw_key) {
                    let r = timed(stub.read_as(key.into(), kind)).await;
                    clean(&format!("get {key:?} as {kind}"), r, &[ErrorKind::Codec])?;
                }
                let r = timed(stub.list_as(kind)).await;
                clean(&format!("list as {kind}"), r, &[ErrorKind::Codec, ErrorKind::Storage])?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Garbage in the runtime's own records, present when the runtime opens: `DUE` index keys
    /// of the class (any bytes after the class tag, some due now), `ALARM` times of any length
    /// under any schedule name, a `NAME` that is not UTF-8. `get_alarm`, `schedules` and a
    /// call on the damaged object answer `Ok` or a `Storage` error; the scheduler skips what
    /// it cannot parse and still fires a well-formed alarm of another object.
    #[test]
    fn garbage_in_alarm_and_name_records_never_panics(
        due_tails in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..56), 1..6),
        due_now in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..6)), 0..3),
        alarms in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..6), garbage()), 1..4),
        name in garbage(),
    ) {
        env().tokio.block_on(async {
            // IDs depend on the class name only: compute them on a throwaway runtime.
            let (victim, healthy) = {
                let scratch = Runtime::in_memory();
                let ns = scratch.namespace::<Decoder>();
                let ids = (ns.id_from_name("victim"), ns.id_from_name("healthy"));
                scratch.shutdown().await.expect("shutdown");
                ids
            };
            let backend = FaultyBackend::memory();
            let tag = &victim.as_bytes()[..8];
            for tail in &due_tails {
                let mut key = vec![0x03];
                key.extend_from_slice(tag);
                key.extend_from_slice(tail);
                backend.inject(&key, Some(b"")).expect("inject");
            }
            // Well-formed times, due now, pointing at the victim with odd schedule names.
            for (seed, schedule) in &due_now {
                let mut key = vec![0x03];
                key.extend_from_slice(tag);
                key.extend_from_slice(&u64::from(*seed).to_be_bytes());
                key.extend_from_slice(victim.as_bytes());
                key.extend_from_slice(schedule);
                backend.inject(&key, Some(b"")).expect("inject");
            }
            for (schedule, value) in &alarms {
                let mut key = vec![0x02];
                key.extend_from_slice(victim.as_bytes());
                key.extend_from_slice(schedule);
                backend.inject(&key, Some(value)).expect("inject");
            }
            let mut key = vec![0x04];
            key.extend_from_slice(victim.as_bytes());
            backend.inject(&key, Some(&name)).expect("inject");

            let rt = Runtime::builder()
                .backend(backend.clone())
                .open()
                .expect("open");
            let ns = rt.namespace::<Decoder>();
            let v = ns.get(victim.clone());
            clean("get_alarm", timed(v.get_alarm()).await, &[ErrorKind::Storage])?;
            clean("schedules", timed(v.schedules()).await, &[ErrorKind::Storage])?;
            clean("name", timed(v.name()).await, &[ErrorKind::Storage])?;
            // The scheduler goes on: a well-formed alarm of another object fires.
            let h = ns.get(healthy.clone());
            timed(h.set_alarm_now()).await.expect("set_alarm");
            timed(async {
                while !h.fired().await.expect("fired") {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            timed(rt.shutdown()).await.expect("shutdown");
            Ok::<(), TestCaseError>(())
        })?;
    }
}
