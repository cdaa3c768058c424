use durable_runtime::{durable_object, Context};

pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Default for Counter {
    fn default() -> Self {
        unimplemented!()
    }
}

fn main() {}
