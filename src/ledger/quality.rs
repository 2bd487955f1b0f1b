//! Reads for `plan`'s data-quality checks: keys sorted by a form of the key,
//! objects sorted by content. It must not write, nor hold the keys in memory:
//! SQLite sorts, on disk when the rows do not fit its cache.

use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection};

use super::State;

/// Calls `each(form, key)` for every object of the pair that a copy takes
/// (the filter's, still at the source), in the order of `form(key)`, so that keys sharing a form come one
/// after another. Memory holds one row.
pub fn for_each_key_by_form(
    conn: &Connection,
    (source, destination, prefix): (&str, &str, &str),
    form: fn(&str) -> String,
    mut each: impl FnMut(String, String),
) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "ferry_form",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| Ok(form(&ctx.get::<String>(0)?)),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT ferry_form(o.key) AS form, o.key
         FROM objects o JOIN buckets b ON b.id = o.bucket_id
         WHERE b.source = ?1 AND b.destination = ?2 AND b.prefix = ?3 AND o.state NOT IN ({})
         ORDER BY form, o.key",
        State::sql_list(State::NOT_TAKEN)
    ))?;
    let mut rows = stmt.query(params![source, destination, prefix])?;
    while let Some(r) = rows.next()? {
        each(r.get(0)?, r.get(1)?);
    }
    Ok(())
}

/// One object as the duplicate check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentRow {
    pub pair: (String, String, String),
    pub key: String,
    pub size: u64,
    /// `md5:…` for a single-part source object (its ETag is its MD5),
    /// `sha256:…` for a multipart one copied from this very version.
    pub content: String,
}

/// Calls `each` for every non-empty object that a copy takes and whose
/// content is known, across every bucket of the ledger, in the order of
/// (size, content): objects with the same bytes come one after another.
pub fn for_each_by_content(
    conn: &Connection,
    mut each: impl FnMut(ContentRow),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT b.source, b.destination, b.prefix, o.key, o.size,
                CASE WHEN o.source_etag NOT LIKE '%-%' THEN 'md5:' || o.source_etag
                     WHEN c.sha256 != '' THEN 'sha256:' || c.sha256 END AS content
         FROM objects o JOIN buckets b ON b.id = o.bucket_id
         LEFT JOIN copies c ON c.object_id = o.id AND c.source_etag = o.source_etag
         WHERE o.size > 0 AND o.state NOT IN ({}) AND content IS NOT NULL
         ORDER BY o.size, content, b.source, o.key",
        State::sql_list(State::NOT_TAKEN)
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        each(ContentRow {
            pair: (r.get(0)?, r.get(1)?, r.get(2)?),
            key: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            content: r.get(5)?,
        });
    }
    Ok(())
}
