//! Archived objects' restores at the source: which to ask for, the ask written before it is sent, what is awaited.
//! It must not move an object but through `State::move_sql`, nor forget an ask it recorded (a kill -9 never asks twice).

use rusqlite::{params, Connection, OptionalExtension};

use super::{id_list, State};

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/// An archived object whose restore is to be asked for, or is awaited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedObject {
    pub object_id: i64,
    pub source_bucket: String,
    pub key: String,
    pub source_etag: String,
    pub size: u64,
    pub storage_class: Option<String>,
    /// The bucket pair's tier ("Bulk", "Standard", "Expedited").
    pub tier: String,
    pub days: u32,
}

/// A restore as a listing reports it (ListObjectsV2's `RestoreStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRestore {
    pub key: String,
    pub in_progress: bool,
    pub expires_at: Option<String>,
}

/// What a listing page says of restores, for objects in `restoring`: one
/// done goes back to `listed`; one under way is looked at (no HEAD is due),
/// and counts as asked if ferry had not asked (someone else did).
pub fn record_listed_restores(
    conn: &Connection,
    bucket_id: i64,
    restores: &[ListedRestore],
) -> rusqlite::Result<()> {
    for r in restores {
        let Some((id, etag, class, tier)): Option<(i64, String, Option<String>, String)> = conn
            .query_row(
                &format!(
                    "SELECT o.id, o.source_etag, o.storage_class, COALESCE(b.restore_tier, 'Bulk')
                     FROM objects o JOIN buckets b ON b.id = o.bucket_id
                     WHERE o.bucket_id = ?1 AND o.key = ?2 AND o.state = '{}'",
                    State::Restoring
                ),
                params![bucket_id, r.key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?
        else {
            continue;
        };
        if !r.in_progress {
            record_restore_ready(conn, id, r.expires_at.as_deref())?;
            continue;
        }
        conn.execute(
            &format!(
                "INSERT INTO archive_restores (object_id, source_etag, storage_class, tier, requested_at, checked_at)
                 VALUES (?1, ?2, ?3, ?4, {NOW}, {NOW})
                 ON CONFLICT (object_id) DO UPDATE SET checked_at = {NOW},
                    requested_at = CASE WHEN source_etag = excluded.source_etag
                        THEN COALESCE(requested_at, excluded.requested_at) ELSE excluded.requested_at END,
                    source_etag = excluded.source_etag"
            ),
            params![id, etag, class, tier],
        )?;
    }
    Ok(())
}

/// Writes a bucket pair's restore policy from the config (each run):
/// `tier` is "off" or a tier's name.
pub fn set_restore_policy(
    conn: &Connection,
    bucket_id: i64,
    tier: &str,
    days: u32,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE buckets SET restore_tier = ?2, restore_days = ?3 WHERE id = ?1",
        params![bucket_id, tier, days],
    )?;
    if tier == "off" {
        // Restores switched off: what waited for one is skipped, as archived
        // objects are without restores, not left waiting for good.
        let waiting: Vec<i64> = conn
            .prepare(&format!(
                "SELECT id FROM objects WHERE bucket_id = ?1 AND state = '{}'",
                State::Restoring
            ))?
            .query_map([bucket_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let sql = State::Skipped.move_sql(", last_error = ?2");
        for id in waiting {
            conn.execute(&sql, params![id, SWITCHED_OFF])?;
        }
    }
    Ok(())
}

/// Whether the bucket pair restores archived objects (a run said so).
pub fn restores_archives(conn: &Connection, bucket_id: i64) -> rusqlite::Result<bool> {
    let tier: Option<String> = conn
        .query_row(
            "SELECT restore_tier FROM buckets WHERE id = ?1",
            [bucket_id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(tier.is_some_and(|t| t != "off"))
}

/// Archived objects that an earlier ferry (or `restore = "off"`) skipped,
/// in buckets that restore now: back to `restoring`, to be asked for.
pub fn wake_skipped_archives(conn: &Connection, bucket_ids: &[i64]) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = conn
        .prepare(&format!(
            "SELECT o.id FROM objects o JOIN buckets b ON b.id = o.bucket_id
             WHERE o.state = '{skipped}' AND o.bucket_id IN ({buckets})
               AND o.storage_class IN ('GLACIER', 'DEEP_ARCHIVE')
               -- Skipped for being archived, not for another reason (an
               -- SSE-C object that is archived too stays skipped).
               AND o.last_error LIKE '%archived%' AND o.last_error NOT LIKE '%SSE-C%'
               AND b.restore_tier IS NOT NULL AND b.restore_tier != 'off'",
            skipped = State::Skipped,
            buckets = id_list(bucket_ids),
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let sql = State::Restoring.move_sql(", last_error = ?2");
    for id in &ids {
        conn.execute(&sql, params![id, WAITING])?;
    }
    Ok(ids.len())
}

const SWITCHED_OFF: &str = "archived: restore = \"off\" for this bucket pair; restore it at the source, or turn restores on";
const WAITING: &str = "archived at the source: ferry restores it, then copies it";

fn archived_objects(
    conn: &Connection,
    bucket_ids: &[i64],
    (after_id, limit): (i64, usize),
    asked: bool,
) -> rusqlite::Result<Vec<ArchivedObject>> {
    // Asked: a request recorded for this very version, due to be checked.
    // Otherwise: none yet, one for an older version, or one to ask again
    // (requested_at NULL).
    let (which, due) = if asked { ("", CHECK_DUE) } else { ("NOT", "") };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT o.id, b.source, o.key, o.source_etag, o.size, o.storage_class, b.restore_tier, b.restore_days
         FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE o.state = '{restoring}' AND o.id > ?1 AND o.bucket_id IN ({buckets})
           AND b.restore_tier IS NOT NULL AND b.restore_tier != 'off'
           AND {which} EXISTS (SELECT 1 FROM archive_restores r WHERE r.object_id = o.id
                 AND r.source_etag = o.source_etag AND r.requested_at IS NOT NULL {due})
         ORDER BY o.id LIMIT ?2",
        restoring = State::Restoring,
        buckets = id_list(bucket_ids),
    ))?;
    let rows = stmt.query_map(params![after_id, limit as i64], |r| {
        Ok(ArchivedObject {
            object_id: r.get(0)?,
            source_bucket: r.get(1)?,
            key: r.get(2)?,
            source_etag: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            storage_class: r.get(5)?,
            tier: r.get(6)?,
            days: r.get::<_, Option<u32>>(7)?.unwrap_or(7),
        })
    })?;
    rows.collect()
}

/// When an awaited restore is asked about again: after a quarter of its
/// age so far, at most an hour after the last look. Restores take hours;
/// one HEAD per object and pass would cost a pass of 15 minutes some 200
/// HEADs per Bulk restore, and this some 50.
const CHECK_DUE: &str = "AND (r.checked_at IS NULL
      OR julianday('now') - julianday(r.checked_at)
         > MIN(1.0 / 24, (julianday('now') - julianday(r.requested_at)) / 4))";

/// Objects in `restoring` whose restore is still to be asked for.
pub fn restores_to_ask(
    conn: &Connection,
    bucket_ids: &[i64],
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<ArchivedObject>> {
    archived_objects(conn, bucket_ids, (after_id, limit), false)
}

/// Objects whose restore was asked for, is not known to be done, and is
/// due to be asked about ([`CHECK_DUE`]).
pub fn restores_awaited(
    conn: &Connection,
    bucket_ids: &[i64],
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<ArchivedObject>> {
    archived_objects(conn, bucket_ids, (after_id, limit), true)
}

/// Intent before action: the ask is recorded before the RestoreObject is
/// sent, so a run killed after sending it does not send it again.
pub fn record_restore_asked(
    conn: &Connection,
    o: &ArchivedObject,
    tier: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO archive_restores (object_id, source_etag, storage_class, tier, requested_at, asked)
             VALUES (?1, ?2, ?3, ?4, {NOW}, 1)
             ON CONFLICT (object_id) DO UPDATE SET source_etag = excluded.source_etag,
                storage_class = excluded.storage_class, tier = excluded.tier,
                requested_at = excluded.requested_at, ready_at = NULL, expires_at = NULL,
                checked_at = NULL, asked = asked + 1"
        ),
        params![o.object_id, o.source_etag, o.storage_class, tier],
    )?;
    Ok(())
}

/// The ask was refused (say, AccessDenied): asked again next pass, and why
/// it failed is the object's last error meanwhile.
pub fn record_restore_refused(
    conn: &Connection,
    object_id: i64,
    reason: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE archive_restores SET requested_at = NULL WHERE object_id = ?1",
        [object_id],
    )?;
    conn.execute(
        &format!(
            "UPDATE objects SET last_error = ?2 WHERE id = ?1 AND state = '{}'",
            State::Restoring
        ),
        params![object_id, reason],
    )?;
    Ok(())
}

/// The restore is done and readable until `expires_at` (None: the store
/// did not say): the object goes back into the copy queue.
pub fn record_restore_ready(
    conn: &Connection,
    object_id: i64,
    expires_at: Option<&str>,
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        &format!("UPDATE archive_restores SET ready_at = {NOW}, expires_at = ?2, checked_at = {NOW} WHERE object_id = ?1"),
        params![object_id, expires_at],
    )?;
    tx.execute(
        &State::Listed.move_sql(", last_error = NULL"),
        params![object_id],
    )?;
    tx.commit()
}

/// Asked how the restore goes: still under way.
pub fn record_restore_checked(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        &format!("UPDATE archive_restores SET checked_at = {NOW} WHERE object_id = ?1"),
        [object_id],
    )?;
    Ok(())
}

