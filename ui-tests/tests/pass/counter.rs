use durable_runtime::{durable_object, Context, Result, Runtime};

#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    /// Doc comments carry over to the stub.
    pub async fn get_counter_value(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    }

    pub async fn increment(&mut self, amount: i64) -> Result<i64> {
        let value = self.current()? + amount;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }

    pub async fn add_both(&mut self, a: i64, b: i64, label: String) -> Result<String> {
        let value = self.increment(a + b).await?;
        Ok(format!("{label}={value}"))
    }

    pub async fn reset(&mut self) {
        let _ = self.ctx.storage_mut().delete("value");
    }

    pub async fn maybe(&self, keys: Vec<String>) -> Option<Vec<String>> {
        if keys.is_empty() {
            None
        } else {
            Some(keys)
        }
    }

    // A private helper stays a plain method.
    fn current(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let rt = Runtime::in_memory();
    let stub: CounterStub = rt.namespace::<Counter>().get_by_name("A");
    assert_eq!(stub.increment(1).await?, 1);
    assert_eq!(stub.add_both(1, 2, "x".into()).await?, "x=4");
    stub.reset().await?;
    assert_eq!(stub.get_counter_value().await?, 0);
    assert_eq!(stub.maybe(vec![]).await?, None);
    Ok(())
}
