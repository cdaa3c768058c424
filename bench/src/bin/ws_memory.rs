//! Heap bytes per idle, hibernated WebSocket held by a runtime, counted by a global
//! allocator (exact, unlike a process's resident memory, which the allocator's free lists and
//! arenas blur).
//!
//! `cargo run --release -p durable-bench --bin ws_memory -- [N]` (default 10,000 sockets):
//!
//! - one process: a runtime holding its objects, serving `/room/{room}` with
//!   `durable_runtime::axum::forward`; N sockets of one room, accepted with a tag and a small
//!   attachment, left idle until the room is evicted;
//! - two processes: the HTTP front end is a connected runtime (it holds the sockets), the
//!   room lives in an object server in a child process (this program, `server` mode): the
//!   bytes counted are the front end's alone.
//!
//! The clients run in a child process too (`client` mode), so their bytes are not counted.
//! Printed: bytes per socket while the room is active, and once it is evicted (hibernated).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::Response as AxumResponse;
use axum::routing::any;
use durable_runtime::http::{Request as ObjectRequest, Response};
use durable_runtime::websocket::{Message, WebSocket};
use durable_runtime::{durable_object, Context, Namespace, Result, Runtime};
use futures_util::{SinkExt, StreamExt};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A room that accepts every socket and says nothing: what is measured is the holding.
#[durable_object]
pub struct Room {
    ctx: Context,
}

#[durable_object]
impl Room {
    pub fn new(ctx: Context) -> Self {
        Room { ctx }
    }

    pub async fn fetch(&mut self, request: ObjectRequest) -> Result<Response> {
        let (response, ws) = self.ctx.accept_websocket(&request, &["member"])?;
        ws.serialize_attachment(&"a member")?;
        Ok(response)
    }

    pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()> {
        ws.send(message)
    }
}

async fn route(
    State(rooms): State<Namespace<Room>>,
    Path(room): Path<String>,
    request: axum::extract::Request,
) -> AxumResponse {
    durable_runtime::axum::forward(&rooms.get_by_name(&room), request).await
}

async fn serve(rooms: Namespace<Room>) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/room/{room}", any(route))
        .with_state(rooms);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Opens `n` sockets to `addr`, echoes one message on each, prints `READY`, and holds them
/// until stdin closes.
async fn client(addr: &str, n: usize) {
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let url = format!("ws://{addr}/room/r");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("socket {i}: {e}"));
        ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
            .await
            .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("socket {i}: {other:?}"),
            }
        }
        sockets.push(ws);
    }
    println!("READY");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(sockets);
}

/// Measures one configuration: `front` serves HTTP; `server` (when it is another runtime)
/// holds the room.
async fn measure(label: &str, n: usize, front: &Runtime, evicted: impl Fn() -> bool) {
    let addr = serve(front.namespace::<Room>()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = live();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["client", &addr.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || lines.next())
        .await
        .unwrap();
    assert!(
        matches!(ready, Some(Ok(ref l)) if l == "READY"),
        "{ready:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let active = live();
    let start = Instant::now();
    while !evicted() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the room was not evicted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = live();
    if let Ok(secs) = std::env::var("WS_MEMORY_PAUSE") {
        // Time for a heap profiler to take a snapshot of the idle state.
        println!("IDLE {label}");
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(secs.parse().unwrap_or(10))).await;
    }
    println!(
        "ws memory, {label}, {n} sockets: {:.0} bytes/socket active, {:.0} bytes/socket hibernated",
        (active - before) as f64 / n as f64,
        (idle - before) as f64 / n as f64,
    );
    drop(child.stdin.take());
    let _ = child.wait();
}

/// The object server of the two-process case: prints its address, serves until stdin
/// closes.
async fn server() {
    let rt = Runtime::builder()
        .in_memory()
        .idle_timeout(Duration::from_millis(200))
        .register::<Room>()
        .listen("127.0.0.1:0")
        .open()
        .unwrap();
    println!("{}", rt.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
    rt.shutdown().await.unwrap();
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    match argv.get(1).map(String::as_str) {
        Some("client") => {
            rt.block_on(client(&argv[2], argv[3].parse().unwrap()));
            return;
        }
        Some("server") => {
            rt.block_on(server());
            return;
        }
        _ => {}
    }
    let n: usize = argv.get(1).map(|s| s.parse().unwrap()).unwrap_or(10_000);
    rt.block_on(async {
        let idle = Duration::from_millis(200);
        {
            let one = Runtime::builder()
                .in_memory()
                .idle_timeout(idle)
                .open()
                .unwrap();
            measure("one process", n, &one, || one.metrics().live_objects == 0).await;
            one.shutdown().await.unwrap();
        }
        let exe = std::env::current_exe().unwrap();
        let mut server = Command::new(exe)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
        let addr = lines.next().unwrap().unwrap();
        let front = Runtime::builder().connect(addr).open().unwrap();
        // The room is in the other process: wait well past its idle timeout.
        let first_look = std::sync::OnceLock::new();
        measure(
            "front end (object server in another process)",
            n,
            &front,
            || first_look.get_or_init(Instant::now).elapsed() > Duration::from_secs(2),
        )
        .await;
        drop(server.stdin.take());
        let _ = server.wait();
    });
}
