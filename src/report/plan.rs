//! `ferry plan`: what is there before anything moves, and the time and egress
//! cost to expect. It must not copy; it reads the ledger's listing.
//!
//! `ferry plan`: what is there before anything moves — objects, bytes, size
//! spread, storage classes, what will not copy as is, and the time and AWS
//! egress cost to expect. Computed from the ledger's listing.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::quality::{self, Quality};
use super::render::{Cell, Table};
use crate::config::BucketPair;
use crate::ledger;

/// Hetzner Object Storage limits and billing that change a plan.
const HETZNER_MAX_OBJECT: u64 = 5_000_000_000_000; // 5 TB
const HETZNER_MAX_BUCKET_OBJECTS: u64 = 50_000_000;
const HETZNER_MAX_BUCKET_BYTES: u64 = 100_000_000_000_000; // 100 TB
const HETZNER_MIN_BILLABLE: u64 = 64 * 1024;
const MAX_KEY_BYTES: u64 = 1024;
/// AWS gives the first 100 GB of internet egress each month free.
const FREE_EGRESS_GB: f64 = 100.0;

/// Size classes of the histogram: (column, upper bound exclusive).
const SIZE_CLASSES: [(&str, u64); 5] = [
    ("lt_64KiB", 64 << 10),
    ("lt_1MiB", 1 << 20),
    ("lt_16MiB", 16 << 20),
    ("lt_256MiB", 256 << 20),
    ("lt_5GiB", 5 << 30),
];

#[derive(Clone, Debug)]
pub struct Assumptions {
    /// Bytes per second the copy can sustain.
    pub bandwidth: f64,
    pub bandwidth_text: String,
    pub egress_price_per_gb: f64,
    /// Whether the copy takes the objects' tags along (`copy_tags`).
    pub copy_tags: bool,
}

pub use crate::config::parse_bandwidth;

struct BucketPlan {
    pair: BucketPair,
    objects: u64,
    bytes: u64,
    histogram: [u64; 6],
    multipart: u64,
    classes: BTreeMap<String, (u64, u64)>,
    extensions: BTreeMap<String, u64>,
    small: u64,
    long_keys: Vec<String>,
    huge: u64,
    /// Filter rule → (objects, bytes) it leaves out.
    filtered: BTreeMap<String, (u64, u64)>,
    /// Objects with tags, and objects whose tags were never asked.
    tagged: u64,
    tags_unasked: u64,
}

fn bucket_plan(
    conn: &Connection,
    pair: &BucketPair,
    quality: &mut Quality,
) -> rusqlite::Result<BucketPlan> {
    let mut plan = BucketPlan {
        pair: pair.clone(),
        objects: 0,
        bytes: 0,
        histogram: [0; 6],
        multipart: 0,
        classes: BTreeMap::new(),
        extensions: BTreeMap::new(),
        small: 0,
        long_keys: Vec::new(),
        huge: 0,
        filtered: BTreeMap::new(),
        tagged: 0,
        tags_unasked: 0,
    };
    // One streaming pass over the rows: memory holds counters, not keys.
    ledger::for_each_object(conn, pair_key(pair), |row| {
        let (key, size) = (row.key, row.size);
        if let Some(rule) = row.filtered {
            let left_out = plan.filtered.entry(rule).or_default();
            left_out.0 += 1;
            left_out.1 += size;
            return;
        }
        plan.objects += 1;
        plan.bytes += size;
        match row.tag_count {
            Some(0) => {}
            Some(_) => plan.tagged += 1,
            None => plan.tags_unasked += 1,
        }
        quality::check_key(&pair.source, &key, size, quality);
        let slot = SIZE_CLASSES
            .iter()
            .position(|(_, limit)| size < *limit)
            .unwrap_or(5);
        plan.histogram[slot] += 1;
        if row.source_etag.contains('-') {
            plan.multipart += 1;
        }
        let entry = plan.classes.entry(row.storage_class).or_default();
        entry.0 += 1;
        entry.1 += size;
        let ext = quality::extension(&key)
            .filter(|e| e.len() <= 8)
            .unwrap_or_else(|| "(none)".into());
        *plan.extensions.entry(ext).or_default() += 1;
        if size < HETZNER_MIN_BILLABLE {
            plan.small += 1;
        }
        if key.len() as u64 > MAX_KEY_BYTES {
            plan.long_keys.push(key);
        }
        if size > HETZNER_MAX_OBJECT {
            plan.huge += 1;
        }
    })?;
    Ok(plan)
}

