use durable_runtime::durable_object;

#[durable_object]
pub enum Light {
    On,
    Off,
}

fn main() {}
