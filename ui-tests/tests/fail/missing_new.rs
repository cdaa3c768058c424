use durable_runtime::{durable_object, Context};

#[durable_object]
pub struct Counter { ctx: Context }

#[durable_object]
impl Counter {
    pub async fn get(&self) -> i64 { 1 }
}

fn main() {}
