//! Listing into the ledger: pages and the cursor after each, committed together,
//! and the keys a finished listing no longer saw. It must not call a key deleted mid-listing.

use rusqlite::{params, Connection, OptionalExtension};

use super::{id_list, State};

/// An object as a listing page reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: Option<String>,
    pub storage_class: Option<String>,
    /// Why the bucket pair's filter leaves it out, if it does.
    pub filtered: Option<String>,
}

/// Storage classes whose objects must be restored before they can be read.
pub fn is_archived(storage_class: Option<&str>) -> bool {
    matches!(storage_class, Some("GLACIER" | "DEEP_ARCHIVE"))
}

/// Whether a listing (or an inventory) of the bucket ever ran to its end.
pub fn ever_listed(conn: &Connection, bucket_id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT listed_pass IS NOT NULL FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )
}

/// Where the listing of a bucket stopped, if it was interrupted.
pub fn list_cursor(conn: &Connection, bucket_id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT list_cursor FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )
}

/// How many keys the ledger holds for the bucket, counted up to `cap`: cheap
/// at any size.
pub fn keys_known(conn: &Connection, bucket_id: i64, cap: u64) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM (SELECT 1 FROM objects WHERE bucket_id = ?1 LIMIT ?2)",
        params![bucket_id, cap as i64],
        |r| r.get(0),
    )
}

/// Records one listing page and the cursor after it in one transaction, so a
/// listing resumes exactly after the last page that was committed.
///
/// A key seen with the same size and ETag keeps its state; a key whose size or
/// ETag changed goes back to `listed` (its old copy is no longer the source's).
/// A key that a filter leaves out becomes `filtered`, whatever it was: it is
/// seen, so it is never taken for deleted. When no filter leaves it out any
/// more, it is `copied` again if its copy is of this very version.
pub fn record_listing_page(
    conn: &mut Connection,
    bucket_id: i64,
    pass_id: i64,
    objects: &[ListedObject],
    cursor: &str,
) -> rusqlite::Result<()> {
    record_range_page(conn, (bucket_id, ""), pass_id, objects, cursor)
}

/// Rows in one listing upsert.
const ROWS_PER_UPSERT: usize = 64;

/// Records `rows` (ROWS_PER_UPSERT of them, or one) in one statement, each
/// as [`record_listing_page`] says.
fn upsert(
    tx: &rusqlite::Transaction<'_>,
    (bucket_id, restores): (i64, bool),
    pass_id: i64,
    rows: &[ListedObject],
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(&format!(
        "INSERT INTO objects (bucket_id, key, size, source_etag, last_modified, storage_class, state, last_error, seen_pass)
         VALUES {values}
         ON CONFLICT (bucket_id, key) DO UPDATE SET
            seen_pass = excluded.seen_pass,
            missing_passes = 0,
            last_modified = excluded.last_modified,
            storage_class = excluded.storage_class,
            state = CASE WHEN excluded.state = '{filtered}' THEN excluded.state
                         WHEN objects.state IN ({gone}) THEN excluded.state
                         WHEN objects.state = '{filtered}' THEN
                            CASE WHEN excluded.state = '{listed}' AND EXISTS (SELECT 1 FROM copies c
                                    WHERE c.object_id = objects.id AND c.source_etag = excluded.source_etag
                                      AND c.size = excluded.size)
                            THEN '{copied}' ELSE excluded.state END
                         WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                         THEN objects.state ELSE excluded.state END,
            attempts = CASE WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                         THEN objects.attempts ELSE 0 END,
            last_error = CASE WHEN excluded.state = '{filtered}' OR objects.state = '{filtered}' THEN excluded.last_error
                         WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                         THEN objects.last_error ELSE excluded.last_error END,
            tag_count = CASE WHEN objects.size = excluded.size AND objects.source_etag = excluded.source_etag
                         THEN objects.tag_count END,
            size = excluded.size,
            source_etag = excluded.source_etag
         WHERE NOT ({unchanged})",
        values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", "),
        unchanged = unchanged("excluded.state", "excluded.size", "excluded.source_etag"),
        gone = State::sql_list(State::GONE),
        filtered = State::Filtered,
        listed = State::Listed,
        copied = State::Copied,
    ))?;
    let states: Vec<(&str, Option<String>)> =
        rows.iter().map(|o| listed_state(o, restores)).collect();
    let sizes: Vec<i64> = rows.iter().map(|o| o.size as i64).collect();
    let values = row_values((&bucket_id, &pass_id), rows, &states, &sizes);
    statement.execute(values.as_slice())?;
    Ok(())
}

/// The nine values of each listed row, as both statements bind them:
/// bucket, key, size, ETag, last modified, storage class, state, why, pass.
fn row_values<'a>(
    (bucket_id, pass_id): (&'a i64, &'a i64),
    rows: &'a [ListedObject],
    states: &'a [(&'static str, Option<String>)],
    sizes: &'a [i64],
) -> Vec<&'a dyn rusqlite::ToSql> {
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(rows.len() * 9);
    for ((o, (state, reason)), size) in rows.iter().zip(states).zip(sizes) {
        values.extend_from_slice(&[
            bucket_id,
            &o.key,
            size,
            &o.etag,
            &o.last_modified,
            &o.storage_class,
            state,
            reason,
            pass_id,
        ]);
    }
    values
}

