use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn consume(self) -> i64 {
        1
    }

    pub async fn greet(&self, name: &str) -> String {
        name.to_owned()
    }

    pub async fn fine(&self) -> Result<i64> {
        Ok(1)
    }
}

fn main() {}
