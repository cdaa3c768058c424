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

    #[durable(max_queue = 10)]
    pub async fn get(&self) -> Result<i64> {
        Ok(0)
    }
}

fn main() {}
