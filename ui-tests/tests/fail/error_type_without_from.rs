use durable_runtime::{durable_object, Context};
use serde::{Deserialize, Serialize};

/// An application's error type that cannot hold the runtime's errors.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppError(String);

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    /// The stub must be able to report the runtime's own errors (overload, shutdown) as `E`.
    pub async fn get(&self) -> Result<i64, AppError> {
        let _ = &self.ctx;
        Ok(1)
    }
}

fn main() {}