/// The state a listed object is recorded in when new, and why.
/// `restores`: the bucket pair restores archived objects before copying them.
fn listed_state(o: &ListedObject, restores: bool) -> (&'static str, Option<String>) {
    if let Some(rule) = &o.filtered {
        (State::Filtered.name(), Some(rule.clone()))
    } else if is_archived(o.storage_class.as_deref()) && restores {
        (
            State::Restoring.name(),
            Some("archived at the source: ferry restores it, then copies it".into()),
        )
    } else if is_archived(o.storage_class.as_deref()) {
        (
            State::Skipped.name(),
            Some(format!(
                "archived in {}: restore it at the source, then run again",
                o.storage_class.as_deref().unwrap_or("?")
            )),
        )
    } else {
        (State::Listed.name(), None)
    }
}

/// The SQL condition under which a listed row leaves a recorded one as it
/// is, but for when it was seen: same size and ETag, and no state to move
/// (not filtered now or before, not gone).
fn unchanged(state: &str, size: &str, etag: &str) -> String {
    format!(
        "{state} != '{filtered}' AND objects.state NOT IN ({gone}, '{filtered}')
         AND objects.size = {size} AND objects.source_etag = {etag}",
        filtered = State::Filtered,
        gone = State::sql_list(State::GONE),
    )
}

/// Marks the rows that a listing found unchanged as seen, and returns
/// their keys. Only columns no index holds are written, so a re-listing of
/// unchanged keys touches no index and fires no trigger.
fn seen_unchanged(
    tx: &rusqlite::Transaction<'_>,
    (bucket_id, pass_id, restores): (i64, i64, bool),
    rows: &[ListedObject],
) -> rusqlite::Result<std::collections::HashSet<String>> {
    let mut statement = tx.prepare_cached(&format!(
        "UPDATE objects SET seen_pass = v.column9, missing_passes = 0,
            last_modified = v.column5, storage_class = v.column6
         FROM (VALUES {values}) AS v
         WHERE objects.bucket_id = v.column1 AND objects.key = v.column2 AND {unchanged}
         RETURNING objects.key",
        values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", "),
        unchanged = unchanged("v.column7", "v.column3", "v.column4"),
    ))?;
    let states: Vec<(&str, Option<String>)> =
        rows.iter().map(|o| listed_state(o, restores)).collect();
    let sizes: Vec<i64> = rows.iter().map(|o| o.size as i64).collect();
    let values = row_values((&bucket_id, &pass_id), rows, &states, &sizes);
    let seen = statement
        .query_map(values.as_slice(), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(seen)
}

/// As [`record_listing_page`], for the range of the bucket's listing that
/// starts after `range`: the page and the range's cursor, together.
pub fn record_range_page(
    conn: &mut Connection,
    (bucket_id, range): (i64, &str),
    pass_id: i64,
    objects: &[ListedObject],
    cursor: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    record_rows(&tx, bucket_id, pass_id, objects)?;
    tx.execute(
        "UPDATE list_ranges SET cursor = ?3 WHERE bucket_id = ?1 AND first_after = ?2",
        params![bucket_id, range, cursor],
    )?;
    // The bucket's own cursor says a listing is under way (`plan`, tests).
    tx.execute(
        "UPDATE buckets SET list_cursor = ?2 WHERE id = ?1",
        params![bucket_id, cursor],
    )?;
    tx.commit()
}

/// Records listed `objects` as seen in `pass_id`, each as
/// [`record_listing_page`] says, inside the caller's transaction.
pub(super) fn record_rows(
    tx: &rusqlite::Transaction<'_>,
    bucket_id: i64,
    pass_id: i64,
    objects: &[ListedObject],
) -> rusqlite::Result<()> {
    let restores = super::restores_archives(tx, bucket_id)?;
    // Many rows a statement: SQLite's per-statement work (a savepoint, its
    // journal of each page touched, cursors) is paid once for them all.
    // That is a third of the ingest time at a row a statement.
    // Unchanged keys first, with no index write; the rest are upserted.
    let mut rest = Vec::new();
    for chunk in objects.chunks(ROWS_PER_UPSERT) {
        let seen = seen_unchanged(tx, (bucket_id, pass_id, restores), chunk)?;
        rest.extend(chunk.iter().filter(|o| !seen.contains(&o.key)).cloned());
    }
    let mut chunks = rest.chunks_exact(ROWS_PER_UPSERT);
    for chunk in chunks.by_ref() {
        upsert(tx, (bucket_id, restores), pass_id, chunk)?;
    }
    for one in chunks.remainder().chunks(1) {
        upsert(tx, (bucket_id, restores), pass_id, one)?;
    }
    Ok(())
}

