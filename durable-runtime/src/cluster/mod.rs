//! Cluster mode: several nodes sharing one storage, coordinated through etcd. Object IDs hash
//! to a fixed number of shards and each shard has one owner node at a time. This directory
//! will hold the parts of that: membership (the live nodes, each under its etcd lease),
//! placement (which shard an object is in, and which shards a node should take or release),
//! fence (a shard's ownership term, carried by every commit) and router (forwarding a call to
//! its shard's owner). Placement is pure logic, with no etcd and no I/O; membership (behind the
//! `cluster` feature) is everything the runtime does with etcd.

#[cfg(feature = "cluster")]
mod membership;
mod placement;
