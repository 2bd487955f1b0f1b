//! Big buckets: copying starts while the listing is still going on.

mod support;

use std::time::{Duration, Instant};

use ferry_tools::demo::DemoObject;
use support::faults::{FaultProxy, Plays};
use support::{servers, Fixture};

#[tokio::test(flavor = "multi_thread")]
async fn copying_begins_before_the_listing_of_a_large_bucket_ends() {
    // A source far away: every listing page takes 2 s to come back.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            list_delay: Some(Duration::from_secs(2)),
            ..Plays::default()
        },
    )
    .await;
    // Two ranges: each holds two pages, so the listing lasts two page
    // times whatever the split, and copying can begin in between. (With
    // eight even ranges, each one page, every page comes back at once and
    // the listing is over before a copy could be.)
    let fx = Fixture::new("streamed", "list_ranges = 2").await;
    let onix = format!("onix{}", fx.suffix);
    // Three pages of 1,000 keys at most.
    let set: Vec<DemoObject> = (0..2_100)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("feeds/{i:05}.xml"),
                200 + i % 50,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    fx.source_through(&proxy.url());

    let started = Instant::now();
    let mut run = fx.spawn_ferry(&["run", "--once"]);
    let copied_while_listing = "SELECT COUNT(*) FROM copies c JOIN objects o ON o.id = c.object_id
         JOIN buckets b ON b.id = o.bucket_id WHERE b.list_cursor IS NOT NULL";
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(60) {
        seen = fx.count(copied_while_listing);
        if seen > 0 {
            break;
        }
        if run.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen > 0,
        "no object was copied while the bucket's listing was still going on"
    );
    let first_copy = started.elapsed();
    // Three pages: listed in ranges, found by probing where the keys lie.
    assert!(
        proxy.injected.listings_of(&onix).1 >= 1,
        "a bucket of three pages was not probed"
    );
    let out = run.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{logs}");
    // Numbered keys in one folder, all under `feeds/0`: a split by folders
    // or first characters leaves them in one range.
    let largest = logs
        .lines()
        .filter(|l| l.contains(&onix) && l.contains(" listed"))
        .find_map(|l| l.split("largest_range=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no listing line for {onix}: {logs}"));
    // Half each, give or take where the probes found the last key.
    assert!(
        largest <= 2_100 * 3 / 5,
        "one range held {largest} of 2,100 keys"
    );
    let whole_run = started.elapsed();
    eprintln!("first copy seen after {first_copy:?}; the run took {whole_run:?}");
    support::assert_all_copied_byte_equal(&fx, &set).await;

    // `report` merges three pages of each listing with three of the ledger.
    let report = fx.ferry(&["report", "--format", "csv"]);
    assert_eq!(report.code, 0, "{report:?}");
    let (header, rows) = support::csv_table(&report.stdout, "buckets");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rows.iter().find(|r| r[col("bucket")] == onix).unwrap();
    assert_eq!(&row[col("listed")], "2100");
    assert_eq!(&row[col("verified")], "2100");
    assert_eq!(&row[col("missing")], "0");
    assert_eq!(&row[col("extra")], "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_in_the_middle_of_a_parallel_listing_resumes_every_range() {
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            list_delay: Some(Duration::from_millis(1_500)),
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::new("ranges", "list_ranges = 4").await;
    let onix = format!("onix{}", fx.suffix);
    // Eight folders of 700 keys: four ranges of two pages each.
    let set: Vec<DemoObject> = (0..5_600)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("imprint-{}/feed-{i:05}.xml", i / 700),
                100 + i % 30,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    fx.source_through(&proxy.url());

    let mut first = fx.spawn_ferry(&["run", "--once"]);
    let started = Instant::now();
    // Stop it once three ranges have committed a page and not finished.
    let begun = "SELECT COUNT(*) FROM list_ranges r JOIN buckets b ON b.id = r.bucket_id
         WHERE b.source = '{onix}' AND r.cursor IS NOT NULL AND r.done = 0";
    let begun = begun.replace("{onix}", &onix);
    while fx.count(&begun) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the ranges never began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.unwrap();
    let ranges: Vec<(String, Option<String>, bool)> = {
        let db = fx.ledger();
        let mut stmt = db
            .prepare("SELECT first_after, cursor, done FROM list_ranges ORDER BY first_after")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(ranges.len() >= 3, "{ranges:?}");
    let listed_before = fx.count("SELECT COUNT(*) FROM objects");
    assert!(
        listed_before < 5_600,
        "the listing had ended: {listed_before}"
    );

    // The next run resumes the ranges where they stopped: it does not probe
    // the bucket again, each begun range goes on after its cursor, and no
    // begun or finished range is listed again from its start.
    let (_, probes) = proxy.injected.listings_of(&onix);
    let before = proxy.injected.page_starts_of(&onix).len();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let (_, probes_after) = proxy.injected.listings_of(&onix);
    assert_eq!(probes_after, probes, "the bucket was probed again");
    let starts = proxy.injected.page_starts_of(&onix)[before..].to_vec();
    for (first_after, cursor, done) in &ranges {
        let Some(cursor) = cursor else { continue };
        let start = Some(first_after.clone()).filter(|f| !f.is_empty());
        assert!(
            !starts.contains(&start),
            "the range after {first_after:?} was listed again from its start: {starts:?}"
        );
        assert_eq!(
            starts.contains(&Some(cursor.clone())),
            !done,
            "the range after {first_after:?} (cursor {cursor}, done {done}): {starts:?}"
        );
    }
    assert_eq!(fx.count("SELECT COUNT(*) FROM list_ranges"), 0);
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM buckets WHERE list_cursor IS NOT NULL"),
        0
    );
    support::assert_all_copied_byte_equal(&fx, &set).await;
}
