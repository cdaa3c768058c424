use std::rc::Rc;

use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn increment(&mut self, amount: i64) -> Result<i64> {
        let shared = Rc::new(amount);
        tokio::task::yield_now().await;
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + *shared;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }
}

fn main() {}
