use durable_runtime::{durable_object, Context};

pub struct Holder<T> {
    ctx: Context,
    value: T,
}

#[durable_object]
impl<T: Default + Send + Sync + 'static> Holder<T> {
    pub fn new(ctx: Context) -> Self {
        Holder { ctx, value: T::default() }
    }
}

fn main() {}
