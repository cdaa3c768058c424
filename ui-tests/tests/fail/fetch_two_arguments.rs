use durable_runtime::http::{Request, Response};
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

    pub async fn fetch(&self, request: Request, extra: u32) -> Result<Response> {
        let _ = (&self.ctx, extra);
        Ok(Response::new(request.into_body()))
    }
}

fn main() {}
