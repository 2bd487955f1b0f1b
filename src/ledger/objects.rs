//! Objects and their states: the copy queue, and what each copy and each
//! read-back proved. It must not change a state except by `State::move_sql`.

use rusqlite::{params, Connection, Transaction};

use super::{id_list, State};

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
    /// Whether the source's ETag proved the bytes read (their MD5, or the
    /// MD5 of their parts' MD5s).
    pub proved_by_etag: bool,
    /// The source's stored checksum the bytes read were proved against.
    pub source_checksum: Option<String>,
}

impl CopyRecord {
    /// `copies.proof`: what proved the bytes read were the source's.
    pub fn proof(&self) -> &'static str {
        match (self.proved_by_etag, self.source_checksum.is_some()) {
            (true, true) => "etag+checksum",
            (true, false) => "etag",
            (false, true) => "checksum",
            (false, false) => "none",
        }
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

/// The destination key holds what ferry did not write: touch nothing, say why.
pub fn record_conflict(conn: &Connection, object_id: i64, reason: &str) -> rusqlite::Result<()> {
    conn.execute(
        &State::Conflict.move_sql(", last_error = ?2"),
        params![object_id, reason],
    )?;
    Ok(())
}

pub fn record_removed(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        &State::Removed.move_sql(", removed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"),
        [object_id],
    )?;
    Ok(())
}

/// Failed objects get another chance in each new pass, and conflicts are
/// looked at again (the other writer may have gone). Mismatched ones wait
/// for `verify --recopy`: a person should see them first.
pub fn requeue_failed(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "UPDATE objects SET state = '{}'
             WHERE state = '{}' OR (state = '{}' AND missing_passes = 0)",
            State::Listed,
            State::Failed,
            State::Conflict
        ),
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
    pending(conn, bucket_ids, after_id, limit, "")
}