/// The kind of data an extension holds, in the team's catalog words.
fn category(extension: &str) -> &'static str {
    match extension {
        "mp3" | "m4a" | "m4b" | "aac" | "wav" | "flac" | "ogg" | "oga" | "opus" => "audio",
        "jpg" | "jpeg" | "png" | "gif" | "webp" | "tif" | "tiff" | "svg" => "images",
        "xml" | "onix" => "XML metadata",
        "zip" | "tar" | "gz" | "tgz" | "7z" | "rar" | "bz2" | "xz" => "archives",
        _ => "other",
    }
}

/// One bucket in the shape of the team's catalog: what it is, how big, how
/// it moves, what will not move as is, how it is proved, where it stands.
fn catalog_row(
    p: &BucketPlan,
    warnings: &Table,
    status: Option<&ledger::BucketStatus>,
    a: &Assumptions,
) -> Vec<Cell> {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for (ext, n) in &p.extensions {
        *kinds.entry(category(ext)).or_default() += n;
    }
    let mut kinds: Vec<(&str, u64)> = kinds.into_iter().collect();
    kinds.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    let share = |n: u64| n as f64 * 100.0 / p.objects.max(1) as f64;
    let data_category = kinds
        .iter()
        .map(|(k, n)| format!("{k} ({:.0} %)", share(*n)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut formats: Vec<(&String, &u64)> = p.extensions.iter().collect();
    formats.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    let formats = formats
        .iter()
        .take(8)
        .map(|(e, n)| format!("{e} ({n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let classes = p.classes.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut not_as_is: Vec<String> = warnings
        .rows
        .iter()
        .filter(|w| w[0] == Cell::from(p.pair.source.as_str()))
        .filter_map(|w| match (&w[1], &w[2]) {
            (Cell::Text(t), Cell::Count(n)) if !t.starts_with("objects under Hetzner's 64 KB") => {
                Some(format!("{n}: {t}"))
            }
            _ => None,
        })
        .collect();
    let filtered: u64 = p.filtered.values().map(|(n, _)| n).sum();
    if filtered > 0 {
        not_as_is.push(format!("{filtered} left out by the bucket's filter"));
    }
    if p.tagged > 0 && !a.copy_tags {
        not_as_is.push(format!("{} objects' tags (copy_tags = false)", p.tagged));
    }
    let status = match status {
        // `copied` counts every object that arrived, the verified ones too.
        Some(s) if s.copied > 0 => {
            let wanted = s.listed.saturating_sub(s.filtered + s.deleted);
            format!(
                "{} of {} copied ({:.1} %), {} verified, {} failed, {} pending",
                s.copied,
                wanted,
                s.copied as f64 * 100.0 / wanted.max(1) as f64,
                s.verified,
                s.failed + s.mismatched,
                s.pending
            )
        }
        Some(_) => "listed, nothing copied yet".into(),
        None => "not listed".into(),
    };
    vec![
        p.pair.source.as_str().into(),
        data_category.into(),
        Cell::Count(p.objects),
        Cell::Bytes(p.bytes),
        formats.into(),
        classes.into(),
        "online copy by ferry; incremental passes pick up changes until cut-over".into(),
        hours(p.bytes, a).into(),
        Cell::Number(gb(p.bytes) * a.egress_price_per_gb),
        format!(
            "{} sustained, egress at {} USD per GB (before AWS's free 100 GB a month)",
            a.bandwidth_text, a.egress_price_per_gb
        )
        .into(),
        tags_text(p, a).into(),
        if not_as_is.is_empty() {
            "none".into()
        } else {
            not_as_is.join("; ").into()
        },
        "every copy read back and its SHA-256 compared with the bytes sent; `ferry report` reconciles both stores with the ledger".into(),
        status.into(),
    ]
}

/// How many objects carry tags, as far as `plan --count-tags` has asked.
fn tags_text(p: &BucketPlan, a: &Assumptions) -> String {
    let asked = p.objects - p.tags_unasked;
    let copied = if a.copy_tags {
        "copied with the objects"
    } else {
        "not copied (copy_tags = false)"
    };
    if p.objects == 0 {
        "no objects".into()
    } else if asked == 0 {
        "not counted: `ferry plan --count-tags` asks each object (one GetObjectTagging each)".into()
    } else if p.tags_unasked > 0 {
        format!(
            "{} of the {asked} objects asked carry tags; {} not asked yet (`ferry plan --count-tags`); {copied}",
            p.tagged, p.tags_unasked
        )
    } else {
        format!("{} of {} objects carry tags; {copied}", p.tagged, p.objects)
    }
}

fn hours(bytes: u64, a: &Assumptions) -> String {
    let secs = bytes as f64 / a.bandwidth;
    humantime::format_duration(std::time::Duration::from_secs(secs.ceil() as u64)).to_string()
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// Whether every pair has a complete listing in the ledger.
pub fn all_listed(conn: &Connection, pairs: &[BucketPair]) -> rusqlite::Result<bool> {
    for p in pairs {
        if !ledger::listing_complete(conn, pair_key(p))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The ledger's name for a bucket pair.
fn pair_key(p: &BucketPair) -> (&str, &str, &str) {
    (&p.source, &p.destination, &p.prefix)
}

/// The plan for `pairs`, as tables: per bucket, the largest objects, the
/// warnings, the assumptions behind the estimates, and the data-quality
/// findings (added to `quality`, which may hold `--deep` ones already).
pub fn plan_tables(
    conn: &Connection,
    pairs: &[BucketPair],
    a: &Assumptions,
    mut quality: Quality,
) -> rusqlite::Result<Vec<Table>> {
    let plans = pairs
        .iter()
        .map(|p| bucket_plan(conn, p, &mut quality))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for p in pairs {
        quality::collisions(conn, p, &mut quality)?;
    }
    quality::duplicates(conn, pairs, &mut quality)?;
    let mut columns = vec!["bucket", "objects", "bytes"];
    columns.extend(SIZE_CLASSES.iter().map(|(c, _)| *c));
    columns.extend([
        "ge_5GiB",
        "multipart_at_source",
        "storage_classes",
        "extensions",
        "transfer_time",
        "egress_usd",
        "tagged_objects",
        "tags_not_asked",
    ]);
    let mut buckets = Table::new("buckets", columns);
    let mut warnings = Table::new("warnings", vec!["bucket", "warning", "objects", "bytes"]);
    let mut filtered = Table::new("filtered", vec!["bucket", "filter", "objects", "bytes"]);
    let mut restores = Table::new(
        "restores",
        vec![
            "bucket",
            "storage_class",
            "tier",
            "objects",
            "bytes",
            "requests_usd",
            "retrieval_usd",
            "restored_copy_usd",
            "total_usd",
            "restore_time",
        ],
    );
    let mut restore_usd = 0.0;
    for p in &plans {
        for (rule, (n, bytes)) in &p.filtered {
            filtered.push(vec![
                p.pair.source.as_str().into(),
                rule.trim_start_matches("filter: ").into(),
                Cell::Count(*n),
                Cell::Bytes(*bytes),
            ]);
        }
        let mut row: Vec<Cell> = vec![
            p.pair.source.as_str().into(),
            Cell::Count(p.objects),
            Cell::Bytes(p.bytes),
        ];
        row.extend(p.histogram.iter().map(|n| Cell::Count(*n)));
        row.push(Cell::Count(p.multipart));
        row.push(
            p.classes
                .iter()
                .map(|(c, (n, _))| format!("{c}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
                .into(),
        );
        let mut exts: Vec<(&String, &u64)> = p.extensions.iter().collect();
        exts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        row.push(
            exts.iter()
                .take(5)
                .map(|(e, n)| format!("{e}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
                .into(),
        );
        row.push(hours(p.bytes, a).into());
        row.push(Cell::Number(gb(p.bytes) * a.egress_price_per_gb));
        row.push(Cell::Count(p.tagged));
        row.push(Cell::Count(p.tags_unasked));
        buckets.push(row);

        let bucket = || Cell::from(p.pair.source.as_str());
        for (class, (n, bytes)) in &p.classes {
            let price = super::restore_cost::price(class, p.pair.restore);
            if let Some(price) = &price {
                let (requests, retrieval, copy) =
                    super::restore_cost::cost(price, *n, *bytes, p.pair.restore_days);
                restore_usd += requests + retrieval + copy;
                restores.push(vec![
                    bucket(),
                    class.as_str().into(),
                    price.tier.into(),
                    Cell::Count(*n),
                    Cell::Bytes(*bytes),
                    Cell::Number(requests),
                    Cell::Number(retrieval),
                    Cell::Number(copy),
                    Cell::Number(requests + retrieval + copy),
                    price.time.into(),
                ]);
            }
            let warning = match class.as_str() {
                "GLACIER" | "DEEP_ARCHIVE" if price.is_some() => format!(
                    "archived in {class}: restored ({} tier, readable {} days) before copying; see the restores table for cost and time",
                    price.as_ref().map_or("", |p| p.tier),
                    p.pair.restore_days
                ),
                "GLACIER" | "DEEP_ARCHIVE" => {
                    format!("archived in {class}: restore = \"off\", so ferry skips these")
                }
                "INTELLIGENT_TIERING" => {
                    "Intelligent-Tiering: objects in its archive tiers are found by their GET and restored first (their count is not known before)".into()
                }
                _ => continue,
            };
            warnings.push(vec![
                bucket(),
                warning.into(),
                Cell::Count(*n),
                Cell::Bytes(*bytes),
            ]);
        }
        if p.huge > 0 {
            warnings.push(vec![
                bucket(),
                "objects over Hetzner's 5 TB object limit".into(),
                Cell::Count(p.huge),
                Cell::Bytes(0),
            ]);
        }
        if p.objects > HETZNER_MAX_BUCKET_OBJECTS {
            warnings.push(vec![
                bucket(),
                "over Hetzner's 50 million objects per bucket: split it".into(),
                Cell::Count(p.objects),
                Cell::Bytes(p.bytes),
            ]);
        }
        if p.bytes > HETZNER_MAX_BUCKET_BYTES {
            warnings.push(vec![
                bucket(),
                "over Hetzner's 100 TB per bucket: split it".into(),
                Cell::Count(p.objects),
                Cell::Bytes(p.bytes),
            ]);
        }
        if p.small > 0 && p.small * 10 >= p.objects {
            warnings.push(vec![
                bucket(),
                "objects under Hetzner's 64 KB minimum billable size: each is billed as 64 KB"
                    .into(),
                Cell::Count(p.small),
                Cell::Bytes(p.small * HETZNER_MIN_BILLABLE),
            ]);
        }
        for key in &p.long_keys {
            warnings.push(vec![
                bucket(),
                format!(
                    "key over 1,024 bytes ({} bytes), refused by S3 stores: {}…",
                    key.len(),
                    &key[..key.floor_char_boundary(60)]
                )
                .into(),
                Cell::Count(1),
                Cell::Bytes(0),
            ]);
        }
    }

    let mut largest = Table::new("largest", vec!["bucket", "key", "bytes"]);
    for p in pairs {
        for (key, size) in ledger::largest(conn, pair_key(p), 5)? {
            largest.push(vec![
                p.source.as_str().into(),
                key.into(),
                Cell::Bytes(size),
            ]);
        }
    }

    let total: u64 = plans.iter().map(|p| p.bytes).sum();
    let billable_gb = (gb(total) - FREE_EGRESS_GB).max(0.0);
    let mut assumptions = Table::new("estimate", vec!["item", "value"]);
    assumptions.push(vec!["bandwidth".into(), a.bandwidth_text.as_str().into()]);
    assumptions.push(vec![
        "egress price per GB (USD)".into(),
        Cell::Number(a.egress_price_per_gb),
    ]);
    assumptions.push(vec![
        "egress free per month (GB)".into(),
        Cell::Number(FREE_EGRESS_GB),
    ]);
    assumptions.push(vec![
        "objects".into(),
        Cell::Count(plans.iter().map(|p| p.objects).sum()),
    ]);
    assumptions.push(vec!["bytes".into(), Cell::Bytes(total)]);
    assumptions.push(vec!["transfer time".into(), hours(total, a).into()]);
    assumptions.push(vec![
        "egress cost after the free 100 GB (USD)".into(),
        Cell::Number(billable_gb * a.egress_price_per_gb),
    ]);
    assumptions.push(vec![
        "restores of archived objects (USD, AWS list prices of 2026-12-07)".into(),
        Cell::Number(restore_usd),
    ]);
    let statuses = ledger::bucket_status(conn)?;
    let mut catalog = Table::new(
        "catalog",
        vec![
            "bucket",
            "data_category",
            "objects",
            "bytes",
            "formats",
            "storage_classes",
            "approach",
            "transfer_time",
            "egress_usd",
            "estimate_basis",
            "tags",
            "not_copied_as_is",
            "verification",
            "status",
        ],
    )
    .with_prose(&[
        "approach",
        "estimate_basis",
        "not_copied_as_is",
        "verification",
    ]);
    for p in &plans {
        let status = statuses.iter().find(|s| {
            (s.source.as_str(), s.destination.as_str(), s.prefix.as_str()) == pair_key(&p.pair)
        });
        catalog.push(catalog_row(p, &warnings, status, a));
    }
    let mut tables = vec![
        catalog,
        buckets,
        warnings,
        filtered,
        largest,
        assumptions,
        restores,
    ];
    tables.extend(quality.tables());
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{self, ListedObject};

    #[test]
    fn bandwidths_parse_in_bits_and_bytes() {
        assert_eq!(parse_bandwidth("1Gbit/s").unwrap(), 125_000_000.0);
        assert_eq!(parse_bandwidth("800Mbit/s").unwrap(), 100_000_000.0);
        assert_eq!(parse_bandwidth("100MB/s").unwrap(), 100_000_000.0);
        assert_eq!(parse_bandwidth("1MiB/s").unwrap(), 1_048_576.0);
        assert!(parse_bandwidth("fast").is_err());
    }

    fn audio_pair() -> BucketPair {
        BucketPair {
            source: "audio".into(),
            destination: "hub-audio".into(),
            prefix: "".into(),
            ..Default::default()
        }
    }

    fn assumptions() -> Assumptions {
        Assumptions {
            bandwidth: 125e6,
            bandwidth_text: "1Gbit/s".into(),
            egress_price_per_gb: 0.09,
            copy_tags: true,
        }
    }

    /// A key gone from the source is not in the plan: not counted, not
    /// named by a check, not left "not asked" by `--count-tags` (which never
    /// asks it) forever.
    #[test]
    fn a_key_gone_from_the_source_is_not_in_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open_for_writing(&dir.path().join("l.sqlite")).unwrap();
        let b = ledger::ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
        let pair = audio_pair();
        let a = assumptions();
        let o = |key: &str| ListedObject {
            key: key.into(),
            size: 10,
            etag: "e".into(),
            last_modified: None,
            storage_class: None,
            filtered: None,
        };
        // A trailing space: a key the data-quality checks name.
        let gone = "b.mp3 ";
        ledger::record_listing_page(&mut conn, b, 1, &[o("a.mp3"), o(gone)], gone).unwrap();
        ledger::finish_listing(&conn, b, 1).unwrap();
        let named = |conn: &Connection| {
            let tables =
                plan_tables(conn, std::slice::from_ref(&pair), &a, Quality::default()).unwrap();
            let objects = tables[1].rows[0][1].clone();
            let named = tables
                .iter()
                .flat_map(|t| &t.rows)
                .flatten()
                .any(|c| match c {
                    Cell::Text(t) => t.contains(gone),
                    Cell::Keys(keys) => keys.iter().any(|k| k == gone),
                    _ => false,
                });
            (objects, named)
        };
        assert_eq!(named(&conn), (Cell::Count(2), true));
        // The second listing no longer sees it: deleted at the source.
        ledger::record_listing_page(&mut conn, b, 2, &[o("a.mp3")], "a.mp3").unwrap();
        ledger::finish_listing(&conn, b, 2).unwrap();
        assert_eq!(named(&conn), (Cell::Count(1), false));
        let tags = |conn: &Connection| {
            let tables =
                plan_tables(conn, std::slice::from_ref(&pair), &a, Quality::default()).unwrap();
            let row = &tables[1].rows[0];
            (row[row.len() - 2].clone(), row[row.len() - 1].clone())
        };
        let unasked = ledger::tags_unasked(&conn, ("audio", "hub-audio", ""), 0, 10).unwrap();
        assert_eq!(
            unasked.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
            ["a.mp3"]
        );
        assert_eq!(tags(&conn), (Cell::Count(0), Cell::Count(1)));
        ledger::record_tag_counts(&mut conn, &[(unasked[0].0, 2)]).unwrap();
        assert_eq!(tags(&conn), (Cell::Count(1), Cell::Count(0)));
    }

    #[test]
    fn archived_objects_and_long_keys_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut conn = ledger::open_for_writing(&path).unwrap();
        let b = ledger::ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
        let o = |key: &str, size: u64, class: &str, etag: &str| ListedObject {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: None,
            storage_class: Some(class.into()),
            filtered: None,
        };
        let long = "k".repeat(1025);
        let rows = [
            o("a.mp3", 300 << 20, "STANDARD", "x-38"),
            o("cold.mp3", 10 << 20, "DEEP_ARCHIVE", "y"),
            o(&long, 10, "STANDARD", "z"),
        ];
        ledger::record_listing_page(&mut conn, b, 1, &rows, &long).unwrap();
        let pair = audio_pair();
        let a = assumptions();
        let tables = plan_tables(&conn, &[pair], &a, Quality::default()).unwrap();
        let text = super::super::render::render(&tables, super::super::render::Format::Csv);
        assert!(text.contains("archived in DEEP_ARCHIVE"), "{text}");
        // Bulk by default: 10 MiB from Deep Archive, one request.
        let restores =
            super::super::render::render(&tables[6..7], super::super::render::Format::Csv);
        assert!(
            restores.contains("DEEP_ARCHIVE,Bulk,1,10485760"),
            "{restores}"
        );
        assert!(restores.contains("up to 48 hours"), "{restores}");
        assert!(text.contains("key over 1,024 bytes (1025 bytes)"), "{text}");
        let buckets = &tables[1].rows[0];
        assert_eq!(buckets[1], Cell::Count(3));
        assert_eq!(buckets[2], Cell::Bytes((310 << 20) + 10));
        // lt_64KiB, lt_1MiB, lt_16MiB, lt_256MiB, lt_5GiB, ge_5GiB
        assert_eq!(
            buckets[3..9],
            [
                Cell::Count(1),
                Cell::Count(0),
                Cell::Count(1),
                Cell::Count(0),
                Cell::Count(1),
                Cell::Count(0)
            ]
        );
        assert_eq!(buckets[9], Cell::Count(1), "multipart at source");
    }
}
