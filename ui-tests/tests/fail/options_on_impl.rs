use durable_runtime::{durable_object, Context};

pub struct Counter { ctx: Context }

#[durable_object(name = "Counter")]
impl Counter {
    pub fn new(ctx: Context) -> Self { Counter { ctx } }
}

fn main() {}
