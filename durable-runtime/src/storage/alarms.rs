//! The alarm API of [`Storage`]: the object's alarm and its named schedules.
//!
//! A schedule is two records of the object, written with the call's other writes: its due
//! time, and an entry in the `DUE` index the scheduler scans (`alarm.rs`). Setting a
//! schedule replaces its previous time (and index entry); times are kept in milliseconds
//! since the Unix epoch. Schedules are not data: `delete_all` leaves them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Storage, MAX_SCHEDULE_NAME_BYTES};
use crate::error::{Error, Result};

/// Alarms: one per object, as in Durable Objects, plus any number of named schedules.
///
/// When an alarm or schedule comes due, the runtime runs the class's
/// `pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()>` handler (activating the
/// object if needed, also after a restart), at least once; a failed run is retried with
/// exponential backoff. Setting a schedule replaces its previous time; writes to schedules
/// commit with the call's other writes.
impl Storage {
    /// Sets the object's alarm to fire at `at` (millisecond precision), replacing any
    /// earlier time. A time in the past fires at once.
    ///
    /// ```
    /// # use durable_runtime::{durable_object, AlarmInfo, Context, Result};
    /// # use std::time::{Duration, SystemTime};
    /// # #[durable_object] pub struct Reminder { ctx: Context }
    /// # #[durable_object] impl Reminder {
    /// #   pub fn new(ctx: Context) -> Self { Reminder { ctx } }
    /// pub async fn remind_in(&mut self, secs: u64) -> Result<()> {
    ///     let at = SystemTime::now() + Duration::from_secs(secs);
    ///     self.ctx.storage_mut().set_alarm(at)
    /// }
    ///
    /// pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
    ///     let fired: u64 = self.ctx.storage().get("fired")?.unwrap_or(0);
    ///     self.ctx.storage_mut().put("fired", &(fired + 1))
    /// }
    /// # }
    /// ```
    pub fn set_alarm(&mut self, at: SystemTime) -> Result<()> {
        self.store.set_schedule("", Some(to_ms(at)))
    }

    /// When the object's alarm will fire, if one is set.
    pub fn get_alarm(&self) -> Result<Option<SystemTime>> {
        Ok(self.store.schedule("")?.map(from_ms))
    }

    /// Cancels the object's alarm (no error if none is set).
    pub fn delete_alarm(&mut self) -> Result<()> {
        self.store.set_schedule("", None)
    }

    /// Sets the named schedule `name` to fire at `at`; the `alarm` handler then sees
    /// `info.schedule == Some(name)`. Names are 1 to 256 bytes.
    pub fn set_schedule(&mut self, name: &str, at: SystemTime) -> Result<()> {
        check_schedule_name(name)?;
        self.store.set_schedule(name, Some(to_ms(at)))
    }

    /// When the named schedule will fire, if it is set.
    pub fn get_schedule(&self, name: &str) -> Result<Option<SystemTime>> {
        check_schedule_name(name)?;
        Ok(self.store.schedule(name)?.map(from_ms))
    }

    /// Cancels the named schedule (no error if it is not set).
    pub fn delete_schedule(&mut self, name: &str) -> Result<()> {
        check_schedule_name(name)?;
        self.store.set_schedule(name, None)
    }

    /// Every named schedule of this object and when it fires, by name (not the alarm).
    pub fn schedules(&self) -> Result<Vec<(String, SystemTime)>> {
        Ok(self
            .store
            .schedules()?
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, ms)| (name, from_ms(ms)))
            .collect())
    }
}

fn check_schedule_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_BYTES {
        return Err(Error::invalid_argument(format!(
            "a schedule name is 1 to {MAX_SCHEDULE_NAME_BYTES} bytes, got {}",
            name.len()
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (times before it count as 0).
pub(crate) fn to_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
