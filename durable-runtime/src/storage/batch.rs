//! [`Batch`]: one committed call's writes, packed for the commit thread.
//!
//! A call's writes are collected in ordered maps (user key → value) while it runs. When it
//! returns, the object's actor packs them here, on its own thread: every full backend key
//! (object prefix ‖ user key, or a system key) and value in one byte buffer, indexed by two
//! sorted tables (data and system writes). The commit thread then hands the backend slices
//! of that buffer, with no allocation or copy per write, and a batch is three allocations to
//! free instead of several per write. The object keeps reading its in-flight batches by user
//! key (binary search in the data table).

use super::backend::Write;
use super::keys;

/// One write in a batch's buffer: the key at `at..at + key_len`, then the value (if any).
#[derive(Debug, Clone, Copy)]
struct Packed {
    at: usize,
    key_len: usize,
    /// `None`: the key is deleted.
    value_len: Option<usize>,
}

/// One committed call's writes, waiting for (or past) the commit thread.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    /// Data writes, in key order; their keys start with the object's data prefix.
    data: Vec<Packed>,
    /// The runtime's own records (alarms, names), in key order.
    system: Vec<Packed>,
    /// The length of the object's data prefix.
    prefix_len: usize,
    /// The object's incarnation when the batch was made (see `ObjectStore`).
    pub(crate) incarnation: u64,
}

impl Batch {
    /// Packs writes given in key order: data writes by user key under `prefix`, system
    /// writes by full key.
    pub(crate) fn pack<'a, D, S>(prefix: &[u8], data: D, system: S, incarnation: u64) -> Batch
    where
        D: ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
        S: ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)> + Clone,
    {
        let size = data
            .clone()
            .map(|(k, v)| prefix.len() + k.len() + v.map_or(0, <[u8]>::len))
            .sum::<usize>()
            + system
                .clone()
                .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
                .sum::<usize>();
        let mut batch = Batch {
            bytes: Vec::with_capacity(size),
            data: Vec::with_capacity(data.len()),
            system: Vec::with_capacity(system.len()),
            prefix_len: prefix.len(),
            incarnation,
        };
        for (key, value) in data {
            let at = batch.bytes.len();
            batch.bytes.extend_from_slice(prefix);
            batch.bytes.extend_from_slice(key.as_bytes());
            let packed = batch.push(at, value);
            batch.data.push(packed);
        }
        for (key, value) in system {
            let at = batch.bytes.len();
            batch.bytes.extend_from_slice(key);
            let packed = batch.push(at, value);
            batch.system.push(packed);
        }
        batch
    }

    /// Appends `value` after the key written from `at`.
    fn push(&mut self, at: usize, value: Option<&[u8]>) -> Packed {
        let key_len = self.bytes.len() - at;
        if let Some(value) = value {
            self.bytes.extend_from_slice(value);
        }
        Packed {
            at,
            key_len,
            value_len: value.map(<[u8]>::len),
        }
    }

    fn key(&self, p: &Packed) -> &[u8] {
        &self.bytes[p.at..p.at + p.key_len]
    }

    fn user_key(&self, p: &Packed) -> &[u8] {
        &self.bytes[p.at + self.prefix_len..p.at + p.key_len]
    }

    fn value(&self, p: &Packed) -> Option<&[u8]> {
        let start = p.at + p.key_len;
        p.value_len.map(|len| &self.bytes[start..start + len])
    }

    /// Every write, as the backend takes them (full keys): data writes, then system writes.
    pub(crate) fn writes(&self) -> impl Iterator<Item = Write<'_>> + '_ {
        self.data.iter().chain(&self.system).map(|p| Write {
            key: self.key(p),
            value: self.value(p),
        })
    }

    /// How many writes the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.data.len() + self.system.len()
    }

    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The batch's write of a user key: `Some(None)` if it deletes the key, `None` if the
    /// batch does not touch it.
    pub(crate) fn get(&self, key: &str) -> Option<Option<&[u8]>> {
        let i = self
            .data
            .binary_search_by(|p| self.user_key(p).cmp(key.as_bytes()))
            .ok()?;
        Some(self.value(&self.data[i]))
    }

    /// The batch's write of a system key, as [`get`](Self::get).
    pub(crate) fn get_system(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let i = self
            .system
            .binary_search_by(|p| self.key(p).cmp(key))
            .ok()?;
        Some(self.value(&self.system[i]))
    }

    /// The data writes in key order: (user key, value).
    pub(crate) fn data(&self) -> impl DoubleEndedIterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.data.iter().map(|p| (self.user_key(p), self.value(p)))
    }

    /// The system writes in key order: (full key, value).
    pub(crate) fn system(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.system.iter().map(|p| (self.key(p), self.value(p)))
    }

    /// The system writes whose keys start with `prefix`, in key order.
    pub(crate) fn system_with_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let start = self.system.partition_point(|p| self.key(p) < prefix);
        self.system[start..]
            .iter()
            .map(|p| (self.key(p), self.value(p)))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Whether the batch sets or clears a schedule (the alarm schedulers must look again).
    pub(crate) fn touches_schedules(&self) -> bool {
        self.system
            .iter()
            .any(|p| self.key(p).first() == Some(&keys::DUE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_finds_writes() {
        let data = [("a", Some(&b"1"[..])), ("bc", None), ("d", Some(&b""[..]))];
        let system = [(&b"\x02x"[..], Some(&b"t"[..])), (&b"\x03y"[..], None)];
        let batch = Batch::pack(b"P", data.iter().copied(), system.iter().copied(), 7);
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.get("a"), Some(Some(&b"1"[..])));
        assert_eq!(batch.get("bc"), Some(None));
        assert_eq!(batch.get("d"), Some(Some(&b""[..])));
        assert_eq!(batch.get("b"), None);
        assert_eq!(batch.get_system(b"\x02x"), Some(Some(&b"t"[..])));
        assert_eq!(batch.get_system(b"\x02"), None);
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = batch
            .writes()
            .map(|w| (w.key.to_vec(), w.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            writes,
            vec![
                (b"Pa".to_vec(), Some(b"1".to_vec())),
                (b"Pbc".to_vec(), None),
                (b"Pd".to_vec(), Some(Vec::new())),
                (b"\x02x".to_vec(), Some(b"t".to_vec())),
                (b"\x03y".to_vec(), None),
            ]
        );
        let with_prefix: Vec<_> = batch.system_with_prefix(b"\x03").collect();
        assert_eq!(with_prefix, vec![(&b"\x03y"[..], None)]);
        assert!(batch.touches_schedules());
        let users: Vec<_> = batch.data().map(|(k, _)| k).collect();
        assert_eq!(users, vec![&b"a"[..], b"bc", b"d"]);
    }
}
