//! `ferry report`: both stores listed afresh and set against the ledger(s), every
//! key in one class, for sign-off. It must not write to a store or to the ledger.
//!
//! The ledger is only read. Several ledgers (one per shard) merge: their key
//! sets do not overlap. Both listings and the ledgers are read in key order
//! and merged a page at a time (`sorted.rs`), so memory does not grow with
//! the number of keys; it grows with the number of problems found.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::render::{Cell, Table};
use super::sorted::{first_key, LedgerKeys, StoreKeys};
use crate::config::{BucketPair, Config, Shard};
use crate::filter::Filter;
use crate::ledger::{self, KeyRecord, LedgerError, State};
use crate::list::PageSource;
use crate::store::{self, Side, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a key stands. Everything but `Verified` and `Copied` is a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Verified,
    /// At the destination as copied; not read back yet (or `--fast`).
    Copied,
    Mismatched,
    Missing,
    Extra,
    Changed,
    Failed,
    Skipped,
    /// The destination holds what ferry did not write; ferry left it alone.
    Conflict,
    /// The bucket pair's filter leaves it out: not copied by choice.
    Filtered,
    /// Deleted at the source and not at the destination (removed by
    /// `delete = true`, say): both sides agree.
    Gone,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Verified => "verified",
            Class::Copied => "copied",
            Class::Mismatched => "mismatched",
            Class::Missing => "missing",
            Class::Extra => "extra",
            Class::Changed => "changed",
            Class::Failed => "failed",
            Class::Skipped => "skipped",
            Class::Conflict => "conflict",
            Class::Filtered => "filtered",
            Class::Gone => "gone",
        }
    }

    pub fn is_problem(self) -> bool {
        !matches!(
            self,
            Class::Verified | Class::Copied | Class::Filtered | Class::Gone
        )
    }
}

/// One key of one bucket pair, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub bucket: String,
    pub key: String,
    pub class: Class,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct BucketCounts {
    pub source: String,
    pub destination: String,
    pub listed: u64,
    pub bytes: u64,
    pub by_class: BTreeMap<Class, u64>,
    /// The shards whose keys were reconciled ("all", or "0/4, 2/4").
    pub shards: String,
    /// Of the copies, those ferry adopted: found at the destination without
    /// a ledger record (a lost or restored ledger) and proved the source's.
    pub adopted: u64,
    /// The copies by what proved the bytes read were the source's
    /// (`ledger::proof_counts`).
    pub proofs: BTreeMap<String, u64>,
}

/// The proofs a copy can have, as `copies.proof` names them, and the
/// report's column for each.
const PROOFS: [(&str, &str); 5] = [
    ("etag", "by ETag"),
    ("checksum", "by stored checksum"),
    ("etag+checksum", "by both"),
    ("none", "read back only"),
    ("not recorded", "not recorded"),
];

#[derive(Debug, Default)]
pub struct Reconciliation {
    pub buckets: Vec<BucketCounts>,
    pub problems: Vec<Finding>,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn tables(&self) -> Vec<Table> {
        let mut buckets = Table::new(
            "buckets",
            vec![
                "bucket",
                "destination",
                "listed",
                "copied",
                "verified",
                "mismatched",
                "missing",
                "extra",
                "changed",
                "failed",
                "skipped",
                "conflict",
                "filtered",
                "gone",
                "adopted",
                "bytes",
                "shards",
            ],
        );
        for b in &self.buckets {
            let n = |c: Class| Cell::Count(b.by_class.get(&c).copied().unwrap_or(0));
            buckets.push(vec![
                b.source.as_str().into(),
                b.destination.as_str().into(),
                Cell::Count(b.listed),
                Cell::Count(
                    b.by_class.get(&Class::Copied).copied().unwrap_or(0)
                        + b.by_class.get(&Class::Verified).copied().unwrap_or(0),
                ),
                n(Class::Verified),
                n(Class::Mismatched),
                n(Class::Missing),
                n(Class::Extra),
                n(Class::Changed),
                n(Class::Failed),
                n(Class::Skipped),
                n(Class::Conflict),
                n(Class::Filtered),
                n(Class::Gone),
                Cell::Count(b.adopted),
                Cell::Bytes(b.bytes),
                b.shards.as_str().into(),
            ]);
        }
        let mut problems = Table::new("problems", vec!["bucket", "key", "class", "reason"]);
        for p in &self.problems {
            problems.push(vec![
                p.bucket.as_str().into(),
                p.key.as_str().into(),
                p.class.name().into(),
                p.reason.as_str().into(),
            ]);
        }
        vec![buckets, self.proofs_table(), problems]
    }

