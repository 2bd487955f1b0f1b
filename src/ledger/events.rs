//! What the feed of S3 events told the ledger: each key's newest event (its
//! sequencer and time), the lag to its copy, and each queue's progress. It must
//! not take an event for a fact: what it records of a key is what a HEAD found.

use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use super::cursors::{record_rows, ListedObject};
use super::State;

/// What the source said of a key an event named, asked after the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtSource {
    /// The key's current version, as a listing would record it.
    Present(ListedObject),
    /// A HEAD found no such key: the event (a delete) is confirmed.
    Gone,
}

/// One event of one key, and what the source said of the key after it.
#[derive(Clone, Debug)]
pub struct EventOutcome {
    pub key: String,
    /// S3's order of the events of one key; none in some emulators.
    pub sequencer: Option<String>,
    /// The event's time (RFC 3339, S3's clock).
    pub event_at: String,
    pub at_source: AtSource,
}

/// What [`record_events`] did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventsApplied {
    pub applied: u64,
    /// Older than (or the same as) what the ledger holds for the key.
    pub stale: u64,
    /// Keys confirmed gone at the source.
    pub gone: u64,
}

/// Whether sequencer `new` comes after `old`, as AWS documents: within one
/// key only, the shorter right-padded with zeros, compared as strings.
pub fn sequencer_is_newer(new: &str, old: &str) -> bool {
    let width = new.len().max(old.len());
    let pad = |s: &str| format!("{s:0<width$}").to_ascii_uppercase();
    pad(new) > pad(old)
}

/// Starts (or carries on) following `queue_url` for a bucket pair. A queue
/// other than the one recorded is a new feed: it is followed from now.
pub fn start_following(conn: &Connection, bucket_id: i64, queue_url: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO event_feeds (bucket_id, queue_url, following_since)
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         ON CONFLICT (bucket_id) DO UPDATE SET queue_url = excluded.queue_url,
            following_since = excluded.following_since, drained_at = NULL
         WHERE event_feeds.queue_url != excluded.queue_url",
        params![bucket_id, queue_url],
    )?;
    Ok(())
}

/// A bucket pair that follows no queue any more: its feed is forgotten,
/// so that its growing silence is not shown as lag.
pub fn stop_following(conn: &Connection, bucket_id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM event_feeds WHERE bucket_id = ?1", [bucket_id])?;
    Ok(())
}

/// The keys of `keys` whose recorded sequencer is `sequencer` or newer:
/// their event can be dropped without asking the source.
pub fn stale_events(
    conn: &Connection,
    bucket_id: i64,
    events: &[(String, String)],
) -> rusqlite::Result<Vec<bool>> {
    let mut stmt = conn
        .prepare_cached("SELECT event_sequencer FROM objects WHERE bucket_id = ?1 AND key = ?2")?;
    events
        .iter()
        .map(|(key, sequencer)| {
            let held: Option<String> = stmt
                .query_row(params![bucket_id, key], |r| r.get(0))
                .optional()?
                .flatten();
            Ok(held.is_some_and(|held| !sequencer_is_newer(sequencer, &held)))
        })
        .collect()
}

/// Records what the source said of each event's key, in one transaction,
/// as a listing would: a new version goes back to `listed`, an unchanged
/// one keeps its state. A key confirmed gone is `deleted`, counted missing
/// for `delete_after` listings at once (the event and the HEAD agree).
/// An event older than the one recorded for its key changes nothing.
pub fn record_events(
    conn: &mut Connection,
    bucket_id: i64,
    outcomes: &[EventOutcome],
    delete_after: u32,
) -> rusqlite::Result<EventsApplied> {
    let tx = conn.transaction()?;
    // A key an event shows present is as seen as a listing's: the listing
    // under way (or the last) must not call it gone.
    let seen_pass: i64 = tx.query_row(
        "SELECT COALESCE(listing_pass, listed_pass, 0) FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )?;
    let mut done = EventsApplied::default();
    for o in outcomes {
        if let Some(sequencer) = &o.sequencer {
            let pair = [(o.key.clone(), sequencer.clone())];
            if stale_events(&tx, bucket_id, &pair)?[0] {
                done.stale += 1;
                continue;
            }
        }
        match &o.at_source {
            AtSource::Present(object) => {
                record_rows(&tx, bucket_id, seen_pass, std::slice::from_ref(object))?;
                tx.execute(
                    "UPDATE objects SET event_sequencer = COALESCE(?3, event_sequencer),
                        event_lag_ms = CASE WHEN event_at IS NULL OR event_at < ?4 THEN NULL ELSE event_lag_ms END,
                        event_at = CASE WHEN event_at IS NULL OR event_at < ?4 THEN ?4 ELSE event_at END
                     WHERE bucket_id = ?1 AND key = ?2",
                    params![bucket_id, o.key, o.sequencer, o.event_at],
                )?;
            }
            AtSource::Gone => {
                let changed = tx.execute(
                    &format!(
                        "UPDATE objects SET state = '{deleted}',
                            missing_passes = MAX(missing_passes, ?3),
                            event_sequencer = COALESCE(?4, event_sequencer)
                         WHERE bucket_id = ?1 AND key = ?2 AND state != '{removed}'",
                        deleted = State::Deleted,
                        removed = State::Removed
                    ),
                    params![bucket_id, o.key, delete_after, o.sequencer],
                )?;
                done.gone += changed as u64;
            }
        }
        done.applied += 1;
    }
    tx.execute(
        "UPDATE event_feeds SET events = events + ?2, stale_events = stale_events + ?3,
            last_event_at = (SELECT MAX(t) FROM (SELECT last_event_at AS t UNION ALL SELECT ?4))
         WHERE bucket_id = ?1",
        params![
            bucket_id,
            done.applied,
            done.stale,
            outcomes.iter().map(|o| o.event_at.as_str()).max()
        ],
    )?;
    tx.commit()?;
    Ok(done)
}

/// Counts events dropped before they reached [`record_events`]: older than
/// another event of their key in the same receive, or than the ledger's.
pub fn count_stale_events(conn: &Connection, bucket_id: i64, stale: u64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE event_feeds SET stale_events = stale_events + ?2 WHERE bucket_id = ?1",
        params![bucket_id, stale as i64],
    )?;
    Ok(())
}

