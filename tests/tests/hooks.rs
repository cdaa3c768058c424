//! `on_activate` runs before any call of a fresh instance; `on_evict` runs before an idle
//! instance leaves memory, and its writes are durable before the next activation reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_runtime::{durable_object, Context, Error, ErrorKind, Result, Runtime};

/// Counts in memory only; `on_evict` saves the count and `on_activate` loads it.
#[durable_object]
pub struct Cached {
    ctx: Context,
    count: u64,
    loaded: bool,
}

#[durable_object]
impl Cached {
    pub fn new(ctx: Context) -> Self {
        Cached {
            ctx,
            count: 0,
            loaded: false,
        }
    }

    async fn on_activate(&mut self) -> Result<()> {
        self.count = self.ctx.storage().get("count")?.unwrap_or(0);
        self.loaded = true;
        Ok(())
    }

    async fn on_evict(&mut self) {
        let _ = self.ctx.storage_mut().put("count", &self.count);
    }

    /// Adds one in memory; returns (count, whether on_activate ran first).
    pub async fn add(&mut self) -> Result<(u64, bool)> {
        self.count += 1;
        Ok((self.count, self.loaded))
    }
}

#[tokio::test]
async fn on_evict_saves_and_on_activate_restores_in_memory_state() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder()
        .data_dir(dir.path())
        .idle_timeout(Duration::from_millis(100))
        .open()
        .unwrap();
    let ns = rt.namespace::<Cached>();
    let c = ns.get_by_name("c");
    assert_eq!(
        c.add().await.unwrap(),
        (1, true),
        "on_activate ran before the call"
    );
    assert_eq!(c.add().await.unwrap(), (2, true));
    tokio::time::timeout(Duration::from_secs(20), async {
        while rt.metrics().evictions == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no eviction");
    // A fresh instance: on_activate loaded what on_evict saved.
    assert_eq!(c.add().await.unwrap(), (3, true));
    // Also across a restart: shutdown does not evict, so only the evicted count (2) is on
    // disk, and the third add was in memory only.
    rt.shutdown().await.unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let c = rt.namespace::<Cached>().get_by_name("c");
    assert_eq!(c.add().await.unwrap(), (3, true));
}

/// `on_activate` fails until told otherwise.
#[durable_object]
pub struct Picky {
    ctx: Context,
}

#[durable_object]
impl Picky {
    pub fn new(ctx: Context) -> Self {
        Picky { ctx }
    }

    async fn on_activate(&mut self) -> Result<()> {
        let failures = self.ctx.env::<Arc<AtomicU32>>().expect("env").clone();
        if failures.load(Ordering::SeqCst) > 0 {
            failures.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::app("NotReady", "on_activate refused"));
        }
        Ok(())
    }

    pub async fn hello(&self) -> Result<String> {
        Ok("hello".to_owned())
    }
}

#[tokio::test]
async fn a_failing_on_activate_fails_the_call_and_the_next_call_tries_again() {
    let failures = Arc::new(AtomicU32::new(2));
    let rt = Runtime::builder()
        .in_memory()
        .env(failures.clone())
        .open()
        .unwrap();
    let p = rt.namespace::<Picky>().get_by_name("p");
    for _ in 0..2 {
        let err = p.hello().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::App, "{err}");
        assert_eq!(err.app_kind(), Some("NotReady"));
    }
    assert_eq!(p.hello().await.unwrap(), "hello");
    assert_eq!(
        rt.metrics().activations,
        1,
        "only the successful activation counts"
    );
}
