//! What a copy found at the destination without a ledger record may become: whether adoption is allowed, and which proofs failed.
//! It must not mark anything copied: `objects::record_adopted` does, once the bytes are proved.

use rusqlite::Connection;

/// Whether a destination object at the object's key may be adopted: the
/// ledger records no copy of it, or only one from before the ledger was
/// restored (ferry may have written a newer one the snapshot never heard of).
pub fn may_adopt(conn: &Connection, object_id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM copies c WHERE c.object_id = ?1
             AND c.copied_at >= COALESCE((SELECT MAX(restored_at) FROM restores), ''))",
        [object_id],
        |r| r.get(0),
    )
}

/// Whether this pair of ETags was already found not to prove adoptable.
pub fn adoption_refused(
    conn: &Connection,
    object_id: i64,
    (dest_etag, source_etag): (&str, &str),
) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM adoption_refusals
             WHERE object_id = ?1 AND dest_etag = ?2 AND source_etag = ?3)",
        rusqlite::params![object_id, dest_etag, source_etag],
        |r| r.get(0),
    )
}

/// Remembers that the object's destination copy (by ETag) did not prove to
/// be the source version's bytes (by ETag), and why.
pub fn record_adoption_refused(
    conn: &Connection,
    object_id: i64,
    (dest_etag, source_etag): (&str, &str),
    reason: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO adoption_refusals (object_id, dest_etag, source_etag, reason)
         VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![object_id, dest_etag, source_etag, reason],
    )?;
    Ok(())
}
