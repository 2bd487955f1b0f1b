//! Multipart uploads and their parts: the upload id before any part is sent, a
//! part only once the store acknowledged it. It must not forget an upload that may be open.

use rusqlite::{params, Connection, OptionalExtension};

use super::State;
use crate::hashing::{ExpectedPart, PartCheck};

/// The multipart upload ferry started for an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    pub object_id: i64,
    pub upload_id: String,
    pub dest_bucket: String,
    pub key: String,
    pub source_etag: String,
    pub part_size: u64,
}

/// A part the destination acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRecord {
    pub object_id: i64,
    pub upload_id: String,
    pub part_number: u32,
    pub offset: u64,
    pub length: u64,
    pub etag: String,
    pub md5: String,
    /// The part's own SHA-256; empty when the part was hashed in order
    /// with the object (then `sha256_state` proves it).
    pub sha256: String,
    /// The whole object's SHA-256 state at the part's last byte.
    pub sha256_state: Option<String>,
    /// The whole object's MD5 state there, when the source's ETag is that MD5.
    pub md5_state: Option<String>,
    /// The part's own checksum in the algorithm the source stored (`CRC32C:base64`).
    pub checksum: Option<String>,
}

pub fn upload_of(conn: &Connection, object_id: i64) -> rusqlite::Result<Option<UploadRecord>> {
    conn.query_row(
        "SELECT object_id, upload_id, dest_bucket, key, source_etag, part_size FROM uploads WHERE object_id = ?1",
        [object_id],
        |r| {
            Ok(UploadRecord {
                object_id: r.get(0)?,
                upload_id: r.get(1)?,
                dest_bucket: r.get(2)?,
                key: r.get(3)?,
                source_etag: r.get(4)?,
                part_size: r.get::<_, i64>(5)? as u64,
            })
        },
    )
    .optional()
}

/// Intent before action: the upload id is stored before any part is sent.
pub fn record_upload_started(conn: &mut Connection, u: &UploadRecord) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO uploads (object_id, upload_id, dest_bucket, key, source_etag, part_size, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
        params![u.object_id, u.upload_id, u.dest_bucket, u.key, u.source_etag, u.part_size as i64],
    )?;
    tx.execute("DELETE FROM parts WHERE object_id = ?1", [u.object_id])?;
    // The create request's answer came: its intent is settled.
    tx.execute(
        "DELETE FROM upload_intents WHERE object_id = ?1",
        [u.object_id],
    )?;
    tx.execute(&State::Copying.move_sql(""), [u.object_id])?;
    tx.commit()
}

