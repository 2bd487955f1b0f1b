//! An AWS S3 Inventory as the listing: a pass reads the newest manifest's
//! CSV files instead of listing the bucket; passes in between list it.

mod support;

use std::io::Write;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use ferry_tools::demo::DemoObject;
use md5::Digest as _;
use support::faults::{FaultProxy, Plays};
use support::{servers, Fixture};

/// Keys in an inventory are URL-encoded, spaces as `+`.
fn encode(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(key, KEEP)
        .to_string()
        .replace(' ', "+")
}

/// Writes an inventory of `set` under `dated/` in `inv`: `files` gzipped CSV
/// files and their manifest. `md5` replaces the last file's true MD5 when given.
async fn write_inventory(
    fx: &Fixture,
    (inv, dated): (&str, &str),
    (set, files): (&[DemoObject], usize),
    format: &str,
    md5: Option<&str>,
) {
    let mut listed = Vec::new();
    let mut bodies = Vec::new();
    let chunks: Vec<&[DemoObject]> = set.chunks(set.len().div_ceil(files)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut csv = String::new();
        for o in *chunk {
            let etag = o.expected_digests().md5_hex();
            csv.push_str(&format!(
                "\"{}\",\"{}\",\"{}\",\"2026-11-28T10:00:00.000Z\",\"{etag}\",\"STANDARD\"\n",
                o.bucket,
                encode(&o.key),
                o.size
            ));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let file_key = format!("{dated}files/part-{i}.csv.gz");
        let true_md5 = hex::encode(md5::Md5::digest(&gz));
        let md5 = md5
            .filter(|_| i + 1 == chunks.len())
            .unwrap_or(&true_md5)
            .to_owned();
        listed.push(serde_json::json!({"key": file_key, "size": gz.len(), "MD5checksum": md5}));
        bodies.push((file_key, gz));
    }
    let manifest = serde_json::json!({
        "sourceBucket": set[0].bucket,
        "destinationBucket": format!("arn:aws:s3:::{inv}"),
        "version": "2016-11-30",
        "creationTimestamp": "1764324000000",
        "fileFormat": format,
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass",
        "files": listed,
    });
    bodies.push((
        format!("{dated}manifest.json"),
        manifest.to_string().into_bytes(),
    ));
    for (key, body) in bodies {
        fx.source
            .put_object()
            .bucket(inv)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_reads_the_newest_inventory_instead_of_listing_and_the_next_lists() {
    let proxy = FaultProxy::playing(servers().get("FERRY_SOURCE_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::new("inventory", "").await;
    let onix = format!("onix{}", fx.suffix);
    let keys = [
        "feeds/a.xml",
        "feeds/with space.xml",
        "feeds/plus+sign.xml",
        "feeds/hörbuch-ü.xml",
        "feeds/100%.xml",
    ];
    let set: Vec<DemoObject> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| DemoObject::new(&onix, (*k).into(), 1_000 + i as u64, "application/xml"))
        .collect();
    fx.fill(&set).await;
    // The inventory lives in a bucket of its own, read with the source's keys.
    let inv = format!("inv{}", fx.suffix);
    fx.source.create_bucket().bucket(&inv).send().await.unwrap();
    let root = format!("reports/{onix}/daily/");
    write_inventory(
        &fx,
        (&inv, &format!("{root}2026-11-28T01-00Z/")),
        (&set, 1),
        "CSV",
        None,
    )
    .await;
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let table = format!("destination = \"hub-{onix}\"\n");
    let line = format!("{table}inventory = \"s3://{inv}/{root}\"\n");
    std::fs::write(&fx.config_path, text.replacen(&table, &line, 1)).unwrap();
    fx.source_through(&proxy.url());

    // `plan` works from the inventory, and does not use it up.
    let plan = fx.ferry(&["plan", "--format", "csv"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let (header, rows) = support::csv_table(&plan.stdout, "buckets");
    let objects = header.iter().position(|h| h == "objects").unwrap();
    let row = rows.iter().find(|r| r[0] == onix).unwrap();
    assert_eq!(&row[objects], "5");
    // The first pass copies from the inventory: the bucket is never listed.
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        proxy.injected.listings_of(&onix),
        (0, 0),
        "the bucket was listed"
    );
    support::assert_all_copied_byte_equal(&fx, &set).await;

    // Written after the inventory: the next pass (no newer manifest) lists.
    let late = DemoObject::new(&onix, "feeds/late.xml".into(), 777, "application/xml");
    fx.fill(std::slice::from_ref(&late)).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        proxy.injected.listings_of(&onix).0 >= 1,
        "the bucket was not listed"
    );
    // Six keys, one page: listed in one range, without delimiter listings.
    assert_eq!(
        proxy.injected.listings_of(&onix).1,
        0,
        "a one-page bucket was split"
    );
    let mut all = set.clone();
    all.push(late.clone());
    support::assert_all_copied_byte_equal(&fx, &all).await;

    // A newer manifest whose file is damaged: nothing of it is used.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    write_inventory(
        &fx,
        (&inv, &format!("{root}2026-11-29T01-00Z/")),
        (&set, 1),
        "CSV",
        Some("00000000000000000000000000000000"),
    )
    .await;
    let damaged = fx.ferry(&["run", "--once"]);
    assert_eq!(damaged.code, 1, "{damaged:?}");
    assert!(
        damaged.stdout.contains("part-0.csv.gz") && damaged.stdout.contains("MD5"),
        "{damaged:?}"
    );
    // `late` is not in that inventory; it is not taken for deleted.
    let state: String = fx
        .ledger()
        .query_row(
            "SELECT state FROM objects WHERE key = 'feeds/late.xml'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "verified");

    // Parquet is refused, with what to do.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    write_inventory(
        &fx,
        (&inv, &format!("{root}2026-11-30T01-00Z/")),
        (&set, 1),
        "Parquet",
        None,
    )
    .await;
    let parquet = fx.ferry(&["run", "--once"]);
    assert_eq!(parquet.code, 1, "{parquet:?}");
    assert!(
        parquet.stdout.contains("CSV inventories only"),
        "{parquet:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_read_that_stops_resumes_at_the_file_it_stopped_in() {
    let fx = Fixture::new("inventory-resume", "").await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..6)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("feeds/isbn {i}+ü.xml"),
                500 + i,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    let inv = format!("inv{}", fx.suffix);
    fx.source.create_bucket().bucket(&inv).send().await.unwrap();
    let dated = format!("reports/{onix}/daily/2026-11-28T01-00Z/");
    // Three files; the last one's MD5 in the manifest is wrong, so the read
    // stops there after the first two are in the ledger.
    let bad = Some("00000000000000000000000000000000");
    write_inventory(&fx, (&inv, &dated), (&set, 3), "CSV", bad).await;
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let table = format!("destination = \"hub-{onix}\"\n");
    let line = format!("{table}inventory = \"s3://{inv}/{dated}manifest.json\"\n");
    std::fs::write(&fx.config_path, text.replacen(&table, &line, 1)).unwrap();
    let stopped = fx.ferry(&["run", "--once"]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(stopped.stdout.contains("part-2.csv.gz"), "{stopped:?}");

    // The manifest is mended and the files already read are gone: a read
    // that started again from the first file would fail on them.
    write_inventory(&fx, (&inv, &dated), (&set, 3), "CSV", None).await;
    for read in ["part-0.csv.gz", "part-1.csv.gz"] {
        fx.source
            .delete_object()
            .bucket(&inv)
            .key(format!("{dated}files/{read}"))
            .send()
            .await
            .unwrap();
    }
    let resumed = fx.ferry(&["run", "--once"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    support::assert_all_copied_byte_equal(&fx, &set).await;
    assert_eq!(fx.status_total("verified"), 6);
}
