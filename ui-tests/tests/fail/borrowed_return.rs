use durable_runtime::{durable_object, Context};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn name(&self) -> &str {
        "counter"
    }
}

fn main() {}
