//! The private etcd of the tests ([`EtcdServer`]): it starts on loopback, serves puts and gets
//! bound to leases, deletes a key once its lease is no longer kept alive, keeps its data
//! across a graceful stop and a SIGKILL and a restart (which waits for a port taken in
//! between), lets a kept-alive lease expire while paused, runs beside another, panics with
//! its log when etcd cannot start, and leaves nothing behind once dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use durable_tests::etcd::EtcdServer;
use etcd_client::{Client, ConnectOptions, PutOptions};

/// A client of `etcd`, giving up on a request after 5 s, or panics saying why.
async fn connect(etcd: &EtcdServer) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    Client::connect([etcd.endpoint()], Some(options))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", etcd.endpoint()))
}

/// The value at `key`, if there is one, or panics saying why.
async fn value(client: &mut Client, key: &str) -> Option<String> {
    let reply = client
        .get(key, None)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    reply
        .kvs()
        .first()
        .map(|kv| kv.value_str().expect("a UTF-8 value").to_owned())
}

/// Whether a new client of `etcd` gets an answer to a read within a second.
async fn answers(etcd: &EtcdServer) -> bool {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(1));
    let read = async {
        let mut client = Client::connect([etcd.endpoint()], Some(options)).await?;
        client.get("anything", None).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), read).await,
        Ok(Ok(_))
    )
}

