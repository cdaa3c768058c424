//! What the user declared, once validated: the input of `expand.rs`.

use proc_macro2::Span;
use syn::{Attribute, Ident, LitInt, LitStr, Type, Visibility};

/// `#[durable_object(..)]` on a struct: the class and its options.
pub struct Class {
    pub ident: Ident,
    pub name: Option<LitStr>,
    pub renamed_from: Option<LitStr>,
    pub max_queue: Option<LitInt>,
}

/// `#[durable_object]` on an `impl` block: the class's methods.
pub struct Object {
    /// The type the impl is for (`Counter`).
    pub ident: Ident,
    /// The visibility of `new`, given to the stub and the generated enums.
    pub vis: Visibility,
    pub methods: Vec<Method>,
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
    /// The return type as written (`()` when omitted).
    pub output: Type,
    /// `true` when `output` is a `Result<..>`: the stub returns it as is. Otherwise the stub
    /// returns `durable_runtime::Result<output>`.
    pub returns_result: bool,
    /// Doc comments and other attributes that carry over to the stub method.
    pub docs: Vec<Attribute>,
    pub span: Span,
}

pub struct Arg {
    pub ident: Ident,
    pub ty: Type,
}
