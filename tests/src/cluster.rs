//! Cluster tests' parts: the object every node serves ([`Tally`]), and [`Node`], one node of a
//! cluster running as a child process (the `cluster_node` binary), with the signals the tests
//! send it.
//!
//! The tests reach a node through a runtime connected to it ([`Node::front`]): the node routes
//! each call to its object's owner, so a front on any node reaches every object.

use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use durable_runtime::{durable_object, AlarmInfo, Context, Result, Runtime, Tls};

use crate::process::alive;

/// What a node tells its objects about itself (its runtime's env).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
}

/// A counter that knows which node runs it, with a call slow between its write and its reply
/// (to pause a node there), and alarms that record where they fired.
#[durable_object]
pub struct Tally {
    ctx: Context,
}

#[durable_object]
impl Tally {
    pub fn new(ctx: Context) -> Self {
        Tally { ctx }
    }

    /// Adds `amount`; returns the new value.
    pub async fn increment(&mut self, amount: i64) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }

    /// The value.
    pub async fn get(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    }

    /// Adds `amount`, then waits `pause_ms` before returning (the write commits after).
    pub async fn slow_increment(&mut self, amount: i64, pause_ms: u64) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("value", &value)?;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        Ok(value)
    }

    /// The ID of the node running this object.
    pub async fn node(&self) -> Result<String> {
        Ok(node_of(&self.ctx))
    }

    /// Schedules the alarm `in_ms` from now.
    pub async fn schedule(&mut self, in_ms: u64) -> Result<()> {
        let at = std::time::SystemTime::now() + Duration::from_millis(in_ms);
        self.ctx.storage_mut().set_alarm(at)?;
        Ok(())
    }

    /// The nodes the alarm fired on, in order.
    pub async fn fired(&self) -> Result<Vec<String>> {
        Ok(self.ctx.storage().get("fired")?.unwrap_or_default())
    }

    pub async fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        let mut fired: Vec<String> = self.ctx.storage().get("fired")?.unwrap_or_default();
        fired.push(node_of(&self.ctx));
        self.ctx.storage_mut().put("fired", &fired)?;
        Ok(())
    }
}

fn node_of(ctx: &Context) -> String {
    ctx.env::<NodeInfo>()
        .map_or_else(|| "?".to_owned(), |info| info.id.clone())
}

/// The settings every node of a test cluster shares.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `cluster_node` binary: `env!("CARGO_BIN_EXE_cluster_node")` in a test.
    pub binary: PathBuf,
    pub etcd: String,
    pub postgres: String,
    pub secret: String,
    pub lease_ttl_secs: u64,
    pub shards: u32,
    /// The cluster's name (its prefix in etcd).
    pub name: String,
    /// TLS between the nodes (and to them): a directory holding `cert.pem`, `key.pem` (the
    /// nodes' certificate for 127.0.0.1 and its key) and `ca.pem`.
    pub tls: Option<PathBuf>,
}

/// One node of a test cluster: a `cluster_node` child process. Killed when dropped.
pub struct Node {
    pub id: String,
    child: Child,
    lines: Receiver<String>,
    addr: String,
    http: String,
    paused: bool,
    tls: Option<PathBuf>,
}

impl Node {
    /// Starts node `id` and waits until it listens, or panics with what it printed.
    pub fn start(config: &ClusterConfig, id: &str) -> Node {
        Node::try_start(config, id, &config.secret).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts node `id` with `secret`; `Err` with the error the node printed if it did not
    /// open.
    pub fn try_start(
        config: &ClusterConfig,
        id: &str,
        secret: &str,
    ) -> std::result::Result<Node, String> {
        let ttl = config.lease_ttl_secs.to_string();
        let shards = config.shards.to_string();
        let tls = config
            .tls
            .as_ref()
            .map(|dir| dir.to_str().expect("a UTF-8 path").to_owned());
        let mut args = vec![
            "--etcd",
            &config.etcd,
            "--postgres",
            &config.postgres,
            "--node-id",
            id,
            "--secret",
            secret,
            "--lease-ttl",
            &ttl,
            "--shards",
            &shards,
            "--name",
            &config.name,
        ];
        if let Some(dir) = &tls {
            args.extend(["--tls", dir.as_str()]);
        }
        let (child, lines) =
            crate::spawn_with_lines(config.binary.to_str().expect("a UTF-8 path"), &args);
        let mut node = Node {
            id: id.to_owned(),
            child,
            lines,
            addr: String::new(),
            http: String::new(),
            paused: false,
            tls: config.tls.clone(),
        };
        match node.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("LISTENING ") => {
                let mut words = line.split(' ').skip(1);
                node.addr = words.next().unwrap_or_default().to_owned();
                node.http = words.nth(1).unwrap_or_default().to_owned();
                Ok(node)
            }
            Ok(line) => Err(format!("node {id} did not open: {line}")),
            Err(e) => Err(format!("node {id} printed nothing within 30 s: {e}")),
        }
    }

    /// The address the node listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The address of the node's HTTP server (`/room/{room}`: WebSockets to rooms).
    pub fn http(&self) -> std::net::SocketAddr {
        self.http
            .parse()
            .expect("the node printed its HTTP address")
    }

    /// The node's process ID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The value of metric `name` in the node's `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.http())
            .await
            .expect("connect to the node's HTTP server");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .expect("send the request");
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .await
            .expect("read the response");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
    }

    /// A runtime connected to this node: its calls reach every object of the cluster.
    pub fn front(&self, secret: &str) -> Runtime {
        let mut builder = Runtime::builder().connect(self.addr.clone()).secret(secret);
        if let Some(dir) = &self.tls {
            let ca = std::fs::read(dir.join("ca.pem")).expect("the CA certificate");
            builder = builder.tls(Tls::client(ca).expect("a client's Tls"));
        }
        builder.open().expect("open a runtime connected to a node")
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGSTOP: the node freezes (its lease lapses if long enough).
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// SIGTERM: the node shuts down cleanly (hands its shards over). Waits for it to exit and
    /// returns whether it printed `LEFT` (a clean shutdown) before.
    pub fn terminate(&mut self, patience: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + patience;
        let mut left = false;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line == "LEFT" => left = true,
                Ok(_) => {}
                Err(_) => {}
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // Drain what it printed last.
                while let Ok(line) = self.lines.try_recv() {
                    left |= line == "LEFT";
                }
                return left;
            }
        }
        panic!(
            "node {} did not exit within {patience:?} of SIGTERM",
            self.id
        );
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        alive(self.pid())
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with our own child's PID.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused {
            self.signal(libc::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
