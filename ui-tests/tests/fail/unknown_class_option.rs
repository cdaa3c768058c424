use durable_runtime::{durable_object, Context};

#[durable_object(nmae = "Counter")]
pub struct Counter { ctx: Context }

fn main() {}
