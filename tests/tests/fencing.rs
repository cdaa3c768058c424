//! Fencing at the resource on PostgreSQL (the storage half of cluster mode): a commit carries
//! its shards' terms and lands only if PostgreSQL still records them, checked in the same
//! transaction as the writes; claiming a shard records a newer term and waits for commits
//! under the older one. Local backends refuse fenced commits clearly.

use std::ops::Bound;
use std::time::Duration;

use durable_runtime::{
    Backend, Durability, ErrorKind, Fence, FjallBackend, MemoryBackend, PostgresBackend, Write,
};
use durable_tests::postgres::{connect, PgServer};

fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Write<'a> {
    Write {
        key,
        value: Some(value),
    }
}

fn all(backend: &dyn Backend) -> Vec<(Vec<u8>, Vec<u8>)> {
    backend
        .scan(Bound::Unbounded, Bound::Unbounded, false)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_commit_under_a_stale_term_is_refused_whole() {
    let pg = PgServer::start();
    pg.create_database("app");
    let backend = PostgresBackend::connect(&pg.url("app")).unwrap();
    let old = Fence { shard: 1, term: 5 };
    let other = Fence { shard: 2, term: 1 };
    backend.claim_shard(old).unwrap();
    backend.claim_shard(other).unwrap();
    backend
        .commit_fenced(&[put(b"\x01a", b"1")], Durability::Fsync, &[old, other])
        .unwrap();

    // Another node takes shard 1 over: the old owner's commits no longer land, not even
    // their writes to other shards' keys.
    let new = Fence { shard: 1, term: 9 };
    backend.claim_shard(new).unwrap();
    let err = backend
        .commit_fenced(
            &[put(b"\x01a", b"stale"), put(b"\x01b", b"stale")],
            Durability::Fsync,
            &[old, other],
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(err.to_string().contains("[1]"), "{err}");
    assert_eq!(all(&backend), vec![(b"\x01a".to_vec(), b"1".to_vec())]);

    // The new owner's commit lands; an older claim is refused.
    backend
        .commit_fenced(&[put(b"\x01a", b"2")], Durability::Fsync, &[new])
        .unwrap();
    assert_eq!(all(&backend), vec![(b"\x01a".to_vec(), b"2".to_vec())]);
    let err = backend
        .claim_shard(Fence { shard: 1, term: 7 })
        .unwrap_err();
    assert!(err.to_string().contains("term 9 is recorded"), "{err}");
    // Claiming the recorded term again succeeds (a claim whose answer was lost is retried).
    backend.claim_shard(new).unwrap();
    // A shard never claimed has no term: a commit under any term is refused.
    let err = backend
        .commit_fenced(
            &[put(b"\x01c", b"x")],
            Durability::Fsync,
            &[Fence { shard: 3, term: 1 }],
        )
        .unwrap_err();
    assert!(err.to_string().contains("[3]"), "{err}");
}

/// A claim racing a commit under the old term: whichever PostgreSQL orders first wins, and
/// never both. A commit under way (here waiting for a row another session holds, after
/// reading its terms) makes the claim wait, then lands; a claim under way (an uncommitted term update) makes the
/// commit wait, then refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_commits_are_serialized_by_postgres() {
    let pg = PgServer::start();
    pg.create_database("app");
    let url = pg.url("app");
    let backend = std::sync::Arc::new(PostgresBackend::connect(&url).unwrap());
    let old = Fence { shard: 1, term: 5 };
    backend.claim_shard(old).unwrap();

    // 1. The commit first: it has read (and locked) its shard's term, and waits for a key's
    // row held by another session; the new term waits for the commit.
    backend
        .commit_fenced(&[put(b"\x01a", b"first")], Durability::Fsync, &[old])
        .unwrap();
    let mut locker = connect(&url).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("SELECT 1 FROM durable_kv WHERE key = '\\x0161'::bytea FOR UPDATE")
        .await
        .unwrap();
    let committing = {
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || {
            backend.commit_fenced(&[put(b"\x01a", b"old")], Durability::Fsync, &[old])
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claimer = connect(&url).await;
    let claim = tokio::spawn(async move {
        claimer
            .execute("UPDATE durable_shards SET term = 9 WHERE shard = 1", &[])
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !claim.is_finished(),
        "the claim did not wait for the commit under way"
    );
    lock.rollback().await.unwrap();
    committing
        .await
        .unwrap()
        .expect("the commit under way was refused");
    assert_eq!(claim.await.unwrap().unwrap(), 1);
    assert_eq!(all(&*backend), vec![(b"\x01a".to_vec(), b"old".to_vec())]);

    // 2. The claim first: the commit waits for it, then sees the new term and is refused.
    let mut claimer = connect(&url).await;
    let claiming = claimer.transaction().await.unwrap();
    claiming
        .execute("UPDATE durable_shards SET term = 11 WHERE shard = 1", &[])
        .await
        .unwrap();
    let stale = Fence { shard: 1, term: 9 };
    let committing = {
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || {
            backend.commit_fenced(&[put(b"\x01a", b"late")], Durability::Fsync, &[stale])
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !committing.is_finished(),
        "the commit did not wait for the claim under way"
    );
    claiming.commit().await.unwrap();
    let err = committing.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("stale"), "{err}");
    assert_eq!(all(&*backend), vec![(b"\x01a".to_vec(), b"old".to_vec())]);
}

#[test]
fn local_backends_refuse_to_fence() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = FjallBackend::open(dir.path()).unwrap();
    let memory = MemoryBackend::new();
    for backend in [&fjall as &dyn Backend, &memory] {
        let fence = Fence { shard: 0, term: 1 };
        let err = backend
            .commit_fenced(&[put(b"\x01a", b"1")], Durability::Fsync, &[fence])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("cluster mode needs"), "{err}");
        assert_eq!(
            backend.claim_shard(fence).unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(all(backend).is_empty());
        // Without fences, a plain commit.
        backend
            .commit_fenced(&[put(b"\x01a", b"1")], Durability::Fsync, &[])
            .unwrap();
        assert_eq!(all(backend).len(), 1);
    }
}
