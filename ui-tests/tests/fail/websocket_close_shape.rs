use durable_runtime::websocket::WebSocket;
use durable_runtime::{durable_object, Context};

#[durable_object]
pub struct Room {
    ctx: Context,
}

#[durable_object]
impl Room {
    pub fn new(ctx: Context) -> Self {
        Room { ctx }
    }

    // Shared, and without a result.
    pub async fn websocket_close(&self, ws: WebSocket, code: u32, reason: String) {
        let _ = (&self.ctx, ws, code, reason);
    }
}

fn main() {}
