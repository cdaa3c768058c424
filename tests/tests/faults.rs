//! Fault injection: every storage fault reaches the caller as an `ErrorKind::Storage` error,
//! a failed sync never lets a reply through, the object resets and works again once the fault
//! clears, and a read error fails only the call that read. The faults come from
//! `durable_tests::faults::FaultyBackend`.

use std::sync::Arc;
use std::time::Duration;

use durable_runtime::{
    durable_object, Context, ErrorKind, FjallBackend, ListOptions, Result, Runtime,
};
use durable_tests::faults::{data_key, Fault, FaultyBackend};

#[durable_object]
pub struct Faulted {
    ctx: Context,
}

#[durable_object]
impl Faulted {
    pub fn new(ctx: Context) -> Self {
        Faulted { ctx }
    }

    /// `ctr += 1` and `k{ctr} = ctr`; returns the new value.
    pub async fn bump(&mut self) -> Result<u64> {
        let n = self.ctx.storage().get::<u64>("ctr")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("ctr", &n)?;
        self.ctx.storage_mut().put(&format!("k{n:06}"), &n)?;
        Ok(n)
    }

    pub async fn value(&self) -> Result<u64> {
        Ok(self.ctx.storage().get("ctr")?.unwrap_or(0))
    }

    /// Every `k…` key.
    pub async fn keys(&self) -> Result<Vec<(String, u64)>> {
        self.ctx.storage().list(ListOptions::default().prefix("k"))
    }

    /// A write that reads nothing.
    pub async fn set(&mut self, key: String, value: u64) -> Result<()> {
        self.ctx.storage_mut().put(&key, &value)
    }
}

/// Turns a hang into a failure.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn runtime(backend: &Arc<FaultyBackend>) -> Runtime {
    Runtime::builder()
        .backend(backend.clone())
        .open()
        .expect("open")
}

