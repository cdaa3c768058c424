//! A call's wire identity is its name (or rename), never its position.
use durable_runtime::{durable_object, Access, Context, DurableObject, MethodSchema, Result};

#[durable_object(name = "Ledger")]
pub struct Books {
    ctx: Context,
}

#[durable_object]
impl Books {
    pub fn new(ctx: Context) -> Self {
        Books { ctx }
    }

    #[durable(rename = "balance")]
    pub async fn current_balance(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("balance")?.unwrap_or(0))
    }

    /// Renamed in Rust; the wire keeps the old name.
    #[durable(rename = "post")]
    pub async fn record_entry(&mut self, amount: i64, memo: String) -> Result<i64> {
        let _ = memo;
        let balance = self.current_balance().await? + amount;
        self.ctx.storage_mut().put("balance", &balance)?;
        Ok(balance)
    }

    pub async fn entries(&self, from: u64, limit: Option<u32>) -> Vec<(u64, i64)> {
        let _ = (from, limit);
        Vec::new()
    }
}

fn main() {
    let schema = Books::schema();
    let wire: Vec<_> = schema.iter().map(|m| (m.name, m.wire_name)).collect();
    assert_eq!(
        wire,
        [
            ("current_balance", "balance"),
            ("record_entry", "post"),
            ("entries", "entries")
        ]
    );
    // IDs come from the class name (the declared one) and the wire name only.
    for m in schema {
        assert_eq!(m.id, MethodSchema::method_id("Ledger", m.wire_name));
    }
    let post = &schema[1];
    assert_eq!(post.access, Access::Exclusive);
    assert_eq!(post.args, &[("amount", "i64"), ("memo", "String")]);
    assert_eq!(post.output, "Result<i64>");
    assert_eq!(schema[2].access, Access::Shared);
    assert_eq!(schema[2].args[1], ("limit", "Option<u32>"));
    assert_eq!(schema[2].output, "Vec<(u64, i64)>");
}
