use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Counter { ctx: Context }

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self { Counter { ctx } }
    pub async fn sneaky(&self) -> Result<()> {
        self.ctx.storage_mut().put("value", &1)
    }
}

fn main() {}
