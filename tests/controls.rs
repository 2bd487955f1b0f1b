//! Migration controls: filters per bucket pair, and a dry run that writes
//! nothing and foretells what the real run then does.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use ferry_tools::demo::DemoObject;
use support::faults::{FaultProxy, Plays};
use support::{csv_table, servers, Fixture};

fn object(fx: &Fixture, key: &str, size: u64) -> DemoObject {
    DemoObject::new(
        &format!("audio{}", fx.suffix),
        key.into(),
        size,
        "audio/mpeg",
    )
}

/// Adds `lines` to the `[[buckets]]` table of the audio bucket.
fn filter_audio(fx: &Fixture, lines: &str) {
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let table = format!("destination = \"hub-audio{}\"\n", fx.suffix);
    assert!(text.contains(&table), "{text}");
    let text = text.replacen(&table, &format!("{table}{lines}\n"), 1);
    std::fs::write(&fx.config_path, text).unwrap();
}

async fn destination_keys(fx: &Fixture) -> Vec<String> {
    let bucket = format!("hub-audio{}", fx.suffix);
    let mut keys: Vec<String> = support::list_all(&fx.destination, &bucket)
        .await
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    keys.sort();
    keys
}

/// Each object is at the destination with the source's bytes.
async fn assert_bytes_equal(fx: &Fixture, set: &[DemoObject]) {
    for o in set {
        let got = ferry_tools::demo::observe(
            &fx.destination,
            ferry::store::Side::Destination,
            &format!("hub-{}", o.bucket),
            &o.key,
        )
        .await
        .unwrap_or_else(|e| panic!("{} missing: {e}", o.key));
        assert_eq!(got.sha256, o.expected_digests().sha256_hex(), "{}", o.key);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn include_exclude_size_and_time_filters_take_exactly_the_expected_keys() {
    let fx = Fixture::new("filters", "").await;
    let old = vec![
        object(&fx, "books/old.mp3", 4_000),
        object(&fx, "books/old.wav", 4_000),
    ];
    fx.fill(&old).await;
    // Last-Modified has whole seconds: a clear gap between the two sets.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let new = vec![
        object(&fx, "books/a.mp3", 4_000),
        object(&fx, "books/b.xml", 4_000),
        object(&fx, "books/tmp/c.mp3", 4_000),
        object(&fx, "books/tiny.mp3", 10),
        object(&fx, "books/big.mp3", 300_000),
        object(&fx, "cache/d.mp3", 4_000),
        object(&fx, "books/with space + plus.mp3", 4_000),
    ];
    fx.fill(&new).await;
    filter_audio(
        &fx,
        &format!(
            r#"include = ["\\.mp3$", "\\.xml$"]
exclude = ["/tmp/", "^cache/"]
min_size = "1KiB"
max_size = "256KiB"
modified_after = "{since}""#
        ),
    );

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        destination_keys(&fx).await,
        vec!["books/a.mp3", "books/b.xml", "books/with space + plus.mp3"]
    );
    assert_bytes_equal(&fx, &[new[0].clone(), new[1].clone(), new[6].clone()]).await;
    // Left out: old.mp3 (time), old.wav (include), tmp (exclude), tiny
    // (min), big (max), cache (exclude): apart from the failures.
    assert_eq!(fx.status_total("filtered"), 6);
    assert_eq!(fx.status_total("failed"), 0);
    let reason: String = fx
        .ledger()
        .query_row(
            "SELECT last_error FROM objects WHERE key = 'books/tmp/c.mp3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, r#"filter: exclude "/tmp/""#);

    // `plan` counts what each rule leaves out, in objects and bytes.
    let plan = fx.ferry(&["plan", "--format", "csv"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let (header, rows) = csv_table(&plan.stdout, "filtered");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = |rule: &str| {
        rows.iter()
            .find(|r| r[col("filter")].starts_with(rule))
            .unwrap_or_else(|| panic!("no {rule} row in {rows:?}"))
    };
    assert_eq!(&row("exclude")[col("objects")], "1");
    assert_eq!(&row("max_size")[col("bytes")], "300000");
    assert_eq!(&row("min_size")[col("objects")], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_change_with_delete_on_deletes_nothing_whose_source_exists() {
    let fx = Fixture::with_destination("filterdel", "", "delete = true", None).await;
    let set: Vec<DemoObject> = (0..6)
        .map(|i| {
            object(
                &fx,
                &format!("books/{}/{i}.mp3", ["keep", "later"][i % 2]),
                3_000 + i as u64,
            )
        })
        .collect();
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    assert_eq!(destination_keys(&fx).await.len(), 6);

    filter_audio(&fx, r#"exclude = ["^books/later/"]"#);
    for pass in 0..3 {
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "pass {pass}: {run:?}");
    }
    // Still at the source, so still at the destination, byte for byte.
    assert_eq!(destination_keys(&fx).await.len(), 6);
    assert_bytes_equal(&fx, &set).await;
    assert_eq!(fx.status_total("filtered"), 3);
    assert_eq!(fx.status_total("deleted"), 0);

    // A new version of a filtered key is not copied.
    let changed = object(&fx, "books/later/1.mp3", 9_999);
    fx.fill(std::slice::from_ref(&changed)).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    let got = fx
        .destination
        .head_object()
        .bucket(format!("hub-audio{}", fx.suffix))
        .key(&changed.key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(3_001), "the old copy stays");

    // Lifting the filter takes the keys up again: the changed one is copied,
    // the others are known copies of their very version.
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        text.replace("exclude = [\"^books/later/\"]\n", ""),
    )
    .unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("copied 1 objects"), "{run:?}");
    assert_eq!(fx.status_total("filtered"), 0);
    let mut now = set.clone();
    now[1] = changed;
    support::assert_all_copied_byte_equal(&fx, &now).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_writes_nothing_and_foretells_the_run() {
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::with_destination("dryrun", "", "delete = true", Some(proxy.url())).await;
    let first: Vec<DemoObject> = (0..6)
        .map(|i| object(&fx, &format!("books/{i}.mp3"), 2_000 + i))
        .collect();
    fx.fill(&first).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);

    // New keys, a changed key, two deleted keys, and a key that another
    // writer took at the destination first.
    let added = vec![
        object(&fx, "books/new-1.mp3", 5_000),
        object(&fx, "books/new-2.mp3", 7_000),
        object(&fx, "books/taken.mp3", 1_000),
    ];
    let changed = object(&fx, "books/0.mp3", 9_000);
    fx.fill(&added).await;
    fx.fill(std::slice::from_ref(&changed)).await;
    for o in &first[4..] {
        fx.delete_at_source(o).await;
    }
    fx.destination
        .put_object()
        .bucket(format!("hub-audio{}", fx.suffix))
        .key("books/taken.mp3")
        .body(ByteStream::from_static(b"another service's file"))
        .send()
        .await
        .unwrap();

    let before = proxy.injected.writes.load(Ordering::Relaxed);
    let requests_before = proxy.injected.requests();
    let dry = fx.ferry(&["run", "--dry-run", "--format", "json"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(
        proxy.injected.writes.load(Ordering::Relaxed),
        before,
        "the dry run wrote to the destination"
    );
    assert!(proxy.injected.requests() > requests_before, "it did look");
    let json: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let summary = json["dry_run"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == format!("audio{}", fx.suffix))
        .unwrap()
        .clone();
    assert_eq!(summary["copy"], 2, "{summary}");
    assert_eq!(summary["copy_bytes"], 12_000, "{summary}");
    assert_eq!(summary["recopy"], 1, "{summary}");
    assert_eq!(summary["recopy_bytes"], 9_000, "{summary}");
    assert_eq!(summary["delete"], 2, "{summary}");
    assert_eq!(summary["conflict"], 1, "{summary}");
    let actions = json["actions"].as_array().unwrap();
    let action_of = |key: &str| {
        actions
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["action"].as_str().unwrap().to_owned())
    };
    assert_eq!(action_of("books/taken.mp3").as_deref(), Some("conflict"));
    assert_eq!(action_of("books/0.mp3").as_deref(), Some("recopy"));
    assert_eq!(action_of("books/5.mp3").as_deref(), Some("delete"));
    assert_eq!(action_of("books/1.mp3"), None, "nothing to do");
    // Nothing moved at the destination.
    assert_eq!(destination_keys(&fx).await.len(), 7);

    // The real run does what the dry run said.
    let run = fx.ferry(&["run", "--once"]);
    assert!(
        run.stdout.contains("copied 3 objects (20.5 KiB)"),
        "{run:?}"
    );
    assert!(run.stdout.contains("2 keys removed"), "{run:?}");
    assert_eq!(fx.status_total("conflict"), 1);
    assert!(proxy.injected.writes.load(Ordering::Relaxed) > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_c_copies_at_ceph_are_unreadable_without_the_key_and_verified_with_it() {
    let transfer = "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";
    let (fx, sse_c) = Fixture::with_sse_c_destination("ssec", transfer).await;
    let env = sse_c.env();
    let ferry = |args: &[&str]| support::ferry_in(fx.dir.path(), &fx.config_path, args, &env);

    let mut set = vec![
        object(&fx, "books/small.mp3", 70_000),
        object(&fx, "books/empty.mp3", 0),
    ];
    let mut big = object(&fx, "books/big.mp3", 12 << 20);
    big.multipart = true;
    set.push(big);
    set.push(object(&fx, "books/single-but-large.mp3", 6 << 20));
    fx.fill(&set).await;

    let run = ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let bucket = format!("hub-audio{}", fx.suffix);
    let (key, md5) = (&sse_c.base64, &sse_c.md5_base64);
    for o in &set {
        // Without the key the store refuses the bytes.
        let plain = fx
            .destination
            .get_object()
            .bucket(&bucket)
            .key(&o.key)
            .send()
            .await;
        assert!(plain.is_err(), "{} readable without the key", o.key);
        // With it, they are the source's bytes.
        let got = fx
            .destination
            .get_object()
            .bucket(&bucket)
            .key(&o.key)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(key)
            .sse_customer_key_md5(md5)
            .send()
            .await
            .unwrap();
        let bytes = got.body.collect().await.unwrap().to_vec();
        assert_eq!(
            ferry::hashing::Digests::of(&bytes).sha256_hex(),
            o.expected_digests().sha256_hex(),
            "{}",
            o.key
        );
    }
    // Read back with the key after the copy, and again by `verify`.
    let verified: i64 = fx
        .ledger()
        .query_row(
            "SELECT COUNT(*) FROM objects WHERE state = 'verified'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(verified, set.len() as i64);
    let notes: i64 = fx
        .ledger()
        .query_row(
            "SELECT COUNT(*) FROM copies WHERE etag_note LIKE '%SSE-C%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(notes, set.len() as i64);
    let verify = ferry(&["verify", "--all"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    // A second run finds every copy in place: nothing is sent again.
    let again = ferry(&["run", "--once"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing to copy"), "{again:?}");

    // Without the key ferry's reads fail: the bytes cannot be proved.
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        text.replace(&format!("sse_c_key_env = \"{}\"\n", sse_c.var), ""),
    )
    .unwrap();
    let keyless = ferry(&["verify", "--all"]);
    assert_ne!(keyless.code, 0, "{keyless:?}");
}

/// Tags the source object `key` of the bucket `bucket` with `tags`.
async fn tag(fx: &Fixture, bucket: &str, key: &str, tags: &[(&str, &str)]) {
    use aws_sdk_s3::types::{Tag, Tagging};
    let set: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
        .collect();
    fx.source
        .put_object_tagging()
        .bucket(bucket)
        .key(key)
        .tagging(Tagging::builder().set_tag_set(Some(set)).build().unwrap())
        .send()
        .await
        .unwrap();
}

async fn tags_at(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<(String, String)> {
    let got = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = got
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    tags.sort();
    tags
}

#[tokio::test(flavor = "multi_thread")]
async fn object_tags_arrive_at_ceph_and_a_destination_without_tags_fails_the_object() {
    let fx = Fixture::with_ceph_both("tags", TRANSFER).await;
    let audio = format!("audio{}", fx.suffix);
    let small = DemoObject::new(&audio, "books/sample.mp3".into(), 200_000, "audio/mpeg");
    let mut large = DemoObject::new(&audio, "books/full.mp3".into(), 20 << 20, "audio/mpeg");
    large.multipart = true;
    let plain = DemoObject::new(&audio, "books/untagged.mp3".into(), 1_000, "audio/mpeg");
    let set = vec![small.clone(), large.clone(), plain.clone()];
    fx.fill(&set).await;
    let tags = [
        ("isbn", "9783161484100"),
        ("genre", "Hörbuch & Krimi"),
        ("rights", "DE=AT"),
    ];
    tag(&fx, &audio, &small.key, &tags).await;
    tag(&fx, &audio, &large.key, &tags[..1]).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let dst = format!("hub-{audio}");
    let want = |t: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = t
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        tags_at(&fx.destination, &dst, &small.key).await,
        want(&tags)
    );
    assert_eq!(
        tags_at(&fx.destination, &dst, &large.key).await,
        want(&tags[..1])
    );
    assert!(tags_at(&fx.destination, &dst, &plain.key).await.is_empty());
    // plan --deep counts the tagged objects in its sample (here, all three).
    let plan = fx.ferry(&["plan", "--deep", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let note = json["data_quality_summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "content_type_mismatch")
        .map(|r| r["note"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(note.contains("sample of 3 of the 3 objects"), "{note}");
    assert!(note.contains("2 of them carry tags"), "{note}");
    // --count-tags asks every object with GetObjectTagging: exactly the two
    // tagged ones, recorded so that a later plan knows without asking.
    let tagged = |out: &support::Run| -> (u64, u64, String) {
        assert_eq!(out.code, 0, "{out:?}");
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        (
            json["buckets"][0]["tagged_objects"].as_u64().unwrap(),
            json["buckets"][0]["tags_not_asked"].as_u64().unwrap(),
            json["catalog"][0]["tags"].as_str().unwrap().to_owned(),
        )
    };
    let before = tagged(&fx.ferry(&["plan", "--format", "json"]));
    assert_eq!((before.0, before.1), (0, 3), "{before:?}");
    assert!(before.2.starts_with("not counted"), "{before:?}");
    let counted = tagged(&fx.ferry(&["plan", "--count-tags", "--format", "json"]));
    assert_eq!((counted.0, counted.1), (2, 0), "{counted:?}");
    assert!(
        counted.2.starts_with("2 of 3 objects carry tags; copied"),
        "{counted:?}"
    );
    let counts: Vec<(String, u32)> = fx
        .ledger()
        .prepare("SELECT key, tag_count FROM objects ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        counts,
        [
            (large.key.clone(), 1),
            (small.key.clone(), 3),
            (plain.key.clone(), 0)
        ]
    );
    assert_eq!(tagged(&fx.ferry(&["plan", "--format", "json"])), counted);

    // Garage has no tagging: the tagged object fails with the reason and the
    // way out, the untagged one is copied.
    let to_garage = Fixture::with_ceph_to_garage("tags-lost", TRANSFER).await;
    let audio = format!("audio{}", to_garage.suffix);
    let small = DemoObject::new(&audio, "books/sample.mp3".into(), 200_000, "audio/mpeg");
    let plain = DemoObject::new(&audio, "books/untagged.mp3".into(), 1_000, "audio/mpeg");
    to_garage.fill(&[small.clone(), plain.clone()]).await;
    tag(&to_garage, &audio, &small.key, &tags).await;
    let run = to_garage.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "{run:?}");
    let reason: String = to_garage
        .ledger()
        .query_row(
            "SELECT last_error FROM objects WHERE key = ?1",
            [&small.key],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("copy_tags = false"), "{reason}");
    assert_eq!(to_garage.status_total("failed"), 1);
    assert_eq!(to_garage.status_total("verified"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_whose_tags_cannot_be_read_stops_the_run_before_anything_is_copied() {
    let fx = Fixture::with_ceph_source("tags-denied", TRANSFER).await;
    // Credentials without s3:GetObjectTagging, as AWS answers them: no tag
    // count on GetObject, AccessDenied on GetObjectTagging.
    let ceph = servers().get("FERRY_CEPH_ENDPOINT");
    let plays = Plays {
        tags_denied: true,
        ..Plays::default()
    };
    let proxy = FaultProxy::playing(ceph, plays).await;
    let audio = format!("audio{}", fx.suffix);
    let tagged = DemoObject::new(&audio, "books/sample.mp3".into(), 200_000, "audio/mpeg");
    fx.fill(std::slice::from_ref(&tagged)).await;
    tag(&fx, &audio, &tagged.key, &[("isbn", "9783161484100")]).await;
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, text.replacen(ceph, &proxy.url(), 1)).unwrap();

    // The object would look untagged: the run stops before it copies it.
    let run = fx.ferry(&["run", "--once"]);
    assert_ne!(run.code, 0, "{run:?}");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("s3:GetObjectTagging") && said.contains("copy_tags = false"),
        "{run:?}"
    );
    let dst = format!("hub-{audio}");
    assert!(support::list_all(&fx.destination, &dst).await.is_empty());

    // Told to copy without tags, it copies.
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replacen("[transfer]\n", "[transfer]\ncopy_tags = false\n", 1);
    std::fs::write(&fx.config_path, text).unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    support::assert_all_copied_byte_equal(&fx, std::slice::from_ref(&tagged)).await;
}

/// Parts of 8 MiB, so that 20 MiB is a multipart copy.
const TRANSFER: &str = "concurrency = 8\npart_size = \"8MiB\"\nmultipart_threshold = \"8MiB\"";
