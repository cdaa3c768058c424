//! `durable_ui_tests_renamed` depends on the runtime only as `rt` (its Cargo.toml:
//! `rt = { package = "durable-runtime", .. }`), and its `Greeter` compiles and runs: the macro
//! found the runtime under the renamed name.
use durable_runtime::{DurableObject, Result, Runtime};
use durable_ui_tests_renamed::Greeter;

#[tokio::main]
async fn main() -> Result<()> {
    let rt = Runtime::in_memory();
    let greeter = rt.namespace::<Greeter>().get_by_name("g");
    assert_eq!(greeter.greet("you".into()).await?, "hello you (#1)");
    assert_eq!(greeter.count().await?, 1);
    assert_eq!(Greeter::class_options().name, "Greeter");
    Ok(())
}