/// The source says the object is not archived (any more): it is copied.
pub fn record_not_archived(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        &State::Listed.move_sql(", last_error = NULL"),
        params![object_id],
    )?;
    Ok(())
}

/// A GET found the object archived (InvalidObjectState): an
/// Intelligent-Tiering object in an archive tier, or a restored copy that
/// expired before it was copied. With restores on, it goes to `restoring`
/// to be asked (again), and this returns true; with them off it returns
/// false and changes nothing (the caller records a failure, as before).
pub fn record_archived(conn: &Connection, object_id: i64, reason: &str) -> rusqlite::Result<bool> {
    let bucket_id: i64 = conn.query_row(
        "SELECT bucket_id FROM objects WHERE id = ?1",
        [object_id],
        |r| r.get(0),
    )?;
    if !restores_archives(conn, bucket_id)? {
        return Ok(false);
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "UPDATE archive_restores SET requested_at = NULL, ready_at = NULL WHERE object_id = ?1",
        [object_id],
    )?;
    tx.execute(
        &State::Restoring.move_sql(", last_error = ?2"),
        params![object_id, reason],
    )?;
    tx.commit()?;
    Ok(true)
}

/// Restores awaited, per tier: how many, their bytes, and the oldest ask's
/// age in seconds (None when none was asked yet).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestoresWaiting {
    pub tier: String,
    pub objects: u64,
    pub bytes: u64,
    pub oldest_secs: Option<u64>,
}

/// Every object in `restoring`, by tier (asked or not): for `status`, the
/// workbook and the metric.
pub fn restores_waiting(conn: &Connection) -> rusqlite::Result<Vec<RestoresWaiting>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT COALESCE(b.restore_tier, 'off'), COUNT(*), COALESCE(SUM(o.size), 0),
            CAST(MAX(strftime('%s','now') - strftime('%s', r.requested_at)) AS INTEGER)
         FROM objects o JOIN buckets b ON b.id = o.bucket_id
         LEFT JOIN archive_restores r ON r.object_id = o.id AND r.source_etag = o.source_etag
         WHERE o.state = '{}' GROUP BY 1 ORDER BY 1",
        State::Restoring
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(RestoresWaiting {
            tier: r.get(0)?,
            objects: r.get::<_, i64>(1)? as u64,
            bytes: r.get::<_, i64>(2)? as u64,
            oldest_secs: r.get::<_, Option<i64>>(3)?.map(|s| s.max(0) as u64),
        })
    })?;
    rows.collect()
}

/// How many restores ferry asked for an object (for tests and `report`).
pub fn restores_asked(conn: &Connection, object_id: i64) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE((SELECT asked FROM archive_restores WHERE object_id = ?1), 0)",
        [object_id],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}
