//! What ferry is about to write, recorded before it writes: the bytes of a PUT,
//! and a CreateMultipartUpload with the uploads already there. It must not clear an intent before a copy is recorded.
//!
//! A write whose answer was lost (a kill, a dropped connection) lands all the
//! same; these rows let ferry recognise it afterwards as its own.

use rusqlite::{params, Connection, OptionalExtension};

/// The MD5 and size of bytes ferry is about to PUT for an object: until a
/// copy of the object is recorded, a key holding them holds ferry's write.
pub fn record_write_intent(
    conn: &Connection,
    object_id: i64,
    md5: &str,
    size: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO write_intents (object_id, md5, size, since)
         VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
        params![object_id, md5, size as i64],
    )?;
    Ok(())
}

/// Every outstanding write intent of an object: (MD5, size).
pub fn write_intents_of(conn: &Connection, object_id: i64) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT md5, size FROM write_intents WHERE object_id = ?1")?;
    let rows = stmt.query_map([object_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

/// A CreateMultipartUpload ferry is about to send for an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadIntent {
    pub object_id: i64,
    pub dest_bucket: String,
    pub key: String,
    /// The uploads of the key the destination listed just before.
    pub known_before: Vec<String>,
    /// Create requests sent since: each may have made an upload.
    pub attempts: u32,
    /// When the intent was recorded, and when the last request was sent
    /// (RFC 3339, the ledger's clock): an upload begun outside that window
    /// is not one of ferry's requests'.
    pub window: (String, Option<String>),
}

/// Before the first create request: what the key had then.
pub fn record_upload_intent(conn: &Connection, i: &UploadIntent) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO upload_intents (object_id, dest_bucket, key, known_before, attempts, since)
         VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
        params![i.object_id, i.dest_bucket, i.key, i.known_before.join("\n"), i.attempts],
    )?;
    Ok(())
}

/// Before each create request is sent.
pub fn count_upload_attempt(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE upload_intents SET attempts = attempts + 1,
           last_attempt = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE object_id = ?1",
        [object_id],
    )?;
    Ok(())
}

const UPLOAD_INTENT_COLUMNS: &str =
    "object_id, dest_bucket, key, known_before, attempts, since, last_attempt";

fn upload_intent(r: &rusqlite::Row) -> rusqlite::Result<UploadIntent> {
    let known: String = r.get(3)?;
    Ok(UploadIntent {
        object_id: r.get(0)?,
        dest_bucket: r.get(1)?,
        key: r.get(2)?,
        known_before: known
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        attempts: r.get(4)?,
        window: (r.get(5)?, r.get(6)?),
    })
}

pub fn upload_intent_of(
    conn: &Connection,
    object_id: i64,
) -> rusqlite::Result<Option<UploadIntent>> {
    conn.query_row(
        &format!("SELECT {UPLOAD_INTENT_COLUMNS} FROM upload_intents WHERE object_id = ?1"),
        [object_id],
        upload_intent,
    )
    .optional()
}

/// Every outstanding upload intent (for `ferry cleanup`).
pub fn upload_intents(conn: &Connection) -> rusqlite::Result<Vec<UploadIntent>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {UPLOAD_INTENT_COLUMNS} FROM upload_intents ORDER BY object_id"
    ))?;
    let rows = stmt.query_map([], upload_intent)?;
    rows.collect()
}

/// Upload intents of objects that will not be copied on (deleted at the
/// source, filtered, in conflict, skipped): no copy will settle them, so
/// the pass does (`copy::abort::abort_unwanted_uploads`).
pub fn unwanted_upload_intents(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT i.object_id FROM upload_intents i JOIN objects o ON o.id = i.object_id
         WHERE o.state NOT IN ({}) ORDER BY i.object_id",
        super::State::sql_list(&[
            super::State::Listed,
            super::State::Copying,
            super::State::Failed
        ])
    ))?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// The uploads the intent may have made are settled (aborted, recorded, or
/// left to a person).
pub fn forget_upload_intent(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM upload_intents WHERE object_id = ?1",
        [object_id],
    )?;
    Ok(())
}
