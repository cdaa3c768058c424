//! A private class with a private constructor: its stub is private too, usable in the module.
mod inner {
    use durable_runtime::{durable_object, Context, Result, Runtime};

    struct Hidden {
        ctx: Context,
    }

    #[durable_object]
    impl Hidden {
        fn new(ctx: Context) -> Self {
            Hidden { ctx }
        }

        pub async fn name(&self) -> Result<Option<String>> {
            Ok(self.ctx.id().name().map(str::to_owned))
        }
    }

    pub async fn run() -> Result<()> {
        let rt = Runtime::in_memory();
        let stub: HiddenStub = rt.namespace::<Hidden>().get_by_name("h");
        assert_eq!(stub.name().await?.as_deref(), Some("h"));
        Ok(())
    }
}

#[tokio::main]
async fn main() -> durable_runtime::Result<()> {
    inner::run().await
}
