//! WebSockets held for objects (in this process): accept in `fetch`, handlers, broadcast,
//! order, hibernation with attachments, closes both ways, the auto-response, and limits.
//! Real clients (tokio-tungstenite) against a real axum server on loopback.

use std::time::Duration;

use durable_runtime::websocket::MAX_MESSAGE_BYTES;
use durable_runtime::Runtime;
use durable_tests::room::{join, next, next_text, quiet, say, serve, Room};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as Ws;

fn runtime(idle: Duration) -> Runtime {
    Runtime::builder()
        .in_memory()
        .idle_timeout(idle)
        .open()
        .unwrap()
}

#[tokio::test]
async fn a_broadcast_reaches_every_socket_of_its_room_and_no_other() {
    let rt = runtime(Duration::from_secs(60));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut a = Vec::new();
    for i in 0..5 {
        a.push(join(addr, "a", &format!("name=a{i}")).await);
    }
    let mut b = join(addr, "b", "name=b0").await;
    say(&mut a[2], "all:hello").await;
    for client in &mut a {
        assert_eq!(next_text(client).await, "a2: hello");
    }
    quiet(&mut b).await;
    let metrics = rt.metrics();
    assert_eq!(metrics.websockets_held, 6, "{metrics:?}");
    assert_eq!(metrics.websocket_events, 1, "{metrics:?}");
    assert!(metrics
        .to_prometheus()
        .contains("durable_websockets_held 6\n"));
    assert_eq!(
        rt.namespace::<Room>()
            .get_by_name("a")
            .open_sockets()
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        rt.namespace::<Room>()
            .get_by_name("b")
            .open_sockets()
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn tags_pick_sockets() {
    let rt = runtime(Duration::from_secs(60));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut red = join(addr, "t", "name=r&tag=red&tag=warm").await;
    let mut blue = join(addr, "t", "name=b&tag=blue").await;
    say(&mut blue, "tag:red:hi").await;
    assert_eq!(next_text(&mut red).await, "b to red: hi");
    quiet(&mut blue).await;
    say(&mut red, "who").await;
    assert_eq!(next_text(&mut red).await, r#"r ["red", "warm"]"#);
}

#[tokio::test]
async fn messages_reach_the_object_in_order_and_binary_works() {
    let rt = runtime(Duration::from_secs(60));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut c = join(addr, "order", "name=c").await;
    for i in 0..200 {
        say(&mut c, &format!("m{i}")).await;
    }
    for i in 0..200 {
        assert_eq!(next_text(&mut c).await, format!("{} m{i}", i + 1));
    }
    c.send(Ws::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next(&mut c).await, Ws::binary(vec![3u8, 2, 1]));
}

#[tokio::test]
async fn hibernation_keeps_sockets_tags_and_attachments() {
    let rt = runtime(Duration::from_millis(100));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut c = join(addr, "h", "name=sleeper&tag=night").await;
    let mut d = join(addr, "h", "name=other").await;
    say(&mut c, "rename").await;
    // Evicted: the sweeper needs one to two idle timeouts.
    let evicted = async {
        while rt.metrics().live_objects > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), evicted)
        .await
        .expect("the room is evicted");
    let activations = rt.metrics().activations;
    assert!(rt.metrics().evictions >= 1);
    say(&mut c, "who").await;
    assert_eq!(next_text(&mut c).await, r#"sleeper! ["night"]"#);
    assert_eq!(
        rt.metrics().activations,
        activations + 1,
        "woken from storage"
    );
    say(&mut d, "all:still here").await;
    assert_eq!(next_text(&mut c).await, "other: still here");
    assert_eq!(next_text(&mut d).await, "other: still here");
}

#[tokio::test]
async fn messages_arriving_around_evictions_are_not_lost() {
    let rt = runtime(Duration::from_millis(10));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut c = join(addr, "e", "name=e").await;
    let mut sent = 0;
    for round in 0..40u64 {
        // Pauses around the idle timeout: some messages find the object live, some find it
        // leaving, some find it gone.
        tokio::time::sleep(Duration::from_millis(round % 7 * 5)).await;
        for _ in 0..3 {
            sent += 1;
            say(&mut c, &format!("m{sent}")).await;
        }
    }
    for i in 1..=sent {
        assert_eq!(next_text(&mut c).await, format!("{i} m{i}"));
    }
    assert!(rt.metrics().evictions >= 2, "{:?}", rt.metrics());
}

#[tokio::test]
async fn closes_reach_the_object_and_the_others() {
    let rt = runtime(Duration::from_secs(60));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut stay = join(addr, "c", "name=stay").await;
    let mut leave = join(addr, "c", "name=leave").await;
    leave
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Library(4321),
            reason: "done here".into(),
        }))
        .await
        .unwrap();
    assert_eq!(next_text(&mut stay).await, "leave left");
    // A connection dropped without a close is 1006.
    let gone = join(addr, "c", "name=gone").await;
    drop(gone);
    assert_eq!(next_text(&mut stay).await, "gone left");
    let room = rt.namespace::<Room>().get_by_name("c");
    assert_eq!(
        room.closes().await.unwrap(),
        [
            ("leave".to_owned(), 4321, "done here".to_owned()),
            ("gone".to_owned(), 1006, String::new())
        ]
    );
    assert_eq!(room.open_sockets().await.unwrap(), 1);
}

