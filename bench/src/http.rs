//! `--http`: the seed's HTTP counter served by ours (`examples/counter`) and by workerd, both
//! on 127.0.0.1 with on-disk storage, driven by the same load generator (below: HTTP/1.1
//! keep-alive connections, one request in flight per connection, latency of every request).
//! `bench/workerd/run.sh` installs workerd from npm, builds the counter and runs this.
//!
//! A third contestant is ours in two processes, as the README's "Remote calls" runs it: an
//! object server (`counter --listen`, the data directory) and a front end holding no objects
//! (`counter --connect`), with a shared secret. The load goes to the front end, so every
//! request crosses a loopback connection to the object server; it is compared with ours in
//! one process and with workerd.
//!
//! Flags: `--counter-bin PATH` (the built `counter` example), `--workerd-bin PATH`,
//! `--workerd-config PATH` (config.capnp, with worker.js beside it); `--quick` for one short
//! round.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{line, median};

fn flag(argv: &[String], name: &str) -> PathBuf {
    let i = argv
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("--http needs {name} PATH (see bench/workerd/run.sh)"));
    PathBuf::from(&argv[i + 1])
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A server: its processes (the one the load goes to, on `addr`, first), killed when
/// dropped.
pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) children: Vec<Child>,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Has the child killed when the thread that started it (here the main thread, which runs
/// the benchmark) ends, so that no server outlives an interrupted run.
pub(crate) fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and makes one async-signal-safe call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

pub(crate) fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name)).unwrap().into()
}

fn start_ours(bin: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let child = die_with_parent(&mut Command::new(bin))
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(log_file(dir.path(), "stdout"))
        .stderr(log_file(dir.path(), "stderr"))
        .spawn()
        .unwrap();
    Server {
        name: "ours",
        addr,
        children: vec![child],
        dir,
    }
}

/// Ours in two processes: the object server (data directory, `--listen`), then, once it
/// accepts connections, the front end (`--connect`, no data directory) the load goes to.
async fn start_ours_two_processes(bin: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (objects, server_http, front_http) = (free_port(), free_port(), free_port());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let secret = format!("bench-{}-{nanos:x}", std::process::id());
    let object_server = die_with_parent(&mut Command::new(bin))
        .arg("--addr")
        .arg(server_http.to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(objects.to_string())
        .arg("--secret")
        .arg(&secret)
        .env_remove("DURABLE_CONNECT")
        .env("RUST_LOG", "warn")
        .stdout(log_file(dir.path(), "server.stdout"))
        .stderr(log_file(dir.path(), "server.stderr"))
        .spawn()
        .unwrap();
    let mut server = Server {
        name: "ours, two processes",
        addr: front_http,
        children: vec![object_server],
        dir,
    };
    // Its runtime (and the `--listen` socket) is open before its HTTP socket listens. A bare
    // connection to the `--listen` socket would be logged as a failed handshake.
    wait_listening(&mut server, server_http).await;
    let front_end = die_with_parent(&mut Command::new(bin))
        .arg("--addr")
        .arg(front_http.to_string())
        .arg("--connect")
        .arg(objects.to_string())
        .arg("--secret")
        .arg(&secret)
        .env_remove("DURABLE_DATA_DIR")
        .env_remove("DURABLE_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(log_file(server.dir.path(), "front.stdout"))
        .stderr(log_file(server.dir.path(), "front.stderr"))
        .spawn()
        .unwrap();
    // The front end first: killed before the object server it calls.
    server.children.insert(0, front_end);
    server
}

pub(crate) fn start_workerd(bin: &Path, config: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let addr = free_port();
    let child = die_with_parent(&mut Command::new(bin))
        .arg("serve")
        .arg(config)
        .arg("--directory-path")
        .arg(format!("do-storage={}", data.display()))
        .arg("--socket-addr")
        .arg(format!("http={addr}"))
        .stdout(log_file(dir.path(), "stdout"))
        .stderr(log_file(dir.path(), "stderr"))
        .spawn()
        .unwrap();
    Server {
        name: "workerd",
        addr,
        children: vec![child],
        dir,
    }
}

/// One keep-alive connection: sends `GET path`, reads one whole response (Content-Length or
/// chunked), returns its status code.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    pub(crate) async fn get(&mut self, path: &str) -> std::io::Result<u16> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head_end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
                let body = &self.buf[head_end + 4..];
                let complete = if let Some(len) =
                    head.lines().find_map(|l| l.strip_prefix("content-length:"))
                {
                    body.len() >= len.trim().parse::<usize>().unwrap_or(0)
                } else if head.contains("transfer-encoding: chunked") {
                    body.starts_with(b"0\r\n\r\n") || find(body, b"\r\n0\r\n\r\n").is_some()
                } else {
                    true
                };
                if complete {
                    let status = head
                        .strip_prefix("http/1.1 ")
                        .and_then(|rest| rest.get(..3));
                    return Ok(status.and_then(|s| s.parse().ok()).unwrap_or(0));
                }
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Conn {
    /// The body of the last response [`get`](Conn::get) read (empty if none).
    pub(crate) fn body(&self) -> &[u8] {
        find(&self.buf, b"\r\n\r\n").map_or(&[], |end| &self.buf[end + 4..])
    }
}

/// The last lines of what the server's processes wrote to stderr (ours log at `warn`), one
/// paragraph per non-empty log.
pub(crate) fn log_tails(server: &Server) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(server.dir.path()) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let file = path.file_name().unwrap().to_string_lossy();
        if !file.ends_with("stderr") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            continue;
        }
        out += &format!(
            "{} ({file}): {} log lines; the last ones:\n",
            server.name,
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(5)..] {
            out += &format!("  {l}\n");
        }
    }
    out
}

