use durable_runtime::http::Request;
use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Site {
    ctx: Context,
}

#[durable_object]
impl Site {
    pub fn new(ctx: Context) -> Self {
        Site { ctx }
    }

    pub async fn fetch(&self, request: Request) -> Result<String> {
        let _ = &self.ctx;
        Ok(request.uri().to_string())
    }
}

fn main() {}