/// A receive was answered; `drained`: empty, so every event S3 sent
/// before now is in.
pub fn record_received(
    conn: &Connection,
    bucket_ids: &[i64],
    drained: bool,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE event_feeds SET received_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            drained_at = CASE WHEN ?2 THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now') ELSE drained_at END
         WHERE bucket_id = ?1",
    )?;
    for id in bucket_ids {
        stmt.execute(params![id, drained])?;
    }
    Ok(())
}

/// A queue not read for this long may hold events as old: its lag is at
/// least that (a full listing under way, ferry stopped, a queue failing).
pub const UNREAD_AFTER_SECS: f64 = 60.0;

/// Measures the lag of every object an event touched whose copy is done
/// (read back, or copied when nothing reads it back): from the event's time
/// to then, never below zero. Returns each lag with its bucket.
pub fn record_event_lags(conn: &Connection) -> rusqlite::Result<Vec<(i64, u64)>> {
    // Keys no copy will follow (filtered, skipped, in conflict, gone) have
    // no lag: -1 takes them out of the awaited ones.
    conn.prepare_cached(&format!(
        "UPDATE objects SET event_lag_ms = -1
         WHERE id IN (SELECT id FROM objects INDEXED BY objects_awaiting_event_copy
                      WHERE event_at IS NOT NULL AND event_lag_ms IS NULL)
           AND state NOT IN ({awaited}, '{copied}', '{verified}')",
        awaited = State::sql_list(AWAITED),
        copied = State::Copied,
        verified = State::Verified,
    ))?
    .execute([])?;
    let lags: Vec<(i64, u64)> = conn
        .prepare_cached(&format!(
            "UPDATE objects SET event_lag_ms = MAX(0, CAST(ROUND((julianday(
                    (SELECT COALESCE(v.checked_at, c.copied_at) FROM copies c
                       LEFT JOIN verifications v ON v.object_id = c.object_id AND v.ok
                            AND v.checked_at >= c.copied_at
                      WHERE c.object_id = objects.id))
                    - julianday(event_at)) * 86400000) AS INTEGER))
             WHERE id IN (SELECT id FROM objects INDEXED BY objects_awaiting_event_copy
                          WHERE event_at IS NOT NULL AND event_lag_ms IS NULL)
               AND state IN ('{copied}', '{verified}')
             RETURNING bucket_id, event_lag_ms",
            copied = State::Copied,
            verified = State::Verified,
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt =
        conn.prepare_cached("UPDATE event_feeds SET last_lag_ms = ?2 WHERE bucket_id = ?1")?;
    for (bucket_id, lag) in &lags {
        stmt.execute(params![bucket_id, *lag as i64])?;
    }
    Ok(lags)
}

/// The states of a key whose copy is still to come (a failed copy is
/// tried again): its event's lag grows.
const AWAITED: &[State] = &[
    State::Listed,
    State::Copying,
    State::Failed,
    State::Restoring,
];

/// A bucket pair's feed, as `status`, the page and the metrics show it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedStatus {
    pub bucket_id: i64,
    /// The source bucket, and the pair's prefix after a `/` if it has one.
    pub source: String,
    pub queue_url: String,
    pub following_since: String,
    pub drained_at: Option<String>,
    pub last_event_at: Option<String>,
    pub events: u64,
    pub stale_events: u64,
    /// Objects an event named whose copy is not done yet.
    pub awaiting: u64,
    /// The lag now: the oldest awaiting event's age, else the last measured;
    /// at least the time since the queue was last read, once that passes
    /// [`UNREAD_AFTER_SECS`].
    pub lag_seconds: Option<f64>,
    /// The last receive, empty or not.
    pub received_at: Option<String>,
    pub missed_keys: u64,
}

