//! Alarms and named schedules: they fire, they survive restarts, failures are retried with
//! backoff and the handler sees the retry count.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_runtime::{durable_object, AlarmInfo, Context, Error, Result, Runtime};

const HANG: Duration = Duration::from_secs(20);

/// How the `alarm` handler behaves, and what it saw.
#[derive(Default)]
struct Script {
    /// Fail while `retry_count` is below this.
    fail_until: u32,
    /// Fail by panicking instead of returning an error.
    panic: bool,
    /// Re-arm the alarm until it has fired this many times.
    rearm_until: u32,
    /// Every run: (schedule, retry_count, is_retry).
    seen: Mutex<Vec<(Option<String>, u32, bool)>>,
}

impl Script {
    fn seen(&self) -> Vec<(Option<String>, u32, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

#[durable_object]
pub struct Reminder {
    ctx: Context,
}

fn in_ms(ms: u64) -> SystemTime {
    SystemTime::now() + Duration::from_millis(ms)
}

#[durable_object]
impl Reminder {
    pub fn new(ctx: Context) -> Self {
        Reminder { ctx }
    }

    pub async fn set_in(&mut self, ms: u64) -> Result<()> {
        self.ctx.storage_mut().set_alarm(in_ms(ms))
    }

    pub async fn set_at(&mut self, at: SystemTime) -> Result<()> {
        self.ctx.storage_mut().set_alarm(at)
    }

    pub async fn schedule_in(&mut self, name: String, ms: u64) -> Result<()> {
        self.ctx.storage_mut().set_schedule(&name, in_ms(ms))
    }

    pub async fn cancel(&mut self) -> Result<()> {
        self.ctx.storage_mut().delete_alarm()
    }

    pub async fn alarm_at(&self) -> Result<Option<SystemTime>> {
        self.ctx.storage().get_alarm()
    }

    pub async fn schedule_names(&self) -> Result<Vec<String>> {
        Ok(self
            .ctx
            .storage()
            .schedules()?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// The schedules whose handler run succeeded, in order ("" for the alarm).
    pub async fn fired(&self) -> Result<Vec<String>> {
        Ok(self.ctx.storage().get("fired")?.unwrap_or_default())
    }

    /// Written only by failing runs: must never be visible.
    pub async fn partial(&self) -> Result<Option<u32>> {
        self.ctx.storage().get("partial")
    }

    pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let script = self
            .ctx
            .env::<Arc<Script>>()
            .cloned()
            .ok_or_else(|| Error::app("NoScript", "the test gives a Script env"))?;
        script
            .seen
            .lock()
            .unwrap()
            .push((info.schedule.clone(), info.retry_count, info.is_retry));
        if info.retry_count < script.fail_until {
            // Writes before a failure must be discarded with it.
            self.ctx.storage_mut().put("partial", &info.retry_count)?;
            if script.panic {
                panic!("alarm handler panics on run {}", info.retry_count);
            }
            return Err(Error::app(
                "Flaky",
                format!("run {} fails", info.retry_count),
            ));
        }
        let mut fired: Vec<String> = self.ctx.storage().get("fired")?.unwrap_or_default();
        fired.push(info.schedule.unwrap_or_default());
        self.ctx.storage_mut().put("fired", &fired)?;
        if (fired.len() as u32) < script.rearm_until {
            self.ctx.storage_mut().set_alarm(in_ms(20))?;
        }
        Ok(())
    }
}

fn runtime(script: Script) -> (Runtime, Arc<Script>) {
    let script = Arc::new(script);
    let rt = Runtime::builder()
        .in_memory()
        .env(script.clone())
        .alarm_retries(Duration::from_millis(40), 6)
        .open()
        .unwrap();
    (rt, script)
}

/// Polls `reminder.fired()` until it has `n` entries.
async fn fired(stub: &ReminderStub, n: usize) -> Vec<String> {
    tokio::time::timeout(HANG, async {
        loop {
            let fired = stub.fired().await.unwrap();
            if fired.len() >= n {
                return fired;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the alarm did not fire {n} time(s)"))
}

#[tokio::test]
async fn an_alarm_fires_once_and_is_deleted() {
    let (rt, script) = runtime(Script::default());
    let r = rt.namespace::<Reminder>().get_by_name("r");
    r.set_in(50).await.unwrap();
    assert!(r.alarm_at().await.unwrap().is_some());
    assert_eq!(fired(&r, 1).await, vec![String::new()]);
    assert_eq!(
        r.alarm_at().await.unwrap(),
        None,
        "a fired alarm is deleted"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(script.seen(), vec![(None, 0, false)], "fired exactly once");
    assert_eq!(rt.metrics().alarm_runs, 1);
}

#[tokio::test]
async fn get_alarm_has_millisecond_precision() {
    let (rt, _) = runtime(Script::default());
    let r = rt.namespace::<Reminder>().get_by_name("p");
    let at = UNIX_EPOCH + Duration::from_nanos(4_102_444_800_123_456_789); // year 2100
    r.set_at(at).await.unwrap();
    let got = r.alarm_at().await.unwrap().unwrap();
    assert_eq!(got, UNIX_EPOCH + Duration::from_millis(4_102_444_800_123));
}

#[tokio::test]
async fn an_alarm_set_before_a_restart_fires_after_reopen_without_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let script = Arc::new(Script::default());
    {
        let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
        rt.namespace::<Reminder>()
            .get_by_name("later")
            .set_in(150)
            .await
            .unwrap();
        // Dropped, not shut down: dropping the last handle closes the runtime too.
        drop(rt);
    }
    // Down while the alarm comes due.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rt = Runtime::builder()
        .data_dir(dir.path())
        .env(script.clone())
        .register::<Reminder>()
        .open()
        .unwrap();
    // No call: the reopened runtime fires the overdue alarm by itself.
    tokio::time::timeout(HANG, async {
        while rt.metrics().alarm_runs == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the overdue alarm did not fire after reopening");
    let r = rt.namespace::<Reminder>().get_by_name("later");
    assert_eq!(fired(&r, 1).await, vec![String::new()]);
    assert_eq!(r.alarm_at().await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_alarm_is_retried_with_backoff_and_sees_the_retry_count() {
    let (rt, script) = runtime(Script {
        fail_until: 3,
        ..Script::default()
    });
    let r = rt.namespace::<Reminder>().get_by_name("flaky");
    let start = std::time::Instant::now();
    r.set_in(0).await.unwrap();
    assert_eq!(fired(&r, 1).await, vec![String::new()]);
    assert_eq!(
        script.seen(),
        vec![
            (None, 0, false),
            (None, 1, true),
            (None, 2, true),
            (None, 3, true)
        ]
    );
    // Backoff 40 ms, 80 ms, 160 ms: at least 280 ms in all (a lower bound, not a timing).
    assert!(
        start.elapsed() >= Duration::from_millis(280),
        "{:?}",
        start.elapsed()
    );
    // The failed runs' writes were discarded; the successful run's kept.
    assert_eq!(r.partial().await.unwrap(), None);
    assert_eq!(r.alarm_at().await.unwrap(), None);
    assert_eq!(rt.metrics().alarm_failures, 3);
}

#[tokio::test]
async fn a_panicking_alarm_is_retried_and_the_runtime_keeps_serving() {
    let (rt, script) = runtime(Script {
        fail_until: 1,
        panic: true,
        ..Script::default()
    });
    let r = rt.namespace::<Reminder>().get_by_name("panicky");
    r.set_in(0).await.unwrap();
    assert_eq!(fired(&r, 1).await, vec![String::new()]);
    assert_eq!(script.seen(), vec![(None, 0, false), (None, 1, true)]);
}

#[tokio::test]
async fn an_alarm_that_always_fails_is_given_up_after_its_retries() {
    let script = Arc::new(Script {
        fail_until: u32::MAX,
        ..Script::default()
    });
    let rt = Runtime::builder()
        .in_memory()
        .env(script.clone())
        .alarm_retries(Duration::from_millis(10), 2)
        .open()
        .unwrap();
    let r = rt.namespace::<Reminder>().get_by_name("doomed");
    r.set_in(0).await.unwrap();
    tokio::time::timeout(HANG, async {
        while r.alarm_at().await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the alarm was never given up");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        script.seen(),
        vec![(None, 0, false), (None, 1, true), (None, 2, true)],
        "one run and two retries, then nothing"
    );
    assert!(r.fired().await.unwrap().is_empty());
    assert_eq!(r.partial().await.unwrap(), None);
}

#[tokio::test]
async fn named_schedules_fire_with_their_names_beside_the_alarm() {
    let (rt, script) = runtime(Script::default());
    let r = rt.namespace::<Reminder>().get_by_name("multi");
    r.schedule_in("daily".into(), 150).await.unwrap();
    r.schedule_in("hourly".into(), 100).await.unwrap();
    r.set_in(50).await.unwrap();
    assert_eq!(r.schedule_names().await.unwrap(), vec!["daily", "hourly"]);
    let fired = fired(&r, 3).await;
    assert_eq!(fired, vec!["", "hourly", "daily"], "in due order");
    assert!(r.schedule_names().await.unwrap().is_empty());
    let names: Vec<_> = script.seen().into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(
        names,
        vec![None, Some("hourly".to_owned()), Some("daily".to_owned())]
    );
}

#[tokio::test]
async fn a_rescheduled_alarm_fires_once_and_a_deleted_one_never() {
    let (rt, script) = runtime(Script::default());
    let ns = rt.namespace::<Reminder>();
    let moved = ns.get_by_name("moved");
    moved.set_in(10_000).await.unwrap();
    moved.set_in(30).await.unwrap();
    assert_eq!(fired(&moved, 1).await.len(), 1);

    let cancelled = ns.get_by_name("cancelled");
    cancelled.set_in(100).await.unwrap();
    cancelled.cancel().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cancelled.fired().await.unwrap().is_empty());
    assert_eq!(script.seen().len(), 1, "only the moved alarm ran, once");
}

#[tokio::test]
async fn a_handler_can_set_the_next_alarm() {
    let (rt, _) = runtime(Script {
        rearm_until: 3,
        ..Script::default()
    });
    let r = rt.namespace::<Reminder>().get_by_name("recurring");
    r.set_in(0).await.unwrap();
    assert_eq!(fired(&r, 3).await.len(), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.fired().await.unwrap().len(), 3, "stops re-arming after 3");
    assert_eq!(r.alarm_at().await.unwrap(), None);
}
