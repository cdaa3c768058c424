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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// An ID laid out like a named one: a fixed class tag, the kind byte, then a SHA-256 body.
    fn named_id(n: u64) -> [u8; ID_BYTES] {
        let digest = Sha256::digest(n.to_le_bytes());
        let mut id = [0u8; ID_BYTES];
        id[..8].copy_from_slice(b"classtag");
        id[8] = 1;
        id[9..].copy_from_slice(&digest[..ID_BYTES - 9]);
        id
    }

    fn table(owners: &[Option<&str>]) -> Vec<Option<String>> {
        owners.iter().map(|o| o.map(str::to_owned)).collect()
    }

    // The placement format, computed once (and checked against a separate implementation of
    // the same definition). Never update these: a change moves stored objects' shards.
    const GOLDEN_ZEROS: u64 = 3_966_190_504_957_949_320;
    const GOLDEN_COUNTING: u64 = 1_517_278_683_273_598_180;
    const GOLDEN_NAMED_7: u64 = 4_550_962_474_306_175_642;
    const GOLDEN_SHARDS_64: [u32; 8] = [41, 15, 2, 21, 50, 28, 37, 15];
    const GOLDEN_SHARDS_1000: [u32; 8] = [653, 238, 39, 343, 786, 450, 585, 246];

    fn count(owners: &[Option<String>], node: &str) -> usize {
        owners.iter().filter(|o| o.as_deref() == Some(node)).count()
    }

    #[test]
    fn shard_of_is_pinned() {
        // These values decide where data lives: they must never change.
        let zeros = [0u8; ID_BYTES];
        let mut counting = [0u8; ID_BYTES];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(id_hash(&zeros), GOLDEN_ZEROS);
        assert_eq!(id_hash(&counting), GOLDEN_COUNTING);
        assert_eq!(id_hash(&named_id(7)), GOLDEN_NAMED_7);
        let got: Vec<u32> = (0..8).map(|n| shard_of(&named_id(n), 64)).collect();
        assert_eq!(got, GOLDEN_SHARDS_64);
        let got: Vec<u32> = (0..8).map(|n| shard_of(&named_id(n), 1000)).collect();
        assert_eq!(got, GOLDEN_SHARDS_1000);
    }

    #[test]
    fn shard_of_is_in_range_and_uses_every_byte() {
        for shards in [1, 2, 3, 64, 1000, u32::MAX] {
            for n in 0..200 {
                assert!(shard_of(&named_id(n), shards) < shards);
            }
        }
        assert_eq!(shard_of(&named_id(3), 1), 0);
        // Changing any one byte (tag, kind or body) changes the hash.
        let id = named_id(11);
        for i in 0..ID_BYTES {
            let mut other = id;
            other[i] ^= 1;
            assert_ne!(id_hash(&id), id_hash(&other), "byte {i}");
        }
    }

    #[test]
    #[should_panic(expected = "at least one shard")]
    fn shard_of_zero_shards_panics() {
        shard_of(&named_id(0), 0);
    }

    #[test]
    fn shard_of_spreads_one_class_evenly() {
        // 100,000 IDs of one class (same tag) over 64 shards: each within 10% of the mean.
        const SHARDS: u32 = 64;
        const IDS: u64 = 100_000;
        let mut hits = [0u32; SHARDS as usize];
        for n in 0..IDS {
            hits[shard_of(&named_id(n), SHARDS) as usize] += 1;
        }
        let mean = IDS as f64 / f64::from(SHARDS);
        for (shard, &h) in hits.iter().enumerate() {
            let off = (f64::from(h) - mean).abs() / mean;
            assert!(off <= 0.10, "shard {shard}: {h} IDs, mean {mean}");
        }
    }

    #[test]
    fn fair_shares_add_up() {
        assert_eq!(
            (0..3).map(|r| fair_share(r, 3, 10)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(
            (0..4).map(|r| fair_share(r, 4, 2)).collect::<Vec<_>>(),
            [1, 1, 0, 0]
        );
        for nodes in 1..20 {
            for shards in 0..70 {
                let total: u32 = (0..nodes).map(|r| fair_share(r, nodes, shards)).sum();
                assert_eq!(total, shards);
            }
        }
    }

    #[test]
    fn an_empty_cluster_splits_the_shards_without_overlap() {
        let nodes = ["c", "a", "b"]; // order does not matter
        let owners = table(&[None; 10]);
        let a = plan("a", &nodes, &owners);
        let b = plan("b", &nodes, &owners);
        let c = plan("c", &nodes, &owners);
        assert_eq!(a.take, [0, 1, 2, 3]);
        assert_eq!(b.take, [4, 5, 6]);
        assert_eq!(c.take, [7, 8, 9]);
        assert!(a.release.is_empty() && b.release.is_empty() && c.release.is_empty());
        let mut owners = owners;
        for (node, p) in [("a", a), ("b", b), ("c", c)] {
            for s in p.take {
                owners[s as usize] = Some(node.to_owned());
            }
        }
        assert!(balanced(&owners, &nodes));
        for node in nodes {
            assert_eq!(plan(node, &nodes, &owners), Assignment::default());
        }
    }

    #[test]
    fn a_joining_node_gets_its_share_from_the_others() {
        let mut owners = table(&[Some("a"); 10]);
        for o in &mut owners[5..] {
            *o = Some("b".to_owned());
        }
        assert!(balanced(&owners, &["a", "b"]));
        let nodes = ["a", "b", "c"];
        assert!(!balanced(&owners, &nodes));
        // Shares 4, 3, 3: a gives up one, b two, c has nothing unowned to take yet.
        let a = plan("a", &nodes, &owners);
        let b = plan("b", &nodes, &owners);
        assert_eq!(a.release, [4]);
        assert_eq!(b.release, [8, 9]);
        assert_eq!(plan("c", &nodes, &owners), Assignment::default());
        for s in a.release.into_iter().chain(b.release) {
            owners[s as usize] = None;
        }
        // Next round: c takes exactly what was released.
        assert_eq!(plan("c", &nodes, &owners).take, [4, 8, 9]);
        assert_eq!(plan("a", &nodes, &owners), Assignment::default());
    }

    #[test]
    fn a_node_that_is_not_live_releases_everything() {
        let owners = table(&[Some("a"), Some("b"), Some("a"), None]);
        let p = plan("a", &["b"], &owners);
        assert_eq!(p.release, [0, 2]);
        assert!(p.take.is_empty());
        // With nobody live there is no taker: keep everything, take nothing.
        assert_eq!(plan("a", &[] as &[&str], &owners), Assignment::default());
        assert!(!balanced(&owners, &[] as &[&str]));
        assert!(balanced(&[] as &[Option<&str>], &[] as &[&str]));
    }

    #[test]
    fn shards_of_a_node_that_is_not_live_are_left_alone() {
        // "z" is gone from membership but its key has not expired: its shard is not taken,
        // and b, under its share only because of it, causes no release.
        let owners = table(&[Some("z"), Some("a"), Some("a"), None]);
        let nodes = ["a", "b"];
        assert_eq!(plan("a", &nodes, &owners), Assignment::default());
        assert_eq!(plan("b", &nodes, &owners).take, [3]);
        assert!(!balanced(&owners, &nodes));
    }

    #[test]
    fn releases_never_go_below_the_share() {
        // a holds everything; a, b, c, d live with 6 shards: shares 2, 2, 1, 1.
        let owners = table(&[Some("a"); 6]);
        let p = plan("a", &["a", "b", "c", "d"], &owners);
        assert_eq!(p.release, [2, 3, 4, 5]);
        // Duplicated node IDs count once.
        assert_eq!(plan("a", &["a", "b", "b", "a"], &owners).release, [3, 4, 5]);
        assert_eq!(count(&owners, "a"), 6);
    }

    #[test]
    fn takes_are_capped_by_the_deficit_and_skip_owned_shards() {
        let owners = table(&[Some("b"), None, Some("b"), None, None, None]);
        // Shares 3, 3: a takes the first three unowned, b the one after.
        assert_eq!(plan("a", &["a", "b"], &owners).take, [1, 3, 4]);
        assert_eq!(plan("b", &["a", "b"], &owners).take, [5]);
    }

    /// A simulated cluster: every running node applies its own plan each round against the
    /// shared owner table. A take succeeds only on an unowned shard (as an etcd create does
    /// only when the key does not exist), so a shard never has two owners; the checks are on
    /// what the plans ask for and on convergence.
    mod simulation {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        const POOL: [&str; 6] = ["n0", "n1", "n2", "n3", "n4", "n5"];

        /// How the nodes of one round see the table.
        #[derive(Debug, Clone, Copy)]
        enum Views {
            /// All plan from the table as it was at the start of the round, then apply.
            Snapshot,
            /// One after the other, each planning from the table as the last one left it.
            Sequential,
            /// One after the other, each seeing either the start of the round or the latest.
            Mixed,
        }

        /// A change of membership, then some rounds before the next one.
        #[derive(Debug, Clone)]
        struct Step {
            /// Which of the pool are live after the change.
            live: [bool; POOL.len()],
            /// For a node that leaves: cleanly (it releases its shards) or by crashing (its
            /// lease expires and its shards become unowned).
            clean: [bool; POOL.len()],
            /// Rounds run before the next change (0: changes pile up mid-convergence).
            rounds: usize,
        }

        fn step() -> impl Strategy<Value = Step> {
            (any::<[bool; 6]>(), any::<[bool; 6]>(), 0usize..3).prop_map(|(live, clean, rounds)| {
                Step {
                    live,
                    clean,
                    rounds,
                }
            })
        }

        struct Cluster {
            owners: Vec<Option<String>>,
            members: BTreeSet<String>,
            /// Nodes that left cleanly and still hold shards: they keep running their plan.
            leaving: BTreeSet<String>,
            views: Views,
            /// Drives the order of the nodes and the views in `Mixed`.
            rng: u64,
        }

        impl Cluster {
            fn next(&mut self) -> u64 {
                self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
                mix(self.rng)
            }

            fn change(&mut self, step: &Step) {
                for (i, name) in POOL.iter().enumerate() {
                    let name = name.to_string();
                    if step.live[i] {
                        self.leaving.remove(&name);
                        self.members.insert(name);
                    } else if self.members.remove(&name) {
                        if step.clean[i] {
                            self.leaving.insert(name);
                        } else {
                            for o in &mut self.owners {
                                if o.as_ref() == Some(&name) {
                                    *o = None;
                                }
                            }
                        }
                    }
                }
            }

            /// Checks one node's plan against the table it was made from.
            fn check(&self, me: &str, seen: &[Option<String>], p: &Assignment) {
                let nodes: Vec<&str> = self.members.iter().map(String::as_str).collect();
                assert!(p.take.is_empty() || p.release.is_empty(), "{me}: {p:?}");
                for &s in &p.take {
                    assert!(seen[s as usize].is_none(), "{me} takes owned {s}");
                }
                for &s in &p.release {
                    assert_eq!(seen[s as usize].as_deref(), Some(me), "{me} releases {s}");
                }
                let held = count(seen, me);
                match nodes.binary_search(&me) {
                    Ok(rank) => {
                        let share = fair_share(rank, nodes.len(), shard_count(seen)) as usize;
                        assert!(
                            held + p.take.len() <= share.max(held),
                            "{me} takes too many"
                        );
                        assert!(
                            p.release.is_empty() || held - p.release.len() == share,
                            "{me} releases below (or not down to) its share"
                        );
                        if !p.release.is_empty() {
                            let under = nodes.iter().enumerate().any(|(r, n)| {
                                *n != me
                                    && count(seen, n)
                                        < fair_share(r, nodes.len(), shard_count(seen)) as usize
                            });
                            assert!(under, "{me} releases with nobody under their share");
                        }
                    }
                    Err(_) => {
                        assert!(p.take.is_empty(), "{me} is not live but takes");
                        assert!(p.release.is_empty() || !nodes.is_empty());
                    }
                }
            }

            /// One round. Returns how many takes failed because another node took first.
            fn round(&mut self) -> usize {
                let mut running: Vec<String> =
                    self.members.iter().chain(&self.leaving).cloned().collect();
                for i in (1..running.len()).rev() {
                    let j = (self.next() % (i as u64 + 1)) as usize;
                    running.swap(i, j);
                }
                let start = self.owners.clone();
                let nodes: Vec<String> = self.members.iter().cloned().collect();
                let mut plans = Vec::new();
                for me in &running {
                    let stale = match self.views {
                        Views::Snapshot => true,
                        Views::Sequential => false,
                        Views::Mixed => self.next() & 1 == 0,
                    };
                    let seen = if stale { &start } else { &self.owners };
                    let p = plan(me, &nodes, seen);
                    self.check(me, seen, &p);
                    if matches!(self.views, Views::Snapshot) {
                        plans.push((me, p));
                    } else {
                        plans.push((me, p.clone()));
                        Self::apply(&mut self.owners, me, &p);
                    }
                }
                let mut failed = 0;
                if matches!(self.views, Views::Snapshot) {
                    for (me, p) in &plans {
                        failed += Self::apply(&mut self.owners, me, p);
                    }
                }
                self.leaving
                    .retain(|n| self.owners.iter().any(|o| o.as_ref() == Some(n)));
                failed
            }

            /// Applies a plan; returns how many takes failed.
            fn apply(owners: &mut [Option<String>], me: &str, p: &Assignment) -> usize {
                for &s in &p.release {
                    // Deleting one's own key: a no-op if it is no longer ours.
                    if owners[s as usize].as_deref() == Some(me) {
                        owners[s as usize] = None;
                    }
                }
                let mut failed = 0;
                for &s in &p.take {
                    match &owners[s as usize] {
                        None => owners[s as usize] = Some(me.to_owned()),
                        Some(_) => failed += 1,
                    }
                }
                failed
            }
        }

        fn views() -> impl Strategy<Value = Views> {
            prop_oneof![
                Just(Views::Snapshot),
                Just(Views::Sequential),
                Just(Views::Mixed)
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn rounds_converge_to_balanced(
                shards in 1u32..100,
                steps in proptest::collection::vec(step(), 1..8),
                views in views(),
                seed in any::<u64>(),
            ) {
                let mut cluster = Cluster {
                    owners: vec![None; shards as usize],
                    members: BTreeSet::new(),
                    leaving: BTreeSet::new(),
                    views,
                    rng: seed,
                };
                let mut failed = 0;
                for step in &steps {
                    cluster.change(step);
                    for _ in 0..step.rounds {
                        failed += cluster.round();
                    }
                }
                // Membership is now still. Balanced within 4 rounds (with no live node,
                // nothing is ever taken, so there is nothing to wait for).
                let nodes: Vec<String> = cluster.members.iter().cloned().collect();
                let limit = if nodes.is_empty() { 0 } else { 4 };
                let mut rounds = 0;
                while !balanced(&cluster.owners, &nodes) && rounds < limit {
                    failed += cluster.round();
                    rounds += 1;
                }
                if nodes.is_empty() {
                    nothing_taken_without_members(&cluster)?;
                } else {
                    prop_assert!(
                        balanced(&cluster.owners, &nodes),
                        "not balanced after {} rounds: {:?}", rounds, cluster.owners
                    );
                    let low = shards as usize / nodes.len();
                    for n in &nodes {
                        let held = count(&cluster.owners, n);
                        prop_assert!(held == low || held == low + 1, "{n} holds {held}");
                    }
                    // Once balanced, nobody has anything to do.
                    for n in &nodes {
                        prop_assert_eq!(plan(n, &nodes, &cluster.owners), Assignment::default());
                    }
                }
                // Plans made from one shared view never collide.
                if !matches!(views, Views::Mixed) {
                    prop_assert_eq!(failed, 0);
                }
            }
        }

        /// With no live node nothing may be taken, and leaving nodes keep what they hold.
        fn nothing_taken_without_members(cluster: &Cluster) -> Result<(), TestCaseError> {
            for o in cluster.owners.iter().flatten() {
                prop_assert!(cluster.leaving.contains(o), "{o} holds a shard, not live");
            }
            Ok(())
        }
    }
}
