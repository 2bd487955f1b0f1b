//! ferry never destroys data: it never overwrites or deletes a destination
//! object it did not write, never deletes on an incomplete listing or under
//! another scope, and leaves no multipart upload behind.

mod support;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject};
use support::faults::{FaultProxy, Plays};
use support::proxy::Proxy;
use support::{csv_table, servers, Fixture};

const MIB: u64 = 1 << 20;

fn onix(fx: &Fixture, n: u64) -> Vec<DemoObject> {
    let bucket = format!("onix{}", fx.suffix);
    (0..n)
        .map(|i| {
            DemoObject::new(
                &bucket,
                format!("feeds/onix-{i:03}.xml"),
                3_000 + i,
                "application/xml",
            )
        })
        .collect()
}

/// What a third party (the team's services on the Hetzner side) writes.
async fn third_party_writes(fx: &Fixture, o: &DemoObject) -> Vec<u8> {
    let bytes = format!("written at the destination by another service: {}", o.key).into_bytes();
    fx.destination
        .put_object()
        .bucket(format!("hub-{}", o.bucket))
        .key(&o.key)
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    bytes
}

async fn destination_bytes(fx: &Fixture, o: &DemoObject) -> Option<Vec<u8>> {
    let got = fx
        .destination
        .get_object()
        .bucket(format!("hub-{}", o.bucket))
        .key(&o.key)
        .send()
        .await
        .ok()?;
    Some(got.body.collect().await.unwrap().to_vec())
}

fn state_of(fx: &Fixture, key: &str) -> String {
    fx.ledger()
        .query_row("SELECT state FROM objects WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_another_writer_changed_is_not_overwritten_when_the_source_changes() {
    let fx = Fixture::new("overwrite", "").await;
    let set = onix(&fx, 3);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);

    let theirs = third_party_writes(&fx, &set[0]).await;
    let mut newer = set[0].clone();
    newer.seed ^= 0xbeef;
    newer.size += 10;
    demo::put(&fx.source, &newer).await.unwrap();
    // And a key ferry never wrote, already at the destination.
    let mut fresh = set[1].clone();
    fresh.key = "feeds/onix-new.xml".into();
    let before_ferry = third_party_writes(&fx, &fresh).await;
    demo::put(&fx.source, &fresh).await.unwrap();

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "a conflict fails the run: {run:?}");
    for key in [&set[0].key, &fresh.key] {
        assert!(
            run.stdout
                .contains(&format!("conflict: {}/{key}", set[0].bucket)),
            "{key} named: {run:?}"
        );
        assert_eq!(state_of(&fx, key), "conflict");
    }
    assert_eq!(destination_bytes(&fx, &set[0]).await, Some(theirs));
    assert_eq!(destination_bytes(&fx, &fresh).await, Some(before_ferry));
    assert_eq!(fx.status_total("conflict"), 2);
    let report = fx.ferry(&["report", "--format", "csv"]);
    assert_eq!(report.code, 1, "{report:?}");
    let (_, problems) = csv_table(&report.stdout, "problems");
    let classes: Vec<(&str, &str)> = problems.iter().map(|p| (&p[1], &p[2])).collect();
    assert!(
        classes.contains(&(set[0].key.as_str(), "conflict")),
        "{classes:?}"
    );

    // The next pass looks again, and still touches nothing.
    assert_eq!(fx.ferry(&["run", "--once"]).code, 1);
    assert_eq!(
        destination_bytes(&fx, &set[0]).await.map(|b| b.len()),
        Some(theirs_len(&set[0]))
    );

    // The opt-out: the source's version wins.
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        format!("on_conflict = \"overwrite\"\n{text}"),
    )
    .unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let got = destination_bytes(&fx, &newer).await.unwrap();
    assert_eq!(got.len() as u64, newer.size);
    assert_eq!(fx.status_total("conflict"), 0);
}

