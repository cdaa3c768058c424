use durable_runtime::{durable_object, Context};

pub struct NotSerde;

#[durable_object]
pub struct Counter { ctx: Context }

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self { Counter { ctx } }
    pub async fn take(&self, value: NotSerde) -> i64 { let _ = value; 1 }
}

fn main() {}
