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

    // `'static` data serializes, but the other side cannot decode into a borrow.
    pub async fn label(&self, prefix: &'static str) -> Result<Option<&'static [u8]>> {
        let _ = (&self.ctx, prefix);
        Ok(None)
    }
}

fn main() {}
