//! ferry recognises its own writes and bounds them: a PUT or an upload whose
//! answer it never heard is still ferry's afterwards, another writer's upload
//! is never aborted, and a store that refuses every write ends the object,
//! not the run.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject};
use support::faults::{FaultProxy, Plays};
use support::{servers, Fixture, Run};

const MIB: u64 = 1 << 20;
/// Objects from 5 MiB go in 5 MiB parts.
const PARTS: &str = "concurrency = 1\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";

fn feed(fx: &Fixture, i: u64) -> DemoObject {
    let bucket = format!("onix{}", fx.suffix);
    DemoObject::new(
        &bucket,
        format!("feeds/onix-{i:03}.xml"),
        4_000 + i,
        "application/xml",
    )
}

fn book(fx: &Fixture) -> DemoObject {
    let bucket = format!("audio{}", fx.suffix);
    DemoObject::new(&bucket, "books/one/full.mp3".into(), 12 * MIB, "audio/mpeg")
}

fn dest_of(o: &DemoObject) -> String {
    format!("hub-{}", o.bucket)
}

/// A new version of `o` at the source: other bytes, another size.
async fn change_at_source(fx: &Fixture, o: &DemoObject) -> DemoObject {
    let mut newer = o.clone();
    newer.seed ^= 0xbeef;
    newer.size += 10;
    demo::put(&fx.source, &newer).await.unwrap();
    newer
}

/// Another writer (a service on the Hetzner side) starts an upload of
/// `key`, straight at the destination (not through ferry's proxy).
async fn their_upload(fx: &Fixture, bucket: &str, key: &str) -> String {
    let mut direct = fx.config.destination.clone();
    direct.endpoint = Some(servers().get("FERRY_DEST_ENDPOINT").to_owned());
    let client = ferry::store::client(Side::Destination, &direct, &fx.config.transfer).await;
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    created.upload_id().unwrap().to_owned()
}

async fn open_uploads(fx: &Fixture, bucket: &str) -> Vec<String> {
    ferry::cleanup::incomplete_uploads(&fx.destination, bucket)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect()
}

