//! Generated code names every path absolutely: it compiles without the prelude.
#![no_implicit_prelude]

use ::durable_runtime::{durable_object, Context, Result};

#[durable_object(name = "Quiet", max_queue = 8)]
pub struct Quiet {
    ctx: Context,
}

#[durable_object]
impl Quiet {
    pub fn new(ctx: Context) -> Self {
        Quiet { ctx }
    }

    pub async fn get(&self) -> Result<::std::option::Option<::std::string::String>> {
        self.ctx.storage().get("text")
    }

    pub async fn set(&mut self, text: ::std::string::String) -> Result<()> {
        self.ctx.storage_mut().put("text", &text)
    }

    pub async fn len(&self, items: ::std::vec::Vec<u8>) -> usize {
        items.len()
    }

    async fn on_activate(&mut self) -> Result<()> {
        ::std::result::Result::Ok(())
    }
}

fn main() {
    let rt = ::durable_runtime::Runtime::in_memory();
    let body = async {
        let stub = rt.namespace::<Quiet>().get_by_name("q");
        stub.set(::std::string::ToString::to_string("hi"))
            .await
            .unwrap();
        ::std::assert_eq!(
            stub.get().await.unwrap().as_deref(),
            ::std::option::Option::Some("hi")
        );
        ::std::assert_eq!(stub.len(::std::vec![1, 2, 3]).await.unwrap(), 3);
    };
    ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}
