//! End to end: the demo's shapes go from the source server to the destination
//! server through the real binary, and arrive byte-equal, with metadata,
//! with checksums recorded and ETags preserved.

mod support;

use std::collections::HashMap;

use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject, Scale};
use support::{list_all, Fixture};

const TRANSFER: &str = r#"
concurrency = 8
part_size = "8MiB"
multipart_threshold = "8MiB"
"#;

fn expected(set: &[DemoObject]) -> HashMap<(String, String), &DemoObject> {
    set.iter()
        .map(|o| ((o.bucket.clone(), o.key.clone()), o))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_demo_shape_arrives_byte_equal_with_its_metadata() {
    let fx = Fixture::new("shapes", TRANSFER).await;
    let set = demo::data_set(Scale::Small, &fx.suffix);
    fx.fill(&set).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("copied {} objects", set.len())),
        "{run:?}"
    );

    // Every object at the destination hashes to what the generator made, and
    // carries the source's metadata.
    let want = expected(&set);
    for o in &set {
        let dest = format!("hub-{}", o.bucket);
        let got = demo::observe(&fx.destination, Side::Destination, &dest, &o.key)
            .await
            .unwrap();
        let digests = o.expected_digests();
        assert_eq!(got.size, o.size, "{}", o.key);
        assert_eq!(
            got.sha256,
            digests.sha256_hex(),
            "bytes differ for {}",
            o.key
        );
        assert_eq!(
            got.content_type.as_deref(),
            Some(o.content_type),
            "{}",
            o.key
        );
        assert_eq!(got.cache_control.as_deref(), o.cache_control, "{}", o.key);
        assert_eq!(got.content_disposition, o.content_disposition, "{}", o.key);
        assert_eq!(
            got.content_language.as_deref(),
            o.content_language,
            "{}",
            o.key
        );
        assert_eq!(
            got.content_encoding.as_deref(),
            o.content_encoding,
            "{}",
            o.key
        );
        assert_eq!(got.expires.is_some(), o.expires.is_some(), "{}", o.key);
        let mut user: Vec<(String, String)> = o
            .user
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        user.sort();
        assert_eq!(got.user, user, "{}", o.key);
    }

    // Nothing else appeared at the destination.
    for (src, dst) in fx.pairs() {
        let keys = list_all(&fx.destination, &dst).await;
        let expected_keys = want.keys().filter(|(b, _)| *b == src).count();
        assert_eq!(keys.len(), expected_keys, "{dst}");
    }

    // The two stores agree with each other as well (metadata, bytes).
    let cmp = demo::compare(&fx.source, &fx.destination, &fx.pairs())
        .await
        .unwrap();
    assert_eq!(cmp.differences, Vec::<String>::new());
    assert_eq!(cmp.objects as usize, set.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_matches_both_stores_and_a_second_run_copies_nothing() {
    let fx = Fixture::new("ledger", TRANSFER).await;
    let set = demo::data_set(Scale::Small, &fx.suffix);
    fx.fill(&set).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");

    let want = expected(&set);
    let db = fx.ledger();
    let mut stmt = db
        .prepare(
            "SELECT b.source, o.key, o.size, o.source_etag, o.state, c.dest_etag, c.etag_matches,
                    c.sha256, c.md5, c.part_count, c.size
             FROM objects o JOIN buckets b ON b.id = o.bucket_id LEFT JOIN copies c ON c.object_id = o.id",
        )
        .unwrap();
    type Row = (
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<bool>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = stmt
        .query_map([], |r| Row::try_from(r))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), set.len());

    let mut source_listing = HashMap::new();
    let mut dest_listing = HashMap::new();
    for (src, dst) in fx.pairs() {
        for (k, size, etag) in list_all(&fx.source, &src).await {
            source_listing.insert((src.clone(), k), (size, etag));
        }
        for (k, size, etag) in list_all(&fx.destination, &dst).await {
            dest_listing.insert((src.clone(), k), (size, etag));
        }
    }
    for (
        bucket,
        key,
        size,
        source_etag,
        state,
        dest_etag,
        etag_matches,
        sha256,
        md5,
        part_count,
        copied_size,
    ) in rows
    {
        let id = (bucket.clone(), key.clone());
        let o = want
            .get(&id)
            .unwrap_or_else(|| panic!("ledger has an object the source never had: {key}"));
        let digests = o.expected_digests();
        assert_eq!(
            state, "verified",
            "{key}: copied and read back right after (verify_after_copy)"
        );
        assert_eq!(size as u64, o.size, "{key}");
        assert_eq!(copied_size, Some(size), "{key}");
        assert_eq!(
            sha256.as_deref(),
            Some(digests.sha256_hex().as_str()),
            "whole-object SHA-256 of {key}"
        );
        // The whole-object MD5 is what a single-part source's ETag is; a
        // multipart source's ETag is made of its parts' MD5s, recorded below.
        let want_md5 = if o.multipart {
            String::new()
        } else {
            digests.md5_hex()
        };
        assert_eq!(md5, Some(want_md5), "whole-object MD5 of {key}");
        assert_eq!(
            source_listing[&id],
            (size as u64, source_etag.clone()),
            "source listing vs ledger for {key}"
        );
        let dest_etag = dest_etag.unwrap();
        assert_eq!(
            dest_listing[&id],
            (size as u64, dest_etag.clone()),
            "destination listing vs ledger for {key}"
        );
        assert_eq!(etag_matches, Some(dest_etag == source_etag), "{key}");
        // A source multipart object keeps its part layout and so its ETag.
        if o.multipart {
            assert_eq!(
                dest_etag, source_etag,
                "multipart ETag of {key} not preserved"
            );
            assert_eq!(
                part_count,
                Some(o.size.div_ceil(demo::SOURCE_PART_SIZE) as i64),
                "{key}"
            );
        } else if o.size < 8 << 20 {
            assert_eq!(dest_etag, digests.md5_hex(), "{key}");
        } else {
            assert_eq!(part_count, Some(o.size.div_ceil(8 << 20) as i64), "{key}");
        }
    }

    // Every part of every multipart copy is recorded with its MD5, and with
    // the object's SHA-256 state at its end: taken up and fed the rest of
    // the object, it must give the object's SHA-256 (computed by sha2 alone).
    // A single-part source's parts carry the whole MD5's state too, the same way.
    type PartRow = (
        String,
        i64,
        i64,
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let parts: Vec<PartRow> = db
        .prepare(
            "SELECT o.key, p.part_number, p.offset, p.length, p.md5, p.sha256, p.sha256_state, p.md5_state FROM parts p JOIN objects o ON o.id = p.object_id ORDER BY o.key, p.part_number",
        )
        .unwrap()
        .query_map([], |r| PartRow::try_from(r))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!parts.is_empty());
    for (key, number, offset, length, md5, sha256, state, md5_state) in &parts {
        let o = set.iter().find(|o| &o.key == key).unwrap();
        let bytes = whole_bytes(o);
        let end = (*offset + *length) as usize;
        let d = ferry::hashing::Digests::of(&bytes[*offset as usize..end]);
        assert_eq!(md5, &d.md5_hex(), "MD5 of part {number} of {key}");
        // Parts of this size are hashed in order: no second SHA-256 of their own.
        assert_eq!(sha256, "", "part {number} of {key}");
        let state = state
            .as_deref()
            .unwrap_or_else(|| panic!("no SHA-256 state for part {number} of {key}"));
        let mut chain = ferry::hashing::Sha256Chain::resume(state).unwrap();
        assert_eq!(chain.len(), end as u64, "part {number} of {key}");
        chain.update(&bytes[end..]);
        assert_eq!(
            hex::encode(chain.finish()),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            "SHA-256 state of part {number} of {key}"
        );
        match (o.multipart, md5_state) {
            (true, None) => {}
            (false, Some(state)) => {
                let mut chain = ferry::hashing::Md5Chain::resume(state).unwrap();
                chain.update(&bytes[end..]);
                assert_eq!(
                    hex::encode(chain.finish()),
                    o.expected_digests().md5_hex(),
                    "MD5 state of part {number} of {key}"
                );
            }
            (multipart, state) => {
                panic!("part {number} of {key} (multipart at the source: {multipart}) has MD5 state {state:?}")
            }
        }
    }
    let uploads: i64 = db
        .query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(uploads, 0, "no upload is left open in the ledger");

    // A second run finds nothing to do, and says so.
    let again = fx.ferry(&["run", "--once"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing to copy"), "{again:?}");
    let (copied, bytes): (i64, i64) = db
        .query_row(
            "SELECT objects_copied, bytes_copied FROM passes ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((copied, bytes), (0, 0));

    // status reads the same ledger and counts every object as copied.
    let status = fx.ferry(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let audio = format!("audio{}", fx.suffix);
    let row = json["status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == audio.as_str())
        .unwrap();
    let n = set.iter().filter(|o| o.bucket == audio).count() as u64;
    let bytes: u64 = set
        .iter()
        .filter(|o| o.bucket == audio)
        .map(|o| o.size)
        .sum();
    for (field, want) in [
        ("listed", n),
        ("copied", n),
        ("verified", n),
        ("failed", 0),
        ("pending", 0),
        ("bytes_copied", bytes),
    ] {
        assert_eq!(row[field].as_u64(), Some(want), "{field}: {row}");
    }
    assert_eq!(row["done_percent"].as_f64(), Some(100.0), "{row}");
    assert!(
        row["rate_last_5_min"].as_u64().unwrap() > 0,
        "just copied, so the recent rate is not zero: {row}"
    );
    assert_eq!(row["eta_of_pending"], "nothing pending");
    let table = fx.ferry(&["status"]);
    assert!(
        table.stdout.contains(&audio) && table.stdout.contains("100.00"),
        "{table:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_added_at_the_source_is_picked_up_by_the_next_run() {
    let fx = Fixture::new("incremental", TRANSFER).await;
    let set: Vec<DemoObject> = demo::data_set(Scale::Small, &fx.suffix)
        .into_iter()
        .filter(|o| o.size < 1 << 20)
        .take(5)
        .collect();
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);

    let mut extra = set[0].clone();
    extra.key = format!("{}-new", extra.key);
    extra.seed ^= 0xfeed;
    demo::put(&fx.source, &extra).await.unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("copied 1 objects"), "{run:?}");
    let got = demo::observe(
        &fx.destination,
        Side::Destination,
        &format!("hub-{}", extra.bucket),
        &extra.key,
    )
    .await
    .unwrap();
    assert_eq!(got.sha256, extra.expected_digests().sha256_hex());
}

fn whole_bytes(o: &DemoObject) -> Vec<u8> {
    let mut out = Vec::with_capacity(o.size as usize);
    for (offset, len) in o.chunks() {
        out.extend_from_slice(&demo::content(o.seed, offset, len as usize));
    }
    out
}
