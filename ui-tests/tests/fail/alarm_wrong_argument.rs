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

    pub async fn alarm(&mut self, retries: u32) -> Result<()> {
        let _ = retries;
        Ok(())
    }
}

fn main() {}
