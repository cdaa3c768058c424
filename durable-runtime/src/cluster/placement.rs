//! Placement: which shard an object lives in, and which shards a node should take or release.
//!
//! Pure functions, no etcd and no I/O: the caller reads the live nodes and the shard owners
//! (from etcd), asks [`plan`] what this node should do, and carries it out there (a take is a
//! create of the shard's owner key that succeeds only if the key does not exist, a release is
//! a delete of the node's own key).
//!
//! The plan's rules, for live nodes sorted by ID (rank `0..n`) and `shards` shards:
//!
//! - A node's fair share is `shards / n`, and one more for the first `shards % n` nodes
//!   ([`fair_share`]). The shares add up to `shards`.
//! - A live node under its share takes unowned shards, up to its share. The unowned shards
//!   are handed out in shard order to the nodes under their share in rank order, so nodes
//!   that see the same owners take disjoint shards.
//! - A live node over its share releases its highest-numbered shards down to its share, never
//!   further. It is then always true that another live node is under its share: the live
//!   nodes' surpluses add up to the live nodes' deficits less the shards that are unowned or
//!   held by nodes that are not live, so every released shard has a taker.
//! - A node that is not live (it is leaving, or its membership lapsed) has a share of zero: it
//!   releases everything it holds, as long as there is a live node to take it.
//! - Shards held by a node that is not live are neither taken nor counted: they become
//!   unowned when that node's lease expires (or it releases them), and are taken then.
//!
//! Every node applying its own plan each round reaches [`balanced`] (every shard owned by a
//! live node, each live node holding exactly its share) within a few rounds of the membership
//! settling; the tests simulate this.

use crate::id::ID_BYTES;

/// The seed of [`id_hash`]: the ASCII bytes of `"durable1"`. Part of the placement format.
const HASH_SEED: u64 = 0x6475_7261_626c_6531;

