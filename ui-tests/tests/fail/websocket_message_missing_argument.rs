use durable_runtime::websocket::WebSocket;
use durable_runtime::{durable_object, Context, Result};

#[durable_object]
pub struct Room {
    ctx: Context,
}

#[durable_object]
impl Room {
    pub fn new(ctx: Context) -> Self {
        Room { ctx }
    }

    pub async fn websocket_message(&mut self, ws: WebSocket) -> Result<()> {
        let _ = (&self.ctx, ws);
        Ok(())
    }
}

fn main() {}
