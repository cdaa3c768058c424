use durable_runtime::{durable_object, Context};

#[durable_object]
pub struct Holder<T> {
    ctx: Context,
    value: T,
}

fn main() {}
