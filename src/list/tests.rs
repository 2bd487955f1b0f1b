//! The listing's ranges on generated keys: split where the keys are, split
//! again while listing, and resumed after a cut-off with every key once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{list_into_ledger, plan_ranges, Page, PageSource, RangePlan};
use crate::filter::Filter;
use crate::ledger::{self, ListedObject, Writer};
use crate::store::StoreError;

/// ISBN-13s of four publishers, in one folder: the shape a flat ONIX feed has.
fn isbn_keys(n: usize) -> Vec<String> {
    let mut keys: Vec<String> = (0..n)
        .map(|i| {
            let block = ["006", "140", "316", "349"][i % 4];
            format!("onix/978{block}{:07}.xml", i / 4)
        })
        .collect();
    keys.sort();
    keys
}

/// Date-stamped deliveries over six years, many a day.
fn dated_keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let day = i * 2_016 / n;
            let (year, rest) = (2019 + day / 336, day % 336);
            format!(
                "deliveries/{year}-{:02}-{:02}/delivery-{i:07}.zip",
                1 + rest / 28,
                1 + rest % 28
            )
        })
        .collect()
}

/// Pages of sorted keys, each after a short wait, as a store far away
/// would give them; counts its pages and can cut the listing off.
#[derive(Clone)]
struct Keys {
    keys: Arc<Vec<String>>,
    pages: Arc<AtomicUsize>,
    stop_after: Option<(usize, CancellationToken)>,
}

impl PageSource for Keys {
    fn name(&self) -> &str {
        "generated"
    }

    async fn page(&mut self, after: Option<&str>) -> Result<Page, StoreError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let listed = self.pages.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((at, stop)) = &self.stop_after {
            if listed >= *at {
                stop.cancel();
            }
        }
        let start = self
            .keys
            .partition_point(|k| after.is_some_and(|a| k.as_str() <= a));
        let end = (start + 1000).min(self.keys.len());
        Ok(Page {
            objects: self.keys[start..end]
                .iter()
                .map(|key| ListedObject {
                    key: key.clone(),
                    size: 1,
                    etag: "e".into(),
                    last_modified: None,
                    storage_class: None,
                    filtered: None,
                })
                .collect(),
            truncated: end < self.keys.len(),
            restores: Vec::new(),
        })
    }
}

async fn ledger_with_bucket(dir: &tempfile::TempDir) -> (Writer, i64, i64) {
    let writer = Writer::open(&dir.path().join("ledger.sqlite")).unwrap();
    let bucket_id = writer
        .call(|c| ledger::ensure_bucket(c, "onix", "hub-onix", ""))
        .await
        .unwrap();
    let pass_id = writer.call(|c| ledger::start_pass(c)).await.unwrap();
    (writer, bucket_id, pass_id)
}

fn count(writer_dir: &tempfile::TempDir, sql: &str) -> i64 {
    let conn = ledger::open_reader(&writer_dir.path().join("ledger.sqlite")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn keys_in_one_folder_are_split_where_they_lie_and_dense_ranges_split_again() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, bucket_id, pass_id) = ledger_with_bucket(&dir).await;
    let source = Keys {
        keys: Arc::new(isbn_keys(64_000)),
        pages: Arc::default(),
        stop_after: None,
    };
    let pages = || source.clone();
    let plan = plan_ranges(&writer, bucket_id, pages, "", 8).await.unwrap();
    assert!(plan.bounds.len() >= 5, "{plan:?}");
    // Every boundary lies inside the keys' span, under the shared folder:
    // cuts at first characters would all fall past `onix/9`.
    assert!(
        plan.bounds
            .iter()
            .all(|b| b.as_str() > "onix/978006" && b.as_str() < "onix/97835"),
        "{plan:?}"
    );
    let stop = CancellationToken::new();
    let scope = (None, &Filter::default());
    let listed = list_into_ledger(
        pages,
        &writer,
        (bucket_id, pass_id),
        scope,
        (plan, 8),
        &stop,
    )
    .await
    .unwrap();
    assert!(listed.complete);
    assert_eq!(listed.seen, 64_000);
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM objects"), 64_000);
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM list_ranges"), 0);
    // Four publishers' blocks of 16,000 keys: the even cut puts each in one
    // or two ranges; ranges that end early take halves of the dense ones.
    assert!(listed.splits > 0, "{listed:?}");
    assert!(listed.largest_range < 16_000 * 3 / 4, "{listed:?}");
}

