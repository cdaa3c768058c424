use std::cell::RefCell;

use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Counter {
    ctx: Context,
    cache: RefCell<Option<i64>>,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx, cache: RefCell::new(None) }
    }

    pub async fn get(&self) -> Result<i64> {
        let _ = &self.ctx;
        Ok(self.cache.borrow().unwrap_or(0))
    }
}

fn main() {}
