//! [`PostgresBackend`]: objects stored in PostgreSQL.
//!
//! # Layout
//!
//! The backend's ordered key space (see `keys.rs`) is one table in the connection's current
//! schema (the first existing schema of its `search_path`, `public` by default):
//!
//! ```sql
//! CREATE TABLE durable_kv (key bytea PRIMARY KEY, value bytea NOT NULL);
//! CREATE TABLE durable_meta (name text PRIMARY KEY, value bigint NOT NULL); -- schema_version
//! CREATE TABLE durable_shards (shard int PRIMARY KEY, term bigint NOT NULL); -- cluster mode
//! CREATE VIEW durable_data AS ...; -- object_id (hex), key (text), value (postcard bytes)
//! CREATE VIEW durable_objects AS ...; -- object_id (hex), name
//! ```
//!
//! `bytea` compares bytewise, so the primary key's index orders keys exactly as fjall does,
//! and scans run in SQL on it. The tables are created on first use, under a transaction-level
//! advisory lock; `schema_version` is checked at every open: a newer one is refused.
//!
//! # Sessions
//!
//! The backend drives tokio-postgres connections on a small runtime of its own (one thread,
//! `durable-postgres`), so that it works the same from the runtime's commit thread, from
//! blocking threads and from tests, whatever runtime the caller is on. The synchronous
//! [`Backend`] calls hand it a future and wait.
//!
//! - The commit session (one connection) holds a session-level advisory lock on the database
//!   and schema: one runtime per schema. Each commit round is one statement (a delete and an
//!   upsert of arrays in one `WITH`), so it is one transaction and one round trip. With
//!   [`Durability::Buffered`] the session sets `synchronous_commit` off: a commit returns
//!   before its WAL is flushed, so a crash of the server (not of our process) can lose the
//!   last few hundred milliseconds of acknowledged writes, as the server's own setting would.
//!   In cluster mode a commit also carries its shards' fencing terms ([`Fence`]): the same
//!   statement reads their `durable_shards` rows `FOR SHARE` and stores nothing if a term is
//!   stale, so a claim of a newer term ([`Backend::claim_shard`]) and a commit under the old
//!   one are serialized by PostgreSQL, whichever comes first.
//! - The read session (one connection, queries pipelined) serves `get`, `scan` and
//!   `scan_each` (an activation's three ranges in one round trip, also as a future the actor
//!   awaits); a scan fetches pages that grow from 16 to 1,024 rows (and about 4 MiB), so
//!   taking its first entry is cheap.
//!
//! # Failures
//!
//! Every operation has a deadline ([`PostgresOptions::timeout`]); connecting has
//! [`PostgresOptions::connect_timeout`] too. A session whose connection fails or whose operation
//! times out is dropped (its socket closed), and the next operation connects again: so the
//! backend reconnects by itself after a server restart, and calls in between fail with
//! retryable [`Storage`](crate::ErrorKind::Storage) errors.
//!
//! A commit whose connection was lost, or that was abandoned at its deadline (its connection
//! then dropped), has an unknown outcome: the server may still run it. The runtime fails its
//! replies and reloads its objects, and the reload must not read the store before that
//! commit has either landed or died. So after losing the commit session, reads wait until a
//! new one is in place, which first ends the old server process
//! (`pg_terminate_backend`, waiting for it) and only then takes the advisory lock again: the
//! old process held it, so once the lock is ours, no commit of the old session can land.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::backend::{
    Backend, Durability, Entry, Fence, RangeRead, ScanEachFuture, ScanIter, Write,
};
use crate::error::{Error, Result};

/// The schema version this build writes and reads. Bump it with a migration step in
/// [`ensure_schema`] when the tables change.
const SCHEMA_VERSION: i64 = 1;

/// The oldest server this backend runs on: `pg_terminate_backend(pid, timeout)` is 14's.
const MIN_SERVER_VERSION: i32 = 140_000;

/// How a [`PostgresBackend`] connects, waits and caches. The defaults suit a server on the
/// same network.
///
/// ```
/// use std::time::Duration;
/// use durable_runtime::PostgresOptions;
///
/// let options = PostgresOptions::default()
///     .timeout(Duration::from_secs(5))
///     .object_cache_bytes(4 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    timeout: Duration,
    connect_timeout: Duration,
    object_cache_bytes: usize,
    /// Take the advisory lock that makes this runtime the only writer of its schema.
    /// Cluster mode fences writers otherwise and turns this off.
    pub(crate) exclusive: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            object_cache_bytes: 32 * 1024 * 1024,
            exclusive: true,
        }
    }
}

impl PostgresOptions {
    /// The longest any one operation (a read, a commit, connecting included) may take before
    /// it fails with a retryable storage error and its connection is dropped. Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest opening a TCP connection may take, unless the URL sets
    /// `connect_timeout`. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The storage cache: an object whose stored data (keys and values) is at most this
    /// many bytes is loaded whole when it activates, and its reads (`get`, `list`) are then
    /// served from memory. A larger object keeps the keys it read or wrote; its `list` runs
    /// in SQL. Default: 32 MiB. `0` loads no object whole.
    pub fn object_cache_bytes(mut self, bytes: usize) -> Self {
        self.object_cache_bytes = bytes;
        self
    }
}

