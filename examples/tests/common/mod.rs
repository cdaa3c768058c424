//! Helpers shared by the example's tests: a raw HTTP/1.1 client and the replies' checks, the
//! example binaries as child processes, and a headless Chromium ([`browser`]).

#![allow(dead_code)] // each test binary uses its own share of these

pub mod browser;
pub mod chat_page;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use durable_examples::{APPLICATION_JSON, TEXT_PLAIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn body(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn send(addr: SocketAddr, method: &str, target: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header block");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let mut content_type = None;
    let mut content_length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim().to_owned();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value),
            "content-length" => content_length = Some(value.parse::<usize>().unwrap()),
            "transfer-encoding" => panic!("unexpected transfer-encoding: {value}"),
            _ => {}
        }
    }
    assert_eq!(
        content_length,
        Some(body.len()),
        "content-length matches the body"
    );
    Reply {
        status,
        content_type,
        body,
    }
}

pub fn assert_text(reply: &Reply, status: u16, body: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some(TEXT_PLAIN), "{reply:?}");
    assert_eq!(reply.body(), body);
}

pub fn assert_json(reply: &Reply, value: i64) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some(APPLICATION_JSON),
        "{reply:?}"
    );
    assert_eq!(reply.body(), format!("{{\"value\":{value}}}"));
}

pub fn count(name: &str, n: i64) -> String {
    format!("Durable Object '{name}' count: {n}")
}

/// The example binary cargo built beside this test (`target/<profile>/examples/<name>`).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "build the example first: {}", path.display());
    path
}

/// An address of 127.0.0.1 that nothing listens on now.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// A child process, killed (SIGKILL) when dropped.
pub struct Process(pub Child);

impl Process {
    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: kill(2) takes no pointers; `pid` is our own child, not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("the child's status") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "still running {timeout:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts example `name` with `args` (no secret from the environment, warnings logged to the
/// test's stderr).
pub fn start_example(name: &str, args: &[&str]) -> Process {
    let child = Command::new(example_binary(name))
        .args(args)
        .env_remove("DURABLE_SECRET")
        .env_remove("DURABLE_IDLE_TIMEOUT")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start the {name} example: {e}"));
    Process(child)
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A router served on a free port of 127.0.0.1 in this process: stop it with
/// [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn serve(app: axum::Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Server { addr, stop, task }
    }

    /// Stops taking connections and waits for the open ones. (Upgraded WebSocket
    /// connections are not the server's any more: their clients close them.)
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
