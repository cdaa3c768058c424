//! `--ws`: the WebSocket chat room of Cloudflare's workers-chat-demo, served by workerd
//! (`bench/workerd/chat.js`: a Durable Object per room on the WebSocket Hibernation API) and,
//! with `--chat-bin PATH`, by ours (the `chat` example), both on 127.0.0.1 with on-disk
//! storage, driven by the same load generator (below, on tokio-tungstenite).
//! `bench/workerd/chat.sh` installs workerd from npm, builds everything and runs this.
//!
//! The protocol: `GET /api/room/<room>/websocket`; the client sends `{"name":N}`, the server
//! sends the room's last 100 messages then `{"ready":true}` and tells the others
//! `{"joined":N}`; a client's `{"message":M}` is stored, then broadcast to everyone in the
//! room (the sender included) as `{"name":N,"message":M,"timestamp":T}`.
//!
//! For every contestant and every room size N (100, 1,000, 10,000 sockets; `--sockets
//! N,N,..` to choose), a fresh server process (on a free port, a new data directory) and
//! one room:
//!
//! - warm-up: one socket joins, posts 100 messages (so that every later joiner receives a
//!   full backlog of 100) and leaves;
//! - connect: N sockets (named `u0`..) connect, 32 handshakes at most in flight, each sends
//!   its name and waits for `{"ready":true}`. The time until all are ready includes the
//!   protocol's own cost: every join is announced to the sockets already in the room
//!   (N²/2 `joined` messages in all: 50 million for 10,000 sockets) and every joiner gets
//!   the backlog. A case whose sockets are not all ready after `--connect-timeout` seconds
//!   (1,200 by default) is given up, with how many were ready; progress goes to stderr;
//! - memory: the server process's resident memory (`VmRSS` in `/proc/<pid>/status`) before
//!   the sockets are opened, right after they are all ready ("active") and after they sat
//!   idle for `--idle-wait` seconds (15 by default; workerd hibernates an object whose
//!   sockets were quiet for about 10 s, ours is started with `--idle-timeout 1`), as KiB per
//!   socket; plus the process's peak (`VmHWM`);
//! - wake-up: the first broadcast after the idle wait (the object was evicted: it is
//!   brought back with its N sockets), the time until the last socket has it (one sample);
//! - broadcast, one at a time: `u0` sends a message, waits until every socket has received
//!   it, then sends the next; per message, the time from the send until the LAST socket has
//!   it: p50 and p99 (over 200 messages, fewer for large rooms: 500,000 deliveries, 30
//!   messages at least; `--quick`: 50 messages at most, 50,000 deliveries);
//! - broadcast, pipelined: `u0` keeps 16 messages in flight; deliveries per second (N ×
//!   messages / elapsed) and the same per-message p50 and p99 under that load (2,000,000
//!   deliveries, 64 to 2,000 messages; `--quick`: 200,000);
//! - CPU seconds used by the server process and by this client during the broadcasts (from
//!   `/proc/<pid>/stat`), to tell when the client, on the same cores, is what limits.
//!
//! Every socket has its own task, reading its socket (a message is recognised by a cheap
//! substring search, not parsed); the last of the N sockets to count a message stamps its
//! completion. Every socket also checks that the timestamps it receives strictly increase.
//! Each socket is a file descriptor, in this process and in the server's: this process
//! raises its soft limit on open files to the hard limit (which its children inherit).
//! workerd holds two descriptors per socket (each accepted connection is open twice), so a
//! room of N sockets needs 2N descriptors there: a case beyond the limit is skipped, not run
//! until it fails (with a hard limit of 20,000, workerd cannot hold a room of 10,000).
//!
//! The client's own cost: `--floor` adds a third server, this program's in-memory
//! tokio-tungstenite chat room (`ws_floor.rs`, no storage), which shows the most this load
//! generator can measure here (on two cores it shares with the server, and with whatever
//! else runs: 300,000 to 800,000 deliveries/s at 1,000 sockets, 10,000 sockets ready in
//! 40 s, about 1.5 µs of client CPU per delivery). It is printed, never compared.
//!
//! One line per (contestant, N), then, when both ran, `NAME: ours X, workerd Y, ratio R`
//! lines (ratio > 1: ours is better).
//!
//! Flags: `--workerd-bin PATH`, `--workerd-config PATH` (chat.capnp, with chat.js beside
//! it), `--chat-bin PATH` (optional), `--no-workerd`, `--floor`, `--sockets N,N,..`,
//! `--idle-wait SECONDS`, `--connect-timeout SECONDS`, `--quick` (100 and 1,000 sockets,
//! fewer messages).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::http::{self, Server};
use crate::line;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Handshakes in flight at once while the sockets connect.
const CONNECT_CONCURRENCY: usize = 32;
/// Messages in flight in the pipelined broadcast.
const WINDOW: usize = 16;
/// Messages the warm-up socket posts: the backlog every joiner then receives.
const BACKLOG: usize = 100;
/// How long a socket may take to be ready, and a message to reach every socket.
const TIMEOUT: Duration = Duration::from_secs(300);

fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .map(|i| argv.get(i + 1).map(String::as_str).unwrap_or_default())
}

fn path_flag(argv: &[String], name: &str) -> PathBuf {
    PathBuf::from(
        flag(argv, name)
            .unwrap_or_else(|| panic!("--ws needs {name} PATH (see bench/workerd/chat.sh)")),
    )
}

/// Raises this process's soft limit on open files to its hard limit.
fn raise_fd_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) used so far by process `pid` (its threads included), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (in parentheses, possibly with spaces): state is field 3,
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(14).unwrap_or(0) + ticks(15).unwrap_or(0)) as f64 / hz
}

/// The number after `key` in `text` (ASCII digits).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What the socket tasks share with the sender: per broadcast message (numbered from 0),
/// how many sockets have it and when the last one got it.
struct Tally {
    sockets: u32,
    base: Instant,
    counts: Vec<AtomicU32>,
    sent_ns: Vec<AtomicU64>,
    done_ns: Vec<AtomicU64>,
    /// The number of every message that reached all the sockets.
    completions: mpsc::UnboundedSender<u32>,
    /// Sockets ready.
    ready: AtomicUsize,
    /// Sockets closed or failed after they were ready.
    lost: AtomicUsize,
    /// Broadcasts received with a timestamp not above the previous one on the same socket.
    out_of_order: AtomicUsize,
}

impl Tally {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// One text message received by a ready socket.
    fn received(&self, text: &str, last_timestamp: &mut u64) {
        // Only the benchmark's broadcasts: {"name":"u0","message":"b<seq>","timestamp":T}.
        let Some(seq) = number_after(text, "\"message\":\"b") else {
            return;
        };
        if let Some(ts) = number_after(text, "\"timestamp\":") {
            if ts <= *last_timestamp {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            *last_timestamp = ts;
        }
        let Some(count) = self.counts.get(seq as usize) else {
            return;
        };
        if count.fetch_add(1, Ordering::AcqRel) + 1 == self.sockets {
            self.done_ns[seq as usize].store(self.now_ns(), Ordering::Release);
            let _ = self.completions.send(seq as u32);
        }
    }

    fn latency_ms(&self, seq: u32) -> f64 {
        let sent = self.sent_ns[seq as usize].load(Ordering::Acquire);
        let done = self.done_ns[seq as usize].load(Ordering::Acquire);
        done.saturating_sub(sent) as f64 / 1e6
    }
}

fn room_url(addr: SocketAddr, room: &str) -> String {
    format!("ws://{addr}/api/room/{room}/websocket")
}

/// Opens a socket to the room, sends `name` and waits for `{"ready":true}`; returns the
/// socket and the number of backlog messages received before it.
async fn join(url: &str, name: &str) -> Result<(Socket, usize), String> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let mut attempt = 0;
    let mut ws = loop {
        match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
            Ok((ws, _)) => break ws,
            Err(e) if attempt >= 5 => return Err(format!("{name}: connect: {e}")),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    };
    ws.send(Message::text(format!("{{\"name\":\"{name}\"}}")))
        .await
        .map_err(|e| format!("{name}: send: {e}"))?;
    let mut backlog = 0;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "{\"ready\":true}" => {
                return Ok((ws, backlog))
            }
            Some(Ok(Message::Text(t))) if t.contains("\"error\"") => {
                return Err(format!("{name}: {t}"))
            }
            Some(Ok(Message::Text(t))) => backlog += usize::from(t.contains("\"message\"")),
            Some(Ok(Message::Close(c))) => return Err(format!("{name}: closed: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("{name}: {e}")),
            None => return Err(format!("{name}: closed")),
        }
    }
}

