//! A bucket's listing in key ranges: each range's extent, cursor and end, and
//! a range split in two while it is listed. It must not leave a key in no range.

use rusqlite::{params, Connection};

/// One key range of a bucket's listing: keys k with `first_after < k <= last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRange {
    pub first_after: String,
    /// None: to the end of the bucket.
    pub last: Option<String>,
    /// The last key committed; the range resumes after it.
    pub cursor: Option<String>,
    pub done: bool,
}

impl ListRange {
    /// Whether `key` falls in the range.
    pub fn holds(&self, key: &str) -> bool {
        key > self.first_after.as_str() && self.last.as_deref().is_none_or(|l| key <= l)
    }

    /// The key to list after: the cursor, or the range's start.
    pub fn resume_after(&self) -> Option<&str> {
        self.cursor
            .as_deref()
            .or(Some(self.first_after.as_str()).filter(|s| !s.is_empty()))
    }
}

/// The ranges of the bucket's listing under way, in key order: those of an
/// interrupted listing, or, for a fresh one, new ranges split at `bounds`
/// (the inclusive last key of each range but the last).
pub fn list_ranges(
    conn: &mut Connection,
    bucket_id: i64,
    bounds: &[String],
) -> rusqlite::Result<Vec<ListRange>> {
    let tx = conn.transaction()?;
    let existing: i64 = tx.query_row(
        "SELECT COUNT(*) FROM list_ranges WHERE bucket_id = ?1",
        [bucket_id],
        |r| r.get(0),
    )?;
    if existing == 0 {
        let mut firsts = vec![String::new()];
        firsts.extend(bounds.iter().cloned());
        let mut lasts: Vec<Option<String>> = bounds.iter().cloned().map(Some).collect();
        lasts.push(None);
        for (first_after, last) in firsts.iter().zip(&lasts) {
            tx.execute(
                "INSERT INTO list_ranges (bucket_id, first_after, last) VALUES (?1, ?2, ?3)",
                params![bucket_id, first_after, last],
            )?;
        }
    }
    let ranges = {
        let mut stmt = tx.prepare(
            "SELECT first_after, last, cursor, done FROM list_ranges WHERE bucket_id = ?1 ORDER BY first_after",
        )?;
        let rows = stmt.query_map([bucket_id], |r| {
            Ok(ListRange {
                first_after: r.get(0)?,
                last: r.get(1)?,
                cursor: r.get(2)?,
                done: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    Ok(ranges)
}

/// Whether the bucket has a listing under way (its ranges are recorded).
pub fn listing_under_way(conn: &Connection, bucket_id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM list_ranges WHERE bucket_id = ?1)",
        [bucket_id],
        |r| r.get(0),
    )
}

/// A range reached its end, `last`. Only a range recorded with that very
/// end is marked done: were a split not recorded, the range would still
/// reach past `last`, and what lies beyond must be listed on resume.
pub fn finish_range(
    conn: &Connection,
    bucket_id: i64,
    (first_after, last): (&str, Option<&str>),
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE list_ranges SET done = 1 WHERE bucket_id = ?1 AND first_after = ?2 AND last IS ?3",
        params![bucket_id, first_after, last],
    )?;
    Ok(())
}

/// Splits the range that starts after `first_after` at `at`: it now ends at
/// `at`, and a new range holds what it held after `at`. One transaction, so
/// the two always cover what the one did.
pub fn split_range(
    conn: &mut Connection,
    bucket_id: i64,
    first_after: &str,
    at: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let last: Option<String> = tx.query_row(
        "SELECT last FROM list_ranges WHERE bucket_id = ?1 AND first_after = ?2 AND done = 0",
        params![bucket_id, first_after],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE list_ranges SET last = ?3 WHERE bucket_id = ?1 AND first_after = ?2",
        params![bucket_id, first_after, at],
    )?;
    tx.execute(
        "INSERT INTO list_ranges (bucket_id, first_after, last) VALUES (?1, ?2, ?3)",
        params![bucket_id, at, last],
    )?;
    tx.commit()
}

/// Boundaries that cut the keys the ledger knows of a bucket into `n` parts
/// of equal count, and the last key it knows: a listing done before says
/// how the keys lie. Empty when it knows fewer than `n` keys.
pub fn key_quantiles(
    conn: &Connection,
    bucket_id: i64,
    n: usize,
) -> rusqlite::Result<(Vec<String>, Option<String>)> {
    let known: i64 = conn.query_row(
        "SELECT COALESCE(SUM(objects), 0) FROM state_totals WHERE bucket_id = ?1",
        [bucket_id],
        |r| r.get(0),
    )?;
    let step = known / n.max(1) as i64;
    if step == 0 {
        return Ok((Vec::new(), None));
    }
    let mut stmt = conn.prepare(
        "SELECT key FROM (SELECT key, row_number() OVER (ORDER BY key) AS i
                            FROM objects WHERE bucket_id = ?1)
         WHERE i % ?2 = 0 LIMIT ?3",
    )?;
    let bounds = stmt
        .query_map(params![bucket_id, step, n as i64 - 1], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let last = conn.query_row(
        "SELECT MAX(key) FROM objects WHERE bucket_id = ?1",
        [bucket_id],
        |r| r.get(0),
    )?;
    Ok((bounds, last))
}