/// The finalizer of SplitMix64: a bijection on `u64` whose every output bit depends on every
/// input bit.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit hash of all 32 bytes of an object ID.
///
/// The four little-endian 64-bit words of the ID are folded in order through [`mix`]. All the
/// bytes are used, not a prefix: bytes `0..8` are the class tag (the same for every object of
/// a class) and byte `8` the kind of ID, so a prefix would put a class in a handful of shards.
/// The ID's body is already a SHA-256 or random, so mixing is only to make every byte count.
///
/// Stable forever: it decides which shard holds an object's data. Never change it.
fn id_hash(id: &[u8; ID_BYTES]) -> u64 {
    let mut h = HASH_SEED;
    for word in id.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

/// The shard, in `0..shards`, of the object with ID `id`.
///
/// The 64-bit [`id_hash`] of the ID scaled to `0..shards` (multiply and keep the high 64 bits,
/// which is as even as a modulo and cheaper). Stable forever for a given `shards`, which is
/// why a cluster's shard count is fixed when it is created.
///
/// # Panics
///
/// If `shards` is zero.
#[allow(dead_code)] // used by cluster mode, next
pub(crate) fn shard_of(id: &[u8; ID_BYTES], shards: u32) -> u32 {
    assert!(shards > 0, "a cluster has at least one shard");
    ((u128::from(id_hash(id)) * u128::from(shards)) >> 64) as u32
}

/// The fair share of the live node of rank `rank` (its place among the `nodes` live node IDs
/// in sorted order) of `shards` shards: `shards / nodes`, and one more for the first
/// `shards % nodes` nodes. The shares of ranks `0..nodes` add up to `shards`.
///
/// # Panics
///
/// If `nodes` is zero.
pub(crate) fn fair_share(rank: usize, nodes: usize, shards: u32) -> u32 {
    let n = u32::try_from(nodes).expect("fewer than 2^32 nodes");
    let r = u32::try_from(rank).unwrap_or(u32::MAX);
    shards / n + u32::from(r < shards % n)
}

/// What one node should do this round: the shards to try to take and the shards to release.
/// At most one of the two is non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(dead_code)] // used by cluster mode, next
pub(crate) struct Assignment {
    /// Unowned shards to take (create their owner key), ascending. A take can still fail
    /// when another node got there first; the next round's plan sees that.
    pub(crate) take: Vec<u32>,
    /// Shards this node holds and should release (delete their owner key), ascending.
    pub(crate) release: Vec<u32>,
}

/// The live node IDs sorted and without duplicates, so that callers' order does not matter.
fn members<N: AsRef<str>>(nodes: &[N]) -> Vec<&str> {
    let mut members: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
    members.sort_unstable();
    members.dedup();
    members
}

/// The number of shards, which is the length of the owner table.
fn shard_count<O>(owners: &[Option<O>]) -> u32 {
    u32::try_from(owners.len()).expect("fewer than 2^32 shards")
}

/// How many shards each live node (by rank) holds. Shards of nodes that are not live are not
/// counted.
fn counts<O: AsRef<str>>(members: &[&str], owners: &[Option<O>]) -> Vec<u32> {
    let mut counts = vec![0u32; members.len()];
    for owner in owners.iter().flatten() {
        if let Ok(rank) = members.binary_search(&owner.as_ref()) {
            counts[rank] += 1;
        }
    }
    counts
}

/// What node `me` should do, given the live node IDs `nodes` (any order; duplicates are
/// ignored) and the owner of each shard, `owners[shard]` (`None`: unowned). The number of
/// shards is `owners.len()`.
///
/// Deterministic: the same inputs give the same plan on every node. Guarantees, against the
/// `owners` it is given:
///
/// - `take` holds only unowned shards, and no more than `me`'s share less what it holds; two
///   nodes given the same `owners` never plan to take the same shard.
/// - `release` holds only shards `me` holds, never brings a live `me` below its share, and is
///   non-empty only if some other live node is under its share (or, when `me` is not live,
///   only if some node is live).
/// - Nothing is planned when there are no live nodes.
#[allow(dead_code)] // used by cluster mode, next
pub(crate) fn plan<N: AsRef<str>, O: AsRef<str>>(
    me: &str,
    nodes: &[N],
    owners: &[Option<O>],
) -> Assignment {
    let shards = shard_count(owners);
    let members = members(nodes);
    if members.is_empty() {
        return Assignment::default();
    }
    let mine: Vec<u32> = (0..shards)
        .filter(|&s| owners[s as usize].as_ref().map(AsRef::as_ref) == Some(me))
        .collect();
    let Ok(my_rank) = members.binary_search(&me) else {
        // Not live: a share of zero, everything goes to the live nodes.
        return Assignment {
            take: Vec::new(),
            release: mine,
        };
    };
    let n = members.len();
    let my_share = fair_share(my_rank, n, shards) as usize;
    if mine.len() > my_share {
        return Assignment {
            take: Vec::new(),
            release: mine[my_share..].to_vec(),
        };
    }
    // Hand the unowned shards, in shard order, to the nodes under their share, in rank order;
    // keep this node's portion.
    let counts = counts(&members, owners);
    let mut unowned = (0..shards).filter(|&s| owners[s as usize].is_none());
    for (rank, &count) in counts.iter().enumerate() {
        let deficit = fair_share(rank, n, shards).saturating_sub(count) as usize;
        if rank == my_rank {
            return Assignment {
                take: unowned.take(deficit).collect(),
                release: Vec::new(),
            };
        }
        if deficit > 0 && unowned.nth(deficit - 1).is_none() {
            break;
        }
    }
    Assignment::default()
}

/// Whether the placement is settled: every shard is owned by a live node (of `nodes`, any
/// order) and every live node holds exactly its [`fair_share`] (so each holds
/// `shards / nodes` or one more). With no live nodes, only an empty table is balanced.
#[allow(dead_code)] // used by cluster mode, next
pub(crate) fn balanced<N: AsRef<str>, O: AsRef<str>>(owners: &[Option<O>], nodes: &[N]) -> bool {
    let shards = shard_count(owners);
    let members = members(nodes);
    if members.is_empty() {
        return owners.is_empty();
    }
    let all_live = owners.iter().all(|owner| {
        owner
            .as_ref()
            .is_some_and(|o| members.binary_search(&o.as_ref()).is_ok())
    });
    all_live
        && counts(&members, owners)
            .iter()
            .enumerate()
            .all(|(rank, &count)| count == fair_share(rank, members.len(), shards))
}
