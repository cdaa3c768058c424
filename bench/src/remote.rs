//! `--remote`: a call to an object in another runtime over loopback TCP, against its two
//! baselines, measured in the same run:
//!
//! - **raw**: a hand-written tokio TCP request/response carrying the same payload as an
//!   encoded counter call, with length prefixes: the floor a hand-written protocol gets.
//!   Request `u32 BE length | u64 request id | payload`, where the payload is a counter call
//!   as it would travel (the 32-byte object ID of `Counter` "A", the u64 method ID of
//!   `Counter::increment`, the postcard i64 amount); reply `u32 BE length | u64 request id |
//!   i64 BE`, the server's counter after the increment. The server serves each connection
//!   from one task, through a `BufReader` and a `BufWriter` it flushes whenever no more input
//!   is buffered. TCP_NODELAY on both sides.
//! - **tonic**: unary gRPC, `Increment(IncrementRequest { id: bytes (32), amount: int64 }) ->
//!   IncrementReply { value: int64 }`, the server on an in-memory counter, the client on one
//!   `Channel` (one HTTP/2 connection): what a Rust user would pick instead.
//!
//! Two figures each: the latency of one caller (sequential calls; the median of the calls'
//! own times, after a warm-up) and the calls per second of [`CALLERS`] concurrent tasks
//! sharing one connection. The raw one-caller latency is measured on a connection of its
//! own with the caller writing and reading the socket itself (no multiplexer: the true
//! floor); the raw 64 callers go through a minimal multiplexer (an mpsc to a writer task, a
//! reader task routing replies by request ID to oneshots), whose one-caller latency is also
//! reported, as the floor of a multiplexed client.
//!
//! Ours runs twice in each round: over plain TCP, and over TLS (`RuntimeBuilder::tls`, a
//! certificate for 127.0.0.1 from a CA made at start with rcgen; TLS 1.3, rustls with
//! ring): the TLS line is its ratio to the plain one, measured in the same round.
//!
//! Every contestant is a closure making one call, driven by [`measure_latency`] and
//! [`measure_concurrent`] (or [`measure`], which runs both); see [`run`] for where the
//! durable remote call plugs in.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_runtime::{MethodSchema, Runtime, Tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{median, Counter, Pinger};

/// Concurrent callers on one connection in the throughput measurement.
pub const CALLERS: usize = 64;

// ---- the harness, shared by every contestant

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Rounds; each figure is the median over them (contestants interleaved in each round).
    pub rounds: usize,
    /// Calls before the one-caller latency is measured.
    pub warmup_calls: u64,
    /// Calls whose times the one-caller latency is the median of.
    pub latency_calls: u64,
    /// Time the concurrent callers run before counting starts.
    pub warmup: Duration,
    /// Time over which the concurrent callers' calls are counted.
    pub duration: Duration,
}

impl Config {
    pub fn new(quick: bool) -> Config {
        if quick {
            Config {
                rounds: 1,
                warmup_calls: 1_000,
                latency_calls: 5_000,
                warmup: Duration::from_millis(200),
                duration: Duration::from_secs(1),
            }
        } else {
            Config {
                rounds: 3,
                warmup_calls: 5_000,
                latency_calls: 20_000,
                warmup: Duration::from_millis(500),
                duration: Duration::from_secs(3),
            }
        }
    }
}

/// One contestant's two figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// One caller, sequential calls: the median time of one call, in nanoseconds.
    pub latency_ns: f64,
    /// [`CALLERS`] concurrent callers on one connection: calls per second.
    pub calls_per_sec: f64,
}

/// Median time of one call, in nanoseconds, of `calls` sequential calls made by `call` (after
/// `warmup` calls), each timed on its own. The caller runs in a spawned task, as in a server.
pub async fn measure_latency<F, Fut, T>(warmup: u64, calls: u64, mut call: F) -> f64
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    tokio::spawn(async move {
        for _ in 0..warmup {
            std::hint::black_box(call().await);
        }
        let mut times = Vec::with_capacity(calls as usize);
        for _ in 0..calls {
            let start = Instant::now();
            std::hint::black_box(call().await);
            times.push(start.elapsed().as_nanos() as f64);
        }
        median(times)
    })
    .await
    .unwrap()
}

