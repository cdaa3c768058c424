//! The alarm scheduler: one task per class fires that class's due schedules.
//!
//! Schedules live in storage, in a `DUE` index ordered by due time (see
//! `storage/keys.rs`), written atomically with the object's other writes. The scheduler
//! scans the index from its start: every entry due now is fired (sent to its object as an
//! exclusive step, activating it if needed), and it sleeps until the first entry not yet due,
//! or until a commit round changes schedules. Because the index is in storage, alarms survive
//! restarts: a reopened runtime fires overdue alarms as soon as it knows the class.
//!
//! Delivery is at least once: the object deletes a schedule in the same commit as its
//! handler's writes; if the handler fails (error or panic) both are discarded and the
//! scheduler retries after a backoff that doubles from `alarm_backoff` (2 s by default),
//! `alarm_retries` times (6 by default), then the object deletes the schedule.
//!
//! The scheduler knows its class only as an [`AlarmTarget`]: the class's tag, the runtime's
//! host, and a way to fire one schedule. It does not depend on the namespaces that run it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::actor::AlarmOutcome;
use crate::class::AlarmInfo;
use crate::error::Result;
use crate::host::Host;
use crate::id::{ClassTag, ID_BYTES};
use crate::storage::keys::{self, Due};
use crate::storage::{now_ms, Backend};

/// What the scheduler needs from the class whose alarms it fires.
pub(crate) trait AlarmTarget: Send + Sync + 'static {
    /// The class: its tag selects the class's part of the `DUE` index; its name goes into
    /// traces.
    fn class(&self) -> &ClassTag;

    /// The runtime's host: the storage the index is in, the output gate that announces
    /// schedule changes, the retry backoff, whether the runtime is closing.
    fn host(&self) -> &Host;

    /// Runs the due schedule `info` on the object with these ID bytes, as an exclusive step
    /// of the object (activating it if needed), and says how it ended. An error means the
    /// handler failed and the schedule stays, for a retry.
    fn fire_alarm(
        self: &Arc<Self>,
        id: [u8; ID_BYTES],
        info: AlarmInfo,
    ) -> impl Future<Output = Result<AlarmOutcome>> + Send;
}

/// At most this many alarm runs of one class in flight at once.
const MAX_RUNNING: usize = 1024;

type Key = ([u8; ID_BYTES], String);

enum Busy {
    /// Sent to the object; waiting for the outcome.
    Running,
    /// Failed `count` times; the next try is due at `at_ms`.
    Retry { at_ms: u64, count: u32 },
    /// The object found it no longer due, but the index still shows it (its deletion is on
    /// its way to storage): skip it until schedules change.
    NotDue,
}

