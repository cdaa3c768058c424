//! Alarms and named schedules against a model (a `BTreeMap<name, ms>`, `""` for the alarm),
//! across restarts, on both backends: `storage_model.rs` covers the key/value API; this adds
//! `set_alarm`, `get_alarm`, `delete_alarm`, `set_schedule`, `get_schedule`,
//! `delete_schedule`, `schedules` (with invalid names), interleaved with data writes and
//! `delete_all` (which leaves alarms alone). Every call's results and a shared read after it
//! are checked against the model; between calls the runtime is sometimes shut down and
//! reopened — on fjall from its directory, in memory over the same `MemoryBackend` (a restart
//! of the runtime, not of the process). Times lie in 2100, so nothing fires.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_runtime::{
    durable_object, AlarmInfo, Backend, Context, ErrorKind, MemoryBackend, Result, Runtime,
    MAX_SCHEDULE_NAME_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};

/// 2100-01-01, in ms since the Unix epoch.
const BASE_MS: u64 = 4_102_444_800_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SOp {
    /// At `BASE_MS + ms` plus `nanos` below a millisecond (dropped: ms precision).
    SetAlarm(u64, u32),
    GetAlarm,
    DeleteAlarm,
    SetSchedule(String, u64, u32),
    GetSchedule(String),
    DeleteSchedule(String),
    Schedules,
    Put(String),
    DeleteAll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SOut {
    Unit,
    Time(Option<u64>),
    List(Vec<(String, u64)>),
    Invalid,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn at(offset: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(BASE_MS + offset) + Duration::from_nanos(nanos.into())
}

fn out(r: Result<SOut>) -> Result<SOut> {
    match r {
        Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(SOut::Invalid),
        r => r,
    }
}

/// The alarm's time and every named schedule, in ms.
pub type Committed = (Option<u64>, Vec<(String, u64)>);

#[durable_object]
pub struct Sched {
    ctx: Context,
}

#[durable_object]
impl Sched {
    pub fn new(ctx: Context) -> Self {
        Sched { ctx }
    }

    pub async fn apply(&mut self, ops: Vec<SOp>) -> Result<Vec<SOut>> {
        let mut outs = Vec::new();
        for op in ops {
            let s = self.ctx.storage_mut();
            let r = match op {
                SOp::SetAlarm(o, n) => s.set_alarm(at(o, n)).map(|()| SOut::Unit),
                SOp::GetAlarm => s.get_alarm().map(|t| SOut::Time(t.map(ms))),
                SOp::DeleteAlarm => s.delete_alarm().map(|()| SOut::Unit),
                SOp::SetSchedule(name, o, n) => {
                    s.set_schedule(&name, at(o, n)).map(|()| SOut::Unit)
                }
                SOp::GetSchedule(name) => s.get_schedule(&name).map(|t| SOut::Time(t.map(ms))),
                SOp::DeleteSchedule(name) => s.delete_schedule(&name).map(|()| SOut::Unit),
                SOp::Schedules => s
                    .schedules()
                    .map(|l| SOut::List(l.into_iter().map(|(n, t)| (n, ms(t))).collect())),
                SOp::Put(key) => s.put(&key, &1u8).map(|()| SOut::Unit),
                SOp::DeleteAll => s.delete_all().map(|()| SOut::Unit),
            };
            outs.push(out(r)?);
        }
        Ok(outs)
    }

    /// The alarm and every schedule, committed state.
    pub async fn read(&self) -> Result<Committed> {
        let s = self.ctx.storage();
        let alarm = s.get_alarm()?.map(ms);
        let list = s
            .schedules()?
            .into_iter()
            .map(|(n, t)| (n, ms(t)))
            .collect();
        Ok((alarm, list))
    }

    pub async fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        Err(durable_runtime::Error::app(
            "Fired",
            "nothing should fire in 2100",
        ))
    }
}

type Model = BTreeMap<String, u64>;

fn valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_SCHEDULE_NAME_BYTES
}

fn model_op(m: &mut Model, op: &SOp) -> SOut {
    match op {
        SOp::SetAlarm(o, _) => {
            m.insert(String::new(), BASE_MS + o);
            SOut::Unit
        }
        SOp::GetAlarm => SOut::Time(m.get("").copied()),
        SOp::DeleteAlarm => {
            m.remove("");
            SOut::Unit
        }
        SOp::SetSchedule(n, _, _) | SOp::GetSchedule(n) | SOp::DeleteSchedule(n) if !valid(n) => {
            SOut::Invalid
        }
        SOp::SetSchedule(n, o, _) => {
            m.insert(n.clone(), BASE_MS + o);
            SOut::Unit
        }
        SOp::GetSchedule(n) => SOut::Time(m.get(n).copied()),
        SOp::DeleteSchedule(n) => {
            m.remove(n);
            SOut::Unit
        }
        SOp::Schedules => SOut::List(model_list(m)),
        SOp::Put(_) | SOp::DeleteAll => SOut::Unit,
    }
}

