//! Remote calls (DESIGN.md "Remote calls"): a runtime serves its objects on loopback, a
//! connected runtime calls them through the same typed stubs, and every result — values and
//! errors — is what the same call returns locally.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use durable_runtime::{durable_object, Context, Error, ErrorKind, ObjectStub, Result, Runtime};
use durable_tests::held_sync::{HeldSync, ReleaseOnDrop};
use durable_tests::{within, Counter};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const SECRET: &str = "a test secret";

/// A typed user error that crosses the stub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BankError {
    Insufficient { balance: i64, wanted: i64 },
    Runtime(String),
}

impl From<Error> for BankError {
    fn from(e: Error) -> Self {
        BankError::Runtime(e.to_string())
    }
}

/// Shared by the objects of one server: a gate slow calls wait on.
#[derive(Default)]
pub struct Gates {
    open: Notify,
    entered: AtomicUsize,
}

impl Gates {
    /// Starts `stub.wait()` in a task and returns once that call waits at the gate.
    async fn park(&self, stub: &ProbeStub) -> tokio::task::JoinHandle<Result<u32>> {
        let before = self.entered.load(Ordering::SeqCst);
        let stub = stub.clone();
        let call = tokio::spawn(async move { stub.wait().await });
        wait_until("the call waits at the gate", || {
            self.entered.load(Ordering::SeqCst) == before + 1
        })
        .await;
        call
    }

    /// Opens the gate until every call waiting there and arriving within a moment passed.
    async fn open_until(&self, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < durable_tests::GENEROUS,
                "calls still waiting at the gate"
            );
            self.open.notify_waiters();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Every kind of outcome.
#[durable_object(max_queue = 4)]
pub struct Probe {
    ctx: Context,
}

#[durable_object]
impl Probe {
    pub fn new(ctx: Context) -> Self {
        Probe { ctx }
    }

    pub async fn echo(&self, text: String, n: u32) -> Result<(String, u32)> {
        Ok((text, n))
    }

    pub async fn fail_app(&self) -> Result<()> {
        Err(Error::app("NotFound", "no such thing"))
    }

    pub async fn withdraw(&mut self, wanted: i64) -> std::result::Result<i64, BankError> {
        let balance = 10;
        if wanted > balance {
            return Err(BankError::Insufficient { balance, wanted });
        }
        Ok(balance - wanted)
    }

    pub async fn boom(&self) -> Result<()> {
        panic!("the probe exploded");
    }

    pub async fn big_key(&mut self) -> Result<()> {
        self.ctx.storage_mut().put(&"k".repeat(3000), &1)?;
        Ok(())
    }

    pub async fn big_value(&mut self) -> Result<()> {
        self.ctx
            .storage_mut()
            .put("k", &vec![0u8; 3 * 1024 * 1024])?;
        Ok(())
    }

    pub async fn length(&self, bytes: Vec<u8>) -> usize {
        bytes.len()
    }

    pub async fn blob(&self, len: usize) -> Vec<u8> {
        vec![7; len]
    }

    /// Waits until the test opens the gate.
    pub async fn wait(&mut self) -> Result<u32> {
        let gates = self.ctx.env::<Arc<Gates>>().expect("gates");
        let opened = gates.open.notified();
        gates.entered.fetch_add(1, Ordering::SeqCst);
        opened.await;
        Ok(1)
    }

