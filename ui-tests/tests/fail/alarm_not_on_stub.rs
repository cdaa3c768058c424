use durable_runtime::{durable_object, AlarmInfo, Context, Result, Runtime};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let _ = (info, &self.ctx);
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let rt = Runtime::in_memory();
    let stub = rt.namespace::<Counter>().get_by_name("A");
    // The alarm handler is the runtime's to call, not a call of the stub.
    let _ = stub.alarm().await;
}
