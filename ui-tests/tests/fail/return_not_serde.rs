use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

/// Not serde: it cannot be a call's result.
pub struct Snapshot {
    pub value: i64,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot { value: 1 })
    }
}

fn main() {}
