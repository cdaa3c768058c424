use durable_runtime::http::Response;
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

    pub async fn fetch(&mut self, path: String) -> Result<Response> {
        let _ = &self.ctx;
        Ok(Response::new(path.into()))
    }
}

fn main() {}