/// A [`Backend`] on a PostgreSQL database: `Runtime::builder().postgres(url)` opens one.
///
/// Objects live in the table `durable_kv` of the connection's current schema (see the
/// crate's README for reading them with SQL). While the backend is open it holds an advisory
/// lock: a second runtime on the same database and schema is refused. Durability is the
/// server's: a commit returns once PostgreSQL has committed, as its `synchronous_commit`
/// setting defines.
///
/// ```no_run
/// use durable_runtime::{PostgresBackend, Runtime};
///
/// # fn main() -> durable_runtime::Result<()> {
/// // Or, in one step: Runtime::builder().postgres("postgres://app@127.0.0.1/app")
/// let backend = PostgresBackend::connect("postgres://app@127.0.0.1:5432/app")?;
/// let rt = Runtime::builder().backend(std::sync::Arc::new(backend)).open()?;
/// # Ok(()) }
/// ```
pub struct PostgresBackend {
    inner: Arc<Inner>,
    /// Drives the connections.
    _tokio: ClientRuntime,
    handle: tokio::runtime::Handle,
}

/// The backend's own tokio runtime, shut down in the background when dropped: a runtime may
/// not be dropped in place inside another one, and the backend may be dropped anywhere.
struct ClientRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(tokio) = self.0.take() {
            tokio.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: tokio_postgres::Config,
    /// TLS, as the URL's `sslmode` and certificate files ask (see `pg_tls.rs`).
    tls: MakeRustlsConnect,
    /// The backend's own runtime, where connections run.
    handle: tokio::runtime::Handle,
    options: PostgresOptions,
    /// The current schema, as opened.
    schema: String,
    /// `"schema"."durable_kv"`, quoted.
    kv: String,
    /// `"schema"."durable_shards"`, quoted: each shard's fencing term (cluster mode).
    shards: String,
    /// The advisory lock's key: the database and the schema.
    lock_key: i64,
    commit: tokio::sync::Mutex<CommitSlot>,
    reads: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// The commit session was lost: reads wait for a new one (see the module documentation).
    refence: Arc<AtomicBool>,
    closed: AtomicBool,
}

#[derive(Default)]
struct CommitSlot {
    session: Option<Arc<Session>>,
    /// The server process (PID and start time) of the last commit session, to end before
    /// a new one takes the lock.
    previous: Option<(i32, String)>,
}

/// One connection and its prepared statements.
struct Session {
    client: Client,
    statements: Statements,
    /// Cleared when an operation on the session failed or was abandoned.
    healthy: AtomicBool,
    /// `synchronous_commit` is off in this session ([`Durability::Buffered`]).
    relaxed: AtomicBool,
    /// For the commit session: the backend's `refence` flag, raised when the session is
    /// poisoned (a commit abandoned or failed on a lost connection has an unknown outcome).
    lost_commit: Option<Arc<AtomicBool>>,
    connection: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closes the socket even if the server never answers again.
        self.connection.abort();
    }
}

impl Session {
    fn usable(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.client.is_closed()
    }

    fn poison(&self) {
        if let Some(flag) = &self.lost_commit {
            flag.store(true, Ordering::Release);
        }
        self.healthy.store(false, Ordering::Release);
        self.connection.abort();
    }
}

/// Marks its session unusable when dropped before [`Use::finish`]: an operation abandoned
/// (its future dropped at a deadline) leaves its connection in an unknown state.
struct Use<'a> {
    session: &'a Session,
    finished: bool,
}

impl<'a> Use<'a> {
    fn new(session: &'a Session) -> Self {
        Use {
            session,
            finished: false,
        }
    }

    /// Ends the use: a server error leaves the connection usable; a lost connection does not.
    fn finish<T>(mut self, result: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        self.finished = true;
        result.map_err(|e| {
            if e.as_db_error().is_none() || self.session.client.is_closed() {
                self.session.poison();
            }
            pg_error("query", &e)
        })
    }
}

impl Drop for Use<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.session.poison();
        }
    }
}