#[tokio::test]
async fn an_object_closes_a_socket() {
    let rt = runtime(Duration::from_secs(60));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut c = join(addr, "oc", "name=c").await;
    say(&mut c, "close").await;
    match next(&mut c).await {
        Ws::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4000);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    let room = rt.namespace::<Room>().get_by_name("oc");
    assert_eq!(room.open_sockets().await.unwrap(), 0);
    // The object's own close does not call `websocket_close`.
    assert!(room.closes().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_auto_response_answers_without_waking_the_object() {
    let rt = runtime(Duration::from_millis(50));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut c = join(addr, "p", "name=p").await;
    while rt.metrics().live_objects > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let activations = rt.metrics().activations;
    for _ in 0..10 {
        say(&mut c, "ping").await;
        assert_eq!(next_text(&mut c).await, "pong");
    }
    assert_eq!(rt.metrics().activations, activations);
    assert_eq!(rt.metrics().live_objects, 0);
}

#[tokio::test]
async fn limits_and_bad_input_have_clear_outcomes() {
    let rt = runtime(Duration::from_secs(60));
    let addr = serve(rt.namespace::<Room>()).await;
    let mut stay = join(addr, "l", "name=stay").await;

    // A message over the limit: the sender is closed with 1009, the room goes on.
    let mut big = join(addr, "l", "name=big").await;
    let _ = big.send(Ws::binary(vec![0u8; MAX_MESSAGE_BYTES + 1])).await;
    match next(&mut big).await {
        Ws::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(next_text(&mut stay).await, "big left");
    let room = rt.namespace::<Room>().get_by_name("l");
    assert_eq!(room.closes().await.unwrap()[0].1, 1009);

    // Too many tags: the object's accept fails, so the upgrade is refused.
    let many: Vec<String> = (0..11).map(|i| format!("tag=t{i}")).collect();
    let url = format!("ws://{addr}/room/l?name=x&{}", many.join("&"));
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");

    // A handler that panics: the object resets, the socket and the room go on.
    say(&mut stay, "panic").await;
    say(&mut stay, "all:after").await;
    assert_eq!(next_text(&mut stay).await, "stay: after");

    // Accepting without an upgrade request is an error.
    let text = room.accept_plain().await.unwrap();
    assert!(text.contains("not a WebSocket upgrade"), "{text}");

    // A plain GET to the room (not an upgrade): the object's accept fails, 500.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /room/l?name=z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    plain.read_to_end(&mut raw).await.unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 500"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_leaves_only_once_the_writes_before_it_are_durable() {
    use durable_tests::held_sync::{HeldSync, ReleaseOnDrop};
    let backend = HeldSync::new();
    let rt = Runtime::builder()
        .backend(backend.clone())
        .idle_timeout(Duration::from_secs(60))
        .open()
        .unwrap();
    let _release = ReleaseOnDrop(backend.clone());
    let addr = serve(rt.namespace::<Room>()).await;
    let mut c = join(addr, "g", "name=g").await;
    say(&mut c, "first").await;
    assert_eq!(next_text(&mut c).await, "1 first");

    backend.hold_syncs();
    // The handler writes `seq` = 2 and sends: the send waits for the sync.
    say(&mut c, "second").await;
    let waited = tokio::time::timeout(Duration::from_millis(300), c.next()).await;
    assert!(
        waited.is_err(),
        "a message left before its write was durable: {waited:?}"
    );
    backend.release_syncs();
    assert_eq!(next_text(&mut c).await, "2 second");
}

#[tokio::test]
async fn shutdown_closes_held_sockets_with_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let addr = serve(rt.namespace::<Room>()).await;
    let mut a = join(addr, "bye", "name=a").await;
    rt.shutdown().await.unwrap();
    match next(&mut a).await {
        Ws::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1001);
            assert_eq!(frame.reason.as_str(), "going away");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    // The object heard of it before the runtime stopped, and its writes are durable.
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let closes = rt
        .namespace::<Room>()
        .get_by_name("bye")
        .closes()
        .await
        .unwrap();
    assert_eq!(closes, [("a".to_owned(), 1001, "going away".to_owned())]);
}
