//! The ledger: one SQLite file (WAL) that is both the work queue and the
//! record of what was meant and what arrived.
//!
//! The schema lives in `schema.sql` and `migrations.rs`; every typed query
//! lives here. Writes go through the one [`Writer`] thread; `status` and the
//! other readers open their own read-only connections with [`open_reader`].

mod migrations;
mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

pub use migrations::SCHEMA_VERSION;
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

// ---- typed rows ----------------------------------------------------------

/// An object as a listing page reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: Option<String>,
    pub storage_class: Option<String>,
}

/// Storage classes whose objects must be restored before they can be read.
pub fn is_archived(storage_class: Option<&str>) -> bool {
    matches!(storage_class, Some("GLACIER" | "DEEP_ARCHIVE"))
}

/// An object waiting to be copied, with everything a worker needs.
#[derive(Clone, Debug)]
pub struct WorkItem {
    pub object_id: i64,
    pub source_bucket: String,
    pub dest_bucket: String,
    pub key: String,
    pub size: u64,
    pub source_etag: String,
    /// `copying` means an earlier attempt was cut off and may have left an
    /// upload behind.
    pub was_copying: bool,
    /// The ETag the destination gave ferry's last copy of this key, if any:
    /// the only object ferry may overwrite there.
    pub copied_etag: Option<String>,
    /// `verify --recopy` queued it: whatever the destination holds may go.
    pub recopy_approved: bool,
}

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
    pub sha256: String,
}

/// What a finished copy proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyRecord {
    pub object_id: i64,
    pub source_etag: String,
    pub dest_etag: String,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub part_size: Option<u64>,
    pub part_count: u32,
    /// Why the destination ETag differs from the source's, when it must.
    pub etag_note: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub objects_failed: u64,
    pub objects_verified: u64,
    pub bytes_verified: u64,
    pub objects_mismatched: u64,
    /// Not copied: the destination key holds what ferry did not write.
    pub objects_conflict: u64,
}

impl PassSummary {
    pub fn add(&mut self, o: &PassSummary) {
        self.objects_copied += o.objects_copied;
        self.bytes_copied += o.bytes_copied;
        self.objects_failed += o.objects_failed;
        self.objects_verified += o.objects_verified;
        self.bytes_verified += o.bytes_verified;
        self.objects_mismatched += o.objects_mismatched;
        self.objects_conflict += o.objects_conflict;
    }
}

/// A copied object to read back, with what its copy recorded.
#[derive(Clone, Debug)]
pub struct VerifyItem {
    pub object_id: i64,
    pub source_bucket: String,
    pub dest_bucket: String,
    pub key: String,
    pub size: u64,
    pub dest_etag: String,
    pub sha256: String,
    pub md5: String,
}

/// What reading a copy back found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub object_id: i64,
    pub ok: bool,
    pub reason: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub md5: Option<String>,
}

// ---- writes (called on the writer thread) --------------------------------

pub fn ensure_bucket(
    conn: &Connection,
    source: &str,
    destination: &str,
    prefix: &str,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO buckets (source, destination, prefix) VALUES (?1, ?2, ?3)
         ON CONFLICT (source, prefix, destination) DO NOTHING",
        params![source, destination, prefix],
    )?;
    conn.query_row(
        "SELECT id FROM buckets WHERE source = ?1 AND prefix = ?2 AND destination = ?3",
        params![source, prefix, destination],
        |r| r.get(0),
    )
}

pub fn start_pass(conn: &Connection) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO passes (started_at) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
        [],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn finish_pass(conn: &Connection, pass_id: i64, s: &PassSummary) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE passes SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'),
            objects_copied = ?2, bytes_copied = ?3, objects_failed = ?4,
            objects_verified = ?5, objects_mismatched = ?6 WHERE id = ?1",
        params![
            pass_id,
            s.objects_copied as i64,
            s.bytes_copied as i64,
            s.objects_failed as i64,
            s.objects_verified as i64,
            s.objects_mismatched as i64
        ],
    )?;
    Ok(())
}

/// Where the listing of a bucket stopped, if it was interrupted.
pub fn list_cursor(conn: &Connection, bucket_id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT list_cursor FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )
}

