//! An AWS S3 Inventory as the listing: a pass reads the newest manifest's
//! CSV files instead of listing the bucket; passes in between list it.

mod support;

use std::io::Write;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use ferry::store::Side;
use ferry_tools::demo::DemoObject;
use md5::Digest as _;
use support::faults::{FaultProxy, Plays};
use support::inventory::Checksum;
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

/// The columns AWS writes with ferry's OptionalFields, in its order.
const FULL_SCHEMA: &str = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass";

/// A row of `o` for [`FULL_SCHEMA`], as AWS writes it.
fn full_row(o: &DemoObject) -> String {
    row_with(o, &o.size.to_string(), &o.expected_digests().md5_hex())
}

fn row_with(o: &DemoObject, size: &str, etag: &str) -> String {
    format!(
        "\"{}\",\"{}\",\"{size}\",\"2026-11-28T10:00:00.000Z\",\"{etag}\",\"STANDARD\"\n",
        o.bucket,
        encode(&o.key)
    )
}

/// The columns of an inventory of every version, in AWS's order.
const VERSIONED_SCHEMA: &str =
    "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";

/// The rows of `o` for [`VERSIONED_SCHEMA`]: its current version, and a
/// thousand older ones that ferry passes over (a file of some megabytes).
fn versioned_rows(o: &DemoObject) -> String {
    let version = |n: u32| hex::encode(md5::Md5::digest(format!("{}{n}", o.key)));
    let etag = o.expected_digests().md5_hex();
    (0..=1000)
        .map(|n| {
            format!(
                "\"{}\",\"{}\",\"{}\",\"{}\",\"false\",\"{}\",\"2026-11-28T10:00:00.000Z\",\"{etag}\",\"STANDARD\"\n",
                o.bucket,
                encode(&o.key),
                version(n),
                n == 0,
                o.size
            )
        })
        .collect()
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// How an inventory is written: AWS's way with ferry's fields, taken now,
/// unless a test changes it.
#[derive(Clone, Copy)]
struct Shape<'a> {
    format: &'a str,
    schema: &'a str,
    row: fn(&DemoObject) -> String,
    /// creationTimestamp: when AWS took the inventory, in ms since 1970.
    created_ms: u128,
    /// Replaces the last file's true MD5 in the manifest.
    md5: Option<&'a str>,
    /// What `manifest.checksum` says.
    checksum: Checksum<'a>,
}

impl Default for Shape<'_> {
    fn default() -> Self {
        Shape {
            format: "CSV",
            schema: FULL_SCHEMA,
            row: full_row,
            created_ms: now_ms(),
            md5: None,
            checksum: Checksum::True,
        }
    }
}