/// Calls per second of `callers` tasks each making calls with its own clone of `call` back to
/// back, counted over `duration` after `warmup`.
pub async fn measure_concurrent<F, Fut, T>(
    callers: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> f64
where
    F: FnMut() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (done, stop, mut call) = (done.clone(), stop.clone(), call.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(call().await);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let (n0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(duration).await;
    let (n1, t1) = (done.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (n1 - n0) as f64 / (t1 - t0).as_secs_f64()
}

/// Both figures of a contestant whose one call is `call`.
pub async fn measure<F, Fut, T>(cfg: &Config, call: F) -> Figures
where
    F: FnMut() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    Figures {
        latency_ns: measure_latency(cfg.warmup_calls, cfg.latency_calls, call.clone()).await,
        calls_per_sec: measure_concurrent(CALLERS, cfg.warmup, cfg.duration, call).await,
    }
}

/// A server task, aborted when dropped.
struct Serving(JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---- raw: tokio TCP with length prefixes

/// The payload of a raw request: an encoded call to `Counter::increment(1)` on the object
/// named "A" (object ID, method ID, postcard arguments).
fn raw_payload() -> Vec<u8> {
    let id = Runtime::in_memory()
        .namespace::<Counter>()
        .id_from_name("A");
    let mut payload = id.as_bytes().to_vec();
    payload.extend_from_slice(&MethodSchema::method_id("Counter", "increment").to_be_bytes());
    payload.extend_from_slice(&postcard::to_stdvec(&1i64).unwrap());
    payload
}

/// Length of the prefix of a payload before the postcard amount.
const RAW_HEADER: usize = 32 + 8;

async fn raw_server() -> (SocketAddr, Serving) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(raw_serve(stream));
        }
    });
    (addr, Serving(task))
}

/// Serves one connection until the client closes it: reads requests, increments the
/// counter, writes replies; flushes when no more input is buffered.
async fn raw_serve(stream: TcpStream) {
    stream.set_nodelay(true).unwrap();
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    let mut counter = 0i64;
    let mut body = Vec::new();
    loop {
        let Ok(len) = r.read_u32().await else {
            return; // the client closed the connection
        };
        body.resize(len as usize, 0);
        r.read_exact(&mut body).await.unwrap();
        let amount: i64 = postcard::from_bytes(&body[8 + RAW_HEADER..]).unwrap();
        counter += amount;
        let mut reply = [0u8; 20];
        reply[..4].copy_from_slice(&16u32.to_be_bytes());
        reply[4..12].copy_from_slice(&body[..8]);
        reply[12..].copy_from_slice(&counter.to_be_bytes());
        w.write_all(&reply).await.unwrap();
        if r.buffer().is_empty() {
            w.flush().await.unwrap();
        }
    }
}

async fn raw_connect(addr: SocketAddr) -> (OwnedReadHalf, OwnedWriteHalf) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.into_split()
}

