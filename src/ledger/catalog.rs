//! Reads for `plan` and `report`: a bucket pair's objects as the ledger
//! holds them, streamed row by row. It must not write.

use rusqlite::{params, Connection, OptionalExtension};

use super::State;

/// One object as the last listing saw it.
#[derive(Clone, Debug)]
pub struct CatalogRow {
    pub key: String,
    pub size: u64,
    pub source_etag: String,
    /// `STANDARD` when the listing named none.
    pub storage_class: String,
    /// Why the filter leaves it out, if it does.
    pub filtered: Option<String>,
    /// Its tags at the source, when `plan --count-tags` asked.
    pub tag_count: Option<u32>,
}

/// Calls `each` for every object of the pair (source, destination, prefix)
/// that the last listing saw (keys gone from the source are not there to
/// catalog), one row at a time: memory holds one row, not the keys.
pub fn for_each_object(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
    mut each: impl FnMut(CatalogRow),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT o.key, o.size, o.source_etag, COALESCE(o.storage_class, 'STANDARD'),
                CASE WHEN o.state = '{filtered}' THEN o.last_error END, o.tag_count
         FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3 AND o.state NOT IN ({gone})",
        filtered = State::Filtered,
        gone = State::sql_list(State::GONE),
    ))?;
    let mut rows = stmt.query(params![source, destination, prefix])?;
    while let Some(r) = rows.next()? {
        each(CatalogRow {
            key: r.get(0)?,
            size: r.get::<_, i64>(1)? as u64,
            source_etag: r.get(2)?,
            storage_class: r.get(3)?,
            filtered: r.get(4)?,
            tag_count: r.get(5)?,
        });
    }
    Ok(())
}

/// The `n` largest objects of the pair that a copy takes: (key, size),
/// largest first.
pub fn largest(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
    n: usize,
) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT o.key, o.size FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3 AND o.state NOT IN ({})
         ORDER BY o.size DESC, o.key LIMIT ?4",
        State::sql_list(State::NOT_TAKEN)
    ))?;
    let rows = stmt.query_map(params![source, destination, prefix, n as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}

/// Whether the pair's last listing ran to the end.
pub fn listing_complete(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
) -> rusqlite::Result<bool> {
    let complete: Option<bool> = conn
        .query_row(
            "SELECT listed_pass IS NOT NULL AND list_cursor IS NULL FROM buckets
             WHERE source = ?1 AND destination = ?2 AND prefix = ?3",
            params![source, destination, prefix],
            |r| r.get(0),
        )
        .optional()?;
    Ok(complete == Some(true))
}

/// What the ledger says of one key, for `report`.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub state: State,
    pub source_etag: String,
    pub reason: Option<String>,
    /// From the copy: the source version it was made from, and the ETag it got.
    pub copied_from: Option<String>,
    pub dest_etag: Option<String>,
}

/// The pair's keys after `after` (all with None), in key order (bytewise,
/// as S3 lists them), at most `limit`, with what the ledger says of each.
pub fn key_records(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
    after: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<(String, KeyRecord)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.key, o.state, o.source_etag, o.last_error, c.source_etag, c.dest_etag
         FROM buckets b JOIN objects o ON o.bucket_id = b.id LEFT JOIN copies c ON c.object_id = o.id
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3 AND o.key > ?4
         ORDER BY o.key LIMIT ?5",
    )?;
    let after = after.unwrap_or_default();
    let rows = stmt.query_map(
        params![source, destination, prefix, after, limit as i64],
        |r| {
            let name: String = r.get(1)?;
            let state = State::parse(&name).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Text,
                    format!("unknown object state {name:?}").into(),
                )
            })?;
            Ok((
                r.get(0)?,
                KeyRecord {
                    state,
                    source_etag: r.get(2)?,
                    reason: r.get(3)?,
                    copied_from: r.get(4)?,
                    dest_etag: r.get(5)?,
                },
            ))
        },
    )?;
    rows.collect()
}

/// The shard a bucket pair was listed with ("I/N", or "all"); None when this
/// ledger never listed the pair.
pub fn listed_scope(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT COALESCE(b.shard, 'all') FROM buckets b
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3
           AND EXISTS (SELECT 1 FROM objects o WHERE o.bucket_id = b.id)",
        params![source, destination, prefix],
        |r| r.get(0),
    )
    .optional()
}

/// How many copies of a bucket pair ferry adopted (found at the destination
/// without a ledger record and proved to be the source's bytes).
pub fn adopted_count(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM copies c CROSS JOIN objects o ON o.id = c.object_id
         JOIN buckets b ON b.id = o.bucket_id
         WHERE c.adopted_at IS NOT NULL AND b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3",
        params![source, destination, prefix],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

/// The pair's copies by what proved their bytes were the source's
/// (`copies.proof`: `etag`, `checksum`, `etag+checksum`, `none`), and
/// those recorded before ferry kept it (`not recorded`).
pub fn proof_counts(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(c.proof, 'not recorded'), COUNT(*) FROM copies c CROSS JOIN objects o ON o.id = c.object_id
         JOIN buckets b ON b.id = o.bucket_id
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3 GROUP BY 1",
    )?;
    let rows = stmt.query_map(params![source, destination, prefix], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}

/// As [`proof_counts`], over the copies of `bucket_ids` together.
pub fn proof_totals(conn: &Connection, bucket_ids: &[i64]) -> rusqlite::Result<Vec<(String, u64)>> {
    let ids = serde_json::to_string(bucket_ids).unwrap_or_else(|_| "[]".into());
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(c.proof, 'not recorded'), COUNT(*) FROM copies c CROSS JOIN objects o ON o.id = c.object_id
         WHERE o.bucket_id IN (SELECT value FROM json_each(?1)) GROUP BY 1 ORDER BY 1",
    )?;
    let rows = stmt.query_map([ids], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

/// When the destination last changed by ferry's hand: a copy made or read
/// back, or a key removed. On a frozen source whose destination is equal,
/// the time it became equal.
pub fn last_change_at(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT MAX(t) FROM (SELECT MAX(copied_at) AS t FROM copies
                             UNION ALL SELECT MAX(checked_at) FROM verifications WHERE ok
                             UNION ALL SELECT MAX(removed_at) FROM objects INDEXED BY objects_by_state WHERE state = 'removed')",
        [],
        |r| r.get(0),
    )
}