/// Whether the destination refuses a second write of a key sent with
/// If-None-Match: *, asked by the test itself.
async fn store_honours_if_none_match(fx: &Fixture, bucket: &str) -> bool {
    let put = || {
        fx.destination
            .put_object()
            .bucket(bucket)
            .key("if-none-match-probe-of-the-test")
            .if_none_match("*")
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    put().await.unwrap();
    let honoured = put().await.is_err();
    fx.destination
        .delete_object()
        .bucket(bucket)
        .key("if-none-match-probe-of-the-test")
        .send()
        .await
        .unwrap();
    honoured
}

#[tokio::test(flavor = "multi_thread")]
async fn new_keys_are_written_if_absent_where_the_store_honours_it_and_a_taken_key_is_left_alone() {
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::with_destination("ifabsent", "concurrency = 1", "", Some(proxy.url())).await;
    let set = onix(&fx, 12);
    fx.fill(&set).await;
    // Another writer takes the last key before ferry's pass: one at a
    // time, ferry reaches it after the first key has probed the store.
    let taken = set.last().unwrap();
    let theirs = third_party_writes(&fx, taken).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "a conflict fails the run: {run:?}");
    assert_eq!(state_of(&fx, &taken.key), "conflict");
    assert_eq!(destination_bytes(&fx, taken).await, Some(theirs));
    for o in &set[..set.len() - 1] {
        let got = destination_bytes(&fx, o).await.expect("copied");
        let sha256 = ferry::hashing::Digests::of(&got).sha256_hex();
        assert_eq!(sha256, o.expected_digests().sha256_hex(), "{}", o.key);
    }
    assert_eq!(fx.status_total("verified"), set.len() as u64 - 1);

    let heads = proxy
        .injected
        .object_heads
        .load(std::sync::atomic::Ordering::Relaxed);
    let if_absent = proxy
        .injected
        .puts_if_absent
        .load(std::sync::atomic::Ordering::Relaxed);
    let honoured = store_honours_if_none_match(&fx, &format!("hub-{}", taken.bucket)).await;
    let n = set.len() as u64;
    if honoured {
        // The first key: a HEAD, its PUT, and the same PUT again (refused).
        // The next ten: a PUT each, no HEAD. The taken key: its PUT is
        // refused; one HEAD finds it is not ferry's, another asks whether it
        // holds the source's bytes to adopt (it does not: it is read, and
        // proves another writer's).
        assert_eq!((heads, if_absent), (3, 2 + (n - 2) + 1), "{run:?}");
        assert!(run.stderr.contains("honours If-None-Match"), "{run:?}");
    } else {
        // A store that ignores If-None-Match is asked by HEAD every time,
        // and the taken key once more, whether it can be adopted; it was
        // sent only by the first key's two PUTs, over ferry's own object.
        assert_eq!((heads, if_absent), (n + 1, 2), "{run:?}");
        assert!(run.stderr.contains("ignores If-None-Match"), "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_taken_between_the_listing_and_the_write_is_left_alone_where_if_none_match_holds() {
    // Ceph (Hetzner's store) honours If-None-Match, so the race is closed
    // there; this runs against Ceph whichever destination the suite tests.
    // (Garage ignores it: the window between ferry's HEAD and its PUT stays,
    // README, "Never over someone else's data".)
    // onix-000 probes the store; onix-002's write is held by the proxy.
    let plays = Plays {
        hold_put: Some("feeds/onix-002.xml".to_owned()),
        ..Plays::default()
    };
    let fx = Fixture::with_ceph_destination("ifabsentrace", "concurrency = 1", "").await;
    let ceph = servers().get("FERRY_CEPH_ENDPOINT");
    let proxy = FaultProxy::playing(ceph, plays).await;
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, text.replacen(ceph, &proxy.url(), 1)).unwrap();
    let set = onix(&fx, 3);
    fx.fill(&set).await;
    assert!(
        store_honours_if_none_match(&fx, &format!("hub-{}", set[0].bucket)).await,
        "Ceph honours If-None-Match (tests/conformance.rs)"
    );
    let ferry = fx.spawn_ferry(&["run", "--once"]);
    tokio::time::timeout(Duration::from_secs(120), proxy.injected.holding.notified())
        .await
        .expect("ferry sent its PUT of onix-002 with If-None-Match");
    let theirs = third_party_writes(&fx, &set[2]).await;
    proxy.injected.release.notify_one();
    let out = ferry.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a conflict fails the run: {stdout}"
    );
    assert_eq!(state_of(&fx, &set[2].key), "conflict");
    assert_eq!(destination_bytes(&fx, &set[2]).await, Some(theirs));
    assert_eq!(fx.status_total("verified"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_answer_was_lost_is_ferrys_own_on_retry_not_a_conflict() {
    // onix-000 probes the store; onix-002's PUT lands, but ferry hears SlowDown.
    let plays = Plays {
        lose_put_answer: Some("feeds/onix-002.xml".to_owned()),
        ..Plays::default()
    };
    let destination = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), plays).await;
    let source =
        FaultProxy::playing(servers().get("FERRY_SOURCE_ENDPOINT"), Plays::default()).await;
    let fx =
        Fixture::with_destination("lostanswer", "concurrency = 1", "", Some(destination.url()))
            .await;
    let set = onix(&fx, 3);
    fx.fill(&set).await;
    fx.source_through(&source.url());

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    support::assert_all_copied_byte_equal(&fx, &set).await;
    // Each object read once, and onix-002 once more for the retry: where the
    // retry's conditional PUT hears 412, the key already holds these bytes;
    // they are read back at the destination, proved the source's and
    // adopted, not read from the source a third time.
    let gets = source
        .injected
        .object_gets
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(gets, set.len() as u64 + 1, "{run:?}");
}

fn theirs_len(o: &DemoObject) -> usize {
    format!("written at the destination by another service: {}", o.key).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_remove_only_ferrys_own_copies() {
    let fx = Fixture::with_destination("deletes", "", "delete = true", None).await;
    let set = onix(&fx, 3);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);

    // Key 0: another writer changed the copy, then the source deleted it.
    // Key 1: only the source deleted it.
    let theirs = third_party_writes(&fx, &set[0]).await;
    for o in &set[..2] {
        fx.delete_at_source(o).await;
    }
    for _ in 0..3 {
        fx.ferry(&["run", "--once"]);
    }
    assert_eq!(destination_bytes(&fx, &set[0]).await, Some(theirs));
    assert_eq!(state_of(&fx, &set[0].key), "conflict");
    assert_eq!(
        destination_bytes(&fx, &set[1]).await,
        None,
        "removed after two passes"
    );
    assert_eq!(state_of(&fx, &set[1].key), "removed");
    assert!(destination_bytes(&fx, &set[2]).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn another_shard_on_the_same_ledger_is_refused_and_deletes_nothing() {
    let fx = Fixture::with_destination("scope", "", "delete = true", None).await;
    let set = onix(&fx, 12);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once", "--shard", "0/2"]).code, 0);
    let copied = support::list_all(&fx.destination, &format!("hub-{}", set[0].bucket)).await;
    assert!(!copied.is_empty() && copied.len() < set.len(), "{copied:?}");

    for _ in 0..3 {
        let run = fx.ferry(&["run", "--once", "--shard", "1/2"]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            run.stderr.contains("shard 0/2") && run.stderr.contains("1/2"),
            "names the old and the new scope: {run:?}"
        );
    }
    let after = support::list_all(&fx.destination, &format!("hub-{}", set[0].bucket)).await;
    assert_eq!(after, copied, "nothing deleted");
    assert_eq!(fx.ferry(&["run", "--once", "--shard", "0/2"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_page_that_says_more_follow_ends_no_listing() {
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            empty_first_page: true,
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::with_destination("emptypage", "", "delete = true", None).await;
    let set = onix(&fx, 5);
    fx.fill(&set).await;
    fx.source_through(&proxy.url());

    for pass in 0..3 {
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "pass {pass}: {run:?}");
        assert!(!run.stdout.contains("deleted at the source"), "{run:?}");
    }
    for o in &set {
        assert!(
            destination_bytes(&fx, o).await.is_some(),
            "{} deleted",
            o.key
        );
        assert_eq!(state_of(&fx, &o.key), "verified");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_deleted_during_its_multipart_copy_leaves_no_upload() {
    let proxy = Proxy::start(servers().get("FERRY_DEST_ENDPOINT"), Some(8 * MIB)).await;
    let transfer = "concurrency = 2\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";
    let fx = Fixture::with_destination("orphan", transfer, "", Some(proxy.url())).await;
    let audio = format!("audio{}", fx.suffix);
    let mut book = DemoObject::new(&audio, "books/withdrawn.mp3".into(), 40 * MIB, "audio/mpeg");
    book.multipart = true;
    fx.fill(std::slice::from_ref(&book)).await;

    let mut first = fx.spawn_ferry(&["run", "--once"]);
    let started = Instant::now();
    while fx.count("SELECT COUNT(*) FROM parts") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no part was ever sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().await.unwrap();
    let dest = format!("hub-{audio}");
    let open = ferry::cleanup::incomplete_uploads(&fx.destination, &dest)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "the killed run left its upload: {open:?}");

    fx.source
        .delete_object()
        .bucket(&audio)
        .key(&book.key)
        .send()
        .await
        .unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let open = ferry::cleanup::incomplete_uploads(&fx.destination, &dest)
        .await
        .unwrap();
    assert!(open.is_empty(), "an upload is left behind: {open:?}");
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 0);
    assert_eq!(fx.count("SELECT COUNT(*) FROM abandoned_uploads"), 0);
    assert_eq!(fx.status_total("open_uploads"), 0);
    let _ = demo::observe(&fx.destination, Side::Destination, &dest, &book.key)
        .await
        .expect_err("nothing half-written is visible");
}
