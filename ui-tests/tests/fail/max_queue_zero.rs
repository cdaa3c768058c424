use durable_runtime::{durable_object, Context};

#[durable_object(max_queue = 0)]
pub struct Counter {
    ctx: Context,
}

fn main() {}
