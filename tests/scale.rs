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
    let fx = Fixture::new("streamed", "").await;
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
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replacen(servers().get("FERRY_SOURCE_ENDPOINT"), &proxy.url(), 1);
    std::fs::write(&fx.config_path, text).unwrap();

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
    let out = run.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