/// One socket: joins (`gate` bounds the handshakes in flight), reports it, then reads until
/// the socket ends. The sender (`u0`) also sends the broadcast numbers it is given.
async fn socket_task(
    url: Arc<str>,
    name: String,
    gate: Arc<Semaphore>,
    tally: Arc<Tally>,
    ready: oneshot::Sender<Result<usize, String>>,
    mut sends: Option<mpsc::UnboundedReceiver<u32>>,
) {
    let permit = gate.acquire().await.unwrap();
    let joined = tokio::time::timeout(TIMEOUT, join(&url, &name))
        .await
        .unwrap_or_else(|_| Err(format!("{name}: not ready after {TIMEOUT:?}")));
    drop(permit);
    let mut ws = match joined {
        Ok((ws, backlog)) => {
            tally.ready.fetch_add(1, Ordering::Relaxed);
            let _ = ready.send(Ok(backlog));
            ws
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut last_timestamp = 0;
    loop {
        let next = match &mut sends {
            Some(sends) => tokio::select! {
                m = ws.next() => m,
                seq = sends.recv() => {
                    let Some(seq) = seq else { return };
                    tally.sent_ns[seq as usize].store(tally.now_ns(), Ordering::Release);
                    let text = format!("{{\"message\":\"b{seq}\"}}");
                    if ws.send(Message::text(text)).await.is_err() {
                        tally.lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    continue;
                }
            },
            None => ws.next().await,
        };
        match next {
            Some(Ok(Message::Text(t))) => tally.received(t.as_str(), &mut last_timestamp),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                tally.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The warm-up: one socket joins, posts `BACKLOG` messages one at a time (each awaited),
/// and leaves.
async fn warm_up(url: &str) -> Result<(), String> {
    let (mut ws, _) = join(url, "warm-up").await?;
    for k in 0..BACKLOG {
        ws.send(Message::text(format!("{{\"message\":\"w{k}\"}}")))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains(&format!("\"w{k}\"")) => break,
                Some(Ok(_)) => {}
                other => return Err(format!("warm-up: {other:?}")),
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The number of the next message that reached every socket.
async fn completion(completions: &mut mpsc::UnboundedReceiver<u32>) -> Result<u32, String> {
    match tokio::time::timeout(TIMEOUT, completions.recv()).await {
        Ok(Some(seq)) => Ok(seq),
        _ => Err(format!(
            "a message did not reach every socket in {TIMEOUT:?}"
        )),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// What one (contestant, N) run measured.
struct Outcome {
    connect_s: f64,
    backlog_min: usize,
    rss_before_kib: u64,
    rss_active_kib: u64,
    rss_idle_kib: u64,
    hwm_kib: u64,
    wake_ms: f64,
    one_p50_ms: f64,
    one_p99_ms: f64,
    piped_p50_ms: f64,
    piped_p99_ms: f64,
    deliveries_per_s: f64,
    server_cpu_s: f64,
    client_cpu_s: f64,
    lost: usize,
    out_of_order: usize,
    duplicates: usize,
}

impl Outcome {
    fn kib_per_socket(&self, sockets: usize, rss: u64) -> f64 {
        rss.saturating_sub(self.rss_before_kib) as f64 / sockets as f64
    }
}

struct Settings {
    idle_wait: Duration,
    /// How long all the sockets may take to be ready before the case is given up.
    connect_timeout: Duration,
    /// Deliveries (messages × sockets) the broadcasts one at a time aim at, and at most
    /// how many messages.
    one_deliveries: usize,
    one_max: usize,
    /// Deliveries the pipelined broadcast aims at.
    piped_deliveries: usize,
}

impl Settings {
    fn one_at_a_time(&self, sockets: usize) -> usize {
        (self.one_deliveries / sockets).clamp(30, self.one_max)
    }

    fn pipelined_messages(&self, sockets: usize) -> usize {
        (self.piped_deliveries / sockets).clamp(4 * WINDOW, 2000)
    }
}

async fn measure(
    name: &str,
    server: &mut Server,
    sockets: usize,
    settings: &Settings,
) -> Result<Outcome, String> {
    let pid = server.children[0].id();
    http::wait_listening(server, server.addr).await;
    let room = format!("bench-{sockets}");
    let url: Arc<str> = room_url(server.addr, &room).into();
    warm_up(&url).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = status_kib(pid, "VmRSS");

    let one = settings.one_at_a_time(sockets);
    let piped = settings.pipelined_messages(sockets);
    let total = 1 + one + piped;
    let (completions_tx, mut completions) = mpsc::unbounded_channel();
    let tally = Arc::new(Tally {
        sockets: sockets as u32,
        base: Instant::now(),
        counts: (0..total).map(|_| AtomicU32::new(0)).collect(),
        sent_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        done_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        completions: completions_tx,
        ready: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
        out_of_order: AtomicUsize::new(0),
    });

    // Connect.
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (sender_tx, sender_rx) = mpsc::unbounded_channel();
    let mut sender_rx = Some(sender_rx);
    let mut readies = Vec::with_capacity(sockets);
    let mut tasks: Vec<JoinHandle<()>> = Vec::with_capacity(sockets);
    let start = Instant::now();
    for i in 0..sockets {
        let (ready_tx, ready_rx) = oneshot::channel();
        readies.push(ready_rx);
        tasks.push(tokio::spawn(socket_task(
            url.clone(),
            format!("u{i}"),
            gate.clone(),
            tally.clone(),
            ready_tx,
            sender_rx.take(),
        )));
    }
    let stop = |tasks: Vec<JoinHandle<()>>| async move {
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    };
    // Progress, on stderr: large rooms take minutes to fill (N²/2 `joined` messages).
    let progress = tokio::spawn({
        let (tally, name) = (tally.clone(), name.to_owned());
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                eprintln!(
                    "ws chat, {name}, {sockets} sockets: {} ready after {:.0} s",
                    tally.ready.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64()
                );
            }
        }
    });
    let deadline = tokio::time::Instant::from_std(start + settings.connect_timeout);
    let mut backlog_min = usize::MAX;
    let mut first_error = None;
    for r in readies {
        match tokio::time::timeout_at(deadline, r).await {
            Ok(Ok(Ok(backlog))) => backlog_min = backlog_min.min(backlog),
            Ok(Ok(Err(e))) => {
                first_error.get_or_insert(e);
            }
            Ok(Err(_)) => {
                first_error.get_or_insert("a socket task panicked".to_owned());
            }
            Err(_) => {
                let ready = tally.ready.load(Ordering::Relaxed);
                first_error = Some(format!(
                    "{ready} sockets of {sockets} ready after {:.0} s ({:.1} sockets/s), \
                     given up (--connect-timeout)",
                    start.elapsed().as_secs_f64(),
                    ready as f64 / start.elapsed().as_secs_f64()
                ));
                break;
            }
        }
    }
    progress.abort();
    let connect_s = start.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        stop(tasks).await;
        return Err(e);
    }
    let rss_active_kib = status_kib(pid, "VmRSS");

    // Idle.
    tokio::time::sleep(settings.idle_wait).await;
    let rss_idle_kib = status_kib(pid, "VmRSS");
    let hwm_kib = status_kib(pid, "VmHWM");
    let (server_cpu0, client_cpu0) = (cpu_seconds(pid), cpu_seconds(std::process::id()));

    let send = |seq: u32| {
        sender_tx
            .send(seq)
            .map_err(|_| "the sender socket is gone".to_owned())
    };

    let result = async {
        // Wake-up, then one at a time.
        let mut seq = 0u32;
        let mut latencies = Vec::with_capacity(one);
        for k in 0..=one {
            send(seq)?;
            let done = completion(&mut completions).await?;
            assert_eq!(done, seq);
            if k > 0 {
                latencies.push(tally.latency_ms(seq));
            }
            seq += 1;
        }
        let wake_ms = tally.latency_ms(0);
        latencies.sort_by(f64::total_cmp);
        let (one_p50_ms, one_p99_ms) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));

        // Pipelined.
        let first = seq;
        let start = Instant::now();
        let mut in_flight = 0;
        let mut completed = Vec::with_capacity(piped);
        while completed.len() < piped {
            if in_flight < WINDOW && ((seq - first) as usize) < piped {
                send(seq)?;
                seq += 1;
                in_flight += 1;
            } else {
                completed.push(completion(&mut completions).await?);
                in_flight -= 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let mut latencies: Vec<f64> = completed.iter().map(|&s| tally.latency_ms(s)).collect();
        latencies.sort_by(f64::total_cmp);
        Ok::<_, String>((
            wake_ms,
            one_p50_ms,
            one_p99_ms,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            (sockets * piped) as f64 / elapsed,
        ))
    }
    .await;
    let server_cpu_s = cpu_seconds(pid) - server_cpu0;
    let client_cpu_s = cpu_seconds(std::process::id()) - client_cpu0;
    // A message received twice by a socket would have completed early: every count must be
    // exactly N once the last deliveries have landed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let duplicates = tally
        .counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed).saturating_sub(sockets as u32) as usize)
        .sum();
    let lost = tally.lost.load(Ordering::Relaxed);
    let out_of_order = tally.out_of_order.load(Ordering::Relaxed);
    stop(tasks).await;
    let (wake_ms, one_p50_ms, one_p99_ms, piped_p50_ms, piped_p99_ms, deliveries_per_s) = result?;
    Ok(Outcome {
        connect_s,
        backlog_min,
        rss_before_kib,
        rss_active_kib,
        rss_idle_kib,
        hwm_kib,
        wake_ms,
        one_p50_ms,
        one_p99_ms,
        piped_p50_ms,
        piped_p99_ms,
        deliveries_per_s,
        server_cpu_s,
        client_cpu_s,
        lost,
        out_of_order,
        duplicates,
    })
}

/// Ours: the `chat` example on a free port, a new data directory, objects evicted after 1 s
/// idle.
fn start_ours(bin: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = http::free_port();
    let child = http::die_with_parent(&mut Command::new(bin))
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--idle-timeout")
        .arg("1")
        .env("RUST_LOG", "warn")
        .stdout(http::log_file(dir.path(), "stdout"))
        .stderr(http::log_file(dir.path(), "stderr"))
        .spawn()
        .unwrap();
    Server {
        name: "ours",
        addr,
        children: vec![child],
        dir,
    }
}

/// The floor: this program's in-memory tokio-tungstenite chat server (`ws_floor.rs`).
fn start_floor() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = http::free_port();
    let child = http::die_with_parent(&mut Command::new(std::env::current_exe().unwrap()))
        .arg("--ws-floor-server")
        .arg(addr.to_string())
        .stdout(http::log_file(dir.path(), "stdout"))
        .stderr(http::log_file(dir.path(), "stderr"))
        .spawn()
        .unwrap();
    Server {
        name: "floor",
        addr,
        children: vec![child],
        dir,
    }
}

fn print_outcome(server: &str, sockets: usize, o: &Outcome) {
    println!(
        "ws chat, {server}, {sockets} sockets: connect {:.2} s ({:.0} sockets/s, backlog {}); \
         memory {:.1} KiB/socket idle, {:.1} KiB/socket active (RSS {:.1} MiB before, {:.1} \
         active, {:.1} idle, peak {:.1}); wake-up {:.2} ms; broadcast one at a time p50 {:.3} \
         ms, p99 {:.3} ms; pipelined ({WINDOW} in flight) {:.0} deliveries/s, p50 {:.3} ms, \
         p99 {:.3} ms; CPU in broadcasts: server {:.2} s, client {:.2} s",
        o.connect_s,
        sockets as f64 / o.connect_s,
        o.backlog_min,
        o.kib_per_socket(sockets, o.rss_idle_kib),
        o.kib_per_socket(sockets, o.rss_active_kib),
        o.rss_before_kib as f64 / 1024.0,
        o.rss_active_kib as f64 / 1024.0,
        o.rss_idle_kib as f64 / 1024.0,
        o.hwm_kib as f64 / 1024.0,
        o.wake_ms,
        o.one_p50_ms,
        o.one_p99_ms,
        o.deliveries_per_s,
        o.piped_p50_ms,
        o.piped_p99_ms,
        o.server_cpu_s,
        o.client_cpu_s,
    );
    if o.lost > 0 || o.out_of_order > 0 || o.duplicates > 0 {
        println!(
            "ws chat, {server}, {sockets} sockets: ERRORS: {} sockets lost, {} timestamps not \
             increasing, {} messages received twice",
            o.lost, o.out_of_order, o.duplicates
        );
    }
}

/// A figure compared: its name, how to read it, its unit, whether lower is better.
type Figure = (&'static str, fn(&Outcome, usize) -> f64, &'static str, bool);

fn print_ratios(sockets: usize, ours: &Outcome, workerd: &Outcome) {
    let name = format!("ws chat, {sockets} sockets");
    let figures: [Figure; 7] = [
        ("connect", |o, _| o.connect_s, "s", true),
        (
            "memory per idle socket",
            |o, n| o.kib_per_socket(n, o.rss_idle_kib),
            "KiB",
            true,
        ),
        ("wake-up", |o, _| o.wake_ms, "ms", true),
        ("broadcast p50", |o, _| o.one_p50_ms, "ms", true),
        ("broadcast p99", |o, _| o.one_p99_ms, "ms", true),
        (
            "pipelined broadcast",
            |o, _| o.deliveries_per_s,
            "deliveries/s",
            false,
        ),
        ("pipelined broadcast p99", |o, _| o.piped_p99_ms, "ms", true),
    ];
    for (what, f, unit, lower_is_better) in figures {
        line(
            &format!("{name}, {what}"),
            f(ours, sockets),
            "workerd",
            f(workerd, sockets),
            unit,
            lower_is_better,
        );
    }
}

type StartServer = Box<dyn Fn() -> Server>;

pub async fn run(argv: &[String], quick: bool) {
    let nofile = raise_fd_limit();
    let workerd = path_flag(argv, "--workerd-bin");
    let config = path_flag(argv, "--workerd-config");
    let config = std::fs::canonicalize(&config)
        .unwrap_or_else(|e| panic!("--workerd-config {}: {e}", config.display()));
    let chat = flag(argv, "--chat-bin").map(PathBuf::from);
    let sizes: Vec<usize> = match flag(argv, "--sockets") {
        Some(list) => list
            .split(',')
            .map(|n| n.parse().expect("--sockets N,N,.."))
            .collect(),
        None if quick => vec![100, 1000],
        None => vec![100, 1000, 10_000],
    };
    let settings = Settings {
        idle_wait: Duration::from_secs_f64(
            flag(argv, "--idle-wait").map_or(15.0, |s| s.parse().expect("--idle-wait SECONDS")),
        ),
        connect_timeout: Duration::from_secs_f64(
            flag(argv, "--connect-timeout")
                .map_or(1200.0, |s| s.parse().expect("--connect-timeout SECONDS")),
        ),
        one_deliveries: if quick { 50_000 } else { 500_000 },
        one_max: if quick { 50 } else { 200 },
        piped_deliveries: if quick { 200_000 } else { 2_000_000 },
    };
    // (name, descriptors per socket in the server, how to start it). workerd holds two per
    // socket (every accepted connection is open twice in /proc/<pid>/fd).
    let mut contestants: Vec<(&str, libc::rlim_t, StartServer)> = Vec::new();
    if let Some(chat) = chat {
        contestants.push(("ours", 1, Box::new(move || start_ours(&chat))));
    }
    if !argv.iter().any(|a| a == "--no-workerd") {
        contestants.push((
            "workerd",
            2,
            Box::new(move || http::start_workerd(&workerd, &config)),
        ));
    }
    if argv.iter().any(|a| a == "--floor") {
        contestants.push(("floor", 1, Box::new(start_floor)));
    }
    let mut outcomes = Vec::new();
    for &sockets in &sizes {
        let mut row = Vec::new();
        for (name, fds_per_socket, start) in &contestants {
            let needed = fds_per_socket * sockets as libc::rlim_t + 64;
            if needed > nofile {
                println!(
                    "ws chat, {name}, {sockets} sockets: skipped: the server needs about \
                     {needed} open files, the limit is {nofile}"
                );
                continue;
            }
            let mut server = start();
            let outcome = measure(name, &mut server, sockets, &settings).await;
            match &outcome {
                Ok(o) => print_outcome(name, sockets, o),
                Err(e) => println!("ws chat, {name}, {sockets} sockets: FAILED: {e}"),
            }
            if name.starts_with("ours") {
                eprint!("{}", http::log_tails(&server));
            }
            drop(server);
            row.push((*name, outcome.ok()));
        }
        outcomes.push((sockets, row));
    }
    for (sockets, row) in &outcomes {
        let get = |name: &str| row.iter().find(|(n, _)| *n == name)?.1.as_ref();
        if let (Some(ours), Some(workerd)) = (get("ours"), get("workerd")) {
            print_ratios(*sockets, ours, workerd);
        }
    }
}