fn state_of(fx: &Fixture, key: &str) -> (String, Option<String>) {
    fx.ledger()
        .query_row(
            "SELECT state, last_error FROM objects WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// The destination holds exactly `o`'s bytes, and the ledger has it verified.
async fn assert_copied(fx: &Fixture, o: &DemoObject, run: &Run) {
    let got = demo::observe(&fx.destination, Side::Destination, &dest_of(o), &o.key)
        .await
        .unwrap_or_else(|e| panic!("{} missing: {e}\n{run:?}", o.key));
    assert_eq!(
        got.sha256,
        o.expected_digests().sha256_hex(),
        "{}: {run:?}",
        o.key
    );
    assert_eq!(state_of(fx, &o.key).0, "verified", "{run:?}");
}

/// Starts `ferry run --once` and waits until the proxy holds the answer of
/// its first write of the held key.
async fn run_until_held(fx: &Fixture, proxy: &FaultProxy) -> tokio::process::Child {
    let ferry = fx.spawn_ferry(&["run", "--once"]);
    tokio::time::timeout(Duration::from_secs(120), proxy.injected.holding.notified())
        .await
        .expect("ferry's write reached the store");
    ferry
}

async fn output(ferry: tokio::process::Child) -> Run {
    let out = ferry.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn holding_proxy(key: &str) -> FaultProxy {
    holding_proxy_to(servers().get("FERRY_DEST_ENDPOINT"), key).await
}

async fn holding_proxy_to(upstream: &str, key: &str) -> FaultProxy {
    let plays = Plays {
        hold_and_lose_answer: Some(key.to_owned()),
        ..Plays::default()
    };
    FaultProxy::playing(upstream, plays).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_that_landed_unheard_before_a_kill_is_ferrys_when_the_source_changes() {
    let proxy = holding_proxy("feeds/onix-000.xml").await;
    let fx =
        Fixture::with_destination("unheardput", "concurrency = 1", "", Some(proxy.url())).await;
    let old = feed(&fx, 0);
    fx.fill(std::slice::from_ref(&old)).await;

    // The PUT lands; ferry is killed before it hears so.
    let mut ferry = run_until_held(&fx, &proxy).await;
    ferry.kill().await.unwrap();
    let newer = change_at_source(&fx, &old).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "ferry's own bytes are no conflict: {run:?}");
    assert_copied(&fx, &newer, &run).await;
    assert_eq!(fx.status_total("conflict"), 0);
    assert_eq!(fx.count("SELECT COUNT(*) FROM write_intents"), 0, "settled");
}

/// The same unheard PUT, then the key is deleted at the source: with
/// `delete = true` ferry removes its own copy, it is no conflict.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_that_landed_unheard_is_ferrys_to_remove_when_the_source_deletes_it() {
    let proxy = holding_proxy("feeds/onix-000.xml").await;
    let fx = Fixture::with_destination(
        "unheardgone",
        "concurrency = 1",
        "delete = true",
        Some(proxy.url()),
    )
    .await;
    let (old, kept) = (feed(&fx, 0), feed(&fx, 1));
    fx.fill(&[old.clone(), kept.clone()]).await;
    let mut ferry = run_until_held(&fx, &proxy).await;
    ferry.kill().await.unwrap();
    fx.delete_at_source(&old).await;
    for _ in 0..3 {
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let left = fx
        .destination
        .head_object()
        .bucket(dest_of(&old))
        .key(&old.key)
        .send()
        .await;
    assert!(
        left.is_err(),
        "ferry's own unheard copy of a deleted key was left: {:?}",
        state_of(&fx, &old.key)
    );
    assert_eq!(state_of(&fx, &old.key).0, "removed");
    assert_eq!(fx.status_total("conflict"), 0);
}

/// An upload of ferry's completes at the store while ferry is killed before
/// hearing so, then the key is deleted at the source: with `delete = true`
/// ferry removes its own copy; it is no conflict. (Found by the torture
/// harness, seed 12: the removal knew ferry's single PUTs meant, not its
/// uploads completed unheard, and called the copy another writer's.)
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_completed_unheard_is_ferrys_to_remove_when_the_source_deletes_it() {
    let plays = Plays {
        hold_complete_answer: Some("books/one/full.mp3".into()),
        ..Plays::default()
    };
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), plays).await;
    let fx =
        Fixture::with_destination("completeunheard", PARTS, "delete = true", Some(proxy.url()))
            .await;
    let (old, kept) = (book(&fx), feed(&fx, 0));
    fx.fill(&[old.clone(), kept.clone()]).await;
    let mut ferry = run_until_held(&fx, &proxy).await;
    ferry.kill().await.unwrap();
    let landed = fx
        .destination
        .head_object()
        .bucket(dest_of(&old))
        .key(&old.key)
        .send()
        .await;
    assert!(
        landed.is_ok(),
        "the upload completed at the store: {landed:?}"
    );
    fx.delete_at_source(&old).await;
    for _ in 0..3 {
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let left = fx
        .destination
        .head_object()
        .bucket(dest_of(&old))
        .key(&old.key)
        .send()
        .await;
    assert!(
        left.is_err(),
        "ferry's own copy, completed unheard, of a deleted key was left: {:?}",
        state_of(&fx, &old.key)
    );
    assert_eq!(state_of(&fx, &old.key).0, "removed");
    assert_eq!(fx.status_total("conflict"), 0);
    assert_copied(&fx, &kept, &fx.ferry(&["status"])).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_sse_c_a_put_that_landed_unheard_is_known_by_its_bytes() {
    let (fx, sse_c) = Fixture::with_sse_c_destination("ssecunheard", "concurrency = 1").await;
    let ceph = servers().get("FERRY_CEPH_ENDPOINT");
    let proxy = holding_proxy_to(ceph, "feeds/onix-000.xml").await;
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, text.replacen(ceph, &proxy.url(), 1)).unwrap();
    let old = feed(&fx, 0);
    fx.fill(std::slice::from_ref(&old)).await;

    let mut ferry = fx.spawn_ferry_in_env(&["run", "--once"], &sse_c.env());
    tokio::time::timeout(Duration::from_secs(120), proxy.injected.holding.notified())
        .await
        .expect("ferry's PUT reached the store");
    ferry.kill().await.unwrap();
    let newer = change_at_source(&fx, &old).await;

    // The ETag of an SSE-C object is no MD5: ferry reads it with its key.
    let run = support::ferry_in(
        fx.dir.path(),
        &fx.config_path,
        &["run", "--once"],
        &sse_c.env(),
    );
    assert_eq!(run.code, 0, "ferry's own bytes are no conflict: {run:?}");
    let got = fx
        .destination
        .get_object()
        .bucket(dest_of(&newer))
        .key(&newer.key)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&sse_c.base64)
        .sse_customer_key_md5(&sse_c.md5_base64)
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().to_vec();
    assert_eq!(
        ferry::hashing::Digests::of(&bytes).sha256_hex(),
        newer.expected_digests().sha256_hex()
    );
    assert_eq!(state_of(&fx, &newer.key).0, "verified", "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_whose_answer_was_lost_while_the_source_changed_is_ferrys_for_the_next_version() {
    let proxy = holding_proxy("feeds/onix-000.xml").await;
    let fx =
        Fixture::with_destination("lostchanged", "concurrency = 1", "", Some(proxy.url())).await;
    let old = feed(&fx, 0);
    fx.fill(std::slice::from_ref(&old)).await;

    // The PUT of the old version lands; while its answer is held the source
    // changes; ferry then hears SlowDown, and its retry reads the new
    // version, whose conditional PUT finds the key taken (by ferry's bytes).
    let ferry = run_until_held(&fx, &proxy).await;
    let newer = change_at_source(&fx, &old).await;
    proxy.injected.release.notify_one();
    let run = output(ferry).await;
    assert_eq!(run.code, 0, "ferry's own bytes are no conflict: {run:?}");
    assert_copied(&fx, &newer, &run).await;
    assert_eq!(fx.status_total("conflict"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_multipart_upload_answer_leaves_no_upload_and_spares_another_writers() {
    let fx0 = book_fixture("lostcreate").await;
    let (fx, proxy, book) = (&fx0.0, &fx0.1, &fx0.2);
    let theirs = their_upload(fx, &dest_of(book), &book.key).await;

    // The store makes the upload; ferry hears SlowDown and asks again.
    let ferry = run_until_held(fx, proxy).await;
    proxy.injected.release.notify_one();
    let run = output(ferry).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_copied(fx, book, &run).await;

    let created = proxy.injected.created_uploads.lock().unwrap().clone();
    let aborted = proxy.injected.aborted_uploads.lock().unwrap().clone();
    assert_eq!(created.len(), 2, "one lost, one answered: {run:?}");
    assert_eq!(aborted, vec![created[0].clone()], "the lost one: {run:?}");
    // Garage drops a key's other uploads when one completes; Ceph and AWS
    // keep them: either way, none but the other writer's is left.
    let open = open_uploads(fx, &dest_of(book)).await;
    assert!(open.iter().all(|u| *u == theirs), "{open:?}");
    assert_eq!(fx.count("SELECT COUNT(*) FROM upload_intents"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_cut_off_mid_create_aborts_its_own_upload_and_not_another_writers() {
    let fx0 = book_fixture("cutcreate").await;
    let (fx, proxy, book) = (&fx0.0, &fx0.1, &fx0.2);
    let theirs = their_upload(fx, &dest_of(book), &book.key).await;

    // Killed before it hears the upload id: the upload is ferry's, unrecorded.
    let mut ferry = run_until_held(fx, proxy).await;
    ferry.kill().await.unwrap();
    let ours = proxy.injected.created_uploads.lock().unwrap().clone();
    assert_eq!(ours.len(), 1);
    let mut open = open_uploads(fx, &dest_of(book)).await;
    open.sort();
    let mut both = vec![theirs.clone(), ours[0].clone()];
    both.sort();
    assert_eq!(open, both);

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_copied(fx, book, &run).await;
    let aborted = proxy.injected.aborted_uploads.lock().unwrap().clone();
    assert_eq!(aborted, ours, "ferry's own upload only: {run:?}");
}

/// The same cut-off create, then the key is deleted at the source: no copy
/// will settle the lost upload, so the pass does. (Found by the torture
/// harness, seed 12 into Garage: the upload outlived every pass.)
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_of_a_key_deleted_since_is_aborted_and_not_another_writers() {
    let fx0 = book_fixture("cutcreategone").await;
    let (fx, proxy, book) = (&fx0.0, &fx0.1, &fx0.2);
    let theirs = their_upload(fx, &dest_of(book), &book.key).await;
    let mut ferry = run_until_held(fx, proxy).await;
    ferry.kill().await.unwrap();
    let ours = proxy.injected.created_uploads.lock().unwrap().clone();
    assert_eq!(ours.len(), 1);
    fx.delete_at_source(book).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let aborted = proxy.injected.aborted_uploads.lock().unwrap().clone();
    assert_eq!(aborted, ours, "ferry's own upload only: {run:?}");
    assert_eq!(open_uploads(fx, &dest_of(book)).await, vec![theirs]);
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM upload_intents"),
        0,
        "settled"
    );
}

/// One 12 MiB object sent in parts, through a proxy that holds (then loses)
/// the answer of its first CreateMultipartUpload.
async fn book_fixture(name: &str) -> (Fixture, FaultProxy, DemoObject) {
    let proxy = holding_proxy("books/one/full.mp3").await;
    let fx = Fixture::with_destination(name, PARTS, "", Some(proxy.url())).await;
    let book = book(&fx);
    fx.fill(std::slice::from_ref(&book)).await;
    (fx, proxy, book)
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_aborts_only_ferrys_uploads_and_every_one_with_all() {
    // Part 2 of the book is refused every time: its upload stays, recorded.
    let plays = Plays {
        refuse_part: Some(2),
        ..Plays::default()
    };
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), plays).await;
    let fx = Fixture::with_destination("cleanup", PARTS, "", Some(proxy.url())).await;
    let (feed, book) = (feed(&fx, 0), book(&fx));
    fx.fill(&[feed.clone(), book.clone()]).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "the book failed: {run:?}");
    let ours: Vec<String> = proxy.injected.created_uploads.lock().unwrap().clone();
    assert_eq!(ours.len(), 1, "{run:?}");

    // Another writer's uploads: of a key ferry copies, and of one it does not.
    let theirs = their_upload(&fx, &dest_of(&feed), &feed.key).await;
    let unrelated = their_upload(&fx, &dest_of(&feed), "someone-else/upload.bin").await;

    let run = fx.ferry(&["cleanup"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("1 incomplete uploads aborted, 2 left"),
        "{run:?}"
    );
    assert!(open_uploads(&fx, &dest_of(&book)).await.is_empty());
    let mut open = open_uploads(&fx, &dest_of(&feed)).await;
    open.sort();
    let mut left = vec![theirs, unrelated];
    left.sort();
    assert_eq!(open, left, "another writer's uploads are left alone");
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 0);

    let run = fx.ferry(&["cleanup", "--all"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(open_uploads(&fx, &dest_of(&feed)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_answers_412_to_every_put_fails_the_object_and_the_run_ends() {
    let plays = Plays {
        refuse_puts: Some("feeds/onix-001.xml".to_owned()),
        ..Plays::default()
    };
    let proxy = FaultProxy::playing(servers().get("FERRY_DEST_ENDPOINT"), plays).await;
    let fx =
        Fixture::with_destination("refused412", "concurrency = 1", "", Some(proxy.url())).await;
    let set: Vec<DemoObject> = (0..3).map(|i| feed(&fx, i)).collect();
    fx.fill(&set).await;

    let ferry = fx.spawn_ferry(&["run", "--once"]);
    // Generous: the run takes seconds; before the bound it never ended.
    let run = tokio::time::timeout(Duration::from_secs(300), output(ferry))
        .await
        .expect("the run ends");
    assert_eq!(run.code, 1, "a failed object fails the run: {run:?}");
    let (state, reason) = state_of(&fx, &set[1].key);
    assert_eq!(state, "failed", "{run:?}");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("412 Precondition Failed") && reason.contains("gave up"),
        "{reason}"
    );
    assert!(proxy.injected.refused_puts.load(Ordering::Relaxed) >= 2);
    for o in [&set[0], &set[2]] {
        assert_copied(&fx, o, &run).await;
    }
}
