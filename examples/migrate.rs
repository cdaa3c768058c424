//! Moves everything a runtime stored to another storage backend, and checks the copy:
//!
//! ```text
//! cargo run --example migrate -- --from-data-dir ./data --to-data-dir ./data2
//! cargo run --example migrate -- --from-data-dir ./data --to-postgres postgres://u:p@host/db
//! cargo run --example migrate -- --from-postgres postgres://u:p@host/db --to-data-dir ./data
//! ```
//!
//! - `--from-data-dir DIR` or `--from-postgres URL`: where the data is now;
//! - `--to-data-dir DIR` or `--to-postgres URL`: where it goes. It must be empty: a data
//!   directory that does not exist yet is created.
//!
//! Stop the runtime first: nothing may write to either side while they are copied. (A data
//! directory or a PostgreSQL schema in use by a runtime is refused: the runtime holds its
//! lock.) A PostgreSQL side is the URL's database and schema (the first existing schema of
//! its `search_path`, `public` by default); the tables are created if missing. A source that
//! holds nothing (a mistyped URL or directory) is refused.
//!
//! It copies every key of every object (data, alarms, names) with
//! `durable_runtime::migrate::copy`, compares both sides key by key with `migrate::verify`,
//! and prints what it moved: `copied 12 objects, 345 keys, 6789 bytes from ... to ...`.
//! Exit status 0 then; 1 with the error on stderr if anything failed or differs (empty the
//! destination before trying again); 2 for bad flags. Then point the runtime at the
//! destination. To move back, swap the sides.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use durable_examples::cli::{init_logs, redact};
use durable_runtime::{migrate, Backend, FjallBackend, PostgresBackend};

const USAGE: &str = "usage: migrate (--from-data-dir DIR | --from-postgres URL) \
                     (--to-data-dir DIR | --to-postgres URL)\n";

/// One side of the move.
enum Store {
    DataDir(PathBuf),
    Postgres(String),
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::DataDir(dir) => write!(f, "data directory {}", dir.display()),
            Store::Postgres(url) => write!(f, "PostgreSQL database {}", redact(url)),
        }
    }
}

/// The two sides, or `None` for `--help`.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<(Store, Store)>, String> {
    let (mut from, mut to) = (None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let (slot, side) = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--from-data-dir" | "--from-postgres" => (&mut from, "source"),
            "--to-data-dir" | "--to-postgres" => (&mut to, "destination"),
            _ => return Err(format!("unknown argument `{flag}`")),
        };
        let value = inline
            .or_else(|| args.next())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("`{flag}` needs a value"))?;
        if slot.is_some() {
            return Err(format!("give one {side}, not two"));
        }
        *slot = Some(match flag.ends_with("-data-dir") {
            true => Store::DataDir(value.into()),
            false => Store::Postgres(value),
        });
    }
    match (from, to) {
        (Some(from), Some(to)) => Ok(Some((from, to))),
        (None, _) => Err("give the source: `--from-data-dir DIR` or `--from-postgres URL`".into()),
        (_, None) => Err("give the destination: `--to-data-dir DIR` or `--to-postgres URL`".into()),
    }
}

fn open(store: &Store, source: bool) -> Result<Box<dyn Backend>, String> {
    let role = if source { "source" } else { "destination" };
    match store {
        Store::DataDir(dir) => {
            // Opening creates a missing directory: for the source, that is a typo.
            if source && !is_data_dir(dir) {
                return Err(format!("the source {store} does not exist or is empty"));
            }
            let backend =
                FjallBackend::open(dir).map_err(|e| format!("cannot open the {role}: {e}"))?;
            Ok(Box::new(backend))
        }
        Store::Postgres(url) => {
            let backend = PostgresBackend::connect(url)
                .map_err(|e| format!("cannot open the {role} {store}: {e}"))?;
            Ok(Box::new(backend))
        }
    }
}

fn is_data_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

fn run(from: &Store, to: &Store) -> Result<migrate::Report, String> {
    if let (Store::DataDir(a), Store::DataDir(b)) = (from, to) {
        let same = a.canonicalize().ok().zip(b.canonicalize().ok());
        if same.is_some_and(|(a, b)| a == b) {
            return Err("the source and the destination are the same directory".into());
        }
    }
    let source = open(from, true)?;
    // A mistyped URL can name an empty database or schema: nothing to move is an error.
    let first_key = source
        .scan(Bound::Unbounded, Bound::Unbounded, false)
        .and_then(|mut keys| keys.next().transpose());
    match first_key {
        Ok(Some(_)) => {}
        Ok(None) => return Err(format!("the source {from} holds nothing to move")),
        Err(e) => return Err(format!("cannot read the {from}: {e}")),
    }
    let destination = open(to, false)?;
    let copied = migrate::copy(&*source, &*destination)
        .map_err(|e| format!("copying from the {from} to the {to} failed: {e}"))?;
    let verified = migrate::verify(&*source, &*destination).map_err(|e| {
        format!(
            "verifying the copy failed (the first backend is the {from}, the second the {to}): {e}"
        )
    })?;
    if verified != copied {
        return Err(format!("copied {copied} but verified {verified}"));
    }
    source
        .close()
        .map_err(|e| format!("closing the {from} failed: {e}"))?;
    destination
        .close()
        .map_err(|e| format!("closing the {to} failed: {e}"))?;
    Ok(copied)
}

fn main() -> ExitCode {
    let (from, to) = match parse(std::env::args().skip(1)) {
        Ok(Some(sides)) => sides,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("migrate: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logs();
    match run(&from, &to) {
        Ok(report) => {
            println!("copied {report} from the {from} to the {to}; verified: both hold the same keys and values");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrate: {e}");
            ExitCode::FAILURE
        }
    }
}
