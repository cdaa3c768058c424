//! `alarm`, `on_activate` and `on_evict` are the runtime's to call, not calls of the stub.
use std::time::{Duration, SystemTime};

use durable_runtime::{durable_object, AlarmInfo, Context, DurableObject, Result, Runtime};

#[durable_object]
pub struct Reminder {
    ctx: Context,
    activated: bool,
}

#[durable_object]
impl Reminder {
    pub fn new(ctx: Context) -> Self {
        Reminder {
            ctx,
            activated: false,
        }
    }

    pub async fn activated(&self) -> bool {
        self.activated
    }

    pub async fn remind_now(&mut self) -> Result<()> {
        self.ctx.storage_mut().set_alarm(SystemTime::now())
    }

    pub async fn fired(&self) -> Result<Option<u32>> {
        self.ctx.storage().get("fired")
    }

    pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        self.ctx.storage_mut().put("fired", &info.retry_count)
    }

    async fn on_activate(&mut self) -> Result<()> {
        self.activated = true;
        Ok(())
    }

    async fn on_evict(&mut self) {}
}

#[tokio::main]
async fn main() -> Result<()> {
    let names: Vec<_> = Reminder::schema().iter().map(|m| m.wire_name).collect();
    assert_eq!(names, ["activated", "remind_now", "fired"]);

    let rt = Runtime::in_memory();
    let stub = rt.namespace::<Reminder>().get_by_name("r");
    assert!(stub.activated().await?);
    stub.remind_now().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stub.fired().await?.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the alarm did not fire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stub.fired().await?, Some(0));
    Ok(())
}