/// Records one listing page and the cursor after it in one transaction, so a
/// listing resumes exactly after the last page that was committed.
///
/// A key seen with the same size and ETag keeps its state; a key whose size or
/// ETag changed goes back to `listed` (its old copy is no longer the source's).
pub fn record_listing_page(
    conn: &mut Connection,
    bucket_id: i64,
    pass_id: i64,
    objects: &[ListedObject],
    cursor: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO objects (bucket_id, key, size, source_etag, last_modified, storage_class, state, last_error, seen_pass)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (bucket_id, key) DO UPDATE SET
                seen_pass = excluded.seen_pass,
                missing_passes = 0,
                last_modified = excluded.last_modified,
                storage_class = excluded.storage_class,
                state = CASE WHEN objects.state IN ('deleted', 'removed') THEN excluded.state
                             WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                             THEN objects.state ELSE excluded.state END,
                attempts = CASE WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                             THEN objects.attempts ELSE 0 END,
                last_error = CASE WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                             THEN objects.last_error ELSE excluded.last_error END,
                size = excluded.size,
                source_etag = excluded.source_etag",
        )?;
        for o in objects {
            let archived = is_archived(o.storage_class.as_deref());
            let (state, reason) = if archived {
                (
                    "skipped",
                    Some(format!(
                        "archived in {}: restore it at the source, then run again",
                        o.storage_class.as_deref().unwrap_or("?")
                    )),
                )
            } else {
                ("listed", None)
            };
            upsert.execute(params![
                bucket_id,
                o.key,
                o.size as i64,
                o.etag,
                o.last_modified,
                o.storage_class,
                state,
                reason,
                pass_id
            ])?;
        }
    }
    tx.execute(
        "UPDATE buckets SET list_cursor = ?2 WHERE id = ?1",
        params![bucket_id, cursor],
    )?;
    tx.commit()
}

/// The pass a bucket's listing belongs to: `pass_id` for a fresh listing,
/// the earlier pass for one resumed from its cursor.
pub fn listing_pass(conn: &Connection, bucket_id: i64, pass_id: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "UPDATE buckets SET listing_pass = ?2 WHERE id = ?1 AND (list_cursor IS NULL OR listing_pass IS NULL)",
        params![bucket_id, pass_id],
    )?;
    conn.query_row(
        "SELECT listing_pass FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )
}

/// Marks a bucket's listing complete; the next pass starts from the top.
/// Keys the listing did not see are missing at the source one more pass.
/// Returns how many keys were newly found missing.
pub fn finish_listing(conn: &Connection, bucket_id: i64, pass_id: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE buckets SET list_cursor = NULL, listed_pass = ?2, listing_pass = NULL WHERE id = ?1",
        params![bucket_id, pass_id],
    )?;
    conn.execute(
        "UPDATE objects SET missing_passes = missing_passes + 1,
            state = CASE WHEN state = 'removed' THEN 'removed' ELSE 'deleted' END
         WHERE bucket_id = ?1 AND seen_pass IS NOT ?2 AND state != 'removed'",
        params![bucket_id, pass_id],
    )?;
    conn.query_row(
        "SELECT COUNT(*) FROM objects WHERE bucket_id = ?1 AND state = 'deleted' AND missing_passes = 1",
        [bucket_id],
        |r| r.get::<_, i64>(0).map(|n| n as usize),
    )
}

/// A key deleted at the source that may be removed at the destination.
#[derive(Clone, Debug)]
pub struct Deletable {
    pub object_id: i64,
    pub dest_bucket: String,
    pub key: String,
    /// The ETag of ferry's copy; None when ferry never wrote the key.
    pub copied_etag: Option<String>,
}