/// Panics if one of the server's processes has exited (its logs go with the panic: the
/// temporary directory holding them is removed).
pub(crate) fn check_alive(server: &mut Server) {
    for child in &mut server.children {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited at start-up: {status}\n{}",
                server.name,
                log_tails(server)
            );
        }
    }
}

/// Waits until something accepts connections on `addr` (one of the server's ports).
pub(crate) async fn wait_listening(server: &mut Server, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).await.is_err() {
        check_alive(server);
        assert!(
            Instant::now() < deadline,
            "{}: nothing listens on {addr}",
            server.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server answers the counter's route.
async fn wait_ready(server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Conn::open(server.addr).await {
            if let Ok(200) = c.get("/increment?name=ready").await {
                return;
            }
        }
        check_alive(server);
        assert!(
            Instant::now() < deadline,
            "{} did not start on {}",
            server.name,
            server.addr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Load {
    req_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests not answered 200 (any status, or a broken connection).
    errors: u64,
    /// Of which answered 503 (overloaded, or the object server unreachable).
    unavailable: u64,
}

/// `conns` connections, each sending requests back to back for `dur`; `names` = 1: all on
/// object `A`; otherwise each connection walks over `names` objects.
async fn drive(addr: SocketAddr, conns: usize, names: usize, dur: Duration) -> Load {
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut unavailable = 0u64;
            let mut conn = Conn::open(addr).await.unwrap();
            let mut k = c;
            while Instant::now() < deadline {
                let path = if names == 1 {
                    "/increment?name=A".to_owned()
                } else {
                    format!("/increment?name=n{}", k % names)
                };
                k += conns;
                let t = Instant::now();
                match conn.get(&path).await {
                    Ok(200) => lat.push(t.elapsed().as_micros() as u32),
                    Ok(status) => {
                        errors += 1;
                        unavailable += u64::from(status == 503);
                    }
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(addr).await.unwrap();
                    }
                }
            }
            (lat, errors, unavailable)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut unavailable = 0;
    for t in tasks {
        let (l, e, u) = t.await.unwrap();
        lat.extend(l);
        errors += e;
        unavailable += u;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |&us| us as f64 / 1000.0)
    };
    Load {
        req_per_s: lat.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
        unavailable,
    }
}

/// (connections, objects)
const CASES: [(usize, usize); 4] = [(1, 1), (16, 1), (64, 1), (64, 10_000)];

pub async fn run(argv: &[String], quick: bool) {
    let counter = flag(argv, "--counter-bin");
    let workerd = flag(argv, "--workerd-bin");
    let config = std::fs::canonicalize(flag(argv, "--workerd-config")).unwrap();
    let rounds = if quick { 1 } else { 3 };
    let dur = Duration::from_secs(if quick { 3 } else { 10 });
    // Ours, workerd, ours in two processes (the load goes to the front end).
    let mut servers = [
        start_ours(&counter),
        start_workerd(&workerd, &config),
        start_ours_two_processes(&counter).await,
    ];
    for s in &mut servers {
        wait_ready(s).await;
    }
    // [case][server] -> per-round figures
    let mut results: Vec<[Vec<Load>; 3]> = CASES.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        for (i, &(conns, names)) in CASES.iter().enumerate() {
            for (s, server) in servers.iter().enumerate() {
                // A short warm-up (connections, object activation), not counted.
                drive(server.addr, conns, names, Duration::from_millis(300)).await;
                results[i][s].push(drive(server.addr, conns, names, dur).await);
            }
        }
    }
    // Anything our processes logged (they log at `warn`), to stderr.
    for s in &servers {
        if s.name.starts_with("ours") {
            eprint!("{}", log_tails(s));
        }
    }
    for (i, &(conns, names)) in CASES.iter().enumerate() {
        let name = format!(
            "HTTP counter /increment, {names} object{}, {conns} connection{}",
            if names == 1 { "" } else { "s" },
            if conns == 1 { "" } else { "s" },
        );
        let m = |s: usize, f: fn(&Load) -> f64| median(results[i][s].iter().map(f).collect());
        let errors: Vec<u64> = (0..2)
            .map(|s| results[i][s].iter().map(|l| l.errors).sum())
            .collect();
        line(
            &name,
            m(0, |l| l.req_per_s),
            "workerd",
            m(1, |l| l.req_per_s),
            "req/s",
            false,
        );
        line(
            &format!("{name}, p50"),
            m(0, |l| l.p50_ms),
            "workerd",
            m(1, |l| l.p50_ms),
            "ms",
            true,
        );
        line(
            &format!("{name}, p99"),
            m(0, |l| l.p99_ms),
            "workerd",
            m(1, |l| l.p99_ms),
            "ms",
            true,
        );
        if errors.iter().any(|&e| e > 0) {
            println!("{name}: errors: ours {}, workerd {}", errors[0], errors[1]);
        }
        // Ours in two processes (front end + object server) against ours in one process,
        // then against workerd.
        let two = format!("{name}, two processes");
        for (s, baseline) in [(0, "one process"), (1, "workerd")] {
            line(
                &two,
                m(2, |l| l.req_per_s),
                baseline,
                m(s, |l| l.req_per_s),
                "req/s",
                false,
            );
        }
        for (s, baseline) in [(0, "one process"), (1, "workerd")] {
            line(
                &format!("{two}, p50"),
                m(2, |l| l.p50_ms),
                baseline,
                m(s, |l| l.p50_ms),
                "ms",
                true,
            );
        }
        for (s, baseline) in [(0, "one process"), (1, "workerd")] {
            line(
                &format!("{two}, p99"),
                m(2, |l| l.p99_ms),
                baseline,
                m(s, |l| l.p99_ms),
                "ms",
                true,
            );
        }
        let errors: u64 = results[i][2].iter().map(|l| l.errors).sum();
        if errors > 0 {
            let unavailable: u64 = results[i][2].iter().map(|l| l.unavailable).sum();
            println!("{two}: errors: {errors} (503: {unavailable})");
        }
    }
}
