//! A class in a crate that depends on `durable-runtime` only as `rt`: it compiles only if
//! `#[durable_object]` finds the runtime under the name this crate's Cargo.toml gives it.

use rt::{durable_object, Context, Result};

/// The runtime, re-exported as a framework built on it would (see the `crate_override` UI case).
pub use rt;

/// A greeter whose calls count themselves.
#[durable_object(name = "Greeter")]
pub struct Greeter {
    ctx: Context,
}

#[durable_object]
impl Greeter {
    /// Activates the greeter.
    pub fn new(ctx: Context) -> Self {
        Greeter { ctx }
    }

    /// Greets `name` and counts the greeting.
    pub async fn greet(&mut self, name: String) -> Result<String> {
        let count = self.ctx.storage().get::<u64>("count")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("count", &count)?;
        Ok(format!("hello {name} (#{count})"))
    }

    /// How many greetings so far.
    pub async fn count(&self) -> Result<u64> {
        Ok(self.ctx.storage().get("count")?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_go_through_the_renamed_runtime() {
        let runtime = rt::Runtime::in_memory();
        let greeter = runtime.namespace::<Greeter>().get_by_name("a");
        assert_eq!(greeter.greet("b".into()).await.unwrap(), "hello b (#1)");
        assert_eq!(greeter.count().await.unwrap(), 1);
    }
}
