//! Schema versions: each entry of [`MIGRATIONS`] takes the ledger from version `i`
//! to `i + 1`. It must not change a migration that has shipped; add a new one.

use std::path::Path;

use rusqlite::Connection;

use super::LedgerError;

pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("v2_verify.sql"),
    include_str!("v3_deletions.sql"),
    include_str!("v4_totals.sql"),
    include_str!("v5_etag_note.sql"),
    include_str!("v6_safety.sql"),
    include_str!("v7_ranges.sql"),
    include_str!("v8_sha256_state.sql"),
    include_str!("v9_tag_count.sql"),
    include_str!("v10_md5_state.sql"),
    include_str!("v11_audits.sql"),
    include_str!("v12_intents.sql"),
    include_str!("v13_listed_as_of.sql"),
    include_str!("v14_adopted.sql"),
    include_str!("v15_restores.sql"),
    include_str!("v16_stored_checksums.sql"),
    include_str!("v17_archive_restores.sql"),
    include_str!("v18_events.sql"),
];

/// The version this ferry writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn version(conn: &Connection, path: &Path) -> Result<i64, LedgerError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| LedgerError::Open {
            path: path.to_owned(),
            message: super::describe_open_error(&e),
        })
}

/// The ledger's version, refusing one this ferry does not know.
fn known_version(conn: &Connection, path: &Path) -> Result<i64, LedgerError> {
    let found = version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Applies every migration the ledger lacks, each in its own transaction; a
/// new ledger is made at the current version in one.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let found = known_version(conn, path)?;
    if found == 0 {
        let tx = conn.transaction()?;
        for sql in MIGRATIONS {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = SCHEMA_VERSION, "ledger created");
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = i + 1, "ledger schema migrated");
    }
    Ok(())
}

/// Readers never migrate; they refuse a ledger they cannot understand.
pub(super) fn check_readable(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let found = known_version(conn, path)?;
    if found < SCHEMA_VERSION {
        return Err(LedgerError::Open {
            path: path.to_owned(),
            message: format!(
                "it has schema version {found}, older than this ferry's {SCHEMA_VERSION}: run `ferry run` once to migrate it"
            ),
        });
    }
    Ok(())
}