struct Statements {
    get: Statement,
    /// `key >= $1 AND key < $2`, ascending, `LIMIT $3`.
    scan_bounded: Statement,
    /// `key >= $1`, ascending, `LIMIT $2`.
    scan_open: Statement,
    scan_bounded_rev: Statement,
    scan_open_rev: Statement,
    /// Deletes `$1`, upserts `$2` → `$3`.
    commit: Statement,
    /// Upserts `$1` → `$2`: a commit that deletes nothing. Its own statement: PostgreSQL
    /// caches a generic plan for a prepared statement, and one made while the table was small
    /// and not yet analyzed deletes by a sequential scan even when `$1` is empty.
    commit_upserts: Statement,
    /// As `commit`, if the shards `$4` hold the terms `$5`; returns the stale shards.
    commit_fenced: Statement,
    /// As `commit_upserts` (`$1` → `$2`), if the shards `$3` hold the terms `$4`.
    commit_fenced_upserts: Statement,
    /// Records term `$2` for shard `$1` if newer; returns it if so.
    claim: Statement,
    /// The term recorded for shard `$1`.
    term: Statement,
    /// Distinct prefixes of length `$3` in `key >= $1 AND key < $2`.
    prefixes_bounded: Statement,
    prefixes_open: Statement,
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or the
    /// `key=value` form), creates the tables if needed, and takes the schema's lock.
    ///
    /// TLS is as libpq's `sslmode` (`disable`, `allow`, `prefer` — the default —, `require`,
    /// `verify-ca`, `verify-full`), `sslrootcert` (a PEM file of CA certificates, or
    /// `system`), `sslcert` and `sslkey` ask: for a server on another machine,
    /// `postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem`.
    ///
    /// # Errors
    ///
    /// - [`Config`](crate::ErrorKind::Config): a malformed URL (an unknown `sslmode`, a
    ///   certificate file that cannot be read or used among them), a server older than
    ///   PostgreSQL 14, a schema written by a newer version of this crate, or another runtime
    ///   holding the schema's lock;
    /// - [`Storage`](crate::ErrorKind::Storage): the server cannot be reached, refuses the
    ///   login or the TLS handshake (the message says why: `UnknownIssuer`, `not valid for
    ///   name`, ...), or fails to create the tables.
    pub fn connect(url: &str) -> Result<PostgresBackend> {
        PostgresBackend::connect_with(url, PostgresOptions::default())
    }

    /// [`connect`](Self::connect) with explicit [`PostgresOptions`].
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresBackend> {
        let (url, tls) = super::pg_tls::split(url)?;
        let tls = tls.connector()?;
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| {
            Error::config(format!(
                "malformed PostgreSQL URL ({e}); expected postgres://user:password@host:port/database"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("durable");
        }
        let tokio = ClientRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("durable-postgres")
                .enable_all()
                .build()
                .map_err(|e| Error::storage(format!("cannot start the PostgreSQL client: {e}")))?,
        ));
        let handle = match &tokio.0 {
            Some(rt) => rt.handle().clone(),
            None => return Err(Error::internal("the PostgreSQL client has no runtime")),
        };
        let opening = async move {
            let (schema, database) = ensure_schema(&config, &tls, &options).await?;
            let kv = format!("{}.durable_kv", quote_ident(&schema));
            let shards = format!("{}.durable_shards", quote_ident(&schema));
            let lock_key = lock_key(&database, &schema);
            Ok(Inner {
                config,
                tls,
                handle: tokio::runtime::Handle::current(),
                options,
                schema,
                kv,
                shards,
                lock_key,
                commit: tokio::sync::Mutex::default(),
                reads: tokio::sync::Mutex::default(),
                refence: Arc::new(AtomicBool::new(false)),
                closed: AtomicBool::new(false),
            })
        };
        let backend_inner = wait(&handle, opening)?;
        let backend = PostgresBackend {
            inner: Arc::new(backend_inner),
            _tokio: tokio,
            handle,
        };
        // The commit session takes the lock now: a second runtime is refused at open.
        let inner = backend.inner.clone();
        backend.run(async move { inner.commit_session().await.map(|_| ()) })?;
        Ok(backend)
    }

    /// The schema the tables are in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Runs `op` on the backend's runtime within the operation deadline and waits for it.
    fn run<T: Send + 'static>(
        &self,
        op: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        wait(&self.handle, self.within_deadline(op))
    }

    /// `op`, refused once the backend is closed, and failed at the operation deadline.
    fn within_deadline<T>(
        &self,
        op: impl Future<Output = Result<T>> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let closed = self.inner.closed.load(Ordering::Acquire);
        let timeout = self.inner.options.timeout;
        async move {
            if closed {
                return Err(Error::storage("the PostgreSQL backend is closed"));
            }
            match tokio::time::timeout(timeout, op).await {
                Ok(result) => result,
                Err(_) => Err(deadline_error(timeout)),
            }
        }
    }

    fn fetch_page(&self, page: Page) -> Result<Vec<Entry>> {
        let inner = self.inner.clone();
        self.run(async move { inner.scan_page(page).await })
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
    }
}

/// Runs `op` on `handle` and blocks the calling thread (any thread, in a runtime or not)
/// until it ends.
fn wait<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    op: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(op.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(Error::storage("the PostgreSQL client stopped")))
}

fn deadline_error(timeout: Duration) -> Error {
    Error::storage(format!(
        "PostgreSQL did not answer within {timeout:?}; the connection was dropped and the next \
         operation reconnects"
    ))
}

