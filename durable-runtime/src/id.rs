//! Object IDs: 32 bytes that name one object of one class.
//!
//! Layout: bytes `0..8` are a tag of the class (so another class's ID is refused and one
//! class's objects are one contiguous key range in storage), byte `8` says how the ID was made
//! (from a name, or unique), bytes `9..32` are its body: a SHA-256 of the class and the name,
//! or random bytes.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Length of an [`ObjectId`] in bytes.
pub const ID_BYTES: usize = 32;
const TAG_BYTES: usize = 8;
const KIND_NAMED: u8 = 1;
const KIND_UNIQUE: u8 = 2;

/// The identity of one durable object: 32 bytes, shown as 64 lowercase hex digits.
///
/// An ID made by [`Namespace::id_from_name`](crate::Namespace::id_from_name) remembers its
/// name ([`ObjectId::name`]); an ID parsed from a string or made unique has none. Equality and
/// hashing look only at the bytes.
///
/// ```
/// # use durable_runtime::{durable_object, Context, Runtime};
/// # #[durable_object] pub struct Room { ctx: Context }
/// # #[durable_object] impl Room { pub fn new(ctx: Context) -> Self { Room { ctx } } }
/// let rt = Runtime::in_memory();
/// let rooms = rt.namespace::<Room>();
/// let id = rooms.id_from_name("lobby");
/// assert_eq!(id.name(), Some("lobby"));
/// let text = id.to_string();
/// assert_eq!(text.len(), 64);
/// let parsed = rooms.id_from_string(&text).unwrap();
/// assert_eq!(parsed, id);
/// assert_eq!(parsed.name(), None);
/// ```
#[derive(Clone)]
pub struct ObjectId {
    bytes: [u8; ID_BYTES],
    name: Option<Arc<str>>,
}

impl ObjectId {
    /// The name this ID was made from, if it was made by `id_from_name` in this process.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn with_name(mut self, name: &str) -> ObjectId {
        self.name = Some(Arc::from(name));
        self
    }

    /// The 32 bytes of the ID.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.bytes
    }

    pub(crate) fn from_name(class: &ClassTag, name: &str) -> ObjectId {
        let digest = Sha256::new()
            .chain_update(b"durable/object-name/v1\0")
            .chain_update(class.storage_name.as_bytes())
            .chain_update([0u8])
            .chain_update(name.as_bytes())
            .finalize();
        let mut bytes = [0u8; ID_BYTES];
        bytes[..TAG_BYTES].copy_from_slice(&class.tag);
        bytes[TAG_BYTES] = KIND_NAMED;
        bytes[TAG_BYTES + 1..].copy_from_slice(&digest[..ID_BYTES - TAG_BYTES - 1]);
        ObjectId {
            bytes,
            name: Some(Arc::from(name)),
        }
    }

    pub(crate) fn new_unique(class: &ClassTag) -> ObjectId {
        let mut bytes = [0u8; ID_BYTES];
        bytes[..TAG_BYTES].copy_from_slice(&class.tag);
        bytes[TAG_BYTES] = KIND_UNIQUE;
        // The OS random source failing is not recoverable for an ID generator; getrandom
        // documents it as practically impossible on Linux once the system has booted.
        if let Err(e) = getrandom::fill(&mut bytes[TAG_BYTES + 1..]) {
            panic!("the operating system's random number generator failed: {e}");
        }
        ObjectId { bytes, name: None }
    }

    pub(crate) fn parse(class: &ClassTag, text: &str) -> Result<ObjectId> {
        if text.len() != ID_BYTES * 2 {
            return Err(Error::invalid_id(format!(
                "expected {} hex digits, got {} bytes",
                ID_BYTES * 2,
                text.len()
            )));
        }
        let mut bytes = [0u8; ID_BYTES];
        if let Err(e) = hex::decode_to_slice(text, &mut bytes) {
            return Err(Error::invalid_id(format!(
                "{text:?} is not hexadecimal: {e}"
            )));
        }
        Self::from_bytes(class, bytes)
    }

    /// An ID as another process sent it, unchecked: only for naming callers in a chain.
    pub(crate) fn from_raw(bytes: [u8; ID_BYTES], name: Option<&str>) -> ObjectId {
        ObjectId {
            bytes,
            name: name.map(Arc::from),
        }
    }

    /// An ID that arrived from another process, checked like a parsed one. A name sent with
    /// it is kept as is: [`check_name`](Self::check_name) verifies it before an actor takes
    /// this ID (hashing the name on every call would cost more than the rest of decoding).
    pub(crate) fn from_wire(
        class: &ClassTag,
        bytes: [u8; ID_BYTES],
        name: Option<&str>,
    ) -> Result<ObjectId> {
        let id = Self::from_bytes(class, bytes)?;
        Ok(match name {
            Some(name) => id.with_name(name),
            None => id,
        })
    }

    /// `Ok` if the ID has no name or the name it was made from; an
    /// [`InvalidId`](crate::ErrorKind::InvalidId) error for a name that does not hash to it.
    pub(crate) fn check_name(&self, class: &ClassTag) -> Result<()> {
        let Some(name) = self.name() else {
            return Ok(());
        };
        if Self::from_name(class, name).bytes != self.bytes {
            return Err(Error::invalid_id(format!(
                "the name {name:?} sent with this ID is not the name it was made from"
            )));
        }
        Ok(())
    }

    pub(crate) fn from_bytes(class: &ClassTag, bytes: [u8; ID_BYTES]) -> Result<ObjectId> {
        if bytes[TAG_BYTES] != KIND_NAMED && bytes[TAG_BYTES] != KIND_UNIQUE {
            return Err(Error::invalid_id(
                "not a durable object ID (it was not made by id_from_name or new_unique_id)",
            ));
        }
        if bytes[..TAG_BYTES] != class.tag {
            return Err(Error::invalid_id(format!(
                "this ID belongs to another class, not `{}`",
                class.name
            )));
        }
        Ok(ObjectId { bytes, name: None })
    }
}

