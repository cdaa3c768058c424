use durable_runtime::{durable_object, Context};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Option<Self> {
        Some(Counter { ctx })
    }
}

fn main() {}
