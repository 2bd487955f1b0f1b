//! The ledger: one SQLite file (WAL), both the work queue and the record of what
//! was meant and what arrived. Nothing outside this folder writes SQL.
//!
//! The schema lives in `schema.sql` and `migrations.rs`; the queries live by
//! idea: `objects.rs` (with `state.rs`), `uploads.rs`, `passes.rs`,
//! `cursors.rs`, `held.rs`, `intents.rs`, `tags.rs`, `audits.rs` (what `verify` reads back),
//! `snapshot.rs` (a consistent copy in one file), `archive.rs` (archived objects' restores), `events.rs` (what S3's event feed told, and the lag to each copy), `adoption.rs` (what a copy without a
//! record may become), and `catalog.rs` for the reports. Writes go through the one
//! [`Writer`] thread; `status` and the other readers open their own
//! read-only connections with [`open_reader`].

mod adoption;
mod archive;
mod audits;
mod catalog;
mod cursors;
mod events;
mod held;
mod intents;
mod migrations;
mod objects;
mod passes;
mod quality;
mod ranges;
mod snapshot;
mod state;
mod tags;
mod uploads;
mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use adoption::{adoption_refused, may_adopt, record_adoption_refused};
pub use archive::*;
pub use audits::*;
pub use catalog::*;
pub use cursors::*;
pub use events::*;
pub use held::*;
pub use intents::*;
pub use migrations::SCHEMA_VERSION;
pub use objects::*;
pub use passes::*;
pub use quality::*;
pub use ranges::*;
pub use snapshot::{check_snapshot, mark_restored, write_snapshot};
pub use state::State;
pub use tags::*;
pub use uploads::*;
pub use writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the ledger's folder {path}: {source}. Check that the path in `ledger` is writable")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the ledger {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the ledger {path} was written by a newer ferry (schema version {found}, this ferry knows up to {known}). Use the newer ferry, or point `ledger` at another file")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no ledger at {path}: run `ferry run` first to list and copy")]
    Missing { path: PathBuf },
    #[error("another ferry is already working on the ledger {path}{holder}. Stop it first, or give this one its own `ledger`")]
    Locked { path: PathBuf, holder: String },
    #[error("{}", describe_write_error(.0))]
    Sqlite(#[from] rusqlite::Error),
    #[error("the ledger writer has stopped")]
    WriterGone,
}

/// Opens (creating if needed) the ledger for writing and brings its schema up to date.
pub(crate) fn open_for_writing(path: &Path) -> Result<Connection, LedgerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    create_private(path).map_err(|e| LedgerError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let open_err = |e: rusqlite::Error| LedgerError::Open {
        path: path.to_owned(),
        message: describe_open_error(&e),
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    // WAL keeps readers (status) unblocked by the writer; NORMAL syncs at
    // checkpoints only. A kill -9 loses nothing committed; a power cut may
    // lose the last commits, which resume reconciles against the destination.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_err)?;
    migrations::migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens an existing ledger read-only, for `status`, `report` and `plan`.
pub fn open_reader(path: &Path) -> Result<Connection, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Missing {
            path: path.to_owned(),
        });
    }
    let open_err = |e: rusqlite::Error| LedgerError::Open {
        path: path.to_owned(),
        message: describe_open_error(&e),
    };
    crate::config::warn_if_shared(path, "the ledger");
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_err)?;
    migrations::check_readable(&conn, path)?;
    Ok(conn)
}

/// The ledger holds key names and sizes of a company's data: owner-only.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn describe_write_error(e: &rusqlite::Error) -> String {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        "the disk under the ledger is full: ferry stopped, and recorded nothing as done that was not. Free some space and run again".to_owned()
    } else {
        format!("ledger write failed: {e}")
    }
}

fn describe_open_error(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "it is not a SQLite file. Point `ledger` at a new path, or move this file away".to_owned()
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            "the file is corrupt. Move it away and start a new ledger; the destination keeps what arrived".to_owned()
        }
        _ => e.to_string(),
    }
}

pub(super) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod tests;
