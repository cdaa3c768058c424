use durable_runtime::{durable_object, Context};

#[durable_object]
pub struct Counter {
    name: String,
}

#[durable_object]
impl Counter {
    pub fn new(name: String) -> Self {
        let _ = std::mem::size_of::<Context>();
        Counter { name }
    }
}

fn main() {}