/// Waits until `key` is deleted, checking every 50 ms; false if it is still there after
/// `patience`.
async fn deleted_within(client: &mut Client, key: &str, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while value(client, key).await.is_some() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The port of `etcd`'s endpoint, which must be `http://127.0.0.1:PORT`.
fn port(etcd: &EtcdServer) -> u16 {
    let endpoint = etcd.endpoint();
    endpoint
        .strip_prefix("http://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("endpoint {endpoint} is not http://127.0.0.1:PORT"))
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_leased_keys_on_loopback_and_the_directory_is_removed() {
    let etcd = EtcdServer::start();
    let dir = etcd.dir().to_owned();
    let endpoint = etcd.endpoint();
    let port = port(&etcd);
    assert!(dir.join("data/member/wal").is_dir(), "no data in {dir:?}");

    let mut client = connect(&etcd).await;
    // One member, reached (by clients and by peers) on loopback only.
    let members = client.member_list().await.expect("member list");
    let [member] = members.members() else {
        panic!("not one member: {:?}", members.members());
    };
    assert_eq!(member.client_urls(), std::slice::from_ref(&endpoint));
    assert!(
        member
            .peer_urls()
            .iter()
            .all(|url| url.starts_with("http://127.0.0.1:")),
        "peer URLs {:?}",
        member.peer_urls()
    );

    let lease = client.lease_grant(60, None).await.expect("grant").id();
    let leased = PutOptions::new().with_lease(lease);
    client
        .put("held", "by the lease", Some(leased))
        .await
        .expect("put");
    let reply = client.get("held", None).await.expect("get");
    let [kv] = reply.kvs() else {
        panic!("not one key: {:?}", reply.kvs());
    };
    assert_eq!(kv.value_str().unwrap(), "by the lease");
    assert_eq!(kv.lease(), lease);
    assert_eq!(value(&mut client, "never put").await, None);
    drop(client);

    drop(etcd);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} still answers after the drop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_not_kept_alive_expires_and_its_key_goes() {
    let etcd = EtcdServer::start();
    let mut client = connect(&etcd).await;
    let granted = Instant::now();
    let lease = client.lease_grant(2, None).await.expect("grant");
    assert_eq!(lease.ttl(), 2);
    let leased = PutOptions::new().with_lease(lease.id());
    client.put("short", "lived", Some(leased)).await.unwrap();
    client.put("kept", "without a lease", None).await.unwrap();

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        value(&mut client, "short").await.as_deref(),
        Some("lived"),
        "the key went before its lease's TTL"
    );
    assert!(
        deleted_within(&mut client, "short", Duration::from_secs(4)).await,
        "the key of a lease nobody keeps alive still there {:?} after the grant",
        granted.elapsed()
    );
    let lived = granted.elapsed();
    assert!(
        lived >= Duration::from_millis(1900),
        "deleted after {lived:?}"
    );
    // The lease is gone; the key without one stays.
    let left = client.lease_time_to_live(lease.id(), None).await.unwrap();
    assert_eq!(left.ttl(), -1, "the lease still has {} s", left.ttl());
    assert_eq!(
        value(&mut client, "kept").await.as_deref(),
        Some("without a lease")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_stop_and_kill9_and_restart() {
    let mut etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let mut client = connect(&etcd).await;
    client.put("before stop", "1", None).await.unwrap();
    drop(client);

    etcd.stop();
    assert!(!answers(&etcd).await, "a stopped server answered");
    etcd.restart();
    assert_eq!(etcd.endpoint(), endpoint, "the restart moved the server");
    let mut client = connect(&etcd).await;
    assert_eq!(
        value(&mut client, "before stop").await.as_deref(),
        Some("1")
    );
    // Acknowledged just before the kill: etcd wrote it to its log (fsync'ed) first.
    client.put("before kill", "2", None).await.unwrap();
    drop(client);

    etcd.kill9();
    assert!(!answers(&etcd).await, "a killed server answered");
    etcd.restart();
    let mut client = connect(&etcd).await;
    assert_eq!(
        value(&mut client, "before stop").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&mut client, "before kill").await.as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_waits_for_its_port_taken_in_between() {
    let mut etcd = EtcdServer::start();
    let mut client = connect(&etcd).await;
    client.put("kept", "yes", None).await.unwrap();
    drop(client);
    etcd.stop();

    // Someone else (a listener of this test) holds the stopped server's port for a second.
    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, port(&etcd)))
        .expect("the stopped server's port is free");
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(squatter);
    });
    let restarting = Instant::now();
    etcd.restart();
    let waited = restarting.elapsed();
    released.join().unwrap();
    assert!(
        waited >= Duration::from_millis(900),
        "restarted in {waited:?}"
    );
    let mut client = connect(&etcd).await;
    assert_eq!(value(&mut client, "kept").await.as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_lease_expires_while_the_server_is_paused() {
    let mut etcd = EtcdServer::start();
    let mut client = connect(&etcd).await;
    let lease = client.lease_grant(2, None).await.expect("grant").id();
    let leased = PutOptions::new().with_lease(lease);
    client
        .put("owned", "while alive", Some(leased))
        .await
        .unwrap();

    // A keeper renews the lease every 200 ms and reports the TTL of each answer (0: the
    // lease is gone).
    let (mut keeper, mut replies) = client.lease_keep_alive(lease).await.expect("keep alive");
    let (ttls, mut ttl) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(200), replies.message()).await {
                Ok(Ok(Some(reply))) => {
                    if ttls.send(reply.ttl()).is_err() || reply.ttl() == 0 {
                        break;
                    }
                }
                Ok(_) => break,
                // No answer: the server is paused.
                Err(_) => {}
            }
        }
    });

    // Kept alive past its TTL, the key stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        value(&mut client, "owned").await.as_deref(),
        Some("while alive"),
        "the key of a kept-alive lease went"
    );
    assert_eq!(ttl.recv().await, Some(2), "the keeper got no renewal");

    etcd.pause();
    let paused = Instant::now();
    let read = tokio::time::timeout(Duration::from_millis(300), client.get("owned", None)).await;
    assert!(read.is_err(), "a paused server answered: {read:?}");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(paused.elapsed())).await;
    etcd.resume();

    // Renewals did not reach it for longer than the TTL: once resumed, it expires the lease.
    assert!(
        deleted_within(&mut client, "owned", Duration::from_secs(3)).await,
        "the key outlived its lease's TTL in the pause"
    );
    let last = tokio::time::timeout(Duration::from_secs(5), async {
        let mut last = None;
        while let Some(t) = ttl.recv().await {
            last = Some(t);
            if t == 0 {
                break;
            }
        }
        last
    })
    .await
    .expect("the keeper hears back after the pause");
    assert_eq!(last, Some(0), "the keeper was not told the lease is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_run_side_by_side() {
    let a = EtcdServer::start();
    let b = EtcdServer::start();
    assert_ne!(a.endpoint(), b.endpoint());
    assert_ne!(a.dir(), b.dir());
    let (mut on_a, mut on_b) = (connect(&a).await, connect(&b).await);
    let name = |members: etcd_client::MemberListResponse| members.members()[0].name().to_owned();
    assert_ne!(
        name(on_a.member_list().await.unwrap()),
        name(on_b.member_list().await.unwrap())
    );
    // Two clusters, not one: a key put on one is not on the other.
    on_a.put("only on a", "yes", None).await.unwrap();
    assert_eq!(value(&mut on_a, "only on a").await.as_deref(), Some("yes"));
    assert_eq!(value(&mut on_b, "only on a").await, None);
}

#[test]
fn a_server_that_cannot_start_panics_with_its_log() {
    let mut etcd = EtcdServer::start();
    etcd.stop();
    // Its data directory becomes a file: etcd refuses to start on it.
    let data = etcd.dir().join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, "not a directory").unwrap();
    let started = Instant::now();
    let panic = std::panic::catch_unwind(AssertUnwindSafe(|| etcd.restart()))
        .expect_err("etcd started on a file as its data directory");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("etcd exited at start"), "panic: {message}");
    assert!(
        message.contains("failed to list data directory"),
        "etcd's own complaint is not in the panic: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a failed start took {:?} to report",
        started.elapsed()
    );
}
