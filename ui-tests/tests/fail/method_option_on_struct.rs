use durable_runtime::{durable_object, Context};

#[durable_object(rename = "Counter2")]
pub struct Counter {
    ctx: Context,
}

fn main() {}
