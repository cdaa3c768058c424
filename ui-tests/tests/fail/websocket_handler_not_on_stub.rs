use durable_runtime::websocket::{Message, WebSocket};
use durable_runtime::{durable_object, Context, Result, Runtime};

#[durable_object]
pub struct Room {
    ctx: Context,
}

#[durable_object]
impl Room {
    pub fn new(ctx: Context) -> Self {
        Room { ctx }
    }

    pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()> {
        let _ = (&self.ctx, ws, message);
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let rt = Runtime::in_memory();
    let stub = rt.namespace::<Room>().get_by_name("A");
    // Handlers are the runtime's to call, not calls of the stub.
    let _ = stub.websocket_message().await;
}
