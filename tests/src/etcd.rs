//! [`EtcdServer`]: a private etcd for the tests, a one-member cluster started on free loopback
//! ports in a fresh temporary directory, and killed (its directory removed) when dropped.
//!
//! The binary is Debian's (`etcd-server`), found on the `PATH`. It runs as whoever runs the
//! tests, root included. It listens for clients and peers on 127.0.0.1 only, without TLS or
//! authentication; [`EtcdServer::start_tls`] serves its clients over TLS instead (`https://`),
//! asking them for a certificate if told to (etcd's `--client-cert-auth`). Authentication
//! (users and passwords) is enabled, if a test wants it, through etcd's API.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{free_port, retry, wait_gone};

/// The Debian package that ships the server binary.
const PACKAGE: &str = "etcd-server";

/// How long a start or a stop may take before the harness gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// How an [`EtcdServer`] serves its clients over TLS: its certificate and key, and the CA of
/// the client certificates it asks for, if it asks for one. All PEM.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The server's certificate (`--cert-file`): it must name 127.0.0.1 (an IP SAN).
    pub cert_pem: String,
    /// Its private key (`--key-file`).
    pub key_pem: String,
    /// With it, every client must present a certificate this CA signed
    /// (`--client-cert-auth --trusted-ca-file`).
    pub client_ca_pem: Option<String>,
}

/// A private etcd server; see the module's documentation.
pub struct EtcdServer {
    /// Holds `data/` (the member's data) and `log` (the server's output), and the TLS files.
    dir: Option<TempDir>,
    /// The member's name, unique (the temporary directory's).
    name: String,
    client_port: u16,
    peer_port: u16,
    /// With TLS: the plain HTTP port of the health check (`--listen-metrics-urls`), since the
    /// client port speaks TLS only.
    metrics_port: u16,
    /// How it serves its clients over TLS, if it does.
    tls: Option<EtcdTls>,
    /// The running server; `None` once stopped or killed.
    child: Option<Child>,
    /// Stopped with SIGSTOP ([`pause`](Self::pause)).
    paused: bool,
}

/// Why a start failed, and whether for a port taken by another process.
struct StartError {
    message: String,
    port_taken: bool,
}

impl EtcdServer {
    /// Starts a new one-member cluster on free loopback ports, in a fresh temporary directory,
    /// and waits until it answers, or panics saying why.
    pub fn start() -> EtcdServer {
        EtcdServer::start_with(None)
    }

    /// [`start`](Self::start), serving the clients over TLS as `tls` says: its
    /// [`endpoint`](Self::endpoint) is `https://`.
    pub fn start_tls(tls: EtcdTls) -> EtcdServer {
        EtcdServer::start_with(Some(tls))
    }

    fn start_with(tls: Option<EtcdTls>) -> EtcdServer {
        let dir = tempfile::Builder::new()
            .prefix("durable-etcd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let name = dir
            .path()
            .file_name()
            .expect("a temporary directory has a name")
            .to_string_lossy()
            .into_owned();
        let mut server = EtcdServer {
            dir: Some(dir),
            name,
            client_port: 0,
            peer_port: 0,
            metrics_port: 0,
            tls,
            child: None,
            paused: false,
        };
        if let Some(tls) = server.tls.clone() {
            server.write_tls_files(&tls);
        }
        // A free port can be taken between picking it and binding it: try a few.
        for attempt in 1.. {
            server.client_port = free_port();
            server.peer_port = free_port();
            server.metrics_port = free_port();
            let ports = [server.client_port, server.peer_port, server.metrics_port];
            if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
                continue;
            }
            match server.try_start() {
                Ok(()) => return server,
                Err(e) if attempt < 5 && e.port_taken => {
                    eprintln!("etcd: a port was taken, trying others: {}", e.message);
                    // Start afresh: nothing of the failed attempt is kept.
                    let _ = std::fs::remove_dir_all(server.data_dir());
                }
                Err(e) => server.fail(&e.message),
            }
        }
        unreachable!()
    }

