//! [`PgServer`]: a private PostgreSQL for the tests, started on a free loopback port in a fresh
//! temporary directory and stopped (its directory removed) when dropped.
//!
//! The binaries are Debian's, from the newest `/usr/lib/postgresql/<version>/bin`, or from the
//! directory named by the `PG_BIN` environment variable. PostgreSQL refuses to run as root: as
//! root, `initdb` and `pg_ctl` run as the `postgres` user (through `runuser`), which then owns
//! the temporary directory.
//!
//! The cluster trusts every connection, so it listens on 127.0.0.1 only, and on a Unix socket
//! inside its own directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{free_port, retry, wait_gone};

/// The Debian package that ships the server binaries.
const PACKAGE: &str = "postgresql";

/// How long a start or a stop may take before the harness gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// A private PostgreSQL server; see the module's documentation.
pub struct PgServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster), `log` (the server's log) and the Unix socket.
    dir: Option<TempDir>,
    port: u16,
    /// Whether `initdb` and `pg_ctl` run as the `postgres` user.
    as_postgres: bool,
    running: bool,
    /// Stopped with SIGSTOP ([`freeze`](Self::freeze)): resumed before a stop.
    frozen: bool,
}

impl PgServer {
    /// Creates a cluster in a fresh temporary directory and starts it on a free loopback port,
    /// or panics saying why.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("durable-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        if as_postgres {
            run_checked(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                "chown the temporary directory to the postgres user",
            );
        }
        let mut server = PgServer {
            bin,
            dir: Some(dir),
            port: 0,
            as_postgres,
            running: false,
            frozen: false,
        };
        server.initdb();
        // The free port can be taken between picking it and binding it: try a few.
        for attempt in 1.. {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(e) if attempt < 5 && server.log_tail().contains("could not bind") => {
                    eprintln!("postgres: port {} taken, trying another: {e}", server.port);
                }
                Err(e) => server.fail(&e),
            }
        }
        unreachable!()
    }

    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the cluster, its log and its socket.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("directory kept until drop").path()
    }

    /// The URL of database `db`, as the `postgres` superuser over TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name`, or panics saying why.
    pub fn create_database(&self, name: &str) {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        self.psql("postgres", &sql);
    }

    /// Runs `sql` in database `db` with `psql` over TCP, stopping at the first error; returns
    /// what it printed (unaligned, tuples only), or panics saying why.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .args(["-c", sql]);
        let output = self
            .output(&mut command, false)
            .unwrap_or_else(|e| self.fail(&format!("psql: {e}")));
        if !output.status.success() {
            self.fail(&format!("psql -c {sql:?}: {}", describe(&output)));
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Turns TLS on with this server certificate and key (PEM), trusting `client_ca_pem` for
    /// client certificates, and restarts the server. From then on `pg_hba.conf` refuses TCP
    /// connections without TLS, and user `certuser` (created here) logs in only with a client
    /// certificate whose common name is `certuser`. Panics saying why if it cannot.
    pub fn require_tls(&mut self, cert_pem: &str, key_pem: &str, client_ca_pem: &str) {
        self.psql("postgres", "CREATE USER certuser SUPERUSER");
        let data = self.data_dir();
        for (file, text) in [
            ("server.crt", cert_pem),
            ("server.key", key_pem),
            ("root.crt", client_ca_pem),
        ] {
            std::fs::write(data.join(file), text)
                .unwrap_or_else(|e| self.fail(&format!("write {file}: {e}")));
        }
        let key = data.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap_or_else(|e| self.fail(&format!("chmod server.key: {e}")));
        if self.as_postgres {
            run_checked(
                Command::new("chown")
                    .arg("postgres:")
                    .arg(data.join("server.crt"))
                    .arg(&key)
                    .arg(data.join("root.crt")),
                "chown the TLS files to the postgres user",
            );
        }
        let conf = "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                    ssl_ca_file = 'root.crt'\n";
        let mut postgresql_conf = std::fs::read_to_string(data.join("postgresql.conf"))
            .unwrap_or_else(|e| self.fail(&format!("read postgresql.conf: {e}")));
        postgresql_conf.push_str(conf);
        std::fs::write(data.join("postgresql.conf"), postgresql_conf)
            .unwrap_or_else(|e| self.fail(&format!("write postgresql.conf: {e}")));
        let hba = "local all all trust\n\
                   hostssl all certuser 127.0.0.1/32 cert\n\
                   hostssl all all 127.0.0.1/32 trust\n\
                   hostnossl all all 127.0.0.1/32 reject\n";
        std::fs::write(data.join("pg_hba.conf"), hba)
            .unwrap_or_else(|e| self.fail(&format!("write pg_hba.conf: {e}")));
        self.restart();
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no checkpoint, as a crash would),
    /// waiting until it is gone. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        if self.frozen {
            self.thaw();
        }
        let data = self.data_dir();
        let mut command = self.pg_ctl();
        command
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "-t", "30"]);
        let result = self.output(&mut command, true);
        self.running = false;
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => self.fail(&format!("pg_ctl stop: {}", describe(&output))),
            Err(e) => self.fail(&format!("pg_ctl stop: {e}")),
        }
    }

    /// Kills the postmaster with SIGKILL, as a crash would, and waits until it and its
    /// backends are gone (they exit on their own once they see it died, each finishing the
    /// statement it runs), so that the server can be [restarted](Self::restart) at once.
    pub fn kill9(&mut self) {
        self.kill9_processes(false);
    }

    /// Kills the postmaster and every one of its processes with SIGKILL at once, as a crash
    /// of the machine would: a backend dies wherever it is (say after a commit reached the
    /// write-ahead log but before its reply left). Then as [`kill9`](Self::kill9).
    pub fn kill9_all(&mut self) {
        self.kill9_processes(true);
    }

    fn kill9_processes(&mut self, all: bool) {
        let pid = self
            .postmaster_pid()
            .unwrap_or_else(|| self.fail("kill9: no postmaster.pid: is the server running?"));
        let children = children_of(pid);
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            let e = std::io::Error::last_os_error();
            self.fail(&format!("kill -9 {pid}: {e}"));
        }
        if all {
            for &child in &children {
                // A child that already exited is no error.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
        }
        self.running = false;
        // SIGKILL ends stopped processes too.
        self.frozen = false;
        let processes: Vec<i32> = std::iter::once(pid).chain(children).collect();
        if let Err(left) = wait_gone(&processes, PATIENCE) {
            self.fail(&format!(
                "process {left} of the killed postmaster {pid} still alive"
            ));
        }
        // The dead postmaster can stay a zombie until whoever inherited it reaps it, and to
        // PostgreSQL's lock check a zombie's pid is a running postmaster's: the lock file is
        // stale, so remove it (and the socket's), as it would be were the pid gone.
        let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
        for lock in [
            self.data_dir().join("postmaster.pid"),
            self.dir().join(socket_lock),
        ] {
            if let Err(e) = std::fs::remove_file(&lock) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.fail(&format!("cannot remove {}: {e}", lock.display()));
                }
            }
        }
    }

    /// Stops the postmaster and every one of its processes with SIGSTOP: the server hangs, as
    /// behind a network partition. Its sockets stay open, and the kernel still accepts new
    /// connections (they then wait for a greeting that does not come). [`thaw`](Self::thaw)
    /// resumes it.
    pub fn freeze(&mut self) {
        self.frozen = true;
        if let Err(e) = self.signal_all(libc::SIGSTOP) {
            self.fail(&e);
        }
    }

    /// Resumes a [frozen](Self::freeze) server: its processes go on where they stopped.
    pub fn thaw(&mut self) {
        if let Err(e) = self.signal_all(libc::SIGCONT) {
            self.fail(&e);
        }
        self.frozen = false;
    }

    /// Sends `signal` to the postmaster, then to each of its processes.
    fn signal_all(&self, signal: libc::c_int) -> Result<(), String> {
        let pid = self
            .postmaster_pid()
            .ok_or("no postmaster.pid: is the server running?")?;
        if unsafe { libc::kill(pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("kill -{signal} {pid}: {e}"));
        }
        // Listed after the postmaster stopped (a stopped postmaster forks no more).
        for child in children_of(pid) {
            unsafe { libc::kill(child, signal) };
        }
        Ok(())
    }

    /// Starts the server again on the same directory and port, after [`stop`](Self::stop),
    /// [`kill9`](Self::kill9) or [`kill9_all`](Self::kill9_all) (then it recovers from its write-ahead log), or panics saying why.
    pub fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        // After a SIGKILL the old backends can hold the shared memory (and the port) a little
        // longer: the new postmaster refuses to start until they have exited.
        if let Err(e) = retry(PATIENCE, || self.try_start(), |_| true) {
            self.fail(&e);
        }
    }

    /// The server's processes: the postmaster and its children (backends and helpers), for
    /// accounting their CPU time. Empty if the server is not running.
    pub fn processes(&self) -> Vec<i32> {
        match self.postmaster_pid() {
            Some(pid) if self.running => std::iter::once(pid).chain(children_of(pid)).collect(),
            _ => Vec::new(),
        }
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

    fn initdb(&self) {
        let mut command = self.as_owner(self.bin.join("initdb"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .args(["--encoding=UTF8", "--locale=C"]);
        match self.output(&mut command, true) {
            Ok(output) if output.status.success() => {}
            Ok(output) => self.fail(&format!("initdb: {}", describe(&output))),
            Err(e) => self.fail(&format!("initdb: {e}")),
        }
    }

    /// `pg_ctl start -w` on the current port; the error says why it failed.
    fn try_start(&mut self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir().display()
        );
        let mut command = self.pg_ctl();
        command
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir().join("log"))
            .args(["-o", &options, "-w", "-t", "30"]);
        let output = self.output(&mut command, true)?;
        if !output.status.success() {
            return Err(format!("pg_ctl start: {}", describe(&output)));
        }
        self.running = true;
        Ok(())
    }

    fn pg_ctl(&self) -> Command {
        self.as_owner(self.bin.join("pg_ctl"))
    }

    /// A command running `program` as the cluster's owner: `postgres` when we are root.
    fn as_owner(&self, program: PathBuf) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Runs `command` to completion in the temporary directory (the `postgres` user may not be
    /// able to enter ours), output captured.
    fn output(&self, command: &mut Command, in_dir: bool) -> Result<Output, String> {
        if in_dir {
            command.current_dir(self.dir());
        }
        command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Panics with `what` and the tail of the server's log.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "postgres on port {}: {what}\n--- tail of the server log ---\n{}",
            self.port,
            self.log_tail()
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.frozen {
            // A stopped server ignores `pg_ctl stop`, and would stay stopped for ever.
            let _ = self.signal_all(libc::SIGCONT);
        }
        if self.running {
            let data = self.data_dir();
            let mut command = self.pg_ctl();
            command
                .arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "30"]);
            let stopped = matches!(self.output(&mut command, true), Ok(o) if o.status.success());
            if !stopped {
                if let Some(pid) = self.postmaster_pid() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            self.running = false;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                eprintln!("postgres: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// The directory of the server binaries: `PG_BIN`, else the newest Debian version's.
fn bin_dir() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.join("initdb").is_file() {
            panic!(
                "PG_BIN={}: no initdb there; unset PG_BIN to use Debian's `{PACKAGE}` package \
                 (apt-get install {PACKAGE})",
                bin.display()
            );
        }
        return bin;
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version: Vec<u32> = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries in {}/<version>/bin: install Debian's `{PACKAGE}` \
             package (apt-get install {PACKAGE}), or set PG_BIN to the directory holding \
             initdb, pg_ctl, postgres and psql",
            root.display()
        ),
    }
}

/// The processes whose parent is `pid` (a postmaster's are its backends and helpers).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // After the command name, in parentheses: the state, then the parent's pid.
            let (_, rest) = stat.rsplit_once(')')?;
            let parent: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

fn run_checked(command: &mut Command, what: &str) {
    match command.stdin(Stdio::null()).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!("cannot {what}: {}", describe(&output)),
        Err(e) => panic!("cannot {what}: {e}"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}

/// A tokio-postgres client of the database at `url`, its connection driven by a task of the
/// current runtime (ending with an error when the server goes away: expected in these
/// tests), or panics saying why.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
