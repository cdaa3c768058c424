//! `crate = ".."` tells the macro where the runtime is, on the struct and on the impl: here,
//! through a crate that re-exports it (as a framework built on durable would).
use durable_ui_tests_renamed::rt;

#[rt::durable_object(crate = "durable_ui_tests_renamed::rt", name = "Overridden")]
pub struct Overridden {
    ctx: rt::Context,
}

#[rt::durable_object(crate = "durable_ui_tests_renamed::rt")]
impl Overridden {
    pub fn new(ctx: rt::Context) -> Self {
        Overridden { ctx }
    }

    pub async fn id(&self) -> rt::Result<String> {
        Ok(self.ctx.id().to_string())
    }
}

#[tokio::main]
async fn main() -> rt::Result<()> {
    let runtime = rt::Runtime::in_memory();
    let ns = runtime.namespace::<Overridden>();
    let stub = ns.get_by_name("o");
    // A call named `id` and the stub's own `ObjectStub::id` live side by side.
    assert_eq!(stub.id().await?, rt::ObjectStub::id(&stub).to_string());
    assert_eq!(ns.class_name(), "Overridden");
    Ok(())
}
