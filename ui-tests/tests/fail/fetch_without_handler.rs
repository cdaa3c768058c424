use durable_runtime::http::Request;
use durable_runtime::{durable_object, Context, ObjectStub, Result, Runtime};

#[durable_object]
pub struct Plain {
    ctx: Context,
}

#[durable_object]
impl Plain {
    pub fn new(ctx: Context) -> Self {
        Plain { ctx }
    }

    pub async fn get(&self) -> Result<u32> {
        let _ = &self.ctx;
        Ok(1)
    }
}

async fn call(rt: Runtime) -> Result<()> {
    let stub = rt.namespace::<Plain>().get_by_name("a");
    let request = Request::get("/").body(Default::default())?;
    ObjectStub::fetch(&stub, request).await?;
    Ok(())
}

fn main() {
    let _ = call;
}