fn pg_error(what: &str, e: &tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::storage(format!(
            "PostgreSQL {what} failed: {} ({}: {})",
            db.message(),
            db.severity(),
            db.code().code()
        )),
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            Error::storage(format!("PostgreSQL {what} failed: {message}"))
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory lock's key: a stable 64-bit hash (FNV-1a) of the database and the schema.
fn lock_key(database: &str, schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "durable\0"
        .bytes()
        .chain(database.bytes())
        .chain([0])
        .chain(schema.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Connects; the connection's task runs on `handle` (the backend's own runtime).
async fn open_session(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    handle: &tokio::runtime::Handle,
) -> Result<(Client, JoinHandle<()>)> {
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| pg_error("connect", &e))?;
    let connection = handle.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok((client, connection))
}

/// Creates the tables if needed and checks their version; returns the current schema and
/// database.
async fn ensure_schema(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    options: &PostgresOptions,
) -> Result<(String, String)> {
    let setup = async {
        let (mut client, connection) =
            open_session(config, tls, &tokio::runtime::Handle::current()).await?;
        let _close = AbortOnDrop::new(connection);
        let row = client
            .query_one(
                "SELECT current_schema(), current_database(), \
                 current_setting('server_version_num')::int",
                &[],
            )
            .await
            .map_err(|e| pg_error("open", &e))?;
        let schema: Option<String> = row.get(0);
        let database: String = row.get(1);
        let version: i32 = row.get(2);
        if version < MIN_SERVER_VERSION {
            return Err(Error::config(format!(
                "PostgreSQL {version} is too old: the backend needs PostgreSQL 14 or newer"
            )));
        }
        let Some(schema) = schema else {
            return Err(Error::config(
                "the connection has no current schema: no schema of its search_path exists; \
                 create one (CREATE SCHEMA ...) or fix search_path",
            ));
        };
        let q = quote_ident(&schema);
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("open", &e))?;
        // Two runtimes creating the tables at once would collide: serialize them.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key(&database, &format!("{schema}\0setup"))],
        )
        .await
        .map_err(|e| pg_error("open", &e))?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {q}.durable_meta (name text PRIMARY KEY, value bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS {q}.durable_kv (key bytea PRIMARY KEY, value bytea NOT NULL);
             CREATE TABLE IF NOT EXISTS {q}.durable_shards (shard int PRIMARY KEY, term bigint NOT NULL);"
        ))
        .await
        .map_err(|e| pg_error("create the tables", &e))?;
        let stored: Option<i64> = tx
            .query_opt(
                &format!("SELECT value FROM {q}.durable_meta WHERE name = 'schema_version'"),
                &[],
            )
            .await
            .map_err(|e| pg_error("open", &e))?
            .map(|row| row.get(0));
        match stored {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::config(format!(
                    "schema {schema:?} holds durable tables of schema version {v}, newer than \
                     this build's {SCHEMA_VERSION}: upgrade durable-runtime"
                )));
            }
            Some(_) => {}
            None => {
                tx.batch_execute(&format!(
                    "INSERT INTO {q}.durable_meta (name, value) VALUES ('schema_version', {SCHEMA_VERSION});
                     CREATE OR REPLACE VIEW {q}.durable_data AS
                       SELECT encode(substring(key FROM 2 FOR 32), 'hex') AS object_id,
                              convert_from(substring(key FROM 34), 'UTF8') AS key,
                              value
                       FROM {q}.durable_kv
                       WHERE key >= '\\x01'::bytea AND key < '\\x02'::bytea;
                     CREATE OR REPLACE VIEW {q}.durable_objects AS
                       SELECT encode(substring(key FROM 2 FOR 32), 'hex') AS object_id,
                              convert_from(value, 'UTF8') AS name
                       FROM {q}.durable_kv
                       WHERE key >= '\\x04'::bytea AND key < '\\x05'::bytea;"
                ))
                .await
                .map_err(|e| pg_error("create the tables", &e))?;
            }
        }
        tx.commit().await.map_err(|e| pg_error("open", &e))?;
        Ok((schema, database))
    };
    match tokio::time::timeout(options.timeout, setup).await {
        Ok(result) => result,
        Err(_) => Err(Error::storage(format!(
            "PostgreSQL did not answer within {:?} while opening",
            options.timeout
        ))),
    }
}