/// Writes an inventory of `set` under `dated/` in `inv`: `files` gzipped CSV
/// files and their manifest.
async fn write_inventory(
    fx: &Fixture,
    (inv, dated): (&str, &str),
    (set, files): (&[DemoObject], usize),
    shape: Shape<'_>,
) {
    let mut listed = Vec::new();
    let mut bodies = Vec::new();
    let chunks: Vec<&[DemoObject]> = set.chunks(set.len().div_ceil(files)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let csv: String = chunk.iter().map(shape.row).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let file_key = format!("{dated}files/part-{i}.csv.gz");
        let true_md5 = hex::encode(md5::Md5::digest(&gz));
        let md5 = shape
            .md5
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
        "creationTimestamp": shape.created_ms.to_string(),
        "fileFormat": shape.format,
        "fileSchema": shape.schema,
        "files": listed,
    });
    bodies.extend(support::inventory::manifest_files(
        dated,
        &manifest,
        shape.checksum,
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

/// Points the pair of `bucket` at the inventory `url` (`s3://…`), instead
/// of the one it had, if any.
fn use_inventory(fx: &Fixture, bucket: &str, url: &str) {
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let table = format!("destination = \"hub-{bucket}\"\n");
    let (head, tail) = text.split_at(text.find(&table).unwrap() + table.len());
    let tail = match tail.strip_prefix("inventory = ") {
        Some(old) => &old[old.find('\n').unwrap() + 1..],
        None => tail,
    };
    std::fs::write(
        &fx.config_path,
        format!("{head}inventory = \"{url}\"\n{tail}"),
    )
    .unwrap();
}

/// A bucket of its own for the inventories, at the source.
async fn inventory_bucket(fx: &Fixture) -> String {
    let inv = format!("inv{}", fx.suffix);
    fx.source.create_bucket().bucket(&inv).send().await.unwrap();
    inv
}

/// The ledger's state of `key`.
fn state_of(fx: &Fixture, key: &str) -> String {
    fx.ledger()
        .query_row("SELECT state FROM objects WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap()
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
    let inv = inventory_bucket(&fx).await;
    let root = format!("reports/{onix}/daily/");
    write_inventory(
        &fx,
        (&inv, &format!("{root}2026-11-28T01-00Z/")),
        (&set, 1),
        Shape::default(),
    )
    .await;
    use_inventory(&fx, &onix, &format!("s3://{inv}/{root}"));
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
        Shape {
            md5: Some("00000000000000000000000000000000"),
            ..Shape::default()
        },
    )
    .await;
    let damaged = fx.ferry(&["run", "--once"]);
    assert_eq!(damaged.code, 1, "{damaged:?}");
    assert!(
        damaged.stdout.contains("part-0.csv.gz") && damaged.stdout.contains("MD5"),
        "{damaged:?}"
    );
    // `late` is not in that inventory; it is not taken for deleted.
    assert_eq!(state_of(&fx, "feeds/late.xml"), "verified");

    // Parquet is refused, with what to do.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    write_inventory(
        &fx,
        (&inv, &format!("{root}2026-11-30T01-00Z/")),
        (&set, 1),
        Shape {
            format: "Parquet",
            ..Shape::default()
        },
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
    let inv = inventory_bucket(&fx).await;
    let dated = format!("reports/{onix}/daily/2026-11-28T01-00Z/");
    // Three files; the last one's MD5 in the manifest is wrong, so the read
    // stops there after the first two are in the ledger.
    let bad = Shape {
        md5: Some("00000000000000000000000000000000"),
        ..Shape::default()
    };
    write_inventory(&fx, (&inv, &dated), (&set, 3), bad).await;
    use_inventory(&fx, &onix, &format!("s3://{inv}/{dated}manifest.json"));
    let stopped = fx.ferry(&["run", "--once"]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(stopped.stdout.contains("part-2.csv.gz"), "{stopped:?}");

    // The manifest is mended and the files already read are gone: a read
    // that started again from the first file would fail on them.
    write_inventory(&fx, (&inv, &dated), (&set, 3), Shape::default()).await;
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

/// Issue 24, item 2: an inventory with only the columns AWS always writes
/// (Bucket, Key) would make every key look changed, and copy it again.
#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_without_the_fields_ferry_needs_is_refused_before_a_row_is_recorded() {
    let fx = Fixture::new("inventory-fields", "").await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..6)
        .map(|i| DemoObject::new(&onix, format!("feeds/{i}.xml"), 700 + i, "application/xml"))
        .collect();
    fx.fill(&set).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fx.status_total("verified"), 6);

    let inv = inventory_bucket(&fx).await;
    let bare = format!("reports/{onix}/daily/2026-11-29T01-00Z/");
    let bare_shape = Shape {
        schema: "Bucket, Key",
        row: |o| format!("\"{}\",\"{}\"\n", o.bucket, encode(&o.key)),
        ..Shape::default()
    };
    write_inventory(&fx, (&inv, &bare), (&set, 1), bare_shape).await;
    use_inventory(&fx, &onix, &format!("s3://{inv}/{bare}manifest.json"));
    let refused = fx.ferry(&["run", "--once"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    for words in [
        "lacks Size, LastModifiedDate, ETag, StorageClass",
        "OptionalFields",
    ] {
        assert!(refused.stdout.contains(words), "{words}: {refused:?}");
    }
    // No row was recorded: every key is still the copy it was.
    let moved = "SELECT COUNT(*) FROM objects WHERE state != 'verified'";
    assert_eq!(fx.count(moved), 0);

    // A row with an empty value ferry needs is not recorded (its key keeps
    // its state, for the next listing to see); the other rows are.
    let holes = format!("reports/{onix}/daily/2026-11-30T01-00Z/");
    let holes_shape = Shape {
        row: |o| match o.key.as_str() {
            "feeds/0.xml" => row_with(o, &o.size.to_string(), ""),
            "feeds/1.xml" => row_with(o, "", &o.expected_digests().md5_hex()),
            _ => full_row(o),
        },
        ..Shape::default()
    };
    write_inventory(&fx, (&inv, &holes), (&set, 1), holes_shape).await;
    use_inventory(&fx, &onix, &format!("s3://{inv}/{holes}manifest.json"));
    let read = fx.ferry(&["run", "--once"]);
    assert_eq!(read.code, 0, "{read:?}");
    assert!(read.stderr.contains("were not recorded"), "{read:?}");
    assert_eq!(fx.status_total("verified"), 6);
    support::assert_all_copied_byte_equal(&fx, &set).await;
}

/// A manifest is read only when `manifest.checksum` beside it (its MD5, as
/// AWS writes it) agrees: one damaged, or read between the two writes,
/// would name other files or another time. The bucket is listed instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_is_read_only_when_its_checksum_file_agrees() {
    let fx = Fixture::new("inventory-checksum", "").await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..4)
        .map(|i| DemoObject::new(&onix, format!("feeds/{i}.xml"), 500 + i, "application/xml"))
        .collect();
    fx.fill(&set).await;
    // The inventories also name a key the bucket does not hold: a row
    // recorded from one would put it in the ledger.
    let ghost = DemoObject::new(&onix, "feeds/ghost.xml".into(), 600, "application/xml");
    let with_ghost: Vec<DemoObject> = set.iter().cloned().chain([ghost.clone()]).collect();
    let inv = inventory_bucket(&fx).await;
    let ghost_rows = "SELECT COUNT(*) FROM objects WHERE key = 'feeds/ghost.xml'";
    for (day, checksum, words) in [
        (
            1,
            Checksum::Says("0123456789abcdef0123456789abcdef"),
            "is damaged or was replaced while read",
        ),
        (2, Checksum::Missing, "is not there"),
    ] {
        let dated = format!("reports/{onix}/daily/2026-12-0{day}T01-00Z/");
        let shape = Shape {
            checksum,
            ..Shape::default()
        };
        write_inventory(&fx, (&inv, &dated), (&with_ghost, 1), shape).await;
        use_inventory(&fx, &onix, &format!("s3://{inv}/{dated}manifest.json"));
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "listed instead: {run:?}");
        assert!(run.stderr.contains("manifest.checksum"), "{run:?}");
        assert!(run.stderr.contains(words), "{words}: {run:?}");
        assert!(!run.stderr.contains("reading the S3 Inventory"), "{run:?}");
        assert_eq!(fx.count(ghost_rows), 0, "no row of the inventory recorded");
        support::assert_all_copied_byte_equal(&fx, &set).await;
    }
    // The same inventory with its true checksum is read: its rows are
    // recorded, the ghost among them (whose copy then fails, as it must).
    let dated = format!("reports/{onix}/daily/2026-12-03T01-00Z/");
    write_inventory(&fx, (&inv, &dated), (&with_ghost, 1), Shape::default()).await;
    use_inventory(&fx, &onix, &format!("s3://{inv}/{dated}manifest.json"));
    let read = fx.ferry(&["run", "--once"]);
    assert!(read.stderr.contains("reading the S3 Inventory"), "{read:?}");
    assert_eq!(fx.count(ghost_rows), 1, "the inventory's rows were read");
}

