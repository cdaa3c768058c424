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

    /// Copies the counter's state to another counter.
    pub async fn clone(&self, to: String) -> Result<()> {
        let _ = to;
        Ok(())
    }
}

fn main() {}
