//! Concurrency: no lost updates, isolated state across thousands of objects, shared calls
//! running together and exclusive calls running alone.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_runtime::{durable_object, Context, Error, Result, Runtime};
use durable_tests::Counter;
use tokio::sync::Barrier;

/// Turns a hang into a test failure. Generous: it only has to be finite.
const HANG: Duration = Duration::from_secs(30);

async fn no_lost_update(rt: &Runtime) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 50;
    let counters = rt.namespace::<Counter>();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let stub = counters.get_by_name("shared");
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                seen.push(stub.increment(1).await.expect("increment failed"));
            }
            seen
        }));
    }
    let mut all = Vec::with_capacity(TASKS * PER_TASK);
    for task in tasks {
        let seen = tokio::time::timeout(HANG, task)
            .await
            .expect("increments hung")
            .expect("task panicked");
        // One task's own increments are sequential, so it sees strictly growing values.
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "a task saw values go back: {seen:?}"
        );
        all.extend(seen);
    }
    let total = (TASKS * PER_TASK) as i64;
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "two increments returned one value"
    );
    assert_eq!(distinct, (1..=total).collect::<BTreeSet<i64>>());
    assert_eq!(
        counters
            .get_by_name("shared")
            .get_counter_value()
            .await
            .unwrap(),
        total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_lose_no_update() {
    no_lost_update(&Runtime::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_lose_no_update_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    no_lost_update(&rt).await;
    rt.shutdown().await.unwrap();
    // And the value is the one on disk.
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let value = rt
        .namespace::<Counter>()
        .get_by_name("shared")
        .get_counter_value()
        .await
        .unwrap();
    assert_eq!(value, 3200);
    rt.shutdown().await.unwrap();
}

async fn separate_state(rt: &Runtime) {
    const OBJECTS: usize = 3000;
    let counters = rt.namespace::<Counter>();
    let times = |i: usize| i % 7 + 1;
    let mut tasks = Vec::new();
    for i in 0..OBJECTS {
        for _ in 0..times(i) {
            let stub = counters.get_by_name(&format!("object-{i}"));
            tasks.push(tokio::spawn(async move { stub.increment(1).await }));
        }
    }
    for task in tasks {
        tokio::time::timeout(HANG, task)
            .await
            .expect("increments hung")
            .expect("task panicked")
            .expect("increment failed");
    }
    let mut reads = Vec::new();
    for i in 0..OBJECTS {
        let stub = counters.get_by_name(&format!("object-{i}"));
        reads.push(tokio::spawn(
            async move { (i, stub.get_counter_value().await) },
        ));
    }
    for read in reads {
        let (i, value) = tokio::time::timeout(HANG, read)
            .await
            .expect("reads hung")
            .expect("task panicked");
        assert_eq!(value.unwrap(), times(i) as i64, "object-{i}");
    }
    // An object never touched still reads zero.
    assert_eq!(
        counters
            .get_by_name("untouched")
            .get_counter_value()
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_objects_keep_separate_state() {
    separate_state(&Runtime::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_objects_keep_separate_state_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    separate_state(&rt).await;
    rt.shutdown().await.unwrap();
}

/// Shared state of the probe objects, given to the runtime with `.env(..)`.
struct Probe {
    /// Two shared calls meet here: both pass only if they run at the same time.
    barrier: Barrier,
    exclusive_in_flight: AtomicUsize,
    shared_in_flight: AtomicUsize,
    max_exclusive: AtomicUsize,
    max_shared: AtomicUsize,
    /// Calls that saw another call where none may be.
    violations: AtomicUsize,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            barrier: Barrier::new(2),
            exclusive_in_flight: AtomicUsize::new(0),
            shared_in_flight: AtomicUsize::new(0),
            max_exclusive: AtomicUsize::new(0),
            max_shared: AtomicUsize::new(0),
            violations: AtomicUsize::new(0),
        })
    }
}

#[durable_object]
pub struct Gate {
    ctx: Context,
}

#[durable_object]
impl Gate {
    pub fn new(ctx: Context) -> Self {
        Gate { ctx }
    }

    fn probe(&self) -> Result<Arc<Probe>> {
        self.ctx
            .env::<Arc<Probe>>()
            .cloned()
            .ok_or_else(|| Error::app("NoEnv", "the runtime has no Probe env"))
    }

    /// Waits at the barrier: returns only once another `meet` is waiting there too.
    pub async fn meet(&self) -> Result<()> {
        self.probe()?.barrier.wait().await;
        Ok(())
    }

    /// A shared call that checks no exclusive call runs meanwhile.
    pub async fn look(&self) -> Result<()> {
        let probe = self.probe()?;
        let n = probe.shared_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_shared.fetch_max(n, Ordering::SeqCst);
        for _ in 0..3 {
            if probe.exclusive_in_flight.load(Ordering::SeqCst) != 0 {
                probe.violations.fetch_add(1, Ordering::SeqCst);
            }
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if probe.exclusive_in_flight.load(Ordering::SeqCst) != 0 {
            probe.violations.fetch_add(1, Ordering::SeqCst);
        }
        probe.shared_in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    /// An exclusive call that checks it runs alone.
    pub async fn work(&mut self) -> Result<()> {
        let probe = self.probe()?;
        let n = probe.exclusive_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_exclusive.fetch_max(n, Ordering::SeqCst);
        let mut alone = n == 1;
        for _ in 0..3 {
            alone &= probe.shared_in_flight.load(Ordering::SeqCst) == 0;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        alone &= probe.shared_in_flight.load(Ordering::SeqCst) == 0;
        alone &= probe.exclusive_in_flight.load(Ordering::SeqCst) == 1;
        probe.exclusive_in_flight.fetch_sub(1, Ordering::SeqCst);
        let value = self.ctx.storage().get::<u64>("work")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("work", &value)?;
        if !alone {
            probe.violations.fetch_add(1, Ordering::SeqCst);
            return Err(Error::app(
                "NotAlone",
                "an exclusive call overlapped another",
            ));
        }
        Ok(())
    }

    pub async fn work_count(&self) -> Result<u64> {
        Ok(self.ctx.storage().get("work")?.unwrap_or(0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_calls_run_concurrently_and_exclusive_calls_alone() {
    let probe = Probe::new();
    let rt = Runtime::builder()
        .in_memory()
        .env(probe.clone())
        .open()
        .unwrap();
    let gates = rt.namespace::<Gate>();
    let gate = gates.get_by_name("g");

    // Two shared calls of one object can only both finish if they run together.
    let (a, b) = tokio::time::timeout(HANG, async { tokio::join!(gate.meet(), gate.meet()) })
        .await
        .expect("two shared calls did not run concurrently (they never met at the barrier)");
    a.unwrap();
    b.unwrap();

    // Many exclusive and shared calls at once: exclusive ones run alone.
    // Every third call is exclusive: 100 exclusive calls among 300.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            if i % 3 == 0 {
                gate.work().await
            } else {
                gate.look().await
            }
        }));
    }
    let mut exclusive_done = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        tokio::time::timeout(HANG, task)
            .await
            .expect("calls hung")
            .expect("task panicked")
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        if i % 3 == 0 {
            exclusive_done += 1;
        }
    }
    assert_eq!(probe.violations.load(Ordering::SeqCst), 0);
    assert_eq!(probe.max_exclusive.load(Ordering::SeqCst), 1);
    assert_eq!(probe.exclusive_in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(probe.shared_in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(exclusive_done, 100);
    assert_eq!(gate.work_count().await.unwrap(), exclusive_done);
    // Shared calls did overlap each other at some point (the barrier proved it can happen;
    // here it is only reported, not required, since scheduling decides).
    eprintln!(
        "most shared calls seen together: {}",
        probe.max_shared.load(Ordering::SeqCst)
    );
}
