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

    pub async fn total(&self, values: std::borrow::Cow<'_, [i64]>) -> Result<i64> {
        Ok(values.iter().sum())
    }
}

fn main() {}