    /// What proved each bucket's copies were read as the source holds
    /// them: its ETag, its stored checksum, both, or nothing but reading the
    /// copy back (an SSE-KMS object without a stored checksum).
    fn proofs_table(&self) -> Table {
        let mut header = vec!["bucket"];
        header.extend(PROOFS.iter().map(|(_, column)| *column));
        let mut proofs = Table::new("proofs", header);
        for b in &self.buckets {
            let mut row: Vec<Cell> = vec![b.source.as_str().into()];
            row.extend(
                PROOFS
                    .iter()
                    .map(|(name, _)| Cell::Count(b.proofs.get(*name).copied().unwrap_or(0))),
            );
            proofs.push(row);
        }
        proofs
    }
}

/// Lists both stores and reconciles them with `ledgers`. With `fast`, the
/// ledgers' verification results are not used: size and ETag decide.
pub async fn reconcile(
    config: &Config,
    ledgers: &[PathBuf],
    fast: bool,
) -> Result<Reconciliation, ReportError> {
    let conns = ledgers
        .iter()
        .map(|p| ledger::open_reader(p))
        .collect::<Result<Vec<_>, _>>()?;
    let source = store::client(Side::Source, &config.source, &config.transfer).await;
    let destination = store::client(Side::Destination, &config.destination, &config.transfer).await;
    let mut result = Reconciliation::default();
    for pair in &config.buckets {
        let at_source = StoreKeys::new(&source, Side::Source, &pair.source, &pair.prefix);
        let at_dest = StoreKeys::new(
            &destination,
            Side::Destination,
            &pair.destination,
            &pair.prefix,
        );
        let names = (&*pair.source, &*pair.destination, &*pair.prefix);
        let scope = scope_of(&conns, names, config.shard)?;
        let rows = LedgerKeys::new(&conns, names);
        let mut adopted = 0;
        let mut proofs = BTreeMap::new();
        for conn in &conns {
            adopted += ledger::adopted_count(conn, names).map_err(LedgerError::from)?;
            for (proof, n) in ledger::proof_counts(conn, names).map_err(LedgerError::from)? {
                *proofs.entry(proof).or_default() += n;
            }
        }
        let mut counts = reconcile_pair(
            pair,
            (at_source, at_dest, rows),
            (fast, scope.as_deref()),
            &mut result.problems,
        )
        .await?;
        counts.adopted = adopted;
        counts.proofs = proofs;
        result.buckets.push(counts);
    }
    Ok(result)
}

/// The shards whose keys the ledgers hold for a pair, as each ledger
/// recorded them when it listed; None: every key. A pair no ledger listed
/// takes the config's `shard`. Read from the ledgers, so that one shard's
/// ledger does not call the other shards' keys missing.
fn scope_of(
    conns: &[rusqlite::Connection],
    pair: (&str, &str, &str),
    configured: Option<Shard>,
) -> Result<Option<Vec<Shard>>, ReportError> {
    let mut shards = Vec::new();
    for conn in conns {
        match ledger::listed_scope(conn, pair).map_err(LedgerError::from)? {
            None => {}
            Some(all) if all == "all" => return Ok(None),
            Some(text) => match Shard::parse(&text) {
                Ok(shard) => shards.push(shard),
                // A scope this ferry cannot read: reconcile every key rather than hide any.
                Err(_) => return Ok(None),
            },
        }
    }
    if shards.is_empty() {
        return Ok(configured.map(|s| vec![s]));
    }
    Ok(Some(shards))
}