fn assert_storage<T: std::fmt::Debug>(what: &str, r: Result<T>) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Storage, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected a storage error, got Ok({v:?})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_fails_the_call_and_the_object_works_once_it_clears() {
    let backend = FaultyBackend::memory();
    let rt = runtime(&backend);
    let stub = rt.namespace::<Faulted>().get_by_name("a");
    assert_eq!(within("bump", stub.bump()).await.unwrap(), 1);
    backend.fail_next(Fault::Apply, 1);
    assert_storage(
        "bump during a failed apply",
        within("bump", stub.bump()).await,
    );
    // Reset: the lost write is gone, the acknowledged one stays, later calls work.
    assert_eq!(within("value", stub.value()).await.unwrap(), 1);
    assert_eq!(within("bump", stub.bump()).await.unwrap(), 2);
    let keys = within("keys", stub.keys()).await.unwrap();
    assert_eq!(keys, vec![("k000001".into(), 1), ("k000002".into(), 2)]);
    assert_eq!(backend.injected(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fails_the_call_and_the_object_works_once_it_clears() {
    let backend = FaultyBackend::memory();
    let rt = runtime(&backend);
    let stub = rt.namespace::<Faulted>().get_by_name("a");
    assert_eq!(within("bump", stub.bump()).await.unwrap(), 1);
    backend.fail_next(Fault::Sync, 1);
    assert_storage(
        "bump during a failed sync",
        within("bump", stub.bump()).await,
    );
    // The write reached the store but its sync failed: its fate is unknown to the caller
    // (here: applied, and made durable by the next good sync). Either way the object is
    // consistent and later calls build on what the store holds.
    let v = within("value", stub.value()).await.unwrap();
    assert!(v == 1 || v == 2, "value {v}");
    assert_eq!(within("bump", stub.bump()).await.unwrap(), v + 1);
    let keys = within("keys", stub.keys()).await.unwrap();
    assert_eq!(keys.len() as u64, v + 1, "keys {keys:?}");
}

/// Many callers on many objects while every seventh sync fails: each reply that arrives was
/// durable when it arrived (the backend's last good sync already held it), and each failure
/// is a storage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_never_lets_a_reply_through() {
    let backend = FaultyBackend::memory();
    let rt = runtime(&backend);
    let ns = rt.namespace::<Faulted>();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The first sync fails for sure; then one every few milliseconds while the callers run.
    backend.fail_next(Fault::Sync, 1);
    let injector = {
        let (backend, stop) = (backend.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                backend.fail_next(Fault::Sync, 1);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut tasks = Vec::new();
    for o in 0..8 {
        for _caller in 0..4 {
            let stub = ns.get_by_name(&format!("o{o}"));
            let id = ns.id_from_name(&format!("o{o}"));
            let backend = backend.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                for _ in 0..150 {
                    match stub.bump().await {
                        Ok(n) => {
                            // The gate released this reply: its write must be durable now.
                            let key = data_key(&id, format!("k{n:06}").as_bytes());
                            assert!(
                                backend.durable_get(&key).is_some(),
                                "reply {n} left before its write was synced"
                            );
                            let ctr = backend.durable_get(&data_key(&id, b"ctr"));
                            let ctr: u64 = postcard_u64(&ctr.expect("ctr durable"));
                            assert!(ctr >= n, "reply {n} left, durable counter {ctr}");
                            ok += 1;
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
                            failed += 1;
                        }
                    }
                }
                (ok, failed)
            }));
        }
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = within("callers", t).await.unwrap();
        ok += o;
        failed += f;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    injector.join().unwrap();
    backend.clear();
    println!(
        "faults: {} syncs failed, {ok} replies released durable, {failed} calls failed",
        backend.injected()
    );
    assert!(ok > 0, "no call succeeded");
    assert!(backend.injected() > 0, "no fault was injected");
    // Every object still works.
    for o in 0..8 {
        within("bump", ns.get_by_name(&format!("o{o}")).bump())
            .await
            .unwrap();
    }
}

/// Decodes a postcard `u64` (a varint).
fn postcard_u64(bytes: &[u8]) -> u64 {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_fails_that_call_only() {
    let backend = FaultyBackend::memory();
    let rt = runtime(&backend);
    let ns = rt.namespace::<Faulted>();
    let (a, b) = (ns.get_by_name("a"), ns.get_by_name("b"));
    assert_eq!(within("bump a", a.bump()).await.unwrap(), 1);
    assert_eq!(within("bump b", b.bump()).await.unwrap(), 1);
    // An object keeps its last small batch in memory as a read cache: write another key so
    // that `ctr` is read from the backend.
    within("a.set", a.set("other".into(), 6)).await.unwrap();

    // Every read of a's keys fails: get and scan.
    backend.fail_reads_of(ns.id_from_name("a").as_bytes());
    assert_storage("a.value", within("a.value", a.value()).await);
    assert_storage("a.keys", within("a.keys", a.keys()).await);
    assert_storage("a.bump", within("a.bump", a.bump()).await);
    // b is untouched, and a write that reads nothing still works on a.
    assert_eq!(within("bump b", b.bump()).await.unwrap(), 2);
    assert_eq!(within("b.keys", b.keys()).await.unwrap().len(), 2);
    within("a.set", a.set("other".into(), 7)).await.unwrap();

    backend.clear();
    assert_eq!(within("a.value", a.value()).await.unwrap(), 1);
    assert_eq!(within("bump a", a.bump()).await.unwrap(), 2);
    within("a.set", a.set("other".into(), 8)).await.unwrap();

    // One failing get, one failing scan, one scan failing midway: each fails one call.
    backend.fail_next(Fault::Get, 1);
    assert_storage("a.value", within("a.value", a.value()).await);
    assert_eq!(within("a.value", a.value()).await.unwrap(), 2);
    backend.fail_next(Fault::Scan, 1);
    assert_storage("a.keys", within("a.keys", a.keys()).await);
    backend.fail_next(Fault::ScanItem, 1);
    assert_storage("a.keys midway", within("a.keys", a.keys()).await);
    assert_eq!(within("a.keys", a.keys()).await.unwrap().len(), 2);
    assert!(backend.injected() >= 6, "injected {}", backend.injected());
}

/// On fjall: a failed apply and a failed sync, then a restart on the real directory: every
/// acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_fjall_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = Arc::new(FjallBackend::open(dir.path()).unwrap());
    let backend = FaultyBackend::over(fjall);
    let rt = runtime(&backend);
    let stub = rt.namespace::<Faulted>().get_by_name("a");
    let mut acked = 0;
    for round in 0..30 {
        match round % 10 {
            3 => backend.fail_next(Fault::Apply, 1),
            7 => backend.fail_next(Fault::Sync, 1),
            _ => {}
        }
        match within("bump", stub.bump()).await {
            Ok(n) => acked = acked.max(n),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Storage, "{e}"),
        }
    }
    within("shutdown", rt.shutdown()).await.unwrap();
    drop(backend);
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let stub = rt.namespace::<Faulted>().get_by_name("a");
    let v = within("value", stub.value()).await.unwrap();
    assert!(v >= acked, "acknowledged {acked}, recovered {v}");
    let keys = within("keys", stub.keys()).await.unwrap();
    assert_eq!(keys.len() as u64, v, "keys {keys:?}");
    rt.shutdown().await.unwrap();
}