/// Keys of `bucket_ids` deleted at the source for `passes` complete
/// listings in a row or more, after `after_id`.
pub fn deletable(
    conn: &Connection,
    bucket_ids: &[i64],
    passes: u32,
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Deletable>> {
    let ids = id_list(bucket_ids);
    let mut stmt = conn.prepare(&format!(
        "SELECT o.id, b.destination, o.key, c.dest_etag FROM objects o JOIN buckets b ON b.id = o.bucket_id
         LEFT JOIN copies c ON c.object_id = o.id
         WHERE o.state = 'deleted' AND o.missing_passes >= ?1 AND o.id > ?2 AND o.bucket_id IN ({ids})
         ORDER BY o.id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![passes, after_id, limit as i64], |r| {
        Ok(Deletable {
            object_id: r.get(0)?,
            dest_bucket: r.get(1)?,
            key: r.get(2)?,
            copied_etag: r.get(3)?,
        })
    })?;
    rows.collect()
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
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
    let raw: Vec<[u8; 16]> = md5s
        .iter()
        .map(|m| {
            let mut b = [0u8; 16];
            let _ = hex::decode_to_slice(m, &mut b);
            b
        })
        .collect();
    Ok(Some(crate::hashing::multipart_etag(&raw)))
}

/// The destination key holds what ferry did not write: touch nothing, say why.
pub fn record_conflict(conn: &Connection, object_id: i64, reason: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'conflict', last_error = ?2 WHERE id = ?1",
        params![object_id, reason],
    )?;
    Ok(())
}

/// The shard a bucket was listed with, recorded on its first listing.
/// Returns the recorded one when it differs from `shard`.
pub fn check_scope(
    conn: &Connection,
    bucket_id: i64,
    shard: Option<&str>,
) -> rusqlite::Result<Option<String>> {
    let recorded: Option<String> = conn.query_row(
        "SELECT shard FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )?;
    let listed_before: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket_id = ?1)",
        [bucket_id],
        |r| r.get(0),
    )?;
    let recorded = recorded.unwrap_or_else(|| "all".into());
    let wanted = shard.unwrap_or("all");
    if listed_before && recorded != wanted {
        return Ok(Some(recorded));
    }
    conn.execute(
        "UPDATE buckets SET shard = ?2 WHERE id = ?1",
        params![bucket_id, wanted],
    )?;
    Ok(None)
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
    conn.execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])?;
    Ok(())
}

/// The upload is aborted (or already gone): forget it everywhere.
pub fn forget_aborted(conn: &Connection, upload_id: &str) -> rusqlite::Result<()> {
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
    let mut stmt = conn.prepare(
        "SELECT upload_id, dest_bucket, key FROM abandoned_uploads
         UNION ALL
         SELECT u.upload_id, u.dest_bucket, u.key FROM uploads u JOIN objects o ON o.id = u.object_id
         WHERE o.state NOT IN ('listed', 'copying', 'failed')",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

pub fn record_removed(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'removed' WHERE id = ?1",
        [object_id],
    )?;
    Ok(())
}

/// Failed objects get another chance in each new pass, and conflicts are
/// looked at again (the other writer may have gone). Mismatched ones wait
/// for `verify --recopy`: a person should see them first.
pub fn requeue_failed(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE objects SET state = 'listed'
         WHERE state = 'failed' OR (state = 'conflict' AND missing_passes = 0)",
        [],
    )
}

/// The next objects to copy, in id order after `after_id`.
pub fn pending_batch(
    conn: &Connection,
    bucket_ids: &[i64],
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<WorkItem>> {
    let ids = id_list(bucket_ids);
    let sql = format!(
        "SELECT o.id, b.source, b.destination, o.key, o.size, o.source_etag, o.state = 'copying', c.dest_etag, o.recopy_approved
         FROM objects o JOIN buckets b ON b.id = o.bucket_id LEFT JOIN copies c ON c.object_id = o.id
         WHERE o.state IN ('listed', 'copying') AND o.id > ?1 AND o.bucket_id IN ({ids})
         ORDER BY o.id LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after_id, limit as i64], |r| {
        Ok(WorkItem {
            object_id: r.get(0)?,
            source_bucket: r.get(1)?,
            dest_bucket: r.get(2)?,
            key: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            source_etag: r.get(5)?,
            was_copying: r.get(6)?,
            copied_etag: r.get(7)?,
            recopy_approved: r.get(8)?,
        })
    })?;
    rows.collect()
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

/// Intent before action: an object is marked `copying` before its upload is
/// created, so a run cut off before the upload id is written still knows to
/// look for an upload it may have left.
pub fn record_copying(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'copying', attempts = attempts + 1 WHERE id = ?1",
        [object_id],
    )?;
    Ok(())
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
    tx.execute(
        "UPDATE objects SET state = 'copying' WHERE id = ?1",
        [u.object_id],
    )?;
    tx.commit()
}

/// The upload is gone (completed elsewhere or aborted): forget it.
pub fn forget_upload(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM uploads WHERE object_id = ?1", [object_id])?;
    Ok(())
}

/// Completion after acknowledgement: called only once the store took the part.
pub fn record_part(conn: &Connection, p: &PartRecord) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO parts (object_id, upload_id, part_number, offset, length, etag, md5, sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            p.object_id,
            p.upload_id,
            p.part_number,
            p.offset as i64,
            p.length as i64,
            p.etag,
            p.md5,
            p.sha256
        ],
    )?;
    Ok(())
}

