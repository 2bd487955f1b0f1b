//! A consistent copy of the ledger in one file (a snapshot), the check that a snapshot brought back is whole, and its mark as restored.
//! It must not write to the live ledger: a snapshot is read from it; the check and the mark open only the snapshot.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{migrations::SCHEMA_VERSION, LedgerError};

/// Writes a snapshot of `ledger` to `into` (a path with no file yet).
/// `VACUUM INTO` reads in one transaction, so the snapshot is consistent
/// while ferry goes on writing (WAL); unlike the online backup API it does
/// not start over each time a writer commits, which a busy daemon always does.
pub fn write_snapshot(ledger: &Path, into: &Path) -> Result<(), LedgerError> {
    let open_err = |e: rusqlite::Error| LedgerError::Open {
        path: ledger.to_owned(),
        message: super::describe_open_error(&e),
    };
    let conn = Connection::open_with_flags(
        ledger,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(open_err)?;
    let into = into.to_str().ok_or_else(|| LedgerError::Open {
        path: into.to_owned(),
        message: "the snapshot's path is not UTF-8".into(),
    })?;
    conn.execute("VACUUM INTO ?1", [into])?;
    Ok(())
}

/// Whether the file at `path` is a whole ledger this ferry can use: SQLite's
/// integrity check passes and its schema is not newer. Its schema version.
pub fn check_snapshot(path: &Path) -> Result<i64, LedgerError> {
    let bad = |message: String| LedgerError::Open {
        path: path.to_owned(),
        message,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| bad(super::describe_open_error(&e)))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| bad(format!("it is not a whole SQLite file ({e})")))?;
    if verdict != "ok" {
        return Err(bad(format!("SQLite's integrity check says: {verdict}")));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew {
            path: path.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        return Err(bad("it holds no ferry ledger (schema version 0)".into()));
    }
    Ok(version)
}

/// Marks the ledger file at `path` (a snapshot about to take the ledger's
/// place) as restored from `snapshot` now.
pub fn mark_restored(path: &Path, snapshot: &str) -> Result<(), LedgerError> {
    let conn = Connection::open(path)?;
    // No WAL beside a file about to be renamed: the write goes in the file.
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS restores (restored_at TEXT NOT NULL, snapshot TEXT NOT NULL)",
    )?;
    conn.execute(
        "INSERT INTO restores (restored_at, snapshot) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1)",
        [snapshot],
    )?;
    Ok(())
}
