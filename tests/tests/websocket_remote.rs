//! WebSockets held by a front end (a connected runtime) for objects in an object server:
//! the same room behaviour as in one process, a front end killed (its sockets close at the
//! objects), and an object server killed -9 and restarted (the front end's sockets keep
//! working, tags and attachments intact).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use durable_runtime::Runtime;
use durable_tests::room::{join, next, next_text, say, serve, Room};
use durable_tests::{server_and_front, spawn_with_lines, GENEROUS};
use tokio_tungstenite::tungstenite::Message as Ws;

const NODE: &str = env!("CARGO_BIN_EXE_room_node");
const SECRET: &str = "room secret";

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A child process, killed when dropped (a failing test leaves none behind).
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `room_node` and returns it with the address it printed after `prefix`.
fn start(args: &[&str], prefix: &str) -> (Node, String) {
    let (mut child, lines) = spawn_with_lines(NODE, args);
    match lines.recv_timeout(GENEROUS) {
        Ok(line) if line.starts_with(prefix) => {
            let addr = line[prefix.len()..].trim().to_owned();
            (Node(child), addr)
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("room_node {args:?} did not start: {other:?}");
        }
    }
}

fn start_server(dir: &Path, addr: &str) -> Node {
    let dir = dir.to_str().expect("UTF-8 temp dir");
    start(&["server", dir, addr, SECRET], "LISTENING ").0
}

/// SIGKILL, and wait until it is gone.
fn kill(node: Node) {
    drop(node);
}

async fn eventually(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let give_up = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < give_up, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pair(idle: Duration) -> (Runtime, Runtime) {
    let server = Runtime::builder()
        .in_memory()
        .idle_timeout(idle)
        .register::<Room>();
    server_and_front(server, SECRET)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_behind_a_connected_front_end() {
    let (server, front) = pair(Duration::from_millis(100));
    let addr = serve(front.namespace::<Room>()).await;
    let mut a = join(addr, "r", "name=a&tag=red").await;
    let mut b = join(addr, "r", "name=b").await;
    let mut c = join(addr, "r", "name=c").await;

    // Broadcast, tags, order.
    say(&mut b, "all:hi").await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(next_text(client).await, "b: hi");
    }
    say(&mut c, "tag:red:psst").await;
    assert_eq!(next_text(&mut a).await, "c to red: psst");
    for i in 0..100 {
        say(&mut a, &format!("m{i}")).await;
    }
    for i in 0..100 {
        assert_eq!(next_text(&mut a).await, format!("{} m{i}", i + 1));
    }

    // Hibernation at the server, with the attachment changed through the wire.
    say(&mut a, "rename").await;
    let rooms = server.namespace::<Room>();
    eventually("the room is evicted", GENEROUS, async || {
        server.metrics().live_objects == 0
    })
    .await;
    say(&mut a, "who").await;
    assert_eq!(next_text(&mut a).await, r#"a! ["red"]"#);

    // The auto-response is answered by the front end, without waking the object.
    eventually("the room is evicted again", GENEROUS, async || {
        server.metrics().live_objects == 0
    })
    .await;
    let activations = server.metrics().activations;
    say(&mut b, "ping").await;
    assert_eq!(next_text(&mut b).await, "pong");
    assert_eq!(server.metrics().activations, activations);

    // Closes both ways.
    say(&mut c, "close").await;
    match next(&mut c).await {
        Ws::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4000),
        other => panic!("expected a close, got {other:?}"),
    }
    drop(b);
    assert_eq!(next_text(&mut a).await, "b left");
    let room = rooms.get_by_name("r");
    let closes = room.closes().await.unwrap();
    assert_eq!(closes, [("b".to_owned(), 1006, String::new())]);
    assert_eq!(room.open_sockets().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_front_end_closes_its_sockets_at_the_objects() {
    let server = Runtime::builder()
        .in_memory()
        .register::<Room>()
        .listen("127.0.0.1:0")
        .secret(SECRET)
        .open()
        .unwrap();
    let server_addr = server.local_addr().unwrap().to_string();
    let (front, http) = start(&["front", &server_addr, SECRET], "HTTP ");
    let http = http.parse().unwrap();
    let mut a = join(http, "k", "name=a").await;
    let mut b = join(http, "k", "name=b").await;
    say(&mut a, "all:before").await;
    assert_eq!(next_text(&mut b).await, "a: before");
    let room = server.namespace::<Room>().get_by_name("k");
    assert_eq!(room.open_sockets().await.unwrap(), 2);

    kill(front);
    // After the front end's grace period, each socket gets its close.
    eventually(
        "the room sees both closes",
        Duration::from_secs(30),
        async || room.closes().await.unwrap().len() == 2,
    )
    .await;
    let mut closes = room.closes().await.unwrap();
    closes.sort();
    assert_eq!(closes[0].0, "a");
    assert_eq!(closes[1].0, "b");
    assert!(closes.iter().all(|c| c.1 == 1006), "{closes:?}");
    assert_eq!(room.open_sockets().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_keep_working_across_a_kill_9_of_the_object_server() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let server = start_server(dir.path(), &addr);
    let front = Runtime::builder()
        .connect(addr.clone())
        .secret(SECRET)
        .open()
        .unwrap();
    let http = serve(front.namespace::<Room>()).await;
    let mut a = join(http, "s", "name=a&tag=blue").await;
    let mut b = join(http, "s", "name=b").await;
    say(&mut a, "rename").await;
    say(&mut a, "first").await;
    assert_eq!(next_text(&mut a).await, "1 first");

    kill(server);
    // Sent while the server is down: handed over once it is back.
    say(&mut b, "while down").await;
    let server = start_server(dir.path(), &addr);

    assert_eq!(next_text(&mut b).await, "2 while down");
    // The restarted server knows the sockets again, with their tags and attachments.
    say(&mut a, "who").await;
    assert_eq!(next_text(&mut a).await, r#"a! ["blue"]"#);
    say(&mut b, "all:after").await;
    assert_eq!(next_text(&mut a).await, "b: after");
    assert_eq!(next_text(&mut b).await, "b: after");
    kill(server);
}