/// Called only after PutObject or CompleteMultipartUpload succeeded.
pub fn record_copied(conn: &mut Connection, c: &CopyRecord) -> rusqlite::Result<()> {
    let tx: Transaction = conn.transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO copies (object_id, source_etag, dest_etag, etag_matches, size, sha256, md5, part_size, part_count, etag_note, copied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
        params![
            c.object_id,
            c.source_etag,
            c.dest_etag,
            c.source_etag == c.dest_etag,
            c.size as i64,
            c.sha256,
            c.md5,
            c.part_size.map(|s| s as i64),
            c.part_count,
            c.etag_note
        ],
    )?;
    tx.execute("DELETE FROM uploads WHERE object_id = ?1", [c.object_id])?;
    if c.part_count <= 1 && c.part_size.is_none() {
        tx.execute("DELETE FROM parts WHERE object_id = ?1", [c.object_id])?;
    }
    tx.execute(
        "UPDATE objects SET state = 'copied', last_error = NULL, recopy_approved = 0,
            attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END
         WHERE id = ?1 AND source_etag = ?2",
        params![c.object_id, c.source_etag],
    )?;
    tx.commit()
}

/// Not copied, and not to be tried again until it changes: why.
pub fn record_skipped(conn: &Connection, object_id: i64, reason: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'skipped', last_error = ?2 WHERE id = ?1",
        params![object_id, reason],
    )?;
    Ok(())
}

pub fn record_failed(conn: &Connection, object_id: i64, error: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'failed', last_error = ?2, attempts = MAX(attempts, 1) WHERE id = ?1",
        params![object_id, error],
    )?;
    Ok(())
}

/// The source holds a new version of the object (seen by a 412 mid-copy):
/// record it, so the copy starts again from the new version.
pub fn record_new_version(
    conn: &Connection,
    object_id: i64,
    size: u64,
    etag: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'listed', size = ?2, source_etag = ?3,
            last_error = 'changed at the source while it was copied' WHERE id = ?1",
        params![object_id, size as i64, etag],
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
        "SELECT object_id, upload_id, part_number, offset, length, etag, md5, sha256
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
        })
    })?;
    rows.collect()
}

/// Whether `key` is an object the ledger copies to `dest_bucket`: an upload
/// for such a key at the destination is ferry's.
pub fn knows_destination_key(
    conn: &Connection,
    dest_bucket: &str,
    key: &str,
) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM objects o JOIN buckets b ON b.id = o.bucket_id
                        WHERE b.destination = ?1 AND o.key = ?2)",
        params![dest_bucket, key],
        |r| r.get(0),
    )
}

/// How many objects, and bytes, are in `states` in these buckets: the size
/// of the work a pass is about to do, for its progress bar.
pub fn totals_in_states(
    conn: &Connection,
    bucket_ids: &[i64],
    states: &str,
) -> rusqlite::Result<(u64, u64)> {
    let ids = id_list(bucket_ids);
    conn.query_row(
        &format!("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE state IN ({states}) AND bucket_id IN ({ids})"),
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// Copied objects to read back, in id order after `after_id`; with `again`,
/// verified ones too.
pub fn verify_batch(
    conn: &Connection,
    bucket_ids: &[i64],
    again: bool,
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<VerifyItem>> {
    let ids = id_list(bucket_ids);
    let states = if again {
        "'copied', 'verified', 'mismatched'"
    } else {
        "'copied'"
    };
    let sql = format!(
        "SELECT o.id, b.source, b.destination, o.key, c.size, c.dest_etag, c.sha256, c.md5
         FROM objects o JOIN buckets b ON b.id = o.bucket_id JOIN copies c ON c.object_id = o.id
         WHERE o.state IN ({states}) AND c.source_etag = o.source_etag
           AND o.id > ?1 AND o.bucket_id IN ({ids})
         ORDER BY o.id LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after_id, limit as i64], |r| {
        Ok(VerifyItem {
            object_id: r.get(0)?,
            source_bucket: r.get(1)?,
            dest_bucket: r.get(2)?,
            key: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            dest_etag: r.get(5)?,
            sha256: r.get(6)?,
            md5: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// The parts recorded for an object's copy: (number, length, SHA-256).
pub fn copied_parts(
    conn: &Connection,
    object_id: i64,
) -> rusqlite::Result<Vec<(u32, u64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.part_number, p.length, p.sha256 FROM parts p JOIN copies c ON c.object_id = p.object_id
         WHERE p.object_id = ?1 ORDER BY p.part_number",
    )?;
    let rows = stmt.query_map([object_id], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
    })?;
    rows.collect()
}

/// Records a verification; the object becomes `verified` or `mismatched`
/// unless it has since changed at the source.
pub fn record_verification(conn: &mut Connection, v: &Verification) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO verifications (object_id, checked_at, ok, reason, size, sha256, md5)
         VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?2, ?3, ?4, ?5, ?6)",
        params![v.object_id, v.ok, v.reason, v.size.map(|s| s as i64), v.sha256, v.md5],
    )?;
    tx.execute(
        "UPDATE objects SET state = ?2, last_error = ?3
         WHERE id = ?1 AND state IN ('copied', 'verified', 'mismatched')",
        params![
            v.object_id,
            if v.ok { "verified" } else { "mismatched" },
            v.reason
        ],
    )?;
    tx.commit()
}

/// `verify --recopy` and the next pass: mismatched objects are copied again.
pub fn requeue_mismatched(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE objects SET state = 'listed', recopy_approved = 1 WHERE state = 'mismatched'",
        [],
    )
}

// ---- reads ----------------------------------------------------------------

/// Per-bucket counts for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketStatus {
    pub source: String,
    pub destination: String,
    pub prefix: String,
    pub listed: u64,
    pub copied: u64,
    pub verified: u64,
    pub mismatched: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Keys whose destination object ferry did not write last: untouched.
    pub conflict: u64,
    pub pending: u64,
    pub deleted: u64,
    /// Multipart uploads ferry started and has not completed or aborted yet.
    pub open_uploads: u64,
    pub bytes_listed: u64,
    pub bytes_copied: u64,
    /// Bytes copied in the last [`RATE_WINDOW_SECS`] seconds.
    pub bytes_recent: u64,
}