/// Every followed feed.
pub fn feed_status(conn: &Connection) -> rusqlite::Result<Vec<FeedStatus>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT f.bucket_id, f.queue_url, f.following_since, f.drained_at, f.last_event_at,
                f.events, f.stale_events, f.last_lag_ms, f.missed_keys,
                (SELECT COUNT(*) FROM objects o INDEXED BY objects_awaiting_event_copy
                  WHERE o.event_at IS NOT NULL AND o.event_lag_ms IS NULL AND o.bucket_id = f.bucket_id
                    AND o.state IN ({awaited})),
                (SELECT (julianday('now') - julianday(MIN(o.event_at))) * 86400.0
                   FROM objects o INDEXED BY objects_awaiting_event_copy
                  WHERE o.event_at IS NOT NULL AND o.event_lag_ms IS NULL AND o.bucket_id = f.bucket_id
                    AND o.state IN ({awaited})),
                b.source || CASE WHEN b.prefix = '' THEN '' ELSE '/' || b.prefix END,
                f.received_at,
                (julianday('now') - julianday(COALESCE(f.received_at, f.following_since))) * 86400.0
         FROM event_feeds f JOIN buckets b ON b.id = f.bucket_id ORDER BY f.bucket_id",
        awaited = State::sql_list(AWAITED),
    ))?;
    let rows = stmt.query_map([], |r| {
        let last_lag: Option<i64> = r.get(7)?;
        let oldest: Option<f64> = r.get(10)?;
        let unread: Option<f64> = r
            .get::<_, Option<f64>>(13)?
            .filter(|s| *s > UNREAD_AFTER_SECS);
        let lag = oldest
            .map(|s| s.max(0.0))
            .or(last_lag.map(|ms| ms as f64 / 1000.0));
        let lag = match (lag, unread) {
            (Some(l), Some(u)) => Some(l.max(u)),
            (l, u) => l.or(u),
        };
        Ok(FeedStatus {
            bucket_id: r.get(0)?,
            source: r.get(11)?,
            queue_url: r.get(1)?,
            following_since: r.get(2)?,
            drained_at: r.get(3)?,
            last_event_at: r.get(4)?,
            events: r.get::<_, i64>(5)? as u64,
            stale_events: r.get::<_, i64>(6)? as u64,
            missed_keys: r.get::<_, i64>(8)? as u64,
            awaiting: r.get::<_, i64>(9)? as u64,
            lag_seconds: lag,
            received_at: r.get(12)?,
        })
    })?;
    rows.collect()
}

/// How long S3 may take to deliver an event: a change older than the last
/// empty receive by this much should have been told.
pub const DELIVERY_ALLOWANCE: Duration = Duration::from_secs(60);

/// The keys of a listing page that changed at the source while ferry
/// followed the bucket's feed, that no event told: a gap in the feed (a
/// purged queue, notifications switched off). Asked before the page is
/// recorded; empty for a bucket that follows no queue.
pub fn missed_by_feed(
    conn: &Connection,
    bucket_id: i64,
    rows: &[ListedObject],
) -> rusqlite::Result<Vec<String>> {
    let feed: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT following_since, drained_at FROM event_feeds WHERE bucket_id = ?1",
            [bucket_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((since, Some(drained))) = feed else {
        return Ok(Vec::new());
    };
    let time = |s: &str| humantime::parse_rfc3339_weak(s).ok();
    let (Some(since), Some(drained)) = (time(&since), time(&drained)) else {
        return Ok(Vec::new());
    };
    let told_by = drained
        .checked_sub(DELIVERY_ALLOWANCE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut stmt = conn.prepare_cached(
        "SELECT size, source_etag, event_at FROM objects WHERE bucket_id = ?1 AND key = ?2",
    )?;
    let mut missed = Vec::new();
    for row in rows {
        let Some(modified) = row.last_modified.as_deref().and_then(time) else {
            continue;
        };
        if modified <= since || modified >= told_by {
            continue;
        }
        let held: Option<(i64, String, Option<String>)> = stmt
            .query_row(params![bucket_id, row.key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let told = match held {
            Some((size, etag, _)) if size as u64 == row.size && etag == row.etag => true,
            // An event at or after the change told it (S3 stamps the event
            // when the write completes, after Last-Modified).
            Some((_, _, Some(at))) => {
                time(&at).is_some_and(|at| at + Duration::from_secs(1) >= modified)
            }
            _ => false,
        };
        if !told {
            missed.push(row.key.clone());
        }
    }
    if !missed.is_empty() {
        conn.execute(
            "UPDATE event_feeds SET missed_keys = missed_keys + ?2 WHERE bucket_id = ?1",
            params![bucket_id, missed.len() as i64],
        )?;
    }
    Ok(missed)
}
