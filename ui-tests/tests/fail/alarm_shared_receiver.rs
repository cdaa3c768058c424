use durable_runtime::{durable_object, AlarmInfo, Context, Result};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn alarm(&self, info: AlarmInfo) -> Result<()> {
        let _ = info;
        Ok(())
    }
}

fn main() {}
