//! Tag counts: how many tags each source object carries, as GetObjectTagging
//! answered `ferry plan --count-tags`. Kept so that a second plan asks only what is new.

use rusqlite::{params, Connection};

use super::State;

/// Up to `limit` objects of the pair whose tags were never asked, after the
/// object id `after`, in id order: (id, key). Filtered objects are left out.
pub fn tags_unasked(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT o.id, o.key FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3
           AND o.id > ?4 AND o.tag_count IS NULL AND o.state NOT IN ({})
         ORDER BY o.id LIMIT ?5",
        State::sql_list(&[State::Filtered, State::Deleted, State::Removed])
    ))?;
    let rows = stmt.query_map(
        params![source, destination, prefix, after, limit as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.collect()
}

/// Records the answers, (object id, tags), in one transaction.
pub fn record_tag_counts(conn: &mut Connection, counts: &[(i64, u32)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut update = tx.prepare_cached("UPDATE objects SET tag_count = ?2 WHERE id = ?1")?;
        for (id, n) in counts {
            update.execute(params![id, n])?;
        }
    }
    tx.commit()
}

/// Records every unasked object of the pair as without tags: for a store
/// that has no object tagging at all.
pub fn record_no_tags(
    conn: &mut Connection,
    (source, destination, prefix): (&str, &str, &str),
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET tag_count = 0 WHERE tag_count IS NULL AND bucket_id IN
            (SELECT id FROM buckets WHERE source = ?1 AND destination = ?2 AND prefix = ?3)",
        params![source, destination, prefix],
    )?;
    Ok(())
}
