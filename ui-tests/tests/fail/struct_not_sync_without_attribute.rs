use std::cell::Cell;

use durable_runtime::{durable_object, Context, Result};

pub struct Counter {
    ctx: Context,
    hits: Cell<u64>,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx, hits: Cell::new(0) }
    }

    pub async fn hit(&self) -> Result<u64> {
        let _ = &self.ctx;
        self.hits.set(self.hits.get() + 1);
        Ok(self.hits.get())
    }
}

fn main() {}