/// The pass a bucket's listing belongs to: `pass_id` for a fresh listing,
/// the earlier pass for one resumed from its cursor.
pub fn listing_pass(conn: &Connection, bucket_id: i64, pass_id: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "UPDATE buckets SET listing_pass = ?2 WHERE id = ?1
           AND (listing_pass IS NULL OR NOT EXISTS (SELECT 1 FROM list_ranges WHERE bucket_id = ?1))",
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
/// One transaction: cut off between its statements, the listing would look
/// finished with its ranges still there, and the next pass would call every
/// key of the bucket missing without listing one.
pub fn finish_listing(conn: &Connection, bucket_id: i64, pass_id: i64) -> rusqlite::Result<usize> {
    let tx = conn.unchecked_transaction()?;
    let newly_missing = finish_listing_in(&tx, bucket_id, pass_id)?;
    tx.commit()?;
    Ok(newly_missing)
}

fn finish_listing_in(conn: &Connection, bucket_id: i64, pass_id: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE buckets SET list_cursor = NULL, listed_pass = ?2, listing_pass = NULL,
            listed_as_of = (SELECT started_at FROM passes WHERE id = ?2) WHERE id = ?1",
        params![bucket_id, pass_id],
    )?;
    conn.execute("DELETE FROM list_ranges WHERE bucket_id = ?1", [bucket_id])?;
    // A removed key stays removed: its copy is gone too.
    conn.execute(
        &format!(
            "UPDATE objects SET missing_passes = missing_passes + 1, state = '{deleted}'
             WHERE bucket_id = ?1 AND seen_pass IS NOT ?2 AND state != '{removed}'",
            deleted = State::Deleted,
            removed = State::Removed
        ),
        params![bucket_id, pass_id],
    )?;
    conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM objects WHERE bucket_id = ?1 AND state = '{}' AND missing_passes = 1",
            State::Deleted
        ),
        [bucket_id],
        |r| r.get::<_, i64>(0).map(|n| n as usize),
    )
}

/// A key deleted at the source that may be removed at the destination.
#[derive(Clone, Debug)]
pub struct Deletable {
    pub object_id: i64,
    pub source_bucket: String,
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
        "SELECT o.id, b.source, b.destination, o.key, c.dest_etag FROM objects o JOIN buckets b ON b.id = o.bucket_id
         LEFT JOIN copies c ON c.object_id = o.id
         WHERE o.state = '{deleted}' AND o.missing_passes >= ?1 AND o.id > ?2 AND o.bucket_id IN ({ids})
         ORDER BY o.id LIMIT ?3",
        deleted = State::Deleted
    ))?;
    let rows = stmt.query_map(params![passes, after_id, limit as i64], |r| {
        Ok(Deletable {
            object_id: r.get(0)?,
            source_bucket: r.get(1)?,
            dest_bucket: r.get(2)?,
            key: r.get(3)?,
            copied_etag: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// A key the listings called gone, which a HEAD found at the source: not
/// removed, and counted as gone afresh from the next listing on.
pub fn record_still_at_source(conn: &Connection, object_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "UPDATE objects SET missing_passes = 0,
               last_error = 'listed as gone, but the source still answers for it: not removed'
             WHERE id = ?1 AND state = '{deleted}'",
            deleted = State::Deleted
        ),
        params![object_id],
    )?;
    Ok(())
}

/// A manifest's creationTimestamp (milliseconds, the SQL parameter `param`)
/// as the ledger writes times.
fn as_of(param: &str) -> String {
    format!("strftime('%Y-%m-%dT%H:%M:%fZ', {param} / 1000.0, 'unixepoch')")
}

/// When the bucket's last complete listing shows it as of a later time than
/// `created_ms` (an inventory manifest's creationTimestamp), that time: the
/// manifest is older than what the ledger knows.
pub fn listed_after(
    conn: &Connection,
    bucket_id: i64,
    created_ms: i64,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        &format!(
            "SELECT listed_as_of FROM buckets WHERE id = ?1 AND listed_as_of > {}",
            as_of("?2")
        ),
        params![bucket_id, created_ms],
        |r| r.get(0),
    )
    .optional()
}

/// The inventory manifest the bucket was last listed from, if any.
pub fn inventory_manifest(conn: &Connection, bucket_id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT inventory_manifest FROM buckets WHERE id = ?1",
        [bucket_id],
        |r| r.get(0),
    )
}

/// Ends a listing read from an inventory. Unlike [`finish_listing`], keys
/// it did not hold are not counted missing: an inventory is a day old, and
/// a key written since is not in it, so only a real listing may say that a
/// key is gone (and so lead to a deletion).
/// `manifest` is None for a read that does not use the inventory up (the
/// one `plan` makes before the first pass); `created_ms` is its
/// creationTimestamp: the bucket is now known as of then.
pub fn finish_inventory(
    conn: &Connection,
    (bucket_id, pass_id): (i64, i64),
    manifest: Option<&str>,
    created_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "UPDATE buckets SET list_cursor = NULL, listed_pass = ?2, listing_pass = NULL,
                inventory_manifest = COALESCE(?3, inventory_manifest), listed_as_of = {} WHERE id = ?1",
            as_of("?4")
        ),
        params![bucket_id, pass_id, manifest, created_ms],
    )?;
    conn.execute("DELETE FROM list_ranges WHERE bucket_id = ?1", [bucket_id])?;
    Ok(())
}
