//! Buckets, passes and their totals: what `status` counts, kept cheap by
//! the triggers of schema v4. It must not walk every object to count.

use rusqlite::{params, Connection};

use super::State;

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
    /// Not sent: found at the destination and proved the source's bytes.
    pub objects_adopted: u64,
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
        self.objects_adopted += o.objects_adopted;
    }
}

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

/// When the passes ran: the last one that finished (its start and end),
/// and the one under way, if any (its start). Timestamps as the ledger
/// writes them (UTC, RFC 3339).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassTimes {
    pub last_finished: Option<(String, String)>,
    pub running_since: Option<String>,
}

pub fn pass_times(conn: &Connection) -> rusqlite::Result<PassTimes> {
    let last_finished = conn
        .query_row(
            "SELECT started_at, finished_at FROM passes WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let running_since = conn
        .query_row(
            // The newest pass only: one a kill cut off never finishes.
            "SELECT started_at FROM passes WHERE id = (SELECT MAX(id) FROM passes) AND finished_at IS NULL",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(PassTimes {
        last_finished,
        running_since,
    })
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
    /// Archived at the source, waiting for a restore to be asked or done.
    pub restoring: u64,
    /// How long the oldest restore still awaited was asked for, in seconds.
    pub oldest_restore_secs: Option<u64>,
    /// Keys whose destination object ferry did not write last: untouched.
    pub conflict: u64,
    /// Keys the bucket pair's filter leaves out: not copied, not failures.
    pub filtered: u64,
    pub pending: u64,
    pub deleted: u64,
    /// Multipart uploads ferry started and has not completed or aborted yet.
    pub open_uploads: u64,
    /// Copies found at the destination without a ledger record and proved
    /// to be the source's bytes (`copy/adopt.rs`): not sent again.
    pub adopted: u64,
    pub bytes_listed: u64,
    pub bytes_copied: u64,
    /// Bytes copied in the last [`RATE_WINDOW_SECS`] seconds.
    pub bytes_recent: u64,
    /// Bytes of the objects still to be copied (not failed, skipped or in
    /// conflict: those wait for a person, not for time).
    pub bytes_pending: u64,
}

/// The window `status` measures the copy rate over.
pub const RATE_WINDOW_SECS: u64 = 300;

pub fn bucket_status(conn: &Connection) -> rusqlite::Result<Vec<BucketStatus>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT b.source, b.destination, b.prefix,
                COALESCE(SUM(t.objects), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state IN ({arrived})), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{verified}'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{mismatched}'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{failed}'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{skipped}'), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state IN ({pending})), 0),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state IN ({gone})), 0),
                COALESCE(SUM(t.bytes) FILTER (WHERE t.state NOT IN ({gone}, '{filtered}')), 0),
                COALESCE(SUM(t.bytes) FILTER (WHERE t.state IN ({arrived})), 0),
                -- CROSS JOIN keeps SQLite from walking every object of the
                -- bucket: the last minutes' copies, and the open uploads, are
                -- few; they lead.
                (SELECT COALESCE(SUM(c.size), 0) FROM copies c CROSS JOIN objects r ON r.id = c.object_id
                 WHERE r.bucket_id = b.id
                   AND c.copied_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-300 seconds')),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{conflict}'), 0),
                (SELECT COUNT(*) FROM uploads u CROSS JOIN objects r ON r.id = u.object_id WHERE r.bucket_id = b.id)
                  + (SELECT COUNT(*) FROM abandoned_uploads a WHERE a.dest_bucket = b.destination),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{filtered}'), 0),
                -- The partial index copies_adopted holds only adopted copies.
                (SELECT COUNT(*) FROM copies c CROSS JOIN objects r ON r.id = c.object_id
                 WHERE c.adopted_at IS NOT NULL AND r.bucket_id = b.id),
                COALESCE(SUM(t.objects) FILTER (WHERE t.state = '{restoring}'), 0),
                -- Few objects wait for a restore: they lead.
                (SELECT CAST(MAX(strftime('%s','now') - strftime('%s', a.requested_at)) AS INTEGER)
                 FROM archive_restores a CROSS JOIN objects r ON r.id = a.object_id
                 WHERE r.bucket_id = b.id AND r.state = '{restoring}' AND a.requested_at IS NOT NULL
                   AND a.source_etag = r.source_etag),
                COALESCE(SUM(t.bytes) FILTER (WHERE t.state IN ({pending})), 0)
         FROM buckets b LEFT JOIN state_totals t ON t.bucket_id = b.id
         GROUP BY b.id ORDER BY b.id",
        arrived = State::sql_list(State::ARRIVED),
        pending = State::sql_list(State::PENDING),
        gone = State::sql_list(State::GONE),
        verified = State::Verified,
        mismatched = State::Mismatched,
        failed = State::Failed,
        skipped = State::Skipped,
        conflict = State::Conflict,
        filtered = State::Filtered,
        restoring = State::Restoring,
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(BucketStatus {
            restoring: r.get::<_, i64>(18)? as u64,
            oldest_restore_secs: r.get::<_, Option<i64>>(19)?.map(|s| s.max(0) as u64),
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
            filtered: r.get::<_, i64>(16)? as u64,
            adopted: r.get::<_, i64>(17)? as u64,
            bytes_pending: r.get::<_, i64>(20)? as u64,
        })
    })?;
    rows.collect()
}