/// Appends one request frame to `out`.
fn raw_request(out: &mut Vec<u8>, id: u64, payload: &[u8]) {
    out.extend_from_slice(&((8 + payload.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads one reply frame: (request id, value).
async fn raw_reply(r: &mut BufReader<OwnedReadHalf>) -> std::io::Result<(u64, i64)> {
    let len = r.read_u32().await?;
    assert_eq!(len, 16);
    Ok((r.read_u64().await?, r.read_i64().await?))
}

/// A connection used by one caller at a time: write the request, flush, read the reply.
struct RawDirect {
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
    next: u64,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

impl RawDirect {
    async fn connect(addr: SocketAddr, payload: Vec<u8>) -> RawDirect {
        let (r, w) = raw_connect(addr).await;
        RawDirect {
            r: BufReader::new(r),
            w: BufWriter::new(w),
            next: 0,
            payload,
            frame: Vec::new(),
        }
    }

    async fn call(&mut self) -> i64 {
        self.next += 1;
        self.frame.clear();
        raw_request(&mut self.frame, self.next, &self.payload);
        self.w.write_all(&self.frame).await.unwrap();
        self.w.flush().await.unwrap();
        let (id, value) = raw_reply(&mut self.r).await.unwrap();
        assert_eq!(id, self.next);
        value
    }
}

/// The minimal multiplexer: each caller encodes its request frame and hands it to a writer
/// task through an mpsc (the writer writes all that has queued up in one write), and a
/// reader task routes each reply to its caller's oneshot by request ID.
struct RawMux {
    next: AtomicU64,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<i64>>>>,
    requests: mpsc::Sender<Vec<u8>>,
    payload: Vec<u8>,
}

impl RawMux {
    async fn connect(addr: SocketAddr, payload: Vec<u8>) -> Arc<RawMux> {
        let (r, mut w) = raw_connect(addr).await;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<i64>>>> = Arc::default();
        let (requests, mut queued) = mpsc::channel::<Vec<u8>>(1024);
        tokio::spawn(async move {
            // `batch` is the write buffer: what has queued up, written and flushed at once.
            let (mut frames, mut batch) = (Vec::new(), Vec::new());
            while queued.recv_many(&mut frames, 256).await > 0 {
                batch.clear();
                for frame in frames.drain(..) {
                    batch.extend_from_slice(&frame);
                }
                w.write_all(&batch).await.unwrap();
            }
            // All senders gone: dropping `w` closes our side; the server then closes its.
        });
        let routes = pending.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(r);
            while let Ok((id, value)) = raw_reply(&mut r).await {
                let reply = routes.lock().unwrap().remove(&id);
                if let Some(reply) = reply {
                    let _ = reply.send(value);
                }
            }
        });
        Arc::new(RawMux {
            next: AtomicU64::new(0),
            pending,
            requests,
            payload,
        })
    }

    async fn call(&self) -> i64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(12 + self.payload.len());
        raw_request(&mut frame, id, &self.payload);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.requests.send(frame).await.unwrap();
        rx.await.unwrap()
    }
}

// ---- tonic: unary gRPC over one HTTP/2 connection

/// The messages (hand-written: no `protoc`) and the client and server `build.rs` generates
/// for them with `tonic_build::manual`.
pub mod grpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IncrementRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub id: Vec<u8>,
        #[prost(int64, tag = "2")]
        pub amount: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IncrementReply {
        #[prost(int64, tag = "1")]
        pub value: i64,
    }

    include!(concat!(env!("OUT_DIR"), "/bench.Counter.rs"));
}

#[derive(Default)]
struct TonicCounter {
    value: AtomicI64,
}

#[tonic::async_trait]
impl grpc::counter_server::Counter for TonicCounter {
    async fn increment(
        &self,
        request: tonic::Request<grpc::IncrementRequest>,
    ) -> Result<tonic::Response<grpc::IncrementReply>, tonic::Status> {
        let amount = request.into_inner().amount;
        let value = self.value.fetch_add(amount, Ordering::Relaxed) + amount;
        Ok(tonic::Response::new(grpc::IncrementReply { value }))
    }
}

async fn tonic_server() -> (SocketAddr, Serving) {
    use tonic::transport::server::TcpIncoming;
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(grpc::counter_server::CounterServer::new(
            TonicCounter::default(),
        ))
        .serve_with_incoming(incoming);
    let task = tokio::spawn(async move { server.await.unwrap() });
    (addr, Serving(task))
}

async fn tonic_client(
    addr: SocketAddr,
) -> grpc::counter_client::CounterClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    grpc::counter_client::CounterClient::new(channel)
}

// ---- the section

/// The figures of one run; each a median over [`Config::rounds`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Results {
    /// Latency: one caller on a connection of its own, no multiplexer (the floor). Calls/s:
    /// [`CALLERS`] callers through the minimal multiplexer.
    pub raw: Figures,
    /// One caller through the raw multiplexer: the floor of a multiplexed client.
    pub raw_mux_latency_ns: f64,
    pub tonic: Figures,
    /// A remote call of `Pinger::bump` through a connected runtime.
    pub ours: Figures,
    /// The same over TLS.
    pub ours_tls: Figures,
}

/// A listening runtime's and a connecting runtime's TLS: a fresh CA, and a certificate for
/// 127.0.0.1 it signed.
fn tls_pair() -> (Tls, Tls) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = Tls::from_pem(cert.pem(), key.serialize_pem(), ca.pem()).unwrap();
    (server, Tls::client(ca.pem()).unwrap())
}

/// Ours: a connected runtime calling an in-memory object server, through one connection,
/// over TLS when `tls` is given. `Pinger::bump` keeps its state in a field, like the
/// baselines' counters (no storage write, so no durability wait: the transport alone is
/// measured).
async fn ours(cfg: &Config, tls: Option<(Tls, Tls)>) -> Figures {
    let (server_tls, client_tls) = tls.unzip();
    let mut server = Runtime::builder()
        .in_memory()
        .register::<Pinger>()
        .listen("127.0.0.1:0")
        .secret("bench");
    if let Some(tls) = server_tls {
        server = server.tls(tls);
    }
    let server = server.open().unwrap();
    let addr = server.local_addr().unwrap();
    let mut front = Runtime::builder().connect(addr.to_string()).secret("bench");
    if let Some(tls) = client_tls {
        front = front.tls(tls);
    }
    let front = front.open().unwrap();
    let stub = front.namespace::<Pinger>().get_by_name("A");
    let figures = measure(cfg, move || {
        let stub = stub.clone();
        async move { stub.bump(1).await.unwrap() }
    })
    .await;
    drop(front);
    server.shutdown().await.unwrap();
    figures
}

