//! The wire identity of calls: what crosses a process boundary, and how it is named.
//!
//! A method is identified on the wire by its wire name (its Rust name, or the name given by
//! `#[durable(rename = "..")]`), never by its position in the impl block, so adding or
//! reordering methods never breaks a peer running the previous build.

/// Whether a call reads (`&self`) or may write (`&mut self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `&self`: runs concurrently with other shared calls.
    Shared,
    /// `&mut self`: runs alone.
    Exclusive,
}

/// One method of a class as it crosses the wire. `#[durable_object]` generates the list for
/// each class ([`DurableObject::schema`](crate::DurableObject::schema)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodSchema {
    /// The Rust name of the method.
    pub name: &'static str,
    /// The name the method has on the wire.
    pub wire_name: &'static str,
    /// Shared or exclusive.
    pub access: Access,
    /// The argument names and types, as written.
    pub args: &'static [(&'static str, &'static str)],
    /// The return type, as written.
    pub output: &'static str,
}