    pub async fn put(&mut self, value: i64) -> Result<()> {
        self.ctx.storage_mut().put("v", &value)
    }
}

/// A server on loopback (in memory) and a runtime connected to it.
fn pair() -> (Runtime, Runtime) {
    pair_with(Arc::default())
}

fn pair_with(gates: Arc<Gates>) -> (Runtime, Runtime) {
    let server = Runtime::builder()
        .in_memory()
        .env(gates)
        .register::<Probe>()
        .register::<Counter>()
        .listen("127.0.0.1:0")
        .secret(SECRET)
        .open()
        .expect("open the server");
    let front = connect(&server, SECRET);
    (server, front)
}

fn connect(server: &Runtime, secret: &str) -> Runtime {
    let addr = server.local_addr().expect("the server listens");
    Runtime::builder()
        .connect(addr.to_string())
        .secret(secret)
        .open()
        .expect("open the connected runtime")
}

fn same_error(local: &Error, remote: &Error) {
    assert_eq!(remote.kind(), local.kind(), "{remote} vs {local}");
    assert_eq!(remote.to_string(), local.to_string());
    assert_eq!(remote.is_remote(), local.is_remote());
    assert_eq!(remote.is_retryable(), local.is_retryable());
    assert_eq!(remote.is_overloaded(), local.is_overloaded());
    assert_eq!(remote.app_kind(), local.app_kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_every_error_kind_cross_intact() {
    let (server, front) = pair();
    let local = server.namespace::<Probe>().get_by_name("p");
    let remote = front.namespace::<Probe>().get_by_name("p");

    assert_eq!(
        remote.echo("héllo".into(), 7).await.unwrap(),
        ("héllo".to_owned(), 7)
    );
    assert_eq!(remote.withdraw(3).await, Ok(7));
    assert_eq!(
        remote.withdraw(30).await,
        Err(BankError::Insufficient {
            balance: 10,
            wanted: 30
        })
    );
    assert_eq!(remote.withdraw(30).await, local.withdraw(30).await);

    let app = remote.fail_app().await.unwrap_err();
    assert_eq!(app.app_kind(), Some("NotFound"));
    assert_eq!(app.message(), "no such thing");
    same_error(&local.fail_app().await.unwrap_err(), &app);

    let panicked = remote.boom().await.unwrap_err();
    assert_eq!(panicked.kind(), ErrorKind::Panicked);
    assert!(panicked.is_remote());
    same_error(&local.boom().await.unwrap_err(), &panicked);

    let key = remote.big_key().await.unwrap_err();
    assert_eq!(key.kind(), ErrorKind::KeyTooLarge);
    same_error(&local.big_key().await.unwrap_err(), &key);
    let value = remote.big_value().await.unwrap_err();
    assert_eq!(value.kind(), ErrorKind::ValueTooLarge);
    same_error(&local.big_value().await.unwrap_err(), &value);

    // An ID of another class: refused before it is sent, as locally.
    let counter_id = front.namespace::<Counter>().id_from_name("p");
    let wrong = front.namespace::<Probe>().get(counter_id.clone());
    let local_wrong = server.namespace::<Probe>().get(counter_id);
    let err = wrong.echo("x".into(), 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidId);
    same_error(&local_wrong.echo("x".into(), 1).await.unwrap_err(), &err);
    let parsed = front
        .namespace::<Probe>()
        .id_from_string(&front.namespace::<Counter>().id_from_name("q").to_string());
    assert_eq!(parsed.unwrap_err().kind(), ErrorKind::InvalidId);
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < durable_tests::GENEROUS,
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_timeout_cross_intact() {
    let gates = Arc::new(Gates::default());
    let (server, front) = pair_with(gates.clone());

    // Timeout: a call queued behind one waiting at the gate.
    let t = front.namespace::<Probe>().get_by_name("t");
    let first = gates.park(&t).await;
    let timed = ObjectStub::with_timeout(&t, Duration::from_millis(100));
    let remote_timeout = timed.wait().await.unwrap_err();
    assert_eq!(remote_timeout.kind(), ErrorKind::Timeout);
    let local_t = server.namespace::<Probe>().get_by_name("t");
    let local_timeout = ObjectStub::with_timeout(&local_t, Duration::from_millis(100))
        .wait()
        .await
        .unwrap_err();
    same_error(&local_timeout, &remote_timeout);

    // Overload: one call running, four queued (max_queue = 4), the rest refused at once.
    let o = front.namespace::<Probe>().get_by_name("o");
    let running = gates.park(&o).await;
    let calls: Vec<_> = (0..11)
        .map(|_| {
            let o = o.clone();
            tokio::spawn(async move { o.wait().await })
        })
        .collect();
    wait_until("the refused calls are answered", || {
        calls.iter().filter(|c| c.is_finished()).count() == 7
    })
    .await;
    let local_overloaded = server
        .namespace::<Probe>()
        .get_by_name("o")
        .wait()
        .await
        .unwrap_err();
    assert!(local_overloaded.is_overloaded());
    gates
        .open_until(|| {
            first.is_finished() && running.is_finished() && calls.iter().all(|c| c.is_finished())
        })
        .await;
    let mut ok = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.is_overloaded(), "{e}");
                same_error(&local_overloaded, &e);
            }
        }
    }
    assert_eq!(ok, 4, "the four queued calls ran");
    running.await.expect("task").expect("the running call");
    first.await.expect("task").expect("the first call");
    // What ran: t's first call, o's running call and o's four queued ones. The two timed-out
    // calls were dropped unrun by the server at their deadline (the remote one's deadline
    // crossed the wire), and the seven refused ones never ran.
    assert_eq!(gates.entered.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_increment_one_object_exactly() {
    let (_server, front) = pair();
    let stub = front.namespace::<Counter>().get_by_name("hot");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let stub = stub.clone();
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(50);
                for _ in 0..50 {
                    seen.push(within("remote increment", stub.increment(1)).await);
                }
                seen
            })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.extend(task.await.expect("caller"));
    }
    values.sort_unstable();
    assert_eq!(values, (1..=3200).collect::<Vec<i64>>());
    assert_eq!(stub.get_counter_value().await.unwrap(), 3200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_object_does_not_delay_another_objects_replies() {
    let gates = Arc::new(Gates::default());
    let (_server, front) = pair_with(gates.clone());
    let slow = front.namespace::<Probe>().get_by_name("slow");
    let waiting = gates.park(&slow).await;
    // Same connection, another object: answered while the slow call still waits.
    let fast = front.namespace::<Counter>().get_by_name("fast");
    for expected in 1..=100 {
        assert_eq!(within("fast increment", fast.increment(1)).await, expected);
    }
    assert!(!waiting.is_finished(), "the slow call was released early");
    gates.open_until(|| waiting.is_finished()).await;
    assert_eq!(waiting.await.expect("task").expect("slow call"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_never_leaves_the_server_before_its_write_is_durable() {
    let backend = HeldSync::new();
    let server = Runtime::builder()
        .backend(backend.clone())
        .register::<Counter>()
        .listen("127.0.0.1:0")
        .open()
        .expect("open");
    let _release = ReleaseOnDrop(backend.clone());
    let front = connect(&server, "");
    let stub = front.namespace::<Counter>().get_by_name("gated");
    assert_eq!(within("first increment", stub.increment(1)).await, 1);

    backend.hold_syncs();
    let call = tokio::spawn({
        let stub = stub.clone();
        async move { stub.increment(1).await }
    });
    wait_until("the write reaches the held sync", || {
        backend.syncs_waiting() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the reply crossed the wire before its write was durable"
    );
    assert!(backend.synced_max_value() < 2);
    backend.release_syncs();
    assert_eq!(call.await.expect("task").expect("increment"), 2);
    assert!(backend.synced_max_value() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_unauthenticated_and_the_call_never_runs() {
    let (server, _front) = pair();
    for secret in ["not the secret", ""] {
        let intruder = connect(&server, secret);
        let err = intruder
            .namespace::<Counter>()
            .get_by_name("guarded")
            .increment(1)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert!(!err.is_retryable());
        let err = intruder
            .namespace::<Counter>()
            .list_ids()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    }
    assert_eq!(server.metrics().calls, 0, "a refused call ran");
    assert!(server
        .namespace::<Counter>()
        .list_ids()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_server_without_the_secret() {
    let server = Runtime::builder()
        .in_memory()
        .register::<Counter>()
        .listen("127.0.0.1:0")
        .open()
        .expect("open");
    let front = connect(&server, SECRET);
    let err = front
        .namespace::<Counter>()
        .get_by_name("x")
        .increment(1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert_eq!(server.metrics().calls, 0);
}

/// A class the server does not have.
#[durable_object]
pub struct Stranger {
    ctx: Context,
}

#[durable_object]
impl Stranger {
    pub fn new(ctx: Context) -> Self {
        Stranger { ctx }
    }

    pub async fn hello(&self) -> Result<String> {
        Ok(self.ctx.id().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_class_is_unknown_method() {
    let (_server, front) = pair();
    let err = front
        .namespace::<Stranger>()
        .get_by_name("s")
        .hello()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownMethod, "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_ids_and_delete_all_objects_are_answered_by_the_server() {
    let (server, front) = pair();
    let counters = front.namespace::<Counter>();
    for name in ["a", "b", "c"] {
        counters.get_by_name(name).increment(1).await.unwrap();
    }
    let mut expected: Vec<_> = ["a", "b", "c"].map(|n| counters.id_from_name(n)).into();
    expected.sort();
    assert_eq!(counters.list_ids().await.unwrap(), expected);
    assert_eq!(
        server.namespace::<Counter>().list_ids().await.unwrap(),
        expected
    );
    assert_eq!(counters.delete_all_objects().await.unwrap(), 3);
    assert!(counters.list_ids().await.unwrap().is_empty());
    assert_eq!(
        counters.get_by_name("a").get_counter_value().await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_max_frame_bytes_fails_clearly_and_the_connection_still_works() {
    let server = Runtime::builder()
        .in_memory()
        .register::<Probe>()
        .listen("127.0.0.1:0")
        .max_frame_bytes(64 * 1024)
        .open()
        .expect("open");
    let addr = server.local_addr().unwrap().to_string();
    let front = Runtime::builder()
        .connect(addr)
        .max_frame_bytes(64 * 1024)
        .open()
        .unwrap();
    let probe = front.namespace::<Probe>().get_by_name("p");
    assert_eq!(probe.length(vec![1; 1000]).await.unwrap(), 1000);
    let err = probe.length(vec![1; 100_000]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("max_frame_bytes"), "{err}");
    assert_eq!(probe.length(vec![1; 10]).await.unwrap(), 10);
    // A reply over the server's limit: the server says so, and keeps the connection.
    let err = probe.blob(100_000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("max_frame_bytes"), "{err}");
    assert_eq!(probe.blob(3).await.unwrap(), vec![7; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_needs_a_secret() {
    let err = Runtime::builder()
        .in_memory()
        .listen("0.0.0.0:0")
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("secret"), "{err}");
    let err = Runtime::builder()
        .connect("127.0.0.1:1")
        .in_memory()
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_disconnected_and_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let front = Runtime::builder()
        .connect(format!("127.0.0.1:{port}"))
        .open()
        .unwrap();
    let err = front
        .namespace::<Counter>()
        .get_by_name("x")
        .increment(1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert!(err.is_retryable());
}

// ---------------------------------------------------------------------------------------
// A call cycle across two processes' worth of runtimes
// ---------------------------------------------------------------------------------------

/// The connected runtime an object uses to reach the other server.
#[derive(Default)]
pub struct Peer(OnceLock<Runtime>);

impl Peer {
    /// The connected runtime in an object's env.
    fn of(ctx: &Context) -> &Runtime {
        ctx.env::<Arc<Peer>>()
            .and_then(|p| p.0.get())
            .expect("the peer is connected before the first call")
    }
}

#[durable_object]
pub struct CyclePing {
    ctx: Context,
}

#[durable_object]
impl CyclePing {
    pub fn new(ctx: Context) -> Self {
        CyclePing { ctx }
    }

    pub async fn ping(&mut self) -> Result<()> {
        Peer::of(&self.ctx)
            .namespace::<CyclePong>()
            .get_by_name("b")
            .pong()
            .await
    }
}

#[durable_object]
pub struct CyclePong {
    ctx: Context,
}

#[durable_object]
impl CyclePong {
    pub fn new(ctx: Context) -> Self {
        CyclePong { ctx }
    }

    pub async fn pong(&mut self) -> Result<()> {
        Peer::of(&self.ctx)
            .namespace::<CyclePing>()
            .get_by_name("a")
            .ping()
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cycle_across_runtimes_is_an_error_not_a_deadlock() {
    let (peer_a, peer_b) = (Arc::new(Peer::default()), Arc::new(Peer::default()));
    let serve = |peer: &Arc<Peer>| {
        Runtime::builder()
            .in_memory()
            .env(peer.clone())
            .register::<CyclePing>()
            .register::<CyclePong>()
            .listen("127.0.0.1:0")
            .secret(SECRET)
            .open()
            .expect("open")
    };
    let (a, b) = (serve(&peer_a), serve(&peer_b));
    let _ = peer_a.0.set(connect(&b, SECRET));
    let _ = peer_b.0.set(connect(&a, SECRET));
    let err = within("the cycle's error", async {
        Ok(a.namespace::<CyclePing>().get_by_name("a").ping().await)
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle, "{err}");
    assert!(
        err.to_string()
            .contains("CyclePing \"a\" -> CyclePong \"b\" -> CyclePing \"a\""),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Garbage on one connection
// ---------------------------------------------------------------------------------------

/// Runs the client side of the handshake by hand (the protocol as documented in
/// handshake.rs), returning a connection ready for frames.
async fn handshaken(addr: std::net::SocketAddr, secret: &[u8]) -> tokio::net::TcpStream {
    use hmac::{Hmac, Mac};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let nonce = [42u8; 32];
    let mut hello = vec![0, 0, 0, 34, 1, 0];
    hello.extend_from_slice(&nonce);
    stream.write_all(&hello).await.unwrap();
    let mut challenge = [0u8; 4 + 66];
    stream.read_exact(&mut challenge).await.unwrap();
    assert_eq!(&challenge[..6], &[0, 0, 0, 66, 1, 0], "a challenge frame");
    let server_nonce: [u8; 32] = challenge[6..38].try_into().unwrap();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(b"durable/v1/client");
    mac.update(&server_nonce);
    mac.update(&nonce);
    let mut proof = vec![0, 0, 0, 34, 1, 1];
    proof.extend_from_slice(&mac.finalize().into_bytes());
    stream.write_all(&proof).await.unwrap();
    let mut welcome = [0u8; 6];
    stream.read_exact(&mut welcome).await.unwrap();
    assert_eq!(welcome, [0, 0, 0, 2, 1, 1], "a welcome frame");
    stream
}

/// Reads until the server closes the connection (or a reply arrives, which is returned).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(durable_tests::GENEROUS, stream.read_to_end(&mut got)).await {
        Ok(_) => got,
        Err(_) => panic!("the server kept a connection that sent garbage"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_own_connection() {
    let (server, front) = pair();
    let addr = server.local_addr().unwrap();
    let counter = front.namespace::<Counter>().get_by_name("steady");
    assert_eq!(counter.increment(1).await.unwrap(), 1);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        (
            "a huge length prefix",
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        ("a bad version", vec![0, 0, 0, 2, 9, 0]),
        ("an undecodable body", vec![0, 0, 0, 3, 1, 0x7f, 0x7f]),
        ("an empty frame", vec![0, 0, 0, 0]),
        ("a second hello", {
            let mut f = vec![0, 0, 0, 34, 1, 0];
            f.extend_from_slice(&[1; 32]);
            f
        }),
    ];
    for (what, bytes) in &garbage {
        let mut stream = handshaken(addr, SECRET.as_bytes()).await;
        stream.write_all(bytes).await.unwrap();
        let reply = read_to_close(&mut stream).await;
        assert!(reply.is_empty(), "{what}: the server answered {reply:?}");
        // Every other connection is still served.
        assert!(counter.increment(1).await.is_ok(), "after {what}");
    }
    // Before the handshake, garbage is refused too.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&[0, 0, 0, 3, 1, 0x7f, 0x7f])
        .await
        .unwrap();
    let _ = read_to_close(&mut stream).await;
    // An unauthenticated peer announcing a large frame is refused at once, not buffered
    // (the server would otherwise wait out its 10 s handshake timeout for the body).
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&100_000u32.to_be_bytes()).await.unwrap();
    stream.write_all(&[1, 0, 0, 0]).await.unwrap();
    let started = Instant::now();
    let _ = read_to_close(&mut stream).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a 100 kB handshake frame was waited for"
    );
    assert_eq!(
        counter.increment(1).await.unwrap(),
        2 + garbage.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_not_above_the_previous_one_closes_the_connection() {
    let (server, front) = pair();
    let addr = server.local_addr().unwrap();
    let id = front.namespace::<Counter>().id_from_name("forged");
    let method = durable_runtime::MethodSchema::method_id("Counter", "increment");
    // A Call frame by hand: request, object, no name, method, no timeout, no chain, args (1,).
    let call = |request: u64| call_frame(request, &id, None, method);
    let mut stream = handshaken(addr, SECRET.as_bytes()).await;
    stream.write_all(&call(5)).await.unwrap();
    let body = read_reply(&mut stream).await;
    assert_eq!(&body[..4], &[1, 3, 5, 0], "an output for request 5");
    stream.write_all(&call(5)).await.unwrap();
    assert!(
        read_to_close(&mut stream).await.is_empty(),
        "a replayed request ID was served"
    );
    assert_eq!(
        front
            .namespace::<Counter>()
            .get(id)
            .get_counter_value()
            .await
            .unwrap(),
        1,
        "the replayed call ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_sent_with_another_name_is_refused() {
    let (server, front) = pair();
    let addr = server.local_addr().unwrap();
    let id = front.namespace::<Counter>().id_from_name("fresh");
    let method = durable_runtime::MethodSchema::method_id("Counter", "increment");
    let mut stream = handshaken(addr, SECRET.as_bytes()).await;
    stream
        .write_all(&call_frame(1, &id, Some("not fresh"), method))
        .await
        .unwrap();
    let body = read_reply(&mut stream).await;
    // Reply to request 1, an error (variant 1), of kind InvalidId (Repr variant 2).
    assert_eq!(
        &body[..4],
        &[1, 3, 1, 1],
        "an error for request 1: {body:?}"
    );
    assert_eq!(body[5], 2, "an InvalidId error: {body:?}");
    // The right name is accepted on the same connection.
    stream
        .write_all(&call_frame(2, &id, Some("fresh"), method))
        .await
        .unwrap();
    let body = read_reply(&mut stream).await;
    assert_eq!(
        &body[..4],
        &[1, 3, 2, 0],
        "an output for request 2: {body:?}"
    );
    assert_eq!(
        server.namespace::<Counter>().list_ids().await.unwrap(),
        vec![id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_id_the_class_does_not_have_is_unknown_method() {
    let (server, front) = pair();
    let addr = server.local_addr().unwrap();
    let id = front.namespace::<Counter>().id_from_name("m");
    let mut stream = handshaken(addr, SECRET.as_bytes()).await;
    stream
        .write_all(&call_frame(1, &id, None, 12345))
        .await
        .unwrap();
    let body = read_reply(&mut stream).await;
    // Reply to request 1, an error, of kind UnknownMethod (Repr variant 16).
    assert_eq!(
        &body[..4],
        &[1, 3, 1, 1],
        "an error for request 1: {body:?}"
    );
    assert_eq!(body[5], 16, "an UnknownMethod error: {body:?}");
    // The connection goes on.
    let increment = durable_runtime::MethodSchema::method_id("Counter", "increment");
    stream
        .write_all(&call_frame(2, &id, None, increment))
        .await
        .unwrap();
    assert_eq!(&read_reply(&mut stream).await[..4], &[1, 3, 2, 0]);
}

/// A `Call` frame by hand (frame.rs's layout): request, object, name, method, no timeout,
/// no chain, and the arguments `(1i64,)`.
fn call_frame(
    request: u64,
    id: &durable_runtime::ObjectId,
    name: Option<&str>,
    method: u64,
) -> Vec<u8> {
    call_frame_with(request, id, name, method, None, &[2])
}

/// A `Call` frame by hand with this timeout and these encoded arguments.
fn call_frame_with(
    request: u64,
    id: &durable_runtime::ObjectId,
    name: Option<&str>,
    method: u64,
    timeout_ms: Option<u64>,
    args: &[u8],
) -> Vec<u8> {
    let mut body = vec![1u8, 2];
    varint(request, &mut body);
    body.extend_from_slice(id.as_bytes());
    match name {
        None => body.push(0),
        Some(name) => {
            body.push(1);
            varint(name.len() as u64, &mut body);
            body.extend_from_slice(name.as_bytes());
        }
    }
    varint(method, &mut body);
    match timeout_ms {
        None => body.push(0),
        Some(ms) => {
            body.push(1);
            varint(ms, &mut body);
        }
    }
    body.push(0); // no chain
    varint(args.len() as u64, &mut body);
    body.extend_from_slice(args);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// postcard's unsigned varint.
fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_its_replies_is_not_read_either() {
    let (server, front) = pair();
    let addr = server.local_addr().unwrap();
    let probes = front.namespace::<Probe>();
    let blob = durable_runtime::MethodSchema::method_id("Probe", "blob");
    let mut len = Vec::new();
    varint(512 * 1024, &mut len);
    let call = |request: u64| {
        let id = probes.id_from_name(&format!("big{request}"));
        call_frame_with(request, &id, None, blob, None, &len)
    };
    let mut stream = handshaken(addr, SECRET.as_bytes()).await;
    // 30 calls whose replies (15 MiB) fill the socket's buffers and the server's backlog...
    for request in 1..=30u64 {
        stream.write_all(&call(request)).await.unwrap();
    }
    wait_until("the first calls ran", || server.metrics().calls == 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...then 50 more, and still no read: the server must not take them.
    for request in 31..=80u64 {
        stream.write_all(&call(request)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ran = server.metrics().calls;
    assert!(
        ran < 80,
        "all {ran} calls ran for a peer that reads nothing: its replies pile up unbounded"
    );
    // Once the peer reads, the server reads its calls again: every reply arrives.
    for request in 1..=80u64 {
        let body = read_reply(&mut stream).await;
        assert_eq!(body[1], 3, "a reply");
        assert_eq!(body[3], 0, "an output for request {request}");
    }
    assert_eq!(server.metrics().calls, 80);
}

/// Reads one reply frame's body (version byte first).
async fn read_reply(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_timeout_covers_a_server_that_never_answers_the_handshake() {
    // Accepts connections (the kernel does, into its backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front = Runtime::builder()
        .connect(silent.local_addr().unwrap().to_string())
        .open()
        .unwrap();
    let stub = front.namespace::<Counter>().get_by_name("x");
    let started = Instant::now();
    let err = ObjectStub::with_timeout(&stub, Duration::from_millis(200))
        .increment(1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the call waited {:?} for a handshake, past its 200 ms timeout",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_too_far_to_represent_is_no_timeout() {
    let (server, front) = pair();
    let id = front.namespace::<Counter>().id_from_name("forever");
    let increment = durable_runtime::MethodSchema::method_id("Counter", "increment");
    let mut stream = handshaken(server.local_addr().unwrap(), SECRET.as_bytes()).await;
    let frame = call_frame_with(1, &id, None, increment, Some(u64::MAX), &[2]);
    stream.write_all(&frame).await.unwrap();
    assert_eq!(
        &read_reply(&mut stream).await[..4],
        &[1, 3, 1, 0],
        "an output"
    );
    assert_eq!(
        front
            .namespace::<Counter>()
            .get(id)
            .get_counter_value()
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_answers_the_calls_it_took() {
    let gates = Arc::new(Gates::default());
    let (server, front) = pair_with(gates.clone());
    let slow = front.namespace::<Probe>().get_by_name("late");
    let waiting = gates.park(&slow).await;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the call"
    );
    gates.open_until(|| waiting.is_finished()).await;
    assert_eq!(
        waiting
            .await
            .expect("task")
            .expect("the call taken before shutdown"),
        1
    );
    within("shutdown", async { shutdown.await.expect("task") }).await;
    // The server is gone: a new call cannot reach it.
    let err = slow.wait().await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Disconnected | ErrorKind::Closed),
        "{err}"
    );
}