/// Aborts a connection's task (closing its socket) when dropped, unless disarmed.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    fn new(task: JoinHandle<()>) -> Self {
        AbortOnDrop(Some(task))
    }

    fn disarm(mut self) -> JoinHandle<()> {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// One page of a scan: `key >= lower` and, if set, `key < upper`.
struct Page {
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    reverse: bool,
    limit: i64,
}

impl Page {
    /// The page of a [`RangeRead`].
    fn first(range: &RangeRead<'_>) -> Page {
        Page {
            lower: range.start.to_vec(),
            upper: range.end.map(<[u8]>::to_vec),
            reverse: false,
            limit: i64::try_from(range.limit).unwrap_or(i64::MAX),
        }
    }
}

impl Inner {
    async fn prepare(
        &self,
        client: &Client,
    ) -> std::result::Result<Statements, tokio_postgres::Error> {
        let kv = &self.kv;
        let shards = &self.shards;
        let scan = |cond: &str, order: &str, limit: &str| {
            format!("SELECT key, value FROM {kv} WHERE {cond} ORDER BY key {order} LIMIT {limit}")
        };
        let prefixes = |cond: &str, len: &str| {
            format!(
                "SELECT DISTINCT substring(key FROM 1 FOR {len}) AS p FROM {kv} \
                 WHERE {cond} AND length(key) >= {len} ORDER BY p"
            )
        };
        Ok(Statements {
            get: client
                .prepare(&format!("SELECT value FROM {kv} WHERE key = $1"))
                .await?,
            scan_bounded: client
                .prepare(&scan("key >= $1 AND key < $2", "ASC", "$3"))
                .await?,
            scan_open: client.prepare(&scan("key >= $1", "ASC", "$2")).await?,
            scan_bounded_rev: client
                .prepare(&scan("key >= $1 AND key < $2", "DESC", "$3"))
                .await?,
            scan_open_rev: client.prepare(&scan("key >= $1", "DESC", "$2")).await?,
            commit: client
                .prepare(&format!(
                    "WITH deleted AS (DELETE FROM {kv} WHERE key = ANY($1::bytea[])) \
                     INSERT INTO {kv} (key, value) \
                     SELECT * FROM unnest($2::bytea[], $3::bytea[]) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ))
                .await?,
            commit_upserts: client
                .prepare(&format!(
                    "INSERT INTO {kv} (key, value) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ))
                .await?,
            commit_fenced_upserts: client
                .prepare(&format!(
                    "WITH held AS (SELECT shard, term FROM {shards} \
                                   WHERE shard = ANY($3::int[]) FOR SHARE), \
                     stale AS (SELECT f.shard FROM unnest($3::int[], $4::bigint[]) AS f(shard, term) \
                               WHERE NOT EXISTS (SELECT 1 FROM held h \
                                                 WHERE h.shard = f.shard AND h.term = f.term)), \
                     inserted AS (INSERT INTO {kv} (key, value) \
                                  SELECT k, v FROM unnest($1::bytea[], $2::bytea[]) AS u(k, v) \
                                  WHERE NOT EXISTS (SELECT 1 FROM stale) \
                                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                     SELECT shard FROM stale"
                ))
                .await?,
            // The shards' rows are read FOR SHARE: a claim's update of a term waits for this
            // commit, and this commit sees a claim committed before it (in READ COMMITTED, a
            // locking read re-reads the newest version of its rows).
            commit_fenced: client
                .prepare(&format!(
                    "WITH held AS (SELECT shard, term FROM {shards} \
                                   WHERE shard = ANY($4::int[]) FOR SHARE), \
                     stale AS (SELECT f.shard FROM unnest($4::int[], $5::bigint[]) AS f(shard, term) \
                               WHERE NOT EXISTS (SELECT 1 FROM held h \
                                                 WHERE h.shard = f.shard AND h.term = f.term)), \
                     deleted AS (DELETE FROM {kv} WHERE key = ANY($1::bytea[]) \
                                 AND NOT EXISTS (SELECT 1 FROM stale)), \
                     inserted AS (INSERT INTO {kv} (key, value) \
                                  SELECT k, v FROM unnest($2::bytea[], $3::bytea[]) AS u(k, v) \
                                  WHERE NOT EXISTS (SELECT 1 FROM stale) \
                                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                     SELECT shard FROM stale"
                ))
                .await?,
            claim: client
                .prepare(&format!(
                    "INSERT INTO {shards} (shard, term) VALUES ($1, $2) \
                     ON CONFLICT (shard) DO UPDATE SET term = EXCLUDED.term \
                     WHERE {shards}.term <= EXCLUDED.term RETURNING term"
                ))
                .await?,
            term: client
                .prepare(&format!("SELECT term FROM {shards} WHERE shard = $1"))
                .await?,
            prefixes_bounded: client
                .prepare(&prefixes("key >= $1 AND key < $2", "$3::int"))
                .await?,
            prefixes_open: client.prepare(&prefixes("key >= $1", "$2::int")).await?,
        })
    }

    async fn new_session(
        &self,
        client: Client,
        connection: JoinHandle<()>,
        commits: bool,
    ) -> Result<Arc<Session>> {
        let statements = self
            .prepare(&client)
            .await
            .map_err(|e| pg_error("prepare", &e))?;
        Ok(Arc::new(Session {
            client,
            statements,
            healthy: AtomicBool::new(true),
            relaxed: AtomicBool::new(false),
            lost_commit: commits.then(|| self.refence.clone()),
            connection,
        }))
    }

    /// The commit session, connecting (and taking the lock) if there is none.
    async fn commit_session(&self) -> Result<Arc<Session>> {
        let mut slot = self.commit.lock().await;
        if let Some(session) = &slot.session {
            if session.usable() {
                return Ok(session.clone());
            }
            // Lost: reads must wait for the next session's fence.
            self.refence.store(true, Ordering::Release);
        }
        slot.session = None;
        let (client, connection) = open_session(&self.config, &self.tls, &self.handle).await?;
        let connection = AbortOnDrop::new(connection);
        let me = client
            .query_one(
                "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| pg_error("open the commit session", &e))?;
        let me: (i32, String) = (me.get(0), me.get(1));
        if let Some((pid, started)) = slot.previous.clone() {
            // End the old server process first: a commit it still runs lands now or never.
            let wait_ms = i64::try_from(self.options.timeout.as_millis() / 2).unwrap_or(i64::MAX);
            client
                .query(
                    "SELECT pg_terminate_backend(pid, $3) FROM pg_stat_activity \
                     WHERE pid = $1 AND backend_start::text = $2",
                    &[&pid, &started, &wait_ms],
                )
                .await
                .map_err(|e| pg_error("end the previous commit session", &e))?;
        }
        if self.options.exclusive {
            // Taking the lock back after losing a session: the old server process may still
            // be on its way out (ended by us, by an operator, or by a restart) and hold it a
            // moment longer. Try for a while; at open, refuse at once.
            let patience = match slot.previous {
                Some(_) => self.options.timeout / 4,
                None => Duration::ZERO,
            };
            let started = tokio::time::Instant::now();
            let locked = loop {
                let locked: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&self.lock_key])
                    .await
                    .map_err(|e| pg_error("take the schema's lock", &e))?
                    .get(0);
                if locked || started.elapsed() >= patience {
                    break locked;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if !locked {
                let message = format!(
                    "another runtime holds schema {:?} of this PostgreSQL database (its advisory \
                     lock is taken): one runtime per database and schema; give each runtime its \
                     own schema with ?options=-csearch_path%3D<schema> in the URL",
                    self.schema
                );
                return Err(if slot.previous.is_some() {
                    Error::storage(message)
                } else {
                    Error::config(message)
                });
            }
        }
        // The session owns the connection task from here.
        let connection = connection.disarm();
        let session = self.new_session(client, connection, true).await?;
        slot.previous = Some(me);
        slot.session = Some(session.clone());
        self.refence.store(false, Ordering::Release);
        Ok(session)
    }

    /// The read session, connecting if there is none. After the commit session was lost,
    /// waits for a new one first (see the module documentation).
    async fn read_session(&self) -> Result<Arc<Session>> {
        if self.refence.load(Ordering::Acquire) {
            self.commit_session().await?;
        }
        let mut slot = self.reads.lock().await;
        if let Some(session) = &*slot {
            if session.usable() {
                return Ok(session.clone());
            }
        }
        *slot = None;
        let (client, connection) = open_session(&self.config, &self.tls, &self.handle).await?;
        let session = self.new_session(client, connection, false).await?;
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let session = self.read_session().await?;
        let using = Use::new(&session);
        let row = session
            .client
            .query_opt(&session.statements.get, &[&key])
            .await;
        Ok(using.finish(row)?.map(|row| row.get(0)))
    }

    async fn scan_page(&self, page: Page) -> Result<Vec<Entry>> {
        let session = self.read_session().await?;
        let using = Use::new(&session);
        let rows = Self::query_page(&session, &page).await;
        Ok(using
            .finish(rows)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    /// Several pages at once: the queries are pipelined on the read session, so they cost
    /// one round trip.
    async fn scan_pages(&self, pages: Vec<Page>) -> Result<Vec<Vec<Entry>>> {
        let session = self.read_session().await?;
        let using = Use::new(&session);
        let rows = futures_util::future::try_join_all(
            pages.iter().map(|page| Self::query_page(&session, page)),
        )
        .await;
        Ok(using
            .finish(rows)?
            .into_iter()
            .map(|rows| {
                rows.into_iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect()
            })
            .collect())
    }

    async fn query_page(
        session: &Session,
        page: &Page,
    ) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let s = &session.statements;
        match (&page.upper, page.reverse) {
            (Some(upper), false) => {
                session
                    .client
                    .query(&s.scan_bounded, &[&page.lower, upper, &page.limit])
                    .await
            }
            (Some(upper), true) => {
                session
                    .client
                    .query(&s.scan_bounded_rev, &[&page.lower, upper, &page.limit])
                    .await
            }
            (None, false) => {
                session
                    .client
                    .query(&s.scan_open, &[&page.lower, &page.limit])
                    .await
            }
            (None, true) => {
                session
                    .client
                    .query(&s.scan_open_rev, &[&page.lower, &page.limit])
                    .await
            }
        }
    }

    async fn prefixes(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        len: i32,
    ) -> Result<Vec<Vec<u8>>> {
        let session = self.read_session().await?;
        let using = Use::new(&session);
        let s = &session.statements;
        let rows = match &end {
            Some(end) => {
                session
                    .client
                    .query(&s.prefixes_bounded, &[&start, end, &len])
                    .await
            }
            None => {
                session
                    .client
                    .query(&s.prefixes_open, &[&start, &len])
                    .await
            }
        };
        Ok(using
            .finish(rows)?
            .into_iter()
            .map(|row| row.get(0))
            .collect())
    }

    async fn commit(
        &self,
        durability: Durability,
        deletes: Vec<Vec<u8>>,
        keys: Vec<Vec<u8>>,
        values: Vec<Vec<u8>>,
        fences: Vec<Fence>,
    ) -> Result<()> {
        let session = self.commit_session().await?;
        let relaxed = durability == Durability::Buffered;
        if session.relaxed.load(Ordering::Acquire) != relaxed {
            let using = Use::new(&session);
            let set = session
                .client
                .batch_execute(if relaxed {
                    "SET synchronous_commit TO off"
                } else {
                    "SET synchronous_commit TO DEFAULT"
                })
                .await;
            using.finish(set)?;
            session.relaxed.store(relaxed, Ordering::Release);
        }
        let using = Use::new(&session);
        let statements = &session.statements;
        if fences.is_empty() {
            let done = if deletes.is_empty() {
                let upserts = &statements.commit_upserts;
                session.client.execute(upserts, &[&keys, &values]).await
            } else {
                let commit = &statements.commit;
                session
                    .client
                    .execute(commit, &[&deletes, &keys, &values])
                    .await
            };
            return using.finish(done).map(|_| ());
        }
        let (shards, terms) = fence_arrays(&fences)?;
        let done = if deletes.is_empty() {
            let upserts = &statements.commit_fenced_upserts;
            session
                .client
                .query(upserts, &[&keys, &values, &shards, &terms])
                .await
        } else {
            let commit = &statements.commit_fenced;
            session
                .client
                .query(commit, &[&deletes, &keys, &values, &shards, &terms])
                .await
        };
        let stale: Vec<i32> = using.finish(done)?.iter().map(|row| row.get(0)).collect();
        if stale.is_empty() {
            Ok(())
        } else {
            Err(Error::storage(format!(
                "fenced: this node's term for shard(s) {stale:?} is stale (another node owns \
                 them now); the commit was refused and nothing of it stored"
            )))
        }
    }

    async fn claim_shard(&self, fence: Fence) -> Result<()> {
        let session = self.commit_session().await?;
        let (shard, term) = fence_values(fence)?;
        let using = Use::new(&session);
        let claimed = session
            .client
            .query_opt(&session.statements.claim, &[&shard, &term])
            .await;
        if using.finish(claimed)?.is_some() {
            return Ok(());
        }
        let using = Use::new(&session);
        let held = session
            .client
            .query_opt(&session.statements.term, &[&shard])
            .await;
        let held: Option<i64> = using.finish(held)?.map(|row| row.get(0));
        Err(Error::storage(format!(
            "shard {shard} cannot be claimed with term {term}: term {} is recorded (another \
             node claimed it since)",
            held.map_or_else(|| "none".to_owned(), |t| t.to_string())
        )))
    }
}

fn fence_values(fence: Fence) -> Result<(i32, i64)> {
    let shard = i32::try_from(fence.shard)
        .map_err(|_| Error::invalid_argument(format!("shard {} out of range", fence.shard)))?;
    let term = i64::try_from(fence.term)
        .map_err(|_| Error::invalid_argument(format!("term {} out of range", fence.term)))?;
    Ok((shard, term))
}

fn fence_arrays(fences: &[Fence]) -> Result<(Vec<i32>, Vec<i64>)> {
    let mut shards = Vec::with_capacity(fences.len());
    let mut terms = Vec::with_capacity(fences.len());
    for fence in fences {
        let (shard, term) = fence_values(*fence)?;
        shards.push(shard);
        terms.push(term);
    }
    Ok((shards, terms))
}

/// Lower bound → inclusive key; upper bound → exclusive key (`None`: unbounded). The byte
/// successor of `k` (the least key above it) is `k ‖ 0x00`.
fn normalize(start: Bound<&[u8]>, end: Bound<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    let successor = |k: &[u8]| {
        let mut s = Vec::with_capacity(k.len() + 1);
        s.extend_from_slice(k);
        s.push(0);
        s
    };
    let lower = match start {
        Bound::Included(k) => k.to_vec(),
        Bound::Excluded(k) => successor(k),
        Bound::Unbounded => Vec::new(),
    };
    let upper = match end {
        Bound::Included(k) => Some(successor(k)),
        Bound::Excluded(k) => Some(k.to_vec()),
        Bound::Unbounded => None,
    };
    (lower, upper)
}

/// The first page of a scan is small (a caller often takes one entry); later ones grow.
const FIRST_PAGE: i64 = 16;
const LAST_PAGE: i64 = 1024;
/// About how many bytes of rows a scan's later pages hold (values can be megabytes each).
const PAGE_BYTES: usize = 4 << 20;

struct PgScan<'a> {
    backend: &'a PostgresBackend,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    reverse: bool,
    limit: i64,
    buffered: VecDeque<Entry>,
    done: bool,
}

impl Iterator for PgScan<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.buffered.is_empty() && !self.done {
            if self.upper.as_ref().is_some_and(|u| *u <= self.lower) {
                self.done = true;
                return None;
            }
            let page = Page {
                lower: self.lower.clone(),
                upper: self.upper.clone(),
                reverse: self.reverse,
                limit: self.limit,
            };
            match self.backend.fetch_page(page) {
                Ok(rows) => {
                    if (rows.len() as i64) < self.limit {
                        self.done = true;
                    }
                    if let Some((last, _)) = rows.last() {
                        if self.reverse {
                            self.upper = Some(last.clone());
                        } else {
                            self.lower = last.clone();
                            self.lower.push(0);
                        }
                    }
                    // Grow the pages, but keep each to about PAGE_BYTES of rows like these.
                    let bytes: usize = rows.iter().map(|(k, v)| k.len() + v.len()).sum();
                    let per_row = (bytes / rows.len().max(1)).max(1);
                    let fit = i64::try_from(PAGE_BYTES / per_row).unwrap_or(LAST_PAGE);
                    self.limit = (self.limit * 4).min(LAST_PAGE).min(fit).max(1);
                    self.buffered = rows.into();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

impl Backend for PostgresBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let inner = self.inner.clone();
        let key = key.to_vec();
        self.run(async move { inner.get(key).await })
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>> {
        let (lower, upper) = normalize(start, end);
        Ok(Box::new(PgScan {
            backend: self,
            lower,
            upper,
            reverse,
            limit: FIRST_PAGE,
            buffered: VecDeque::new(),
            done: false,
        }))
    }

    fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
        self.commit(batch, Durability::Fsync)
    }

    fn sync(&self, _durability: Durability) -> Result<()> {
        // Every commit is durable when it returns, as the server's synchronous_commit says
        // (or, for `Durability::Buffered`, committed with synchronous_commit off).
        Ok(())
    }

    fn commit(&self, batch: &[Write<'_>], durability: Durability) -> Result<()> {
        self.commit_fenced(batch, durability, &[])
    }

    fn commit_fenced(
        &self,
        batch: &[Write<'_>],
        durability: Durability,
        fences: &[Fence],
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut deletes = Vec::new();
        let mut keys = Vec::with_capacity(batch.len());
        let mut values = Vec::with_capacity(batch.len());
        for write in batch {
            match write.value {
                Some(value) => {
                    keys.push(write.key.to_vec());
                    values.push(value.to_vec());
                }
                None => deletes.push(write.key.to_vec()),
            }
        }
        let inner = self.inner.clone();
        let fences = fences.to_vec();
        self.run(async move {
            inner
                .commit(durability, deletes, keys, values, fences)
                .await
        })
    }

    fn claim_shard(&self, fence: Fence) -> Result<()> {
        let inner = self.inner.clone();
        self.run(async move { inner.claim_shard(fence).await })
    }

    fn object_cache_bytes(&self) -> Option<usize> {
        Some(self.inner.options.object_cache_bytes)
    }

    fn scan_each(&self, ranges: &[RangeRead<'_>]) -> Result<Vec<Vec<Entry>>> {
        let pages = ranges.iter().map(Page::first).collect();
        let inner = self.inner.clone();
        self.run(async move { inner.scan_pages(pages).await })
    }

    fn scan_each_async(&self, ranges: &[RangeRead<'_>]) -> Option<ScanEachFuture> {
        let pages = ranges.iter().map(Page::first).collect();
        let inner = self.inner.clone();
        // On the backend's runtime, beside the connection (a connection opened on the
        // caller's runtime would depend on it): one hand-off there and one back, where a
        // blocking read costs a blocking thread and two more.
        let read = self
            .handle
            .spawn(self.within_deadline(async move { inner.scan_pages(pages).await }));
        Some(Box::pin(async move {
            read.await
                .unwrap_or_else(|_| Err(Error::storage("the PostgreSQL client stopped")))
        }))
    }

    fn key_prefixes(&self, start: &[u8], end: Option<&[u8]>, len: usize) -> Result<Vec<Vec<u8>>> {
        let len = i32::try_from(len)
            .map_err(|_| Error::invalid_argument("key prefix length out of range"))?;
        let inner = self.inner.clone();
        let (start, end) = (start.to_vec(), end.map(<[u8]>::to_vec));
        self.run(async move { inner.prefixes(start, end, len).await })
    }

    fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let inner = self.inner.clone();
        let timeout = self.inner.options.timeout;
        // Release the lock before closing the connection: the server ends a session some time
        // after its socket closes, and a runtime opening next must not find the lock held.
        let released = wait(&self.handle, async move {
            let session = inner.commit.lock().await.session.take();
            *inner.reads.lock().await = None;
            let Some(session) = session else {
                return Ok(());
            };
            if !inner.options.exclusive || !session.usable() {
                return Ok(());
            }
            let key = inner.lock_key;
            let unlock = async {
                session
                    .client
                    .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
            };
            match tokio::time::timeout(timeout, unlock).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(pg_error("release the schema's lock", &e)),
                Err(_) => Err(Error::storage(
                    "PostgreSQL did not answer while releasing the schema's lock",
                )),
            }
        });
        if let Err(e) = released {
            // The lock goes with the session anyway, once the server sees it closed.
            tracing::warn!(error = %e, "closing the PostgreSQL backend");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_normalize_to_an_inclusive_lower_and_exclusive_upper_key() {
        assert_eq!(
            normalize(Bound::Excluded(b"ab"), Bound::Included(b"c")),
            (b"ab\0".to_vec(), Some(b"c\0".to_vec()))
        );
        assert_eq!(
            normalize(Bound::Unbounded, Bound::Unbounded),
            (Vec::new(), None)
        );
        assert_eq!(
            normalize(Bound::Included(b"x"), Bound::Excluded(b"y")),
            (b"x".to_vec(), Some(b"y".to_vec()))
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn the_lock_key_depends_on_database_and_schema() {
        assert_ne!(lock_key("db", "a"), lock_key("db", "b"));
        assert_ne!(lock_key("db1", "a"), lock_key("db", "1a"));
        assert_eq!(lock_key("db", "a"), lock_key("db", "a"));
    }

    #[test]
    fn a_malformed_url_is_a_config_error() {
        let err = PostgresBackend::connect("postgres://a@b:notaport/db").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
        assert!(
            err.to_string().contains("malformed PostgreSQL URL"),
            "{err}"
        );
    }
}