fn model_list(m: &Model) -> Vec<(String, u64)> {
    m.iter()
        .filter(|(n, _)| !n.is_empty())
        .map(|(n, t)| (n.clone(), *t))
        .collect()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[aé]{1,3}",
        1 => Just(String::new()),
        1 => Just("x".repeat(MAX_SCHEDULE_NAME_BYTES + 1)),
        1 => Just("y".repeat(MAX_SCHEDULE_NAME_BYTES)),
    ]
}

fn sop() -> impl Strategy<Value = SOp> {
    let t = 0u64..5_000;
    let nanos = 0u32..1_000_000;
    prop_oneof![
        (t.clone(), nanos.clone()).prop_map(|(o, n)| SOp::SetAlarm(o, n)),
        Just(SOp::GetAlarm),
        Just(SOp::DeleteAlarm),
        (name(), t, nanos).prop_map(|(s, o, n)| SOp::SetSchedule(s, o, n)),
        name().prop_map(SOp::GetSchedule),
        name().prop_map(SOp::DeleteSchedule),
        Just(SOp::Schedules),
        "[aé]{1,2}".prop_map(SOp::Put),
        Just(SOp::DeleteAll),
    ]
}

/// Calls, each with whether the runtime restarts after it.
fn calls() -> impl Strategy<Value = Vec<(Vec<SOp>, bool)>> {
    prop::collection::vec(
        (
            prop::collection::vec(sop(), 1..8),
            prop::bool::weighted(0.2),
        ),
        1..6,
    )
}

struct Env {
    tokio: tokio::runtime::Runtime,
    /// fjall: the directory; memory: the one backend every runtime reopens.
    dir: Option<std::path::PathBuf>,
    memory: Arc<MemoryBackend>,
    rt: Mutex<Option<Runtime>>,
}

impl Env {
    fn new(dir: Option<std::path::PathBuf>) -> Env {
        let env = Env {
            tokio: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio"),
            dir,
            memory: Arc::new(MemoryBackend::new()),
            rt: Mutex::new(None),
        };
        let rt = env.open();
        *env.rt.lock().unwrap() = Some(rt);
        env
    }

    fn open(&self) -> Runtime {
        let _in = self.tokio.enter();
        match &self.dir {
            Some(dir) => Runtime::builder().data_dir(dir).open(),
            None => {
                let backend: Arc<dyn Backend> = self.memory.clone();
                Runtime::builder().backend(backend).open()
            }
        }
        .expect("open")
    }

    fn runtime(&self) -> Runtime {
        self.rt.lock().unwrap().clone().expect("open")
    }

    async fn restart(&self) -> Runtime {
        let old = self.rt.lock().unwrap().take().expect("open");
        old.shutdown().await.expect("shutdown");
        let rt = self.open();
        *self.rt.lock().unwrap() = Some(rt.clone());
        rt
    }
}

fn memory_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new(None))
}

fn fjall_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schedules_model-fjall");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("empty the scratch directory");
        }
        Env::new(Some(dir))
    })
}

fn run(env: &Env, calls: &[(Vec<SOp>, bool)]) -> std::result::Result<(), TestCaseError> {
    env.tokio.block_on(async {
        let mut rt = env.runtime();
        let id = rt.namespace::<Sched>().new_unique_id();
        let mut model = Model::new();
        for (i, (ops, restart)) in calls.iter().enumerate() {
            let stub = rt.namespace::<Sched>().get(id.clone());
            let outs = stub
                .apply(ops.clone())
                .await
                .map_err(|e| TestCaseError::fail(format!("call {i}: {e}")))?;
            let expected: Vec<SOut> = ops.iter().map(|op| model_op(&mut model, op)).collect();
            prop_assert_eq!(&outs, &expected, "call {}: results", i);
            if *restart {
                rt = env.restart().await;
            }
            let stub = rt.namespace::<Sched>().get(id.clone());
            let read = stub
                .read()
                .await
                .map_err(|e| TestCaseError::fail(format!("read {i}: {e}")))?;
            let want = (model.get("").copied(), model_list(&model));
            prop_assert_eq!(read, want, "call {}: committed (restart: {})", i, restart);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn schedules_match_a_model_across_restarts_in_memory(calls in calls()) {
        run(memory_env(), &calls)?;
    }

    #[test]
    fn schedules_match_a_model_across_restarts_on_fjall(calls in calls()) {
        run(fjall_env(), &calls)?;
    }
}