/// The upload is gone (completed elsewhere or aborted): forget it.
pub fn forget_upload(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    let upload: Option<String> = conn
        .query_row(
            "SELECT upload_id FROM uploads WHERE object_id = ?1",
            [object_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(upload_id) = upload {
        keep_as_intent(conn, object_id, &upload_id)?;
    }
    conn.execute("DELETE FROM uploads WHERE object_id = ?1", [object_id])?;
    Ok(())
}

/// An upload the store no longer knows may have completed unheard (a kill
/// or a lost answer during Complete): the object it made is ferry's. Its
/// ETag (from the parts' MD5s) and size stay as a write intent of the
/// object, so that a later write or removal of the key knows it as ferry's
/// own (`copy::guard`, `run::removal`) once the upload row is gone.
fn keep_as_intent(conn: &Connection, object_id: i64, upload_id: &str) -> rusqlite::Result<()> {
    let parts: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT md5, length FROM parts WHERE object_id = ?1 AND upload_id = ?2 ORDER BY part_number",
        )?
        .query_map(params![object_id, upload_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if parts.is_empty() {
        return Ok(());
    }
    let md5s: Vec<&str> = parts.iter().map(|(m, _)| m.as_str()).collect();
    let size: i64 = parts.iter().map(|(_, l)| l).sum();
    super::record_write_intent(conn, object_id, &etag_of_parts(&md5s), size as u64)
}

/// As [`keep_as_intent`], for the upload `upload_id` of whichever object.
fn keep_upload_as_intent(conn: &Connection, upload_id: &str) -> rusqlite::Result<()> {
    let object: Option<i64> = conn
        .query_row(
            "SELECT object_id FROM uploads WHERE upload_id = ?1",
            [upload_id],
            |r| r.get(0),
        )
        .optional()?;
    match object {
        Some(object_id) => keep_as_intent(conn, object_id, upload_id),
        None => Ok(()),
    }
}

fn etag_of_parts(md5s: &[&str]) -> String {
    let raw: Vec<[u8; 16]> = md5s
        .iter()
        .map(|m| {
            let mut b = [0u8; 16];
            let _ = hex::decode_to_slice(m, &mut b);
            b
        })
        .collect();
    crate::hashing::multipart_etag(&raw)
}

/// Completion after acknowledgement: called only once the store took the part.
pub fn record_part(conn: &Connection, p: &PartRecord) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO parts (object_id, upload_id, part_number, offset, length, etag, md5, sha256, sha256_state, md5_state, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            p.object_id,
            p.upload_id,
            p.part_number,
            p.offset as i64,
            p.length as i64,
            p.etag,
            p.md5,
            p.sha256,
            p.sha256_state,
            p.md5_state,
            p.checksum
        ],
    )?;
    Ok(())
}

/// The parts the ledger holds for an upload, in part order.
pub fn parts_of(
    conn: &Connection,
    object_id: i64,
    upload_id: &str,
) -> rusqlite::Result<Vec<PartRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT object_id, upload_id, part_number, offset, length, etag, md5, sha256, sha256_state, md5_state, checksum
         FROM parts WHERE object_id = ?1 AND upload_id = ?2 ORDER BY part_number",
    )?;
    let rows = stmt.query_map(params![object_id, upload_id], |r| {
        Ok(PartRecord {
            object_id: r.get(0)?,
            upload_id: r.get(1)?,
            part_number: r.get(2)?,
            offset: r.get::<_, i64>(3)? as u64,
            length: r.get::<_, i64>(4)? as u64,
            etag: r.get(5)?,
            md5: r.get(6)?,
            sha256: r.get(7)?,
            sha256_state: r.get(8)?,
            md5_state: r.get(9)?,
            checksum: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// The parts recorded for an object's copy, as they must read back.
pub fn copied_parts(conn: &Connection, object_id: i64) -> rusqlite::Result<Vec<ExpectedPart>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.part_number, p.length, p.sha256, p.sha256_state FROM parts p JOIN copies c ON c.object_id = p.object_id
         WHERE p.object_id = ?1 ORDER BY p.part_number",
    )?;
    let rows = stmt.query_map([object_id], |r| {
        Ok(ExpectedPart {
            number: r.get(0)?,
            length: r.get::<_, i64>(1)? as u64,
            check: PartCheck::from_columns(
                &r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?.as_deref(),
            ),
        })
    })?;
    rows.collect()
}

/// The ETag that the parts recorded for an object's upload make, if every
/// part the upload needs may be there: what the object holds when the upload
/// completed before the ledger heard of it.
pub fn etag_of_upload(conn: &Connection, object_id: i64) -> rusqlite::Result<Option<String>> {
    let md5s: Vec<String> = conn
        .prepare_cached(
            "SELECT p.md5 FROM parts p JOIN uploads u ON u.object_id = p.object_id AND u.upload_id = p.upload_id
             WHERE p.object_id = ?1 ORDER BY p.part_number",
        )?
        .query_map([object_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if md5s.is_empty() {
        return Ok(None);
    }
    let md5s: Vec<&str> = md5s.iter().map(String::as_str).collect();
    Ok(Some(etag_of_parts(&md5s)))
}

/// An upload ferry could not abort: kept, and tried again every pass.
pub fn record_abandoned(
    conn: &Connection,
    upload_id: &str,
    dest_bucket: &str,
    key: &str,
    error: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO abandoned_uploads (upload_id, dest_bucket, key, since, last_error)
         VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?4)
         ON CONFLICT (upload_id) DO UPDATE SET last_error = excluded.last_error",
        params![upload_id, dest_bucket, key, error],
    )?;
    keep_upload_as_intent(conn, upload_id)?;
    conn.execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])?;
    Ok(())
}

/// The upload is aborted, or already gone (`gone`: it may have completed
/// unheard, so its ETag stays known as ferry's): forget it everywhere.
pub fn forget_aborted(conn: &Connection, upload_id: &str, gone: bool) -> rusqlite::Result<()> {
    if gone {
        keep_upload_as_intent(conn, upload_id)?;
    }
    conn.execute(
        "DELETE FROM abandoned_uploads WHERE upload_id = ?1",
        [upload_id],
    )?;
    conn.execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])?;
    Ok(())
}

/// Uploads to abort: those ferry could not abort before, and those whose
/// object no longer wants them (deleted at the source, in conflict,
/// skipped): (upload id, destination bucket, key).
pub fn uploads_to_abort(conn: &Connection) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT upload_id, dest_bucket, key FROM abandoned_uploads
         UNION ALL
         SELECT u.upload_id, u.dest_bucket, u.key FROM uploads u JOIN objects o ON o.id = u.object_id
         WHERE o.state NOT IN ({})",
        State::sql_list(&[State::Listed, State::Copying, State::Failed])
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// Whether the ledger says ferry started this upload (it is recorded, or
/// kept to be aborted): only such an upload is ferry's to abort.
pub fn is_ferrys_upload(conn: &Connection, upload_id: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM uploads WHERE upload_id = ?1)
             OR EXISTS (SELECT 1 FROM abandoned_uploads WHERE upload_id = ?1)",
        [upload_id],
        |r| r.get(0),
    )
}
