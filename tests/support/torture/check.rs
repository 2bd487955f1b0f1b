//! The torture harness's invariants, checked against the real stores and the
//! ledger after every step. It reads both and never writes either.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_s3::Client;
use ferry::store::Side;

use super::world::{Changes, Key, World};

/// One broken invariant: the key it broke on (when one), and what differs.
#[derive(Debug)]
pub struct Violation {
    pub key: Option<Key>,
    pub what: String,
}

pub type Checked = Result<(), Violation>;

fn broken(key: Option<&Key>, what: String) -> Checked {
    Err(Violation {
        key: key.cloned(),
        what,
    })
}

/// Every key at the destination: size and bare ETag.
pub type Listing = BTreeMap<Key, (u64, String)>;

pub async fn destination_listing(world: &World, client: &Client) -> Listing {
    let mut all = Listing::new();
    for (i, pair) in world.pairs.iter().enumerate() {
        for (key, size, etag) in crate::support::list_all(client, &pair.destination).await {
            all.insert((i, key), (size, etag));
        }
    }
    all
}

/// No byte of another writer's object is overwritten or deleted.
pub fn others_untouched(world: &World, now: &Listing) -> Checked {
    for (key, version) in &world.other {
        match now.get(key) {
            None => return broken(Some(key), "the other writer's object is gone".into()),
            Some((size, etag)) if (*size, etag) != (version.object.size, &version.etag) => {
                return broken(
                    Some(key),
                    format!(
                        "the other writer's object was overwritten: it wrote {} B with ETag {}, the destination holds {size} B with ETag {etag}",
                        version.object.size, version.etag
                    ),
                )
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// No destination key is deleted while its source exists.
pub fn nothing_deleted_under_a_live_source(
    world: &World,
    before: &Listing,
    now: &Listing,
    changes: &Changes,
) -> Checked {
    for key in before.keys().filter(|k| !now.contains_key(*k)) {
        let source_alive = world.source.contains_key(key) && !changes.source_deleted.contains(key);
        if source_alive && !changes.other_deleted.contains(key) {
            return broken(
                Some(key),
                "deleted at the destination while its source exists".into(),
            );
        }
    }
    Ok(())
}

/// The other writer's uploads all survive ferry, and after a pass that
/// completed no upload of ferry's is left. `aborted` are the upload ids
/// ferry aborted, `completed` the keys it wrote (as the proxies saw).
/// Garage drops a key's uploads begun before a newer version of the key is
/// written, by a PUT or another upload's completion (README): such an
/// upload is taken out of the model, not counted against ferry.
pub async fn uploads(
    world: &mut World,
    client: &Client,
    (aborted, completed): (&HashSet<String>, &HashSet<String>),
    (pass_completed, garage): (bool, bool),
    excused: impl Fn(&ferry::cleanup::Incomplete) -> bool,
) -> Checked {
    let mut open = HashSet::new();
    for (i, pair) in world.pairs.iter().enumerate() {
        let listed = ferry::cleanup::incomplete_uploads(client, &pair.destination).await;
        for u in listed.expect("list the destination's uploads") {
            open.insert(u.upload_id.clone());
            let theirs = world
                .other_uploads
                .iter()
                .any(|o| o.upload_id == u.upload_id);
            if pass_completed && !theirs && !excused(&u) {
                return broken(
                    Some(&(i, u.key)),
                    format!(
                        "ferry's upload {} outlived a pass that completed",
                        u.upload_id
                    ),
                );
            }
        }
    }
    let mut kept = Vec::new();
    for upload in std::mem::take(&mut world.other_uploads) {
        if open.contains(&upload.upload_id) {
            kept.push(upload);
        } else if aborted.contains(&upload.upload_id) {
            return broken(
                Some(&upload.key),
                format!(
                    "ferry aborted the other writer's upload {}",
                    upload.upload_id
                ),
            );
        } else if !(garage && completed.contains(&upload.key.1)) {
            return broken(
                Some(&upload.key),
                format!("the other writer's upload {} vanished", upload.upload_id),
            );
        }
    }
    world.other_uploads = kept;
    Ok(())
}

/// What each copy read back hashed to, by (key, destination ETag): a copy
/// is read again only when the destination's listing says it changed.
pub type ReadBack = BTreeMap<(Key, String), String>;

/// Every `verified` row reads back byte-equal with the source version it
/// records, and its recorded SHA-256 is that version's.
pub async fn verified_rows_read_back(
    world: &World,
    ledger: &std::path::Path,
    client: &Client,
    now: &Listing,
    read: &mut ReadBack,
) -> Checked {
    if !ledger.exists() {
        return Ok(());
    }
    let rows: Vec<(String, String, String, String)> = {
        let db = rusqlite::Connection::open_with_flags(
            ledger,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut q = db
            .prepare(
                "SELECT b.destination, o.key, c.source_etag, c.sha256 FROM objects o \
                 JOIN copies c ON c.object_id = o.id JOIN buckets b ON b.id = o.bucket_id \
                 WHERE o.state = 'verified'",
            )
            .unwrap();
        let rows = q.query_map([], |r| {
            rusqlite::Result::Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        });
        rows.unwrap().map(Result::unwrap).collect()
    };
    for (bucket, key, source_etag, recorded) in rows {
        let Some(pair) = world.pair_of_destination(&bucket) else {
            return broken(
                None,
                format!("a verified row of a bucket the harness never made: {bucket}"),
            );
        };
        let key = (pair, key);
        let Some(version) = world.history.get(&(key.clone(), source_etag.clone())) else {
            return broken(
                Some(&key),
                format!("verified as source ETag {source_etag}, a version the source never held"),
            );
        };
        let Some((_, dest_etag)) = now.get(&key) else {
            return broken(Some(&key), "verified, and not at the destination".into());
        };
        let expected = version.expected_digests().sha256_hex();
        if recorded != expected {
            return broken(Some(&key), format!("the ledger recorded SHA-256 {recorded}, the source version {source_etag} has {expected}"));
        }
        let slot = (key.clone(), dest_etag.clone());
        if !read.contains_key(&slot) {
            let got = ferry_tools::demo::observe(client, Side::Destination, &bucket, &key.1).await;
            let got = got.unwrap_or_else(|e| panic!("read back {bucket}/{}: {e}", key.1));
            read.insert(slot.clone(), got.sha256);
        }
        if read[&slot] != expected {
            return broken(
                Some(&key),
                format!("verified, but the destination's bytes hash to {}, not source version {source_etag}'s {expected}", read[&slot]),
            );
        }
    }
    Ok(())
}

/// Peak memory stays within the budget plus a fixed overhead.
pub fn memory(peak_rss: u64, budget: u64, overhead: u64) -> Checked {
    if peak_rss > budget + overhead {
        return broken(
            None,
            format!(
                "peak RSS {} MiB over the budget {} MiB + {} MiB",
                peak_rss >> 20,
                budget >> 20,
                overhead >> 20
            ),
        );
    }
    Ok(())
}
