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

    pub async fn get(&self) -> Result<i64> {
        Ok(0)
    }

    #[durable(rename = "get")]
    pub async fn get_value(&self) -> Result<i64> {
        Ok(0)
    }
}

fn main() {}
