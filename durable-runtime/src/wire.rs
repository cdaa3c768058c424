//! The wire identity of calls: what crosses a process boundary, and how it is named.
//!
//! A method is identified on the wire by its wire name (its Rust name, or the name given by
//! `#[durable(rename = "..")]`), never by its position in the impl block, so adding or
//! reordering methods never breaks a peer running the previous build. Its 64-bit method ID
//! ([`MethodSchema::method_id`]) is a fixed hash of the class name and the wire name, the same
//! on every build and platform.
//!
//! The class name that method IDs derive from is the one object IDs and stored data derive
//! from too: [`ClassOptions::wire_name`](crate::ClassOptions::wire_name), which is
//! `renamed_from` when the class was renamed (`#[durable_object(name = "Points", renamed_from =
//! "Score")]` keeps the method IDs of `Score`), else `name`.
//!
//! `#[durable_object]` generates each class's [`schema`](crate::DurableObject::schema); the
//! workspace keeps a committed lock of the schemas of its classes (`ui-tests/schema.lock`), and
//! a test fails when a schema changes without the lock being updated.

/// Whether a call reads (`&self`) or may write (`&mut self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `&self`: runs concurrently with other shared calls.
    Shared,
    /// `&mut self`: runs alone.
    Exclusive,
}

impl Access {
    /// `"shared"` or `"exclusive"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Shared => "shared",
            Access::Exclusive => "exclusive",
        }
    }
}

/// One method of a class as it crosses the wire. `#[durable_object]` generates the list for
/// each class ([`DurableObject::schema`](crate::DurableObject::schema)), in the order of the
/// impl block; the order carries no meaning.
///
/// ```
/// use durable_runtime::{durable_object, Access, Context, DurableObject, MethodSchema, Result};
///
/// #[durable_object]
/// pub struct Counter { ctx: Context }
///
/// #[durable_object]
/// impl Counter {
///     pub fn new(ctx: Context) -> Self { Counter { ctx } }
///
///     #[durable(rename = "add")]
///     pub async fn increment(&mut self, amount: i64) -> Result<i64> { Ok(amount) }
/// }
///
/// let [increment] = Counter::schema() else { panic!() };
/// assert_eq!(increment.wire_name, "add");
/// assert_eq!(increment.id, MethodSchema::method_id("Counter", "add"));
/// assert_eq!(increment.access, Access::Exclusive);
/// assert_eq!(increment.args, &[("amount", "i64")]);
/// assert_eq!(increment.output, "Result<i64>");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodSchema {
    /// The Rust name of the method.
    pub name: &'static str,
    /// The name the method has on the wire.
    pub wire_name: &'static str,
    /// The method's ID on the wire: [`MethodSchema::method_id`] of the class's wire name
    /// ([`ClassOptions::wire_name`](crate::ClassOptions::wire_name)) and the method's wire name.
    pub id: u64,
    /// Shared or exclusive.
    pub access: Access,
    /// The argument names and types, as written.
    pub args: &'static [(&'static str, &'static str)],
    /// The return type, as written (`()` when the method returns nothing).
    pub output: &'static str,
}

impl MethodSchema {
    /// The stable ID of method `wire_name` of class `class`: 64-bit FNV-1a over the UTF-8
    /// bytes of `class`, one `0x00` byte, and the bytes of `wire_name`. Fixed forever: peers of
    /// different builds agree on it.
    ///
    /// ```
    /// use durable_runtime::MethodSchema;
    /// // FNV-1a 64 of b"Counter\0increment".
    /// assert_eq!(MethodSchema::method_id("Counter", "increment"), 0x0c85_a089_0772_435a);
    /// assert_ne!(MethodSchema::method_id("Counter", "increment"), MethodSchema::method_id("Counte", "rincrement"));
    /// ```
    pub const fn method_id(class: &str, wire_name: &str) -> u64 {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        let hash = fnv1a(OFFSET_BASIS, class.as_bytes());
        let hash = fnv1a(hash, &[0]);
        fnv1a(hash, wire_name.as_bytes())
    }
}

/// Appends the postcard encoding of `value` to `out`.
pub(crate) fn encode_value<V: serde::Serialize + ?Sized>(
    value: &V,
    out: &mut Vec<u8>,
) -> crate::Result<()> {
    let taken = std::mem::take(out);
    match postcard::to_extend(value, taken) {
        Ok(bytes) => {
            *out = bytes;
            Ok(())
        }
        Err(e) => Err(crate::Error::invalid_argument(format!(
            "a value could not be encoded for the wire: {e}"
        ))),
    }
}

/// Decodes a `V` from exactly `bytes`: trailing bytes are an error too (a peer whose types
/// differ from ours).
pub(crate) fn decode_value<V: serde::de::DeserializeOwned>(
    class: &str,
    method: &str,
    what: &str,
    bytes: &[u8],
) -> crate::Result<V> {
    let mismatch = |detail: String| {
        crate::Error::invalid_argument(format!(
            "the {what} of `{class}::{method}` do not decode ({detail}); is the peer of another build?"
        ))
    };
    match postcard::take_from_bytes::<V>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(mismatch(format!("{} bytes left over", rest.len()))),
        Err(e) => Err(mismatch(e.to_string())),
    }
}

/// A method ID the class does not have.
pub(crate) fn unknown_method(class: &str, method: u64) -> crate::Error {
    crate::Error::unknown_method(format!(
        "class `{class}` has no method with ID {method:016x}; is the peer of another build?"
    ))
}

const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_ids_are_fnv1a_of_class_and_wire_name() {
        // The FNV-1a 64 test vectors.
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a(0xcbf2_9ce4_8422_2325, b"foobar"),
            0x8594_4171_f739_67e8
        );
        assert_eq!(
            MethodSchema::method_id("Counter", "increment"),
            fnv1a(0xcbf2_9ce4_8422_2325, b"Counter\0increment")
        );
    }

    #[test]
    fn the_separator_keeps_class_and_wire_name_apart() {
        assert_ne!(
            MethodSchema::method_id("ab", "c"),
            MethodSchema::method_id("a", "bc")
        );
        assert_ne!(
            MethodSchema::method_id("Counter", "get"),
            MethodSchema::method_id("Room", "get")
        );
    }
}
