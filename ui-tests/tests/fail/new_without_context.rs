use durable_runtime::{durable_object, Result};

#[durable_object]
pub struct Counter {
    value: i64,
}

#[durable_object]
impl Counter {
    pub fn new() -> Self {
        Counter { value: 0 }
    }

    pub async fn get(&self) -> Result<i64> {
        Ok(self.value)
    }
}

fn main() {}