/// The window `status` measures the copy rate over.
pub const RATE_WINDOW_SECS: u64 = 300;

pub fn bucket_status(conn: &Connection) -> rusqlite::Result<Vec<BucketStatus>> {
    let mut stmt = conn.prepare(
        "SELECT b.source, b.destination, b.prefix,
                COALESCE(SUM(t.objects), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state IN ('copied', 'verified')), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = 'verified'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = 'mismatched'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = 'failed'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = 'skipped'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state IN ('listed', 'copying')), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state IN ('deleted', 'removed')), 0),
                COALESCE(SUM(t.bytes) FILTER (WHERE t.state NOT IN ('deleted', 'removed')), 0),
                COALESCE(SUM(t.bytes) FILTER (WHERE t.state IN ('copied', 'verified')), 0),
                -- CROSS JOIN keeps SQLite from walking every object of the
                -- bucket: the last minutes' copies are few, found by time.
                (SELECT COALESCE(SUM(c.size), 0) FROM copies c CROSS JOIN objects r ON r.id = c.object_id
                 WHERE r.bucket_id = b.id
                   AND c.copied_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-300 seconds')),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = 'conflict'), 0),
                (SELECT COUNT(*) FROM uploads u JOIN objects r ON r.id = u.object_id WHERE r.bucket_id = b.id)
                  + (SELECT COUNT(*) FROM abandoned_uploads a WHERE a.dest_bucket = b.destination)
         FROM buckets b LEFT JOIN state_totals t ON t.bucket_id = b.id
         GROUP BY b.id ORDER BY b.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(BucketStatus {
            source: r.get(0)?,
            destination: r.get(1)?,
            prefix: r.get(2)?,
            listed: r.get::<_, i64>(3)? as u64,
            copied: r.get::<_, i64>(4)? as u64,
            verified: r.get::<_, i64>(5)? as u64,
            mismatched: r.get::<_, i64>(6)? as u64,
            failed: r.get::<_, i64>(7)? as u64,
            skipped: r.get::<_, i64>(8)? as u64,
            pending: r.get::<_, i64>(9)? as u64,
            deleted: r.get::<_, i64>(10)? as u64,
            bytes_listed: r.get::<_, i64>(11)? as u64,
            bytes_copied: r.get::<_, i64>(12)? as u64,
            bytes_recent: r.get::<_, i64>(13)? as u64,
            conflict: r.get::<_, i64>(14)? as u64,
            open_uploads: r.get::<_, i64>(15)? as u64,
        })
    })?;
    rows.collect()
}

/// Objects in `state` (failed, mismatched, …) with their reasons: bucket, key, reason.
pub fn objects_in_state(
    conn: &Connection,
    state: &str,
    limit: usize,
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT b.source, o.key, COALESCE(o.last_error, '') FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE o.state = ?1 ORDER BY o.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![state, limit as i64], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests;
