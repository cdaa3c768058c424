//! How objects' data is laid out in the backend's one ordered key space.
//!
//! ```text
//! DATA  ‖ id (32)                                  ‖ user key   → postcard value
//! ALARM ‖ id (32)                                  ‖ schedule   → due time (ms, u64 BE)
//! DUE   ‖ class tag (8) ‖ due time (ms, u64 BE)    ‖ id ‖ schedule → (empty)
//! NAME  ‖ id (32)                                               → the object's name
//! ```
//!
//! An object's data is one contiguous range, a class's objects too (IDs start with the class
//! tag). `DUE` orders every schedule of a class by due time, so the next alarm to fire is the
//! first key of its class's range. The default alarm is the schedule named "".

use crate::id::ID_BYTES;

pub(crate) const DATA: u8 = 0x01;
pub(crate) const ALARM: u8 = 0x02;
pub(crate) const DUE: u8 = 0x03;
pub(crate) const NAME: u8 = 0x04;

const TAG: usize = 8;

pub(crate) type Id = [u8; ID_BYTES];

/// `DATA ‖ id`: the prefix of every data key of one object (on the stack: it is built for
/// every commit).
pub(crate) fn data_prefix(id: &Id) -> [u8; 1 + ID_BYTES] {
    let mut key = [DATA; 1 + ID_BYTES];
    key[1..].copy_from_slice(id);
    key
}

/// `DATA ‖ tag`: the prefix of every data key of one class.
pub(crate) fn class_data_prefix(tag: &[u8; TAG]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + TAG);
    key.push(DATA);
    key.extend_from_slice(tag);
    key
}

pub(crate) fn alarm_key(id: &Id, schedule: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + ID_BYTES + schedule.len());
    key.push(ALARM);
    key.extend_from_slice(id);
    key.extend_from_slice(schedule.as_bytes());
    key
}

/// `ALARM ‖ id`: the prefix of every schedule of one object.
pub(crate) fn alarm_prefix(id: &Id) -> Vec<u8> {
    alarm_key(id, "")
}

pub(crate) fn due_key(id: &Id, due_ms: u64, schedule: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + TAG + 8 + ID_BYTES + schedule.len());
    key.push(DUE);
    key.extend_from_slice(&id[..TAG]);
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(id);
    key.extend_from_slice(schedule.as_bytes());
    key
}

/// `DUE ‖ tag`: the prefix of every due schedule of one class.
pub(crate) fn due_class_prefix(tag: &[u8; TAG]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + TAG);
    key.push(DUE);
    key.extend_from_slice(tag);
    key
}

/// One entry of the `DUE` index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Due {
    pub(crate) due_ms: u64,
    pub(crate) id: Id,
    pub(crate) schedule: String,
}

pub(crate) fn parse_due(key: &[u8]) -> Option<Due> {
    let rest = key.strip_prefix(&[DUE])?.get(TAG..)?;
    let due_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id: Id = rest.get(8..8 + ID_BYTES)?.try_into().ok()?;
    let schedule = String::from_utf8(rest.get(8 + ID_BYTES..)?.to_vec()).ok()?;
    Some(Due {
        due_ms,
        id,
        schedule,
    })
}

pub(crate) fn name_key(id: &Id) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + ID_BYTES);
    key.push(NAME);
    key.extend_from_slice(id);
    key
}

/// The smallest byte string greater than every string starting with `prefix`.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_round_trip_and_sort_by_time() {
        let id = [7u8; ID_BYTES];
        let early = due_key(&id, 5, "a");
        let late = due_key(&id, 300, "");
        assert!(early < late);
        assert_eq!(
            parse_due(&late),
            Some(Due {
                due_ms: 300,
                id,
                schedule: String::new()
            })
        );
        assert!(late.starts_with(&due_class_prefix(&[7u8; 8])));
    }

    #[test]
    fn prefix_successor_carries_over_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
    }
}
