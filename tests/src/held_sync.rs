//! A test backend: a [`MemoryBackend`] whose syncs and applies can be held, delayed or made
//! to fail, and which records what each completed sync covered. The output gate's tests use
//! it in one process (`output_gate.rs`) and across a connection (`remote.rs`).

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use durable_runtime::{Backend, Durability, MemoryBackend, Result, ScanIter, Write};

/// A hold on one backend operation: while `held`, callers wait, except that each permit lets
/// one through.
#[derive(Default)]
pub struct Hold {
    held: bool,
    permits: u64,
    /// How many callers are blocked right now.
    waiting: usize,
}

#[derive(Default)]
pub struct State {
    pub sync_hold: Hold,
    pub apply_hold: Hold,
    /// The next `apply` (after its hold) fails without applying anything.
    pub fail_next_apply: bool,
    /// The next `sync` (after its hold) fails; its batches were applied.
    pub fail_next_sync: bool,
    /// Every write applied, in order: full key and value (`None`: delete).
    pub applied: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The highest value applied under a key ending in `value`.
    pub applied_max_value: i64,
    /// The highest value applied under such a key before the last completed sync.
    pub synced_max_value: i64,
}

/// A [`MemoryBackend`] whose `sync` (and `apply`) can be held, delayed or made to fail, and
/// which records what it applied and what each completed sync covered.
pub struct HeldSync {
    inner: MemoryBackend,
    state: Mutex<State>,
    changed: Condvar,
    applies: AtomicU64,
    syncs: AtomicU64,
    /// Syncs asked for [`Durability::Buffered`] only.
    buffered_syncs: AtomicU64,
    /// Each sync sleeps this long, like an `fsync` on a real disk.
    sync_delay: Duration,
}

impl HeldSync {
    pub fn new() -> Arc<HeldSync> {
        Self::with_sync_delay(Duration::ZERO)
    }

    pub fn with_sync_delay(sync_delay: Duration) -> Arc<HeldSync> {
        Arc::new(HeldSync {
            inner: MemoryBackend::new(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            applies: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            buffered_syncs: AtomicU64::new(0),
            sync_delay,
        })
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.changed.notify_all();
    }

    pub fn hold_syncs(&self) {
        self.update(|s| s.sync_hold.held = true);
    }

    pub fn release_syncs(&self) {
        self.update(|s| s.sync_hold.held = false);
    }

    pub fn hold_applies(&self) {
        self.update(|s| s.apply_hold.held = true);
    }

    pub fn release_applies(&self) {
        self.update(|s| s.apply_hold.held = false);
    }

    /// Lets one held apply through.
    pub fn permit_one_apply(&self) {
        self.update(|s| s.apply_hold.permits += 1);
    }

    pub fn release_all(&self) {
        self.update(|s| {
            s.sync_hold.held = false;
            s.apply_hold.held = false;
        });
    }

    pub fn fail_next_apply(&self) {
        self.update(|s| s.fail_next_apply = true);
    }

    pub fn fail_next_sync(&self) {
        self.update(|s| s.fail_next_sync = true);
    }

    pub fn syncs_waiting(&self) -> usize {
        self.state().sync_hold.waiting
    }

    pub fn applies_waiting(&self) -> usize {
        self.state().apply_hold.waiting
    }

    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    pub fn completed_syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    pub fn buffered_syncs(&self) -> u64 {
        self.buffered_syncs.load(Ordering::SeqCst)
    }

    pub fn synced_max_value(&self) -> i64 {
        self.state().synced_max_value
    }

    /// How many applied writes went to a key ending in `value`.
    pub fn value_writes(&self) -> usize {
        self.state()
            .applied
            .iter()
            .filter(|(k, _)| k.ends_with(b"value"))
            .count()
    }

    /// Waits while `hold` (chosen by `pick`) is held with no permit.
    fn pass<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        pick: fn(&mut State) -> &mut Hold,
    ) -> MutexGuard<'a, State> {
        pick(&mut state).waiting += 1;
        self.changed.notify_all();
        loop {
            let hold = pick(&mut state);
            if !hold.held {
                break;
            }
            if hold.permits > 0 {
                hold.permits -= 1;
                break;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        pick(&mut state).waiting -= 1;
        self.changed.notify_all();
        state
    }
}

/// Releases every hold when dropped, so that a failing test fails instead of hanging in the
/// runtime's drop (which joins the commit thread). Declare it after the runtime.
pub struct ReleaseOnDrop(pub Arc<HeldSync>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release_all();
    }
}

/// Decodes a postcard `i64` (a zigzag varint).
pub fn decode_i64(bytes: &[u8]) -> Option<i64> {
    let mut raw: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

impl Backend for HeldSync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>> {
        self.inner.scan(start, end, reverse)
    }

    fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
        let mut state = self.pass(self.state(), |s| &mut s.apply_hold);
        if std::mem::take(&mut state.fail_next_apply) {
            return Err(durable_runtime::Error::storage("injected apply failure"));
        }
        self.inner.apply(batch)?;
        for write in batch {
            state
                .applied
                .push((write.key.to_vec(), write.value.map(<[u8]>::to_vec)));
            if write.key.ends_with(b"value") {
                if let Some(v) = write.value.and_then(decode_i64) {
                    state.applied_max_value = state.applied_max_value.max(v);
                }
            }
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    fn sync(&self, durability: Durability) -> Result<()> {
        let mut state = self.pass(self.state(), |s| &mut s.sync_hold);
        if std::mem::take(&mut state.fail_next_sync) {
            return Err(durable_runtime::Error::storage("injected sync failure"));
        }
        // What this sync covers: everything applied before it (one commit thread calls
        // `apply` and `sync`, so nothing is applied while we are here).
        let covered = state.applied_max_value;
        if durability == Durability::Buffered {
            self.buffered_syncs.fetch_add(1, Ordering::SeqCst);
        }
        drop(state);
        if !self.sync_delay.is_zero() {
            std::thread::sleep(self.sync_delay);
        }
        self.inner.sync(durability)?;
        let mut state = self.state();
        state.synced_max_value = state.synced_max_value.max(covered);
        self.syncs.fetch_add(1, Ordering::SeqCst);
        drop(state);
        self.changed.notify_all();
        Ok(())
    }
}
