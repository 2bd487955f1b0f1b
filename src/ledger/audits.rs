//! What `verify` reads back: the copies never read, or every copy in an audit
//! that carries on after an interruption. It chooses; verdicts are `objects.rs`'s.

use rusqlite::{params, Connection, OptionalExtension, ToSql};

use super::id_list;
use super::objects::ids_in_states;
use super::{State, VerifyItem};

/// Which copies a verify pass reads back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// Copies never read back (`verify --pending`, and a run's leftovers).
    Unread,
    /// Every copy that arrived (`verify --sample` draws from these).
    Arrived,
    /// Every copy not read back since this moment: an audit, from its start.
    NotSince(String),
}

impl ReadBack {
    fn states(&self) -> &'static [State] {
        match self {
            ReadBack::Unread => &[State::Copied],
            ReadBack::Arrived | ReadBack::NotSince(_) => State::READ_BACK,
        }
    }

    /// The condition on `o` (an object row) beyond its state; `?3` is the moment.
    fn condition(&self) -> &'static str {
        match self {
            ReadBack::Unread | ReadBack::Arrived => "",
            ReadBack::NotSince(_) => {
                // Read back since the audit began, and of the copy there now:
                // a copy made after its reading was not read by this audit.
                "AND NOT EXISTS (SELECT 1 FROM verifications v JOIN copies c2 ON c2.object_id = v.object_id
                 WHERE v.object_id = o.id AND v.checked_at >= ?3 AND v.checked_at >= c2.copied_at)"
            }
        }
    }

    fn since(&self) -> Option<&str> {
        match self {
            ReadBack::Unread | ReadBack::Arrived => None,
            ReadBack::NotSince(t) => Some(t),
        }
    }
}

/// A full read-back of every copy, begun at `started_at`.
#[derive(Clone, Debug)]
pub struct Audit {
    pub id: i64,
    pub started_at: String,
    /// It was begun by an earlier `verify` that was cut off.
    pub resumed: bool,
}

/// The audit a cut-off `verify` left, or a new one begun now.
pub fn begin_or_resume_audit(conn: &Connection) -> rusqlite::Result<Audit> {
    let open = conn
        .query_row(
            "SELECT id, started_at FROM audits WHERE finished_at IS NULL ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, started_at)) = open {
        return Ok(Audit {
            id,
            started_at,
            resumed: true,
        });
    }
    conn.query_row(
        "INSERT INTO audits (started_at) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
         RETURNING id, started_at",
        [],
        |r| {
            Ok(Audit {
                id: r.get(0)?,
                started_at: r.get(1)?,
                resumed: false,
            })
        },
    )
}

/// An audit that read back everything it had to: the next `verify` begins anew.
pub fn finish_audit(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE audits SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// How many copies, and bytes, `read_back` still has to read.
pub fn read_back_totals(
    conn: &Connection,
    bucket_ids: &[i64],
    read_back: &ReadBack,
) -> rusqlite::Result<(u64, u64)> {
    let (ids, states) = (id_list(bucket_ids), State::sql_list(read_back.states()));
    let condition = read_back.condition().replace("?3", "?1");
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM(o.size), 0) FROM objects o
         WHERE o.state IN ({states}) AND o.bucket_id IN ({ids}) {condition}"
    );
    let since = read_back.since();
    let args: Vec<&dyn ToSql> = since.iter().map(|t| t as &dyn ToSql).collect();
    conn.query_row(&sql, args.as_slice(), |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })
}

/// Copies to read back, in id order after `after_id`.
pub fn verify_batch(
    conn: &Connection,
    bucket_ids: &[i64],
    read_back: &ReadBack,
    after_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<VerifyItem>> {
    let and = format!(
        "AND EXISTS (SELECT 1 FROM copies c WHERE c.object_id = o.id AND c.source_etag = o.source_etag) {}",
        read_back.condition()
    );
    let per_state = ids_in_states(read_back.states(), bucket_ids, &and);
    let sql = format!(
        "SELECT o.id, b.source, b.destination, o.key, c.size, c.dest_etag, c.sha256, c.md5
         FROM ({per_state}) p JOIN objects o ON o.id = p.id JOIN buckets b ON b.id = o.bucket_id
         JOIN copies c ON c.object_id = o.id
         ORDER BY o.id LIMIT ?2"
    );
    let limit = limit as i64;
    let mut args: Vec<&dyn ToSql> = vec![&after_id, &limit];
    let since = read_back.since();
    if let Some(since) = &since {
        args.push(since);
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args.as_slice(), |r| {
        Ok(VerifyItem {
            object_id: r.get(0)?,
            source_bucket: r.get(1)?,
            dest_bucket: r.get(2)?,
            key: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            dest_etag: r.get(5)?,
            sha256: r.get(6)?,
            md5: r.get(7)?,
        })
    })?;
    rows.collect()
}