/// One pair's three streams in key order (source, destination, ledgers),
/// merged: memory holds a page of each, and the problems found, whatever the
/// number of keys. Problems are added to `problems`. Keys of no shard in
/// `scope` (None: every key) are passed over.
pub async fn reconcile_pair<S: PageSource, D: PageSource>(
    pair: &BucketPair,
    (mut at_source, mut at_dest, mut rows): (StoreKeys<S>, StoreKeys<D>, LedgerKeys<'_>),
    (fast, scope): (bool, Option<&[Shard]>),
    problems: &mut Vec<Finding>,
) -> Result<BucketCounts, ReportError> {
    let mut counts = BucketCounts {
        source: pair.source.clone(),
        destination: pair.destination.clone(),
        shards: scope.map_or_else(
            || "all".to_owned(),
            |s| {
                s.iter()
                    .map(Shard::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ..BucketCounts::default()
    };
    loop {
        let ledger_key = rows.peek()?;
        let key = {
            let src = at_source.peek().await?.map(str::to_owned);
            let dst = at_dest.peek().await?;
            match first_key([src.as_deref(), dst, ledger_key.as_deref()]) {
                Some(k) => k.to_owned(),
                None => break,
            }
        };
        let (src, dst, row) = (at_source.take(&key), at_dest.take(&key), rows.take(&key));
        if scope.is_some_and(|shards| !shards.iter().any(|s| s.owns(&key))) {
            continue;
        }
        if let Some((size, _)) = &src {
            counts.listed += 1;
            counts.bytes += size;
        }
        let (class, reason) = match filtered(&pair.filter, &key, src.as_ref(), row.as_ref()) {
            Some(rule) => (Class::Filtered, rule),
            None => classify(src.as_ref(), dst.as_ref(), row.as_ref(), fast),
        };
        *counts.by_class.entry(class).or_default() += 1;
        if class.is_problem() {
            problems.push(Finding {
                bucket: pair.source.clone(),
                key,
                class,
                reason,
            });
        }
    }
    Ok(counts)
}

/// Why a key at the source is left out: by the filter as configured now
/// (key and size), or as the ledger's last listing found (time bounds too).
fn filtered(
    filter: &Filter,
    key: &str,
    src: Option<&(u64, String)>,
    row: Option<&KeyRecord>,
) -> Option<String> {
    let (size, _) = src?;
    if let Some(rule) = filter.leaves_out(key, *size, None) {
        return Some(rule);
    }
    row.filter(|r| r.state == State::Filtered)
        .map(|r| r.reason.clone().unwrap_or_default())
}

fn classify(
    src: Option<&(u64, String)>,
    dst: Option<&(u64, String)>,
    row: Option<&KeyRecord>,
    fast: bool,
) -> (Class, String) {
    if let Some(r) = row.filter(|r| r.state == State::Conflict) {
        return (Class::Conflict, r.reason.clone().unwrap_or_default());
    }
    let Some((src_size, src_etag)) = src else {
        return match (row, dst) {
            (None, _) => (Class::Extra, "at the destination, not at the source".into()),
            (Some(_), Some(_)) => (
                Class::Changed,
                "deleted at the source since it was listed; still at the destination".into(),
            ),
            // Gone only when ferry's own listings saw it go: one fresh
            // listing that misses a key proves nothing.
            (Some(r), None) if State::GONE.contains(&r.state) => (
                Class::Gone,
                "deleted at the source; not at the destination".into(),
            ),
            (Some(_), None) => (
                Class::Changed,
                "not in this listing of the source, nor at the destination; ferry's listings still see it"
                    .into(),
            ),
        };
    };
    if let Some(r) = row {
        match r.state {
            State::Skipped => return (Class::Skipped, r.reason.clone().unwrap_or_default()),
            State::Failed => return (Class::Failed, r.reason.clone().unwrap_or_default()),
            State::Restoring if dst.is_none() => return (
                Class::Missing,
                "archived at the source: its restore is asked or under way; copied once restored"
                    .into(),
            ),
            _ => {}
        }
    }
    let copy = row.and_then(|r| Some((r.copied_from.as_ref()?, r.dest_etag.as_ref()?)));
    let Some((dst_size, dst_etag)) = dst else {
        return match copy {
            Some(_) => (
                Class::Missing,
                "was copied, and is no longer at the destination".into(),
            ),
            None => (Class::Missing, "not copied yet".into()),
        };
    };
    if let Some((copied_from, copied_etag)) = copy {
        if copied_from != src_etag {
            return (
                Class::Changed,
                format!(
                    "changed at the source since it was copied (ETag {copied_from} → {src_etag})"
                ),
            );
        }
        if dst_size != src_size || dst_etag != copied_etag {
            return (
                Class::Mismatched,
                format!("the destination holds {dst_size} bytes with ETag {dst_etag}; the copy made {src_size} bytes with ETag {copied_etag}"),
            );
        }
        return match (fast, row.map(|r| r.state)) {
            (false, Some(State::Verified)) => (Class::Verified, String::new()),
            (false, Some(State::Mismatched)) => (
                Class::Mismatched,
                row.and_then(|r| r.reason.clone()).unwrap_or_default(),
            ),
            _ => (Class::Copied, String::new()),
        };
    }
    // Not copied by this ledger: the listings alone decide.
    if dst_size == src_size && dst_etag == src_etag {
        (Class::Copied, String::new())
    } else if row.is_some_and(|r| &r.source_etag != src_etag) {
        (
            Class::Changed,
            "changed at the source since it was listed".into(),
        )
    } else {
        (Class::Mismatched, format!("the destination holds {dst_size} bytes with ETag {dst_etag}; the source {src_size} with {src_etag}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of a generated listing, `per_page` keys each, in key order.
    struct Listing {
        name: String,
        keys: Vec<ledger::ListedObject>,
        per_page: usize,
    }

    impl PageSource for Listing {
        fn name(&self) -> &str {
            &self.name
        }

        async fn page(&mut self, after: Option<&str>) -> Result<crate::list::Page, StoreError> {
            let start = self
                .keys
                .partition_point(|o| after.is_some_and(|a| o.key.as_bytes() <= a.as_bytes()));
            let end = (start + self.per_page).min(self.keys.len());
            Ok(crate::list::Page {
                objects: self.keys[start..end].to_vec(),
                truncated: end < self.keys.len(),
                restores: Vec::new(),
            })
        }
    }

    fn listed(key: &str, size: u64, etag: &str) -> ledger::ListedObject {
        ledger::ListedObject {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: None,
            storage_class: None,
            filtered: None,
        }
    }

    /// The merge in key order, a page at a time, against the plain way: every
    /// key of the three sides in memory, each classified once.
    #[test]
    fn the_paged_merge_agrees_with_an_in_memory_reconciliation() {
        fastrand::seed(7);
        // Names whose byte order differs from their character order, and
        // prefixes of one another, so pages end in awkward places.
        let parts = [
            "a",
            "a/",
            "b b",
            "ä",
            "é",
            "z",
            "Z",
            "+",
            "%2",
            "\u{FFFD}",
            "\u{1F600}",
        ];
        let mut names: Vec<String> = (0..2_600)
            .map(|i| {
                let p = |n: usize| parts[n % parts.len()];
                format!("{}{}{}-{i}", p(i * 7), p(i / 3), p(i / 11))
            })
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let (mut source, mut dest, mut in_ledger) = (Vec::new(), Vec::new(), Vec::new());
        for (i, key) in names.iter().enumerate() {
            let (size, etag) = (i as u64 % 97, format!("{i:032x}"));
            let roll = fastrand::u8(0..10);
            if roll < 8 {
                source.push(listed(key, size, &etag));
            }
            match roll {
                0..=5 => dest.push(listed(key, size, &etag)),
                6 => dest.push(listed(key, size + 1, &etag)),
                8 => dest.push(listed(key, size, &etag)), // extra
                _ => {}
            }
            if roll != 8 && fastrand::bool() {
                in_ledger.push(listed(key, size, &etag));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut conn = ledger::open_for_writing(&path).unwrap();
        let bucket = ledger::ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
        for page in in_ledger.chunks(300) {
            let cursor = page.last().unwrap().key.clone();
            ledger::record_listing_page(&mut conn, bucket, 1, page, &cursor).unwrap();
        }
        let pair = BucketPair {
            source: "onix".into(),
            destination: "hub-onix".into(),
            ..Default::default()
        };

        let conns = [conn];
        let mut problems = Vec::new();
        let counts = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(reconcile_pair(
                &pair,
                (
                    StoreKeys::from_pages(
                        Listing {
                            name: "onix".into(),
                            keys: source.clone(),
                            per_page: 7,
                        },
                        Side::Source,
                    ),
                    StoreKeys::from_pages(
                        Listing {
                            name: "hub-onix".into(),
                            keys: dest.clone(),
                            per_page: 13,
                        },
                        Side::Destination,
                    ),
                    LedgerKeys::new(&conns, ("onix", "hub-onix", "")),
                ),
                (false, None),
                &mut problems,
            ))
            .unwrap();

        // The plain way.
        let side = |v: &[ledger::ListedObject]| -> BTreeMap<String, (u64, String)> {
            v.iter()
                .map(|o| (o.key.clone(), (o.size, o.etag.clone())))
                .collect()
        };
        let (at_source, at_dest) = (side(&source), side(&dest));
        let rows: BTreeMap<String, KeyRecord> =
            ledger::key_records(&conns[0], ("onix", "hub-onix", ""), None, usize::MAX >> 1)
                .unwrap()
                .into_iter()
                .collect();
        let mut all: Vec<&String> = at_source
            .keys()
            .chain(at_dest.keys())
            .chain(rows.keys())
            .collect();
        all.sort();
        all.dedup();
        let mut by_class: BTreeMap<Class, u64> = BTreeMap::new();
        let mut expected = Vec::new();
        for key in all {
            let (class, reason) =
                classify(at_source.get(key), at_dest.get(key), rows.get(key), false);
            *by_class.entry(class).or_default() += 1;
            if class.is_problem() {
                expected.push(Finding {
                    bucket: "onix".into(),
                    key: key.clone(),
                    class,
                    reason,
                });
            }
        }
        assert_eq!(counts.by_class, by_class);
        assert_eq!(counts.listed, source.len() as u64);
        assert_eq!(problems, expected);
        // Every kind of key is in the set.
        for class in [
            Class::Copied,
            Class::Missing,
            Class::Extra,
            Class::Mismatched,
            Class::Changed,
        ] {
            assert!(
                by_class.get(&class).is_some_and(|n| *n > 10),
                "{class:?}: {by_class:?}"
            );
        }
    }

    fn row(state: &str, etag: &str, copied: Option<(&str, &str)>) -> KeyRecord {
        KeyRecord {
            state: State::parse(state).unwrap(),
            source_etag: etag.into(),
            reason: Some("why".into()),
            copied_from: copied.map(|c| c.0.into()),
            dest_etag: copied.map(|c| c.1.into()),
        }
    }

    #[test]
    fn every_situation_has_its_class() {
        let s = (10, "e1".to_string());
        let d_same = (10, "e1".to_string());
        let d_other = (10, "zz".to_string());
        let verified = row("verified", "e1", Some(("e1", "e1")));
        let c = |src, dst, r: Option<&KeyRecord>, fast| classify(src, dst, r, fast).0;
        assert_eq!(
            c(Some(&s), Some(&d_same), Some(&verified), false),
            Class::Verified
        );
        assert_eq!(
            c(Some(&s), Some(&d_same), Some(&verified), true),
            Class::Copied
        );
        assert_eq!(
            c(Some(&s), Some(&d_other), Some(&verified), false),
            Class::Mismatched
        );
        assert_eq!(c(Some(&s), None, Some(&verified), false), Class::Missing);
        assert_eq!(c(None, Some(&d_same), None, false), Class::Extra);
        let changed = (12, "e2".to_string());
        assert_eq!(
            c(Some(&changed), Some(&d_same), Some(&verified), false),
            Class::Changed
        );
        assert_eq!(
            c(None, Some(&d_same), Some(&verified), false),
            Class::Changed
        );
        // Removed by `delete = true` (or never copied): nothing on either side.
        assert_eq!(
            c(
                None,
                None,
                Some(&row("removed", "e1", Some(("e1", "e1")))),
                false
            ),
            Class::Gone
        );
        assert!(!Class::Gone.is_problem());
        // One fresh listing without a key the ledger still lists is no proof.
        assert_eq!(c(None, None, Some(&verified), false), Class::Changed);
        assert_eq!(
            c(Some(&s), None, Some(&row("failed", "e1", None)), false),
            Class::Failed
        );
        assert_eq!(
            c(Some(&s), None, Some(&row("skipped", "e1", None)), false),
            Class::Skipped
        );
        assert_eq!(
            c(Some(&s), None, Some(&row("listed", "e1", None)), false),
            Class::Missing
        );
        // A copy whose part layout differs from the source's: the ledger vouches.
        let relaid = row("copied", "e1", Some(("e1", "e9-3")));
        let d_relaid = (10, "e9-3".to_string());
        assert_eq!(
            c(Some(&s), Some(&d_relaid), Some(&relaid), true),
            Class::Copied
        );
        let bad = row("mismatched", "e1", Some(("e1", "e1")));
        assert_eq!(
            c(Some(&s), Some(&d_same), Some(&bad), false),
            Class::Mismatched
        );
    }
}
