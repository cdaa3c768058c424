//! What the user declared, once validated: the input of `expand.rs`.
//!
//! Types here are as the user wrote them, except that `Self` is replaced by the class's type
//! name (the generated enums and the stub live outside the user's impl block).

use proc_macro2::Span;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Type, Visibility};

/// `#[durable_object(..)]` on a struct: the class and its options.
pub struct Class {
    /// The path of the runtime crate in generated code (`::durable_runtime`, the renamed
    /// dependency, or `crate = ".."`).
    pub krate: Path,
    pub ident: Ident,
    pub name: Option<LitStr>,
    pub renamed_from: Option<LitStr>,
    pub max_queue: Option<LitInt>,
}

/// `#[durable_object]` on an `impl` block: the class's constructor, calls and hooks.
pub struct Object {
    pub krate: Path,
    /// The type the impl is for (`Counter`), spanned at the user's `impl Counter`.
    pub ident: Ident,
    /// The visibility of `new`, given to the stub and the generated enums.
    pub vis: Visibility,
    /// `new(ctx: Context) -> Self`; `None` when it is missing or malformed (an error says so),
    /// in which case the rest is still generated so that uses of the stub keep type-checking.
    pub new: Option<Constructor>,
    pub methods: Vec<Method>,
    pub hooks: Vec<Hook>,
}

/// The constructor: spans of the user's `new`, to put type errors on its signature.
pub struct Constructor {
    /// The span of the context argument's type.
    pub ctx_span: Span,
    /// The span of the return type.
    pub output_span: Span,
}

/// Whether a method reads (`&self`) or may write (`&mut self`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Shared,
    Exclusive,
}

/// A `pub async fn` with a `&self` or `&mut self` receiver: a call of the stub.
pub struct Method {
    pub ident: Ident,
    /// The name the method has on the wire: its own, or `#[durable(rename = "..")]`.
    pub wire_name: String,
    pub access: Access,
    pub args: Vec<Arg>,
    /// The return type (`()` when omitted).
    pub output: Type,
    /// `false` when the signature has no `-> T`.
    pub has_output: bool,
    /// `true` when `output` is a `Result<..>`: the stub returns it as is. Otherwise the stub
    /// returns `durable_runtime::Result<output>`.
    pub returns_result: bool,
    /// Doc comments and `#[deprecated]`: they carry over to the stub's method.
    pub docs: Vec<Attribute>,
    /// `fetch(request: Request) -> Result<Response>`: HTTP requests, which cross the wire
    /// through the runtime's HTTP codec rather than serde.
    pub fetch: bool,
}

pub struct Arg {
    pub ident: Ident,
    pub ty: Type,
}

/// A lifecycle method the runtime calls; it is not a call of the stub.
pub struct Hook {
    pub kind: HookKind,
    /// The user's method name, whose span carries the `Send` check of its future.
    pub ident: Ident,
    /// The span of the `AlarmInfo` argument's type (`alarm` only).
    pub arg_span: Option<Span>,
    /// The argument types as written (the WebSocket handlers': checked at the user's tokens).
    pub args: Vec<Type>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// `async fn alarm(&mut self, info: AlarmInfo) -> Result<()>`
    Alarm,
    /// `async fn on_activate(&mut self) -> Result<()>`
    Activate,
    /// `async fn on_evict(&mut self)`
    Evict,
    /// `async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()>`
    WebSocketMessage,
    /// `async fn websocket_close(&mut self, ws: WebSocket, code: u16, reason: String) -> Result<()>`
    WebSocketClose,
}

impl HookKind {
    pub const ALL: [HookKind; 5] = [
        HookKind::Alarm,
        HookKind::Activate,
        HookKind::Evict,
        HookKind::WebSocketMessage,
        HookKind::WebSocketClose,
    ];

    /// The method name that declares the hook.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Alarm => "alarm",
            HookKind::Activate => "on_activate",
            HookKind::Evict => "on_evict",
            HookKind::WebSocketMessage => "websocket_message",
            HookKind::WebSocketClose => "websocket_close",
        }
    }

    /// The signature the hook must have, for error messages.
    pub fn signature(self) -> &'static str {
        match self {
            HookKind::Alarm => "pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()>",
            HookKind::Activate => "async fn on_activate(&mut self) -> Result<()>",
            HookKind::Evict => "async fn on_evict(&mut self)",
            HookKind::WebSocketMessage => {
                "pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()>"
            }
            HookKind::WebSocketClose => {
                "pub async fn websocket_close(&mut self, ws: WebSocket, code: u16, reason: String) -> Result<()>"
            }
        }
    }
}