/// As [`pending_batch`], only objects that the listing under way has seen
/// already: a key from an earlier pass waits until the listing says whether
/// it is still at the source.
pub fn pending_seen_batch(
    conn: &Connection,
    bucket_ids: &[i64],
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<WorkItem>> {
    pending(
        conn,
        bucket_ids,
        after_id,
        limit,
        "AND o.seen_pass = b.listing_pass",
    )
}

/// SQL for the ids of objects in `states` of `bucket_ids`, after `?1`, at
/// most `?2`, in id order, that pass `and` (over `o` and `b`). One index
/// range per state, each in id order already, merged: an `IN` over several
/// states would sort every matching row for each batch.
pub(super) fn ids_in_states(states: &[State], bucket_ids: &[i64], and: &str) -> String {
    let ids = id_list(bucket_ids);
    states
        .iter()
        .map(|state| {
            format!(
                "SELECT * FROM (SELECT o.id FROM objects o JOIN buckets b ON b.id = o.bucket_id
                 WHERE o.state = '{state}' AND o.id > ?1 AND o.bucket_id IN ({ids}) {and}
                 ORDER BY o.id LIMIT ?2)"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn pending(
    conn: &Connection,
    bucket_ids: &[i64],
    after_id: i64,
    limit: usize,
    and: &str,
) -> rusqlite::Result<Vec<WorkItem>> {
    let per_state = ids_in_states(State::PENDING, bucket_ids, and);
    let sql = format!(
        "SELECT o.id, b.source, b.destination, o.key, o.size, o.source_etag, o.state = '{copying}', c.dest_etag, o.recopy_approved
         FROM ({per_state}) p JOIN objects o ON o.id = p.id JOIN buckets b ON b.id = o.bucket_id
         LEFT JOIN copies c ON c.object_id = o.id
         ORDER BY o.id LIMIT ?2",
        copying = State::Copying,
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

/// Intent before action: an object is marked `copying` before its upload is
/// created, so a run cut off before the upload id is written still knows to
/// look for an upload it may have left.
pub fn record_copying(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        &State::Copying.move_sql(", attempts = attempts + 1"),
        [object_id],
    )?;
    Ok(())
}

/// Called only after PutObject or CompleteMultipartUpload succeeded.
pub fn record_copied(conn: &mut Connection, c: &CopyRecord) -> rusqlite::Result<()> {
    let tx: Transaction = conn.transaction()?;
    copied_in(&tx, c)?;
    tx.commit()
}

/// A copy found at the destination and proved to hold the source's bytes
/// (`copy/adopt.rs`): copied, marked adopted, and verified by the read that
/// proved it, in one transaction.
pub fn record_adopted(
    conn: &mut Connection,
    c: &CopyRecord,
    v: &Verification,
) -> rusqlite::Result<()> {
    let tx: Transaction = conn.transaction()?;
    copied_in(&tx, c)?;
    tx.execute(
        "UPDATE copies SET adopted_at = copied_at WHERE object_id = ?1",
        [c.object_id],
    )?;
    verification_in(&tx, v)?;
    tx.commit()
}

fn copied_in(tx: &Transaction, c: &CopyRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO copies (object_id, source_etag, dest_etag, etag_matches, size, sha256, md5, part_size, part_count, etag_note, source_checksum, proof, copied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
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
            c.etag_note,
            c.source_checksum,
            c.proof()
        ],
    )?;
    tx.execute("DELETE FROM uploads WHERE object_id = ?1", [c.object_id])?;
    // A copy is recorded: the writes meant before it are settled.
    tx.execute(
        "DELETE FROM write_intents WHERE object_id = ?1",
        [c.object_id],
    )?;
    if c.part_count <= 1 && c.part_size.is_none() {
        tx.execute("DELETE FROM parts WHERE object_id = ?1", [c.object_id])?;
    }
    tx.execute(
        &(State::Copied.move_sql(
            ", last_error = NULL, recopy_approved = 0,
               attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END",
        ) + " AND source_etag = ?2"),
        params![c.object_id, c.source_etag],
    )?;
    Ok(())
}

/// Not copied, and not to be tried again until it changes: why.
pub fn record_skipped(conn: &Connection, object_id: i64, reason: &str) -> rusqlite::Result<()> {
    conn.execute(
        &State::Skipped.move_sql(", last_error = ?2"),
        params![object_id, reason],
    )?;
    Ok(())
}

pub fn record_failed(conn: &Connection, object_id: i64, error: &str) -> rusqlite::Result<()> {
    conn.execute(
        &State::Failed.move_sql(", last_error = ?2, attempts = MAX(attempts, 1)"),
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
        &State::Listed.move_sql(
            ", size = ?2, source_etag = ?3,
               last_error = 'changed at the source while it was copied'",
        ),
        params![object_id, size as i64, etag],
    )?;
    Ok(())
}

/// How many objects, and bytes, are in `states` in these buckets: the size
/// of the work a pass is about to do, for its progress bar.
pub fn totals_in_states(
    conn: &Connection,
    bucket_ids: &[i64],
    states: &[State],
) -> rusqlite::Result<(u64, u64)> {
    let (ids, states) = (id_list(bucket_ids), State::sql_list(states));
    conn.query_row(
        &format!("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE state IN ({states}) AND bucket_id IN ({ids})"),
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// Records a verification; the object becomes `verified` or `mismatched`
/// unless it has since changed at the source.
pub fn record_verification(conn: &mut Connection, v: &Verification) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    verification_in(&tx, v)?;
    tx.commit()
}

fn verification_in(tx: &Transaction, v: &Verification) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO verifications (object_id, checked_at, ok, reason, size, sha256, md5)
         VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?2, ?3, ?4, ?5, ?6)",
        params![v.object_id, v.ok, v.reason, v.size.map(|s| s as i64), v.sha256, v.md5],
    )?;
    let verdict = if v.ok {
        State::Verified
    } else {
        State::Mismatched
    };
    tx.execute(
        &verdict.move_sql(", last_error = ?2"),
        params![v.object_id, v.reason],
    )?;
    Ok(())
}

/// `verify --recopy` and the next pass: mismatched objects are copied again.
pub fn requeue_mismatched(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "UPDATE objects SET state = '{}', recopy_approved = 1 WHERE state = '{}'",
            State::Listed,
            State::Mismatched
        ),
        [],
    )
}

/// Objects in `state` (failed, mismatched, …) with their reasons: bucket, key, reason.
pub fn objects_in_state(
    conn: &Connection,
    state: State,
    limit: usize,
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT b.source, o.key, COALESCE(o.last_error, '') FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE o.state = ?1 ORDER BY o.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![state.name(), limit as i64], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}