pub(crate) async fn run_scheduler<C: AlarmTarget>(ns: Arc<C>) {
    let mut changes = ns.host().gate.watch_schedules();
    let mut closing = ns.host().watch_closing();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Key, u32, Result<AlarmOutcome>)>();
    let mut busy: HashMap<Key, Busy> = HashMap::new();
    let prefix = keys::due_class_prefix(&ns.class().tag);
    let end = keys::prefix_successor(&prefix);
    // Cluster mode: only the schedules of objects in shards owned here fire here; a change
    // of the shards owned is a reason to look again.
    let ownership = ns.host().ownership.clone();
    let mut owned = ownership.as_ref().map(|o| o.watch());
    let elsewhere = move |key: &Key| ownership.as_ref().is_some_and(|o| !o.owns(&key.0));
    loop {
        if ns.host().is_closed() {
            return;
        }
        let now = now_ms();
        let mut fire: Vec<(Key, u32)> = Vec::new();
        let mut wake_ms: Option<u64> = None;
        let running = busy.values().filter(|b| matches!(b, Busy::Running)).count();
        for (key, state) in &busy {
            if let Busy::Retry { at_ms, count } = state {
                if *at_ms <= now {
                    fire.push((key.clone(), *count));
                } else {
                    wake_ms = Some(wake_ms.map_or(*at_ms, |w| w.min(*at_ms)));
                }
            }
        }
        let (class, in_flight) = (ns.class().name, running + fire.len());
        let backend = &ns.host().backend;
        let scan = if backend.object_cache_bytes().is_none() {
            // A local store: read in place, with the busy map as it is.
            let is_busy = |key: &Key| busy.contains_key(key) || elsewhere(key);
            due_entries(
                &**backend,
                class,
                &prefix,
                end.as_deref(),
                now,
                is_busy,
                in_flight,
            )
        } else {
            // A read that may wait on a network goes to a blocking thread, with its own copy
            // of what it needs.
            let (prefix, end) = (prefix.clone(), end.clone());
            let busy: HashSet<Key> = busy.keys().cloned().collect();
            let elsewhere = elsewhere.clone();
            ns.host()
                .read_backend(move |backend| {
                    let is_busy = |key: &Key| busy.contains(key) || elsewhere(key);
                    due_entries(
                        backend,
                        class,
                        &prefix,
                        end.as_deref(),
                        now,
                        is_busy,
                        in_flight,
                    )
                })
                .await
        };
        match scan {
            Ok((due, next)) => {
                fire.extend(due.into_iter().map(|d| ((d.id, d.schedule), 0)));
                if let Some(next) = next {
                    wake_ms = Some(wake_ms.map_or(next, |w| w.min(next)));
                }
            }
            Err(e) => {
                if ns.host().is_closed() {
                    return;
                }
                tracing::error!(class = ns.class().name, error = %e, "cannot read the alarm index; retrying in 1 s");
                wake_ms = Some(now + 1000);
            }
        }
        for (key, count) in fire {
            busy.insert(key.clone(), Busy::Running);
            let ns = ns.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let info = AlarmInfo {
                    retry_count: count,
                    is_retry: count > 0,
                    schedule: (!key.1.is_empty()).then(|| key.1.clone()),
                };
                let outcome = ns.fire_alarm(key.0, info).await;
                let _ = done.send((key, count, outcome));
            });
        }
        let sleep = async {
            match wake_ms {
                Some(at) => {
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                busy.retain(|_, b| !matches!(b, Busy::NotDue));
            }
            _ = closing.changed() => return,
            Some(Ok(())) = async {
                match &mut owned {
                    Some(owned) => Some(owned.changed().await),
                    None => None,
                }
            } => {
                // Schedules of shards no longer owned here are their new owner's to retry.
                busy.retain(|key, b| matches!(b, Busy::Running) || !elsewhere(key));
            }
            Some((key, count, outcome)) = done_rx.recv() => {
                match outcome {
                    Ok(AlarmOutcome::Ran) | Ok(AlarmOutcome::GaveUp) => {
                        busy.remove(&key);
                    }
                    Ok(AlarmOutcome::NotDue) => {
                        busy.insert(key, Busy::NotDue);
                    }
                    Err(e) => {
                        if ns.host().is_closed() {
                            return;
                        }
                        let backoff = ns.host().config.alarm_backoff.saturating_mul(1 << count.min(20));
                        let at_ms = now_ms() + u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                        tracing::debug!(class = ns.class().name, error = %e, retry_in_ms = %backoff.as_millis(), "alarm run failed");
                        busy.insert(key, Busy::Retry { at_ms, count: count + 1 });
                    }
                }
            }
            () = sleep => {}
        }
    }
}

/// The entries of the index due at `now` and not busy (at most enough to reach
/// [`MAX_RUNNING`]), and the due time of the first entry not yet due.
fn due_entries(
    backend: &dyn Backend,
    class: &str,
    prefix: &[u8],
    end: Option<&[u8]>,
    now: u64,
    is_busy: impl Fn(&Key) -> bool,
    running: usize,
) -> Result<(Vec<Due>, Option<u64>)> {
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let mut due = Vec::new();
    for entry in backend.scan(Bound::Included(prefix), upper, false)? {
        let (key, _) = entry?;
        let Some(entry) = keys::parse_due(&key) else {
            tracing::warn!(class, "skipping a malformed alarm index key");
            continue;
        };
        if entry.due_ms > now {
            return Ok((due, Some(entry.due_ms)));
        }
        if is_busy(&(entry.id, entry.schedule.clone())) {
            continue;
        }
        if running + due.len() >= MAX_RUNNING {
            // Come back when some finish (their outcomes wake the scheduler).
            return Ok((due, None));
        }
        due.push(entry);
    }
    Ok((due, None))
}
