//! A source that changed since it was listed (a 412) to a version ferry has copied already:
//! the copy the ledger recorded of it. It must not mark an object copied that has no such copy.

use rusqlite::{params, Connection, OptionalExtension};

use super::State;

/// The destination ETag of ferry's recorded copy of the object, when that
/// copy is of this very source version (its ETag and size).
pub fn copy_of_version(
    conn: &Connection,
    object_id: i64,
    source_etag: &str,
    size: u64,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT dest_etag FROM copies WHERE object_id = ?1 AND source_etag = ?2 AND size = ?3",
        params![object_id, source_etag, size as i64],
        |r| r.get(0),
    )
    .optional()
}

/// The destination still holds ferry's copy of the source's current version
/// (a HEAD showed it): the object is copied, without a byte sent. Returns
/// whether it moved; it does not when the copy is of another version.
pub fn record_copy_held(
    conn: &Connection,
    object_id: i64,
    source_etag: &str,
) -> rusqlite::Result<bool> {
    let moved = conn.execute(
        &(State::Copied.move_sql(", last_error = NULL")
            + " AND source_etag = ?2 AND recopy_approved = 0
                AND EXISTS (SELECT 1 FROM copies c WHERE c.object_id = ?1 AND c.source_etag = ?2)"),
        params![object_id, source_etag],
    )?;
    Ok(moved == 1)
}
