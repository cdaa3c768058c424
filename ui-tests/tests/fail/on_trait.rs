use durable_runtime::durable_object;

#[durable_object]
pub trait Counter {
    fn get(&self) -> i64;
}

fn main() {}
