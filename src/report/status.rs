//! `ferry status`: where each bucket stands, from the ledger alone. It must not
//! ask a store, and runs beside `ferry run` on its own read-only connection.

use crate::ledger::{self, BucketStatus, LedgerError, RATE_WINDOW_SECS};

use super::render::{Cell, Table};

pub fn read(path: &std::path::Path) -> Result<Vec<BucketStatus>, LedgerError> {
    let conn = ledger::open_reader(path)?;
    Ok(ledger::bucket_status(&conn)?)
}

/// `status`'s tables: the buckets, and the event feeds when any is followed.
pub fn tables(path: &std::path::Path) -> Result<Vec<Table>, LedgerError> {
    let conn = ledger::open_reader(path)?;
    let mut tables = vec![table(&ledger::bucket_status(&conn)?)];
    let feeds = ledger::feed_status(&conn)?;
    if !feeds.is_empty() {
        tables.push(feeds_table(&feeds));
    }
    Ok(tables)
}

/// One row per bucket pair that follows a queue: how far behind the
/// source its destination is (`lag_seconds`: the oldest event not copied
/// yet, else the last event's time to its copy read back).
pub fn feeds_table(feeds: &[ledger::FeedStatus]) -> Table {
    let mut table = Table::new(
        "events",
        vec![
            "source",
            "queue",
            "lag_seconds",
            "awaiting_copy",
            "events",
            "stale_events",
            "missed_keys",
            "last_event_at",
            "drained_at",
            "following_since",
        ],
    );
    for f in feeds {
        table.push(vec![
            f.source.as_str().into(),
            f.queue_url.as_str().into(),
            Cell::Number((f.lag_seconds.unwrap_or(0.0) * 10.0).round() / 10.0),
            Cell::Count(f.awaiting),
            Cell::Count(f.events),
            Cell::Count(f.stale_events),
            Cell::Count(f.missed_keys),
            f.last_event_at.as_deref().unwrap_or("-").into(),
            f.drained_at.as_deref().unwrap_or("-").into(),
            f.following_since.as_str().into(),
        ]);
    }
    table
}

/// One row per bucket pair, and a total when there are several.
pub fn table(rows: &[BucketStatus]) -> Table {
    let mut table = Table::new(
        "status",
        vec![
            "source",
            "destination",
            "listed",
            "copied",
            "verified",
            "mismatched",
            "failed",
            "skipped",
            "restoring",
            "oldest_restore_hours",
            "conflict",
            "filtered",
            "pending",
            "deleted",
            "open_uploads",
            "adopted",
            "bytes_listed",
            "bytes_copied",
            "done_percent",
            // The window the rate is measured over, and what the ETA is of:
            // failed, skipped and conflicting objects wait for a person.
            "rate_last_5_min",
            "eta_of_pending",
        ],
    );
    let mut total = BucketStatus {
        source: "total".into(),
        ..BucketStatus::default()
    };
    for r in rows {
        table.push(row(r));
        total.listed += r.listed;
        total.copied += r.copied;
        total.verified += r.verified;
        total.mismatched += r.mismatched;
        total.failed += r.failed;
        total.skipped += r.skipped;
        total.restoring += r.restoring;
        total.oldest_restore_secs = total.oldest_restore_secs.max(r.oldest_restore_secs);
        total.conflict += r.conflict;
        total.filtered += r.filtered;
        total.pending += r.pending;
        total.deleted += r.deleted;
        total.open_uploads += r.open_uploads;
        total.adopted += r.adopted;
        total.bytes_listed += r.bytes_listed;
        total.bytes_copied += r.bytes_copied;
        total.bytes_recent += r.bytes_recent;
        total.bytes_pending += r.bytes_pending;
    }
    if rows.len() > 1 {
        table.push(row(&total));
    }
    table
}

fn row(r: &BucketStatus) -> Vec<Cell> {
    let source = if r.prefix.is_empty() {
        r.source.clone()
    } else {
        format!("{}/{}", r.source, r.prefix)
    };
    let done = if r.bytes_listed == 0 {
        if r.pending == 0 {
            100.0
        } else {
            0.0
        }
    } else {
        r.bytes_copied as f64 * 100.0 / r.bytes_listed as f64
    };
    let rate = r.bytes_recent / RATE_WINDOW_SECS;
    let eta = match (r.bytes_pending, rate) {
        (0, _) => "nothing pending".to_owned(),
        (_, 0) => "-".to_owned(),
        (left, rate) => {
            humantime::format_duration(std::time::Duration::from_secs(left / rate)).to_string()
        }
    };
    vec![
        source.into(),
        r.destination.as_str().into(),
        Cell::Count(r.listed),
        Cell::Count(r.copied),
        Cell::Count(r.verified),
        Cell::Count(r.mismatched),
        Cell::Count(r.failed),
        Cell::Count(r.skipped),
        Cell::Count(r.restoring),
        // Hours, to the tenth: what AWS promises restores in.
        Cell::Number(
            r.oldest_restore_secs
                .map_or(0.0, |s| (s as f64 / 360.0).round() / 10.0),
        ),
        Cell::Count(r.conflict),
        Cell::Count(r.filtered),
        Cell::Count(r.pending),
        Cell::Count(r.deleted),
        Cell::Count(r.open_uploads),
        Cell::Count(r.adopted),
        Cell::Bytes(r.bytes_listed),
        Cell::Bytes(r.bytes_copied),
        Cell::Number(done),
        Cell::Rate(rate),
        eta.into(),
    ]
}
