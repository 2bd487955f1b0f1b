//! Losing the box: a ledger lost after a full copy sends nothing again. ferry
//! adopts each destination copy whose bytes, read back, prove to be the
//! source's, and leaves every other object as it would without a ledger.

mod support;

use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject, Scale};
use support::faults::{FaultProxy, Plays};
use support::{servers, Fixture};

const MIB: u64 = 1 << 20;
const TRANSFER: &str = "concurrency = 4\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";

fn remove_ledger(fx: &Fixture) {
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", fx.config.ledger.display());
        let _ = std::fs::remove_file(path);
    }
    assert!(!fx.config.ledger.exists());
}

/// Every object of `set` at the destination has the generator's bytes.
async fn assert_byte_equal(fx: &Fixture, set: &[DemoObject]) {
    for o in set {
        let got = demo::observe(
            &fx.destination,
            Side::Destination,
            &format!("hub-{}", o.bucket),
            &o.key,
        )
        .await
        .unwrap_or_else(|e| panic!("{} missing: {e}", o.key));
        assert_eq!(got.sha256, o.expected_digests().sha256_hex(), "{}", o.key);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_ledger_adopts_every_proven_copy_and_sends_nothing_again() {
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), Plays::default()).await;
    let fx = Fixture::with_destination("lostledger", TRANSFER, "", Some(proxy.url())).await;
    let mut set = demo::data_set(Scale::Small, &fx.suffix);
    // Parts under 5 MiB at the source: no destination takes them, so ferry
    // cuts its own and the copy's ETag differs from the source's.
    let audio = format!("audio{}", fx.suffix);
    let recut = DemoObject::new(&audio, "books/recut/full.mp3".into(), 0, "audio/mpeg")
        .with_parts(&[3 * MIB, 3 * MIB, MIB + 17]);
    set.push(recut.clone());
    fx.fill(&set).await;
    let first = fx.ferry(&["run", "--once"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_byte_equal(&fx, &set).await;
    let recut_copy = fx
        .destination
        .head_object()
        .bucket(format!("hub-{audio}"))
        .key(&recut.key)
        .send()
        .await
        .unwrap();
    let source_head = fx
        .source
        .head_object()
        .bucket(&audio)
        .key(&recut.key)
        .send()
        .await
        .unwrap();
    let source_etag = source_head.e_tag().unwrap().trim_matches('"');
    assert_ne!(
        recut_copy.e_tag().unwrap().trim_matches('"'),
        source_etag,
        "the test needs a copy whose ETag differs from the source's"
    );

    // The box is lost with its ledger: the next run sends nothing, calls
    // nothing a conflict, and has every object verified.
    remove_ledger(&fx);
    let (puts_before, completes_before) = (
        proxy.injected.put_keys.lock().unwrap().len(),
        proxy.injected.completes.lock().unwrap().len(),
    );
    let again = fx.ferry(&["run", "--once"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        proxy.injected.put_keys.lock().unwrap().len(),
        puts_before,
        "{again:?}"
    );
    assert_eq!(
        proxy.injected.completes.lock().unwrap().len(),
        completes_before
    );
    assert!(
        again
            .stdout
            .contains(&format!("adopted {} objects", set.len())),
        "{again:?}"
    );
    assert_eq!(fx.status_total("conflict"), 0);
    assert_eq!(fx.status_total("verified"), set.len() as u64);

    // Lost again. Meanwhile another writer replaced one copy with other
    // bytes of the same size, and the source changed one.
    remove_ledger(&fx);
    let theirs = {
        let mut o = set[set.len() - 2].clone();
        o.seed ^= 0x5eed;
        o.bucket = format!("hub-{}", o.bucket);
        o.multipart = false;
        demo::put(&fx.destination, &o).await.unwrap();
        o
    };
    let changed = {
        let onix = set.iter().find(|o| o.key.ends_with(".xml")).unwrap();
        let mut newer = onix.clone();
        newer.seed ^= 0xbeef;
        demo::put(&fx.source, &newer).await.unwrap();
        newer
    };
    // Another tool copied one ONIX file itself: the source's bytes, but in
    // a multipart upload of one part, which ferry never makes of a small
    // object. Taken as ferry's, it would be deleted or overwritten later.
    let tools = {
        let onix = set.iter().rev().find(|o| o.key.ends_with(".xml")).unwrap();
        let mut o = onix.clone().with_parts(&[onix.size]);
        o.bucket = format!("hub-{}", o.bucket);
        demo::put(&fx.destination, &o).await.unwrap();
        o
    };
    let puts_before = proxy.injected.put_keys.lock().unwrap().len();
    let completes_before = proxy.injected.completes.lock().unwrap().len();

    let second = fx.ferry(&["run", "--once"]);
    assert_eq!(second.code, 1, "three objects cannot be proved: {second:?}");
    let puts: Vec<String> = proxy.injected.put_keys.lock().unwrap()[puts_before..].to_vec();
    assert!(puts.is_empty(), "nothing is sent again: {puts:?}");
    assert_eq!(
        proxy.injected.completes.lock().unwrap().len(),
        completes_before,
        "no upload is sent again"
    );
    // Adopted: every object but the three whose copies are not the
    // source's, or not as ferry makes them.
    let adopted = (set.len() - 3) as u64;
    assert_eq!(fx.status_total("adopted"), adopted, "{second:?}");
    assert!(
        second
            .stdout
            .contains(&format!("adopted {adopted} objects")),
        "{second:?}"
    );
    // Without a ledger, ferry's older copy of a key changed since is as
    // unprovable as another writer's object: both stay conflicts, untouched.
    let mut conflicts: Vec<String> = fx
        .ledger()
        .prepare("SELECT key FROM objects WHERE state = 'conflict' ORDER BY key")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut expected = vec![theirs.key.clone(), changed.key.clone(), tools.key.clone()];
    expected.sort();
    conflicts.sort();
    assert_eq!(conflicts, expected);
    let kept = demo::observe(
        &fx.destination,
        Side::Destination,
        &theirs.bucket,
        &theirs.key,
    )
    .await
    .unwrap();
    assert_eq!(kept.sha256, theirs.expected_digests().sha256_hex());
    // The adopted copies carry the SHA-256 of the bytes read back, and are verified.
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM objects o JOIN copies c ON c.object_id = o.id WHERE c.adopted_at IS NOT NULL AND o.state = 'verified' AND length(c.sha256) = 64"),
        adopted as i64
    );
    let recut_sha: String = fx
        .ledger()
        .query_row(
            "SELECT c.sha256 FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.key = ?1",
            [&recut.key],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recut_sha, recut.expected_digests().sha256_hex());
    let mut now = set.clone();
    now.retain(|o| o.key != theirs.key && o.key != changed.key);
    // The other tool's copy is the source's bytes, untouched.
    assert_byte_equal(&fx, &now).await;

    // The audit reads every copy back and finds the adopted ones whole.
    let audit = fx.ferry(&["verify"]);
    assert!(
        audit
            .stdout
            .contains(&format!("verified {adopted} objects")),
        "{audit:?}"
    );
    let report = fx.ferry(&["report", "--format", "csv"]);
    assert!(report.stdout.contains("adopted"), "{report:?}");
}

fn feed(fx: &Fixture, i: u64) -> DemoObject {
    DemoObject::new(
        &format!("onix{}", fx.suffix),
        format!("feeds/onix-{i:03}.xml"),
        3_000 + i,
        "application/xml",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_brought_back_on_a_new_box_moves_only_what_changed_since() {
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), Plays::default()).await;
    let backup = format!("ledger-{:06x}", fastrand::u32(..0xffffff));
    let top = format!(
        "create_buckets = true\n[backup]\nbucket = \"{backup}\"\nevery = \"1h\"\nkeep = 2\n"
    );
    let fx = Fixture::with_destination("snapshot", TRANSFER, &top, Some(proxy.url())).await;
    let audio = format!("audio{}", fx.suffix);
    let mut set: Vec<DemoObject> = (0..20).map(|i| feed(&fx, i)).collect();
    set.push(DemoObject::new(
        &audio,
        "books/one/full.mp3".into(),
        12 * MIB,
        "audio/mpeg",
    ));
    fx.fill(&set).await;

    // The first pass ends with a snapshot; the second (within `every`) not.
    let first = fx.ferry(&["run", "--once"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("ledger snapshot written"),
        "{first:?}"
    );
    let listed = fx.ferry(&["ledger", "snapshots"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert_eq!(listed.stdout.lines().count(), 1, "{listed:?}");

    // After the snapshot: new keys and a changed one, copied by a run the
    // snapshot does not know of.
    let added: Vec<DemoObject> = (20..25).map(|i| feed(&fx, i)).collect();
    let mut changed = set[3].clone();
    changed.seed ^= 0xbeef;
    for o in added.iter().chain([&changed]) {
        demo::put(&fx.source, o).await.unwrap();
    }
    let second = fx.ferry(&["run", "--once"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stdout.contains("copied 6 objects"), "{second:?}");
    assert!(
        !second.stdout.contains("ledger snapshot written"),
        "{second:?}"
    );

    // Then the box is lost, and the source goes on changing.
    // Named to be listed (and written) first: on a store that honours
    // If-None-Match, ferry has learned so before it meets the copies to adopt.
    let newest: Vec<DemoObject> = (0..2)
        .map(|i| {
            DemoObject::new(
                &format!("onix{}", fx.suffix),
                format!("feeds/000-new-{i}.xml"),
                2_000 + i,
                "application/xml",
            )
        })
        .collect();
    for o in &newest {
        demo::put(&fx.source, o).await.unwrap();
    }
    remove_ledger(&fx);
    let restored = fx.ferry(&["ledger", "restore"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(
        restored.stdout.contains("restored the ledger snapshot"),
        "{restored:?}"
    );
    // A second restore never overwrites the ledger now there.
    let again = fx.ferry(&["ledger", "restore"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("a ledger already exists"),
        "{again:?}"
    );
    // As a start-up step (Nomad's prestart), it leaves a ledger be.
    let prestart = fx.ferry(&["ledger", "restore", "--if-missing"]);
    assert_eq!(prestart.code, 0, "{prestart:?}");
    assert!(prestart.stdout.contains("nothing restored"), "{prestart:?}");

    let third = fx.ferry(&["run", "--once"]);
    assert_eq!(third.code, 0, "{third:?}");
    // Only the keys new since the last run move; the rest is not sent again.
    assert!(third.stdout.contains("copied 2 objects"), "{third:?}");
    let written: Vec<String> = fx
        .ledger()
        .prepare("SELECT o.key FROM objects o JOIN copies c ON c.object_id = o.id WHERE c.adopted_at IS NULL AND c.copied_at > (SELECT MAX(restored_at) FROM restores) ORDER BY o.key")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut expected: Vec<String> = newest.iter().map(|o| o.key.clone()).collect();
    expected.sort();
    assert_eq!(written, expected, "{third:?}");
    // What the run after the snapshot copied is adopted, not sent again.
    assert!(third.stdout.contains("adopted 6 objects"), "{third:?}");
    assert_eq!(fx.status_total("conflict"), 0);
    assert_eq!(fx.status_total("failed"), 0);
    let mut now: Vec<DemoObject> = set
        .iter()
        .filter(|o| o.key != changed.key)
        .cloned()
        .collect();
    now.extend(added.iter().cloned());
    now.extend(newest.iter().cloned());
    now.push(changed);
    assert_byte_equal(&fx, &now).await;
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM objects WHERE state = 'verified'"),
        now.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_names_what_is_missing_and_overwrites_nothing() {
    let fx = Fixture::new("norestore", "concurrency = 1").await;
    // No [backup]: the fix is named.
    let run = fx.ferry(&["ledger", "restore"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("[backup]"), "{run:?}");
    // A [backup] bucket with no snapshot in it.
    let backup = format!("ledger-{:06x}", fastrand::u32(..0xffffff));
    fx.destination
        .create_bucket()
        .bucket(&backup)
        .send()
        .await
        .unwrap();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replacen(
        "[source]",
        &format!("[backup]\nbucket = \"{backup}\"\n[source]"),
        1,
    );
    std::fs::write(&fx.config_path, text).unwrap();
    let run = fx.ferry(&["ledger", "restore"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no ledger snapshot"), "{run:?}");
    assert!(!fx.config.ledger.exists());
    // As a start-up step on a first start, no snapshot is no failure.
    let prestart = fx.ferry(&["ledger", "restore", "--if-missing"]);
    assert_eq!(prestart.code, 0, "{prestart:?}");
    assert!(prestart.stdout.contains("new ledger"), "{prestart:?}");
    assert!(!fx.config.ledger.exists());
    fx.fill(&[feed(&fx, 0)]).await;
    let first = fx.ferry(&["run", "--once", "--restore-missing-ledger"]);
    assert_eq!(
        first.code, 0,
        "a first start with no snapshot yet: {first:?}"
    );
    assert!(fx.config.ledger.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_snapshot_goes_in_parts_and_only_a_cut_off_snapshot_upload_is_aborted() {
    let backup = format!("ledger-{:06x}", fastrand::u32(..0xffffff));
    let top = format!("[backup]\nbucket = \"{backup}\"\n");
    let fx = Fixture::with_destination("snapparts", "concurrency = 1", &top, None).await;
    let dest = &fx.destination;
    dest.create_bucket().bucket(&backup).send().await.unwrap();

    let bytes: Vec<u8> = (0..12 * MIB + 4_321).map(|_| fastrand::u8(..)).collect();
    let file = fx.dir.path().join("snapshot.gz");
    std::fs::write(&file, &bytes).unwrap();
    let key = "elsewhere/ferry-ledger-20261206T000000Z.sqlite.gz";
    let (sent, etag) = ferry::backup::put_file(dest, (&backup, key), &file, (5 * MIB, None))
        .await
        .unwrap();
    assert_eq!(sent, bytes.len() as u64);
    let got = dest
        .get_object()
        .bucket(&backup)
        .key(key)
        .send()
        .await
        .unwrap();
    assert!(etag.ends_with("-3"), "sent in 3 parts: {etag}");
    assert_eq!(got.e_tag().unwrap().trim_matches('"'), etag);
    let back = got.body.collect().await.unwrap().into_bytes();
    assert!(back == bytes, "the snapshot reads back as sent");

    // A snapshot's upload that a kill cut off, and another writer's upload
    // beside it: the next snapshot aborts the first and leaves the second.
    let start = |key: &'static str| {
        let backup = backup.clone();
        async move {
            dest.create_multipart_upload()
                .bucket(backup)
                .key(key)
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_owned()
        }
    };
    let cut_off = start("ferry-ledger/ferry-ledger-20261201T000000Z.sqlite.gz").await;
    let theirs = start("ferry-ledger/notes.txt").await;
    fx.fill(&[feed(&fx, 0)]).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let taken = fx.ferry(&["ledger", "snapshot"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    assert!(
        taken.stdout.contains("ledger snapshot written"),
        "{taken:?}"
    );
    let open: Vec<String> = ferry::cleanup::incomplete_uploads(dest, &backup)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert!(
        !open.contains(&cut_off),
        "the cut-off snapshot upload is aborted"
    );
    assert_eq!(open, vec![theirs], "another writer's upload is left alone");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_pass_is_snapshotted_while_it_runs() {
    let backup = format!("ledger-{:06x}", fastrand::u32(..0xffffff));
    let top = format!(
        "create_buckets = true\n[backup]\nbucket = \"{backup}\"\nevery = \"1s\"\nkeep = 50\n"
    );
    // About 4 s of copying at 1 MB/s.
    let fx = Fixture::with_destination(
        "snapduring",
        "concurrency = 2\nmax_bandwidth = \"1MB/s\"",
        &top,
        None,
    )
    .await;
    let set: Vec<DemoObject> = (0..20)
        .map(|i| {
            DemoObject::new(
                &format!("onix{}", fx.suffix),
                format!("feeds/big-{i:03}.xml"),
                200_000,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listed = fx.ferry(&["ledger", "snapshots"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let taken = listed.stdout.lines().count();
    assert!(
        taken >= 3,
        "snapshots during the pass, and one at its end: {taken}\n{run:?}\n{listed:?}"
    );
    // A box that comes up without its disk starts from the newest whole
    // snapshot; one named later but not whole (cut short) is passed over.
    let newest_whole = listed
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split('\t').last())
        .unwrap()
        .to_owned();
    fx.destination
        .put_object()
        .bucket(&backup)
        .key("ferry-ledger/ferry-ledger-20991231T000000Z.sqlite.gz")
        .body(b"\x1f\x8b not a whole snapshot".to_vec().into())
        .send()
        .await
        .unwrap();
    remove_ledger(&fx);
    // A -wal left beside would be replayed onto what is restored: refused.
    let wal = format!("{}-wal", fx.config.ledger.display());
    std::fs::write(&wal, b"").unwrap();
    let refused = fx.ferry(&["run", "--once", "--restore-missing-ledger"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("-wal"), "{refused:?}");
    std::fs::remove_file(&wal).unwrap();
    // Longer than `every` since the newest real snapshot: one is due.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let back = fx.ferry(&["run", "--once", "--restore-missing-ledger"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(
        back.stdout
            .contains(&format!("restored the ledger snapshot {newest_whole}")),
        "{back:?}"
    );
    // What the pass copied after that snapshot (within `every` of its end,
    // when no other was due) is adopted, not sent again.
    assert!(back.stdout.contains("nothing to copy"), "{back:?}");
    // The one named in 2099 is no recent snapshot: the pass takes its own.
    assert!(back.stdout.contains("ledger snapshot written"), "{back:?}");
}
