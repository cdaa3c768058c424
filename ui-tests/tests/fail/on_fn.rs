use durable_runtime::durable_object;

#[durable_object]
pub async fn increment(amount: i64) -> i64 {
    amount + 1
}

fn main() {}
