use durable_runtime::{durable_object, Context, Result};

/// Serialize only: it cannot be read back on the other side.
#[derive(serde::Serialize)]
pub struct Event {
    pub name: String,
}

#[durable_object]
pub struct Log {
    ctx: Context,
}

#[durable_object]
impl Log {
    pub fn new(ctx: Context) -> Self {
        Log { ctx }
    }

    pub async fn record(&mut self, event: Event) -> Result<()> {
        self.ctx.storage_mut().put("last", &event.name)
    }
}

fn main() {}