impl PartialEq for ObjectId {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for ObjectId {}

impl Hash for ObjectId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for ObjectId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ObjectId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_BYTES * 2];
        // Cannot fail: the buffer is exactly twice the input.
        if hex::encode_to_slice(self.bytes, &mut buf).is_err() {
            return Err(fmt::Error);
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "ObjectId({self} {name:?})"),
            None => write!(f, "ObjectId({self})"),
        }
    }
}

/// A class's identity in IDs and storage: its display name and the tag derived from its
/// storage name (the name it had when its data was first written).
#[derive(Debug, Clone)]
pub(crate) struct ClassTag {
    pub(crate) name: &'static str,
    pub(crate) storage_name: &'static str,
    pub(crate) tag: [u8; TAG_BYTES],
}

impl ClassTag {
    /// `Ok` if `id` is of this class; an [`InvalidId`](crate::ErrorKind::InvalidId) error
    /// otherwise.
    #[inline]
    pub(crate) fn check(&self, id: &ObjectId) -> Result<()> {
        if id.as_bytes()[..TAG_BYTES] != self.tag {
            return Err(Error::invalid_id(format!(
                "this ID belongs to another class, not `{}`",
                self.name
            )));
        }
        Ok(())
    }

    pub(crate) fn new(name: &'static str, storage_name: &'static str) -> ClassTag {
        let digest = Sha256::new()
            .chain_update(b"durable/class/v1\0")
            .chain_update(storage_name.as_bytes())
            .finalize();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&digest[..TAG_BYTES]);
        ClassTag {
            name,
            storage_name,
            tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &'static str) -> ClassTag {
        ClassTag::new(name, name)
    }

    #[test]
    fn same_name_same_id_and_different_names_or_classes_differ() {
        let a = class("A");
        let b = class("B");
        assert_eq!(ObjectId::from_name(&a, "x"), ObjectId::from_name(&a, "x"));
        assert_ne!(ObjectId::from_name(&a, "x"), ObjectId::from_name(&a, "y"));
        assert_ne!(ObjectId::from_name(&a, "x"), ObjectId::from_name(&b, "x"));
    }

    #[test]
    fn display_is_64_lowercase_hex_and_parses_back() {
        let a = class("A");
        let id = ObjectId::new_unique(&a);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert!(text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(ObjectId::parse(&a, &text).unwrap(), id);
    }

    #[test]
    fn another_classes_id_is_refused() {
        let id = ObjectId::from_name(&class("A"), "x").to_string();
        let err = ObjectId::parse(&class("B"), &id).unwrap_err();
        assert!(err.to_string().contains("another class"), "{err}");
    }

    #[test]
    fn malformed_strings_are_refused() {
        let a = class("A");
        for bad in ["", "abc", &"g".repeat(64), &"0".repeat(63), &"0".repeat(66)] {
            let err = ObjectId::parse(&a, bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidId, "{bad:?}");
        }
        // Right length and hex, but not an ID of any kind.
        let err = ObjectId::parse(&a, &"0".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("not a durable object ID"), "{err}");
    }
}