#[tokio::test]
async fn a_listing_cut_off_while_ranges_split_resumes_with_every_key_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, bucket_id, pass_id) = ledger_with_bucket(&dir).await;
    let stop = CancellationToken::new();
    let keys = Arc::new(isbn_keys(24_000));
    let cut = Keys {
        keys: Arc::clone(&keys),
        pages: Arc::default(),
        stop_after: Some((14, stop.clone())),
    };
    // Two ranges, the first holding almost everything: the second ends at
    // once, and its lister splits the first.
    let plan = RangePlan {
        bounds: vec![keys[23_500].clone()],
        upper: keys.last().cloned(),
    };
    let scope = (None, &Filter::default());
    let listed = list_into_ledger(
        || cut.clone(),
        &writer,
        (bucket_id, pass_id),
        scope,
        (plan, 2),
        &stop,
    )
    .await
    .unwrap();
    assert!(!listed.complete);
    assert!(listed.splits > 0, "{listed:?}");
    // The recorded ranges still cover every key, end to start.
    let ranges = writer
        .call(move |c| ledger::list_ranges(c, bucket_id, &[]))
        .await
        .unwrap();
    assert!(ranges.len() >= 3, "{ranges:?}");
    assert_eq!(ranges[0].first_after, "");
    assert_eq!(ranges.last().unwrap().last, None);
    for pair in ranges.windows(2) {
        assert_eq!(
            pair[0].last.as_ref(),
            Some(&pair[1].first_after),
            "{ranges:?}"
        );
    }
    assert!(count(&dir, "SELECT COUNT(*) FROM objects") < 24_000);

    // The next run lists what each range had left, and nothing is missing.
    let rest = Keys {
        keys,
        pages: Arc::default(),
        stop_after: None,
    };
    let next_pass = writer.call(|c| ledger::start_pass(c)).await.unwrap();
    let listed = list_into_ledger(
        || rest.clone(),
        &writer,
        (bucket_id, next_pass),
        scope,
        (RangePlan::default(), 2),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(listed.complete);
    assert_eq!(listed.newly_missing, 0);
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM objects"), 24_000);
    assert_eq!(
        count(&dir, "SELECT COUNT(*) FROM objects WHERE state != 'listed'"),
        0
    );
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM list_ranges"), 0);
}

#[tokio::test]
async fn a_range_whose_split_is_not_recorded_is_not_marked_done() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, bucket_id, _) = ledger_with_bucket(&dir).await;
    let bounds = vec!["m".to_owned()];
    writer
        .call(move |c| ledger::list_ranges(c, bucket_id, &bounds))
        .await
        .unwrap();
    let finish_at_g = || writer.call(move |c| ledger::finish_range(c, bucket_id, ("", Some("g"))));
    // The lister thinks its range ends at "g"; the ledger still says "m".
    finish_at_g().await.unwrap();
    assert_eq!(
        count(&dir, "SELECT COUNT(*) FROM list_ranges WHERE done = 1"),
        0
    );
    writer
        .call(move |c| ledger::split_range(c, bucket_id, "", "g"))
        .await
        .unwrap();
    finish_at_g().await.unwrap();
    assert_eq!(
        count(&dir, "SELECT COUNT(*) FROM list_ranges WHERE done = 1"),
        1
    );
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) FROM list_ranges WHERE first_after = 'g' AND last = 'm' AND done = 0"
        ),
        1
    );
}

#[tokio::test]
async fn date_stamped_keys_are_cut_where_the_years_lie_not_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, bucket_id, _) = ledger_with_bucket(&dir).await;
    let keys = dated_keys(60_000);
    let source = Keys {
        keys: Arc::new(keys.clone()),
        pages: Arc::default(),
        stop_after: None,
    };
    let plan = plan_ranges(&writer, bucket_id, || source.clone(), "", 8)
        .await
        .unwrap();
    // Keys in each range (first_after, last], the last range open.
    let mut held = Vec::new();
    let mut before = 0;
    for bound in &plan.bounds {
        let upto = keys.partition_point(|k| k <= bound);
        held.push(upto - before);
        before = upto;
    }
    held.push(keys.len() - before);
    // Base-96 steps from 2019 to 2024 put every cut but one between "2019"
    // and "2020": one range held five years of six.
    let largest = *held.iter().max().unwrap();
    assert!(largest <= keys.len() / 3, "{held:?} {plan:?}");
    assert!(
        held.iter().filter(|&&h| h > 0).count() >= 4,
        "{held:?} {plan:?}"
    );
}