/// Runs the raw and tonic contestants, interleaved, `cfg.rounds` times (fresh servers and
/// connections each round), and returns the medians.
pub async fn run(cfg: &Config) -> Results {
    let payload = raw_payload();
    let tls = tls_pair();
    let mut rounds = Vec::new();
    for _ in 0..cfg.rounds {
        let (raw_addr, _raw_server) = raw_server().await;
        let direct = Arc::new(tokio::sync::Mutex::new(
            RawDirect::connect(raw_addr, payload.clone()).await,
        ));
        let raw_latency_ns = measure_latency(cfg.warmup_calls, cfg.latency_calls, move || {
            let direct = direct.clone();
            async move { direct.lock().await.call().await }
        })
        .await;
        let mux = RawMux::connect(raw_addr, payload.clone()).await;
        let raw_mux = measure(cfg, move || {
            let mux = mux.clone();
            async move { mux.call().await }
        })
        .await;

        let (tonic_addr, _tonic_server) = tonic_server().await;
        let client = tonic_client(tonic_addr).await;
        let id = payload[..32].to_vec();
        let tonic = measure(cfg, move || {
            let (mut client, id) = (client.clone(), id.clone());
            async move {
                let request = grpc::IncrementRequest { id, amount: 1 };
                client.increment(request).await.unwrap().into_inner().value
            }
        })
        .await;

        let ours_plain = ours(cfg, None).await;
        let ours_tls = ours(cfg, Some(tls.clone())).await;

        rounds.push(Results {
            raw: Figures {
                latency_ns: raw_latency_ns,
                calls_per_sec: raw_mux.calls_per_sec,
            },
            raw_mux_latency_ns: raw_mux.latency_ns,
            tonic,
            ours: ours_plain,
            ours_tls,
        });
    }
    let med = |f: fn(&Results) -> f64| median(rounds.iter().map(f).collect());
    Results {
        raw: Figures {
            latency_ns: med(|r| r.raw.latency_ns),
            calls_per_sec: med(|r| r.raw.calls_per_sec),
        },
        raw_mux_latency_ns: med(|r| r.raw_mux_latency_ns),
        tonic: Figures {
            latency_ns: med(|r| r.tonic.latency_ns),
            calls_per_sec: med(|r| r.tonic.calls_per_sec),
        },
        ours: Figures {
            latency_ns: med(|r| r.ours.latency_ns),
            calls_per_sec: med(|r| r.ours.calls_per_sec),
        },
        ours_tls: Figures {
            latency_ns: med(|r| r.ours_tls.latency_ns),
            calls_per_sec: med(|r| r.ours_tls.calls_per_sec),
        },
    }
}

pub fn print(r: &Results) {
    let o = &r.ours;
    crate::line(
        "remote call latency, 1 caller",
        o.latency_ns / 1e3,
        "raw TCP",
        r.raw.latency_ns / 1e3,
        "us",
        true,
    );
    crate::line(
        "remote call latency, 1 caller",
        o.latency_ns / 1e3,
        "raw TCP multiplexed",
        r.raw_mux_latency_ns / 1e3,
        "us",
        true,
    );
    crate::line(
        "remote call latency, 1 caller",
        o.latency_ns / 1e3,
        "tonic",
        r.tonic.latency_ns / 1e3,
        "us",
        true,
    );
    crate::line(
        &format!("remote calls, {CALLERS} callers on 1 connection"),
        o.calls_per_sec,
        "raw TCP",
        r.raw.calls_per_sec,
        "calls/s",
        false,
    );
    crate::line(
        &format!("remote calls, {CALLERS} callers on 1 connection"),
        o.calls_per_sec,
        "tonic",
        r.tonic.calls_per_sec,
        "calls/s",
        false,
    );
    // TLS against plain, both ours: the ratio is what TLS costs (< 1: slower).
    crate::line(
        "remote call latency over TLS, 1 caller",
        r.ours_tls.latency_ns / 1e3,
        "ours plain TCP",
        o.latency_ns / 1e3,
        "us",
        true,
    );
    crate::line(
        &format!("remote calls over TLS, {CALLERS} callers on 1 connection"),
        r.ours_tls.calls_per_sec,
        "ours plain TCP",
        o.calls_per_sec,
        "calls/s",
        false,
    );
    println!("remote raw latency: {:.0} ns", r.raw.latency_ns);
    println!(
        "remote raw (multiplexed) latency: {:.0} ns",
        r.raw_mux_latency_ns
    );
    println!("remote tonic latency: {:.0} ns", r.tonic.latency_ns);
    println!(
        "remote raw {CALLERS} callers: {:.0} calls/s",
        r.raw.calls_per_sec
    );
    println!(
        "remote tonic {CALLERS} callers: {:.0} calls/s",
        r.tonic.calls_per_sec
    );
}