/// Issue 24, item 3: two buckets read from inventories in one run each read
/// their own files, and both reads complete.
#[tokio::test(flavor = "multi_thread")]
async fn two_buckets_read_from_inventories_in_one_run_are_each_copied_whole() {
    let proxy = FaultProxy::playing(servers().get("FERRY_SOURCE_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::new("inventory-pairs", "").await;
    let [_, _, onix, packages] = ferry_tools::demo::bucket_names(&fx.suffix);
    let inv = inventory_bucket(&fx).await;
    let mut all = Vec::new();
    for (bucket, kind) in [(&onix, "feeds/onix"), (&packages, "zips/package")] {
        let set: Vec<DemoObject> = (0..40)
            .map(|i| {
                DemoObject::new(
                    bucket,
                    format!("{kind}-{i:02}.xml"),
                    300 + i,
                    "application/xml",
                )
            })
            .collect();
        fx.fill(&set).await;
        // Files of some megabytes: the two reads run side by side.
        let dated = format!("reports/{bucket}/daily/2026-11-28T01-00Z/");
        let versioned = Shape {
            schema: VERSIONED_SCHEMA,
            row: versioned_rows,
            ..Shape::default()
        };
        write_inventory(&fx, (&inv, &dated), (&set, 2), versioned).await;
        use_inventory(&fx, bucket, &format!("s3://{inv}/{dated}manifest.json"));
        all.extend(set);
    }
    fx.source_through(&proxy.url());
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    for bucket in [&onix, &packages] {
        assert_eq!(
            proxy.injected.listings_of(bucket),
            (0, 0),
            "{bucket} was listed"
        );
    }
    support::assert_all_copied_byte_equal(&fx, &all).await;
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM objects"),
        80,
        "rows of one bucket in the other's"
    );
    // Both reads are complete listings: `delete = true` may act on them.
    let complete =
        "SELECT COUNT(*) FROM buckets WHERE inventory_manifest IS NOT NULL AND list_cursor IS NULL";
    assert_eq!(fx.count(complete), 2);
    // Nothing of the inventory files is left beside the ledger.
    let left: Vec<_> = std::fs::read_dir(fx.config.ledger.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("ferry.sqlite"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Issue 24, item 10: a manifest older than the bucket's last listing brings
/// back no key deleted since, and no version replaced since.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_older_than_the_last_listing_brings_back_nothing() {
    let proxy = FaultProxy::playing(servers().get("FERRY_SOURCE_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::with_destination("inventory-old", "", "delete = true", None).await;
    let onix = format!("onix{}", fx.suffix);
    let object = |key: &str, size| DemoObject::new(&onix, key.into(), size, "application/xml");
    let (kept, changed) = (
        object("feeds/kept.xml", 800),
        object("feeds/changed.xml", 900),
    );
    let (removed, deleted) = (
        object("feeds/removed.xml", 1_000),
        object("feeds/deleted.xml", 1_100),
    );
    let set = [
        kept.clone(),
        changed.clone(),
        removed.clone(),
        deleted.clone(),
    ];
    fx.fill(&set).await;
    // The inventory is taken now, before the listings below.
    let inv = inventory_bucket(&fx).await;
    let dated = format!("reports/{onix}/daily/2026-11-28T01-00Z/");
    write_inventory(&fx, (&inv, &dated), (&set, 1), Shape::default()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Since the inventory: `changed` replaced, `removed` deleted at the
    // source and, two listings later, at the destination; `deleted` deleted.
    let changed = object("feeds/changed.xml", 950);
    fx.fill(std::slice::from_ref(&changed)).await;
    let delete = |key: String| fx.source.delete_object().bucket(&onix).key(key).send();
    delete(removed.key.clone()).await.unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    delete(deleted.key.clone()).await.unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(state_of(&fx, &removed.key), "removed");
    assert_eq!(state_of(&fx, &deleted.key), "deleted");

    // Now ferry is pointed at that inventory.
    use_inventory(&fx, &onix, &format!("s3://{inv}/{dated}manifest.json"));
    fx.source_through(&proxy.url());
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        proxy.injected.listings_of(&onix).0 >= 1,
        "the bucket was not listed"
    );
    assert_eq!(
        proxy
            .injected
            .object_gets
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only the manifest is read: no object is copied again, no deleted key asked for"
    );
    assert_eq!(state_of(&fx, &removed.key), "removed");
    // Missing for a second listing: removed at the destination as well.
    assert_eq!(state_of(&fx, &deleted.key), "removed");
    assert_eq!(fx.status_total("failed"), 0);
    // The destination holds the source's bytes of what is left, and no more.
    for o in [&kept, &changed] {
        assert_eq!(state_of(&fx, &o.key), "verified");
        let got = ferry_tools::demo::observe(
            &fx.destination,
            Side::Destination,
            &format!("hub-{onix}"),
            &o.key,
        )
        .await
        .unwrap();
        assert_eq!(got.sha256, o.expected_digests().sha256_hex(), "{}", o.key);
    }
    let left = support::list_all(&fx.destination, &format!("hub-{onix}")).await;
    assert_eq!(left.len(), 2, "{left:?}");
}

/// Issue 24, item 10: a key changed since its inventory was taken hears 412
/// when it is read; when the destination holds ferry's copy of the version
/// the source has now, it is recorded copied, not copied again.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_changed_since_the_inventory_is_not_copied_again_when_its_copy_is_there() {
    let destination =
        FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::with_destination("inventory-412", "", "", Some(destination.url())).await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = ["feeds/kept.xml", "feeds/changed.xml"]
        .iter()
        .map(|k| DemoObject::new(&onix, (*k).into(), 900, "application/xml"))
        .collect();
    fx.fill(&set).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Taken after that listing, the inventory still has the version of
    // `changed` from before: as when a long listing reached the key after it
    // changed, and the inventory was taken before it did.
    let inv = inventory_bucket(&fx).await;
    let dated = format!("reports/{onix}/daily/2026-11-28T01-00Z/");
    let before = Shape {
        row: |o| match o.key.as_str() {
            "feeds/changed.xml" => full_row(&DemoObject::new(
                &o.bucket,
                o.key.clone(),
                1_234,
                "application/xml",
            )),
            _ => full_row(o),
        },
        ..Shape::default()
    };
    write_inventory(&fx, (&inv, &dated), (&set, 1), before).await;
    use_inventory(&fx, &onix, &format!("s3://{inv}/{dated}manifest.json"));
    let writes = destination
        .injected
        .writes
        .load(std::sync::atomic::Ordering::Relaxed);
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("not copied again"), "{run:?}");
    assert_eq!(
        destination
            .injected
            .writes
            .load(std::sync::atomic::Ordering::Relaxed),
        writes,
        "the destination was written again"
    );
    assert_eq!(fx.status_total("failed"), 0);
    let etag: String = fx
        .ledger()
        .query_row(
            "SELECT source_etag FROM objects WHERE key = 'feeds/changed.xml'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(etag, set[1].expected_digests().md5_hex());
    assert!(["copied", "verified"].contains(&state_of(&fx, "feeds/changed.xml").as_str()));
    support::assert_all_copied_byte_equal(&fx, &set).await;
}
