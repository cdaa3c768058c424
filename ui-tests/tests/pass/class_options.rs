use durable_runtime::{durable_object, Context, DurableObject, Result};

#[durable_object(name = "Room", max_queue = 16)]
pub struct ChatRoom {
    ctx: Context,
}

#[durable_object]
impl ChatRoom {
    pub fn new(ctx: Context) -> Self {
        ChatRoom { ctx }
    }

    #[durable(rename = "post")]
    pub async fn post_message(&mut self, text: String) -> Result<()> {
        self.ctx.storage_mut().put("last", &text)
    }
}

// Without the struct attribute, defaults apply.
pub struct Plain;

#[durable_object]
impl Plain {
    pub fn new(_ctx: Context) -> Self {
        Plain
    }
}

fn main() {
    let options = ChatRoom::class_options();
    assert_eq!(options.name, "Room");
    assert_eq!(options.max_queue, 16);
    assert_eq!(Plain::class_options().name, "Plain");
}
