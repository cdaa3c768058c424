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

    async fn on_activate(&mut self, fresh: bool) -> Result<()> {
        let _ = fresh;
        Ok(())
    }
}

fn main() {}
