use durable_runtime::{durable_object, Context, DurableObject, MethodSchema, Result};

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

// Renamed: its object IDs and method IDs stay those of `Foyer`.
#[durable_object(name = "Lobby", renamed_from = "Foyer")]
pub struct Lobby {
    ctx: Context,
}

#[durable_object]
impl Lobby {
    pub fn new(ctx: Context) -> Self {
        Lobby { ctx }
    }

    pub async fn enter(&mut self, who: String) -> Result<()> {
        self.ctx.storage_mut().put("last", &who)
    }
}

fn main() {
    let options = ChatRoom::class_options();
    assert_eq!(options.name, "Room");
    assert_eq!(options.max_queue, 16);
    assert_eq!(Plain::class_options().name, "Plain");

    let lobby = Lobby::class_options();
    assert_eq!((lobby.name, lobby.wire_name()), ("Lobby", "Foyer"));
    let [enter] = Lobby::schema() else { panic!() };
    assert_eq!(enter.id, MethodSchema::method_id("Foyer", "enter"));
}