    /// The URL clients connect to: `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` with
    /// TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The server's process ID while it runs (to account its CPU time from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory holding the member's data and the server's log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("directory kept until drop").path()
    }

    /// Stops the server gracefully (SIGTERM), waiting until it is gone. Does nothing if it is
    /// not running.
    pub fn stop(&mut self) {
        if let Err(e) = self.end(libc::SIGTERM) {
            self.fail(&e);
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill9(&mut self) {
        if self.child.is_none() {
            self.fail("kill9: the server is not running");
        }
        if let Err(e) = self.end(libc::SIGKILL) {
            self.fail(&e);
        }
    }

    /// Starts the server again on the same directory and ports, after [`stop`](Self::stop) or
    /// [`kill9`](Self::kill9) (stopping it first if it runs), or panics saying why. A port
    /// taken by another process in between is waited for.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = retry(PATIENCE, || self.try_start(), |e| e.port_taken) {
            self.fail(&e.message);
        }
    }

    /// Stops the server with SIGSTOP: it hangs, as behind a network partition, while its
    /// clock runs on (its leases expire). Its sockets stay open, and the kernel still accepts
    /// connections. [`resume`](Self::resume) resumes it.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// Resumes a [paused](Self::pause) server: it goes on where it stopped.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        match self.dir.as_ref() {
            Some(dir) => crate::process::log_tail(&dir.path().join("log")),
            None => String::new(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Writes the TLS files etcd reads into the server's directory (readable by whoever
    /// runs it).
    fn write_tls_files(&self, tls: &EtcdTls) {
        let mut files = vec![("server.crt", &tls.cert_pem), ("server.key", &tls.key_pem)];
        if let Some(ca) = &tls.client_ca_pem {
            files.push(("client-ca.crt", ca));
        }
        for (name, pem) in files {
            let path = self.dir().join(name);
            if let Err(e) = std::fs::write(&path, pem) {
                self.fail(&format!("cannot write {}: {e}", path.display()));
            }
        }
    }

    /// The flags of TLS towards the clients, and the plain port of the health check.
    fn tls_args(&self) -> Vec<String> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let file = |name: &str| self.dir().join(name).to_string_lossy().into_owned();
        let mut args = vec![
            "--cert-file".to_owned(),
            file("server.crt"),
            "--key-file".to_owned(),
            file("server.key"),
            "--listen-metrics-urls".to_owned(),
            format!("http://127.0.0.1:{}", self.metrics_port),
        ];
        if tls.client_ca_pem.is_some() {
            args.extend([
                "--client-cert-auth".to_owned(),
                "--trusted-ca-file".to_owned(),
                file("client-ca.crt"),
            ]);
        }
        args
    }

    /// The port that answers the health check over plain HTTP.
    fn health_port(&self) -> u16 {
        if self.tls.is_some() {
            self.metrics_port
        } else {
            self.client_port
        }
    }

    /// Runs etcd on the current ports and waits until it answers a health check.
    fn try_start(&mut self) -> Result<(), StartError> {
        let failed = |message: String| StartError {
            message,
            port_taken: false,
        };
        let log_path = self.dir().join("log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| failed(format!("cannot open {}: {e}", log_path.display())))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log
            .try_clone()
            .map_err(|e| failed(format!("cannot share the log: {e}")))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut child = Command::new("etcd")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{}={peer}", self.name)])
            .args(["--initial-cluster-token", &self.name])
            .args(["--initial-cluster-state", "new"])
            // A lone member elects itself after one election timeout: a short one starts it
            // in a fraction of a second, and lets a lease's TTL be as short as 1 s (etcd
            // raises a shorter one to 1.5 election timeouts).
            .args(["--heartbeat-interval", "25", "--election-timeout", "250"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(self.tls_args())
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "cannot run etcd: {e} (is Debian's `{PACKAGE}` package installed? \
                     apt-get install {PACKAGE})"
                ))
            })?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read(&log_path).unwrap_or_default();
                let new = String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or(&[]));
                let port_taken = new.contains("address already in use");
                let why = if port_taken { " (a port is taken)" } else { "" };
                return Err(StartError {
                    message: format!("etcd exited at start: {status}{why}"),
                    port_taken,
                });
            }
            if answers_health(self.health_port()) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "no healthy answer on http://127.0.0.1:{}/health within {PATIENCE:?}",
                    self.health_port()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to the running server, or panics saying why.
    fn signal(&self, signal: libc::c_int) {
        let Some(child) = self.child.as_ref() else {
            self.fail(&format!("signal {signal}: the server is not running"));
        };
        if unsafe { libc::kill(child.id() as i32, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            self.fail(&format!("kill -{signal} {}: {e}", child.id()));
        }
    }

    /// Ends the server, if it runs, with `signal` (resuming it first if paused, so that it
    /// can act on a SIGTERM), and waits until it is gone.
    fn end(&mut self, signal: libc::c_int) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id() as i32;
        if self.paused {
            unsafe { libc::kill(pid, libc::SIGCONT) };
            self.paused = false;
        }
        if unsafe { libc::kill(pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("kill -{signal} {pid}: {e}"));
        }
        let gone = wait_gone(&[pid], PATIENCE);
        if gone.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
        gone.map_err(|_| format!("etcd (pid {pid}) still alive {PATIENCE:?} after signal {signal}"))
    }

    /// Panics with `what` and the tail of the server's log.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "etcd on port {}: {what}\n--- tail of the server log ---\n{}",
            self.client_port,
            self.log_tail()
        )
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Its data goes with the directory: no need for a graceful stop.
        if let Err(e) = self.end(libc::SIGKILL) {
            eprintln!("etcd: {e}");
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                eprintln!("etcd: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// Whether the etcd on `port` answers its health check with "healthy" (it has a leader and
/// serves requests).
fn answers_health(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.contains(r#""health":"true""#)
}
