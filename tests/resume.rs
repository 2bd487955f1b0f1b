//! Resume after anything: kill -9 at random moments, SIGTERM, a source that
//! changes mid-copy, a second writer. The real binary, the real servers, and
//! a proxy of our own that counts (and paces) what ferry sends.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType};
use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject};
use support::proxy::Proxy;
use support::{assert_all_copied_byte_equal, list_all, servers, Fixture};

const MIB: u64 = 1 << 20;

const TRANSFER: &str = r#"
concurrency = 4
part_size = "8MiB"
multipart_threshold = "8MiB"
max_bytes_in_flight = "32MiB"
"#;
/// The most bytes that can be in flight, and so lost, at one kill.
const IN_FLIGHT: u64 = 32 * MIB;

fn large(bucket: &str, i: u64, size: u64) -> DemoObject {
    let mut o = DemoObject::new(
        bucket,
        format!("books/long-{i}/full.mp3"),
        size,
        "audio/mpeg",
    );
    o.multipart = true;
    o
}

fn small(bucket: &str, i: u64) -> DemoObject {
    DemoObject::new(
        bucket,
        format!("feeds/onix-{i:04}.xml"),
        2_000 + i * 97,
        "application/xml",
    )
}

async fn proxied(name: &str, transfer: &str, top: &str, bytes_per_sec: u64) -> (Fixture, Proxy) {
    let proxy = Proxy::start(servers().get("FERRY_DEST_ENDPOINT"), Some(bytes_per_sec)).await;
    let fx = Fixture::with_destination(name, transfer, top, Some(proxy.url())).await;
    (fx, proxy)
}

/// Every object visible at the destination is whole: its size and ETag are
/// those of the complete copy, never of a part-written one.
async fn assert_only_whole_objects_visible(fx: &Fixture, set: &[DemoObject]) -> usize {
    let mut visible = 0;
    for (src, dst) in fx.pairs() {
        for (key, size, etag) in list_all(&fx.destination, &dst).await {
            let o = set
                .iter()
                .find(|o| o.bucket == src && o.key == key)
                .expect("only source keys appear");
            assert_eq!(size, o.size, "{key} visible with a partial size");
            if !o.multipart {
                assert_eq!(
                    etag,
                    o.expected_digests().md5_hex(),
                    "{key} visible with other bytes"
                );
            }
            visible += 1;
        }
    }
    visible
}

async fn run_to_end(fx: &Fixture) {
    let mut child = fx.spawn_ferry(&["run", "--once"]);
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("ferry finished")
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_loses_nothing_and_resends_little() {
    // 20 MiB/s through the proxy: the copy takes long enough to be killed
    // eight times, several of them in the middle of a multipart upload.
    let (fx, proxy) = proxied("crash", TRANSFER, "", 20 * MIB).await;
    let audio = format!("audio{}", fx.suffix);
    let onix = format!("onix{}", fx.suffix);
    let mut set: Vec<DemoObject> = (0..3)
        .map(|i| large(&audio, i, 100 * MIB + i * 1_234_567))
        .collect();
    // Two of them carry a stored checksum, which a resumed upload must
    // still prove them against from the parts it kept: their own CRCs are
    // in the ledger, not read again.
    set[0].checksum = Some((ChecksumAlgorithm::Crc32C, ChecksumType::Composite));
    set[1].checksum = Some((ChecksumAlgorithm::Crc64Nvme, ChecksumType::FullObject));
    set.extend((0..200).map(|i| small(&onix, i)));
    fx.fill(&set).await;
    let payload: u64 = set.iter().map(|o| o.size).sum();

    let mut kills = 0;
    let mut kills_mid_upload = 0;
    while kills < 8 {
        let passes = fx.count("SELECT COUNT(*) FROM passes");
        let mut child = fx.spawn_ferry(&["run", "--once"]);
        // Random moments of the copy, not of the start-up, which takes
        // longer when other tests load the machine.
        let spawned = std::time::Instant::now();
        while fx.count("SELECT COUNT(*) FROM passes") == passes
            && spawned.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if kills % 2 == 1 {
            // Every other kill waits for a part of a multipart upload to
            // land in this run, so that several kills hit one however fast
            // the store is (Ceph once let only one of eight random kills
            // do so); the others come at random moments.
            let parts = fx.count("SELECT COUNT(*) FROM parts");
            let waited = std::time::Instant::now();
            while fx.count("SELECT COUNT(*) FROM parts") == parts
                && waited.elapsed() < Duration::from_secs(20)
                && child.try_wait().unwrap().is_none()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..200))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1300))).await;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("ferry finished before the 8th kill ({kills} so far): slow the proxy down");
        }
        child.kill().await.unwrap(); // SIGKILL
        kills += 1;
        if fx.count("SELECT COUNT(*) FROM uploads") > 0 {
            kills_mid_upload += 1;
        }
        assert_only_whole_objects_visible(&fx, &set).await;
    }
    run_to_end(&fx).await;

    assert!(
        kills_mid_upload >= 2,
        "only {kills_mid_upload} kills hit a multipart upload"
    );
    assert_all_copied_byte_equal(&fx, &set).await;
    for o in &set[..2] {
        let proof: String = fx.ledger().query_row(
            "SELECT c.proof FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.key = ?1",
            [&o.key],
            |r| r.get(0),
        ).unwrap();
        assert_eq!(proof, "etag+checksum", "{}", o.key);
    }
    let sent = proxy.sent();
    let resent = sent.saturating_sub(payload);
    // Request headers and listing calls are a few KiB per request.
    let overhead = 4 * MIB;
    eprintln!(
        "crash loop: {kills} kills ({kills_mid_upload} mid-upload), payload {payload} B, sent {sent} B, re-sent {resent} B = {:.1} MiB per kill (cap {} MiB)",
        resent as f64 / kills as f64 / MIB as f64,
        IN_FLIGHT / MIB
    );
    assert!(
        resent <= kills * IN_FLIGHT + overhead,
        "re-sent {resent} bytes over {kills} kills"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_copy_exits_0_within_the_grace_period_and_a_restart_finishes() {
    let (fx, _proxy) = proxied("sigterm", TRANSFER, "shutdown_grace = \"10s\"", 20 * MIB).await;
    let audio = format!("audio{}", fx.suffix);
    let onix = format!("onix{}", fx.suffix);
    let mut set = vec![large(&audio, 0, 64 * MIB + 5)];
    set.extend((0..40).map(|i| small(&onix, i)));
    fx.fill(&set).await;

    let child = fx.spawn_ferry(&["run", "--once"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    support::sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("exited")
        .unwrap();
    let took = signalled.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(12),
        "took {took:?} after SIGTERM"
    );
    assert!(stdout.contains("stopped by a signal"), "{stdout}");

    run_to_end(&fx).await;
    assert_all_copied_byte_equal(&fx, &set).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_changed_mid_copy_ends_as_the_new_version_with_no_mixed_parts() {
    // A slow destination keeps the later parts' GETs waiting for the byte
    // budget long after the upload begins, on a busy machine too: the new
    // version lands before them.
    let (fx, _proxy) = proxied("changed", TRANSFER, "", 4 * MIB).await;
    let audio = format!("audio{}", fx.suffix);
    let old = large(&audio, 0, 48 * MIB + 11);
    fx.fill(std::slice::from_ref(&old)).await;

    let child = fx.spawn_ferry(&["run", "--once"]);
    // Wait until the multipart upload is under way: its later parts, which
    // wait for room in the byte budget, have not been read yet.
    let started = Instant::now();
    loop {
        if fx.count("SELECT COUNT(*) FROM uploads") > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the copy never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut new = old.clone();
    new.seed ^= 0xC0FFEE;
    new.size = 40 * MIB + 5;
    demo::put(&fx.source, &new).await.unwrap();

    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("exited")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("changed mid-copy"),
        "the change was not noticed mid-copy: {stderr}"
    );
    assert_all_copied_byte_equal(&fx, std::slice::from_ref(&new)).await;
    let head = fx
        .source
        .head_object()
        .bucket(&audio)
        .key(&new.key)
        .send()
        .await
        .unwrap();
    let etag: String = fx
        .ledger()
        .query_row("SELECT source_etag FROM objects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(etag, head.e_tag().unwrap().trim_matches('"'));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_is_refused_while_status_reads_along() {
    let (fx, _proxy) = proxied("writers", TRANSFER, "", 8 * MIB).await;
    let audio = format!("audio{}", fx.suffix);
    let set = vec![large(&audio, 0, 40 * MIB)];
    fx.fill(&set).await;

    let mut first = fx.spawn_ferry(&["run", "--once"]);
    let started = Instant::now();
    while fx.count("SELECT COUNT(*) FROM uploads") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first run never started copying"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = fx.ferry(&["run", "--once"]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(
        second
            .stderr
            .contains("another ferry is already working on the ledger"),
        "{second:?}"
    );
    let cleanup = fx.ferry(&["cleanup"]);
    assert_eq!(
        cleanup.code, 1,
        "cleanup must not run beside a run: {cleanup:?}"
    );

    let status = fx.ferry(&["status"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains(&audio), "{status:?}");

    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run was disturbed"
    );
    first.kill().await.unwrap();
    run_to_end(&fx).await;
    assert_all_copied_byte_equal(&fx, &set).await;
}

/// A tmpfs under the fixture's `state/`, so the ledger's disk can fill up.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "this test needs root to mount a small tmpfs at {}",
            dir.display()
        );
        SmallDisk(dir.to_owned())
    }

    fn grow(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_ledger_stops_ferry_without_false_records() {
    let fx = Fixture::new("diskfull", "concurrency = 8").await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..400).map(|i| small(&onix, i)).collect();
    fx.fill(&set).await;
    let disk = SmallDisk::mount(&fx.dir.path().join("state"), "600k");

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("full"),
        "the message should say the disk is full: {run:?}"
    );

    // Whatever the ledger calls copied is at the destination, byte-equal.
    let copied: Vec<String> = {
        let db = fx.ledger();
        let mut stmt = db
            .prepare("SELECT key FROM objects WHERE state IN ('copied', 'verified')")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(copied.len() < set.len(), "the disk never filled up");
    for key in &copied {
        let o = set.iter().find(|o| &o.key == key).unwrap();
        let got = demo::observe(
            &fx.destination,
            Side::Destination,
            &format!("hub-{onix}"),
            key,
        )
        .await
        .unwrap();
        assert_eq!(
            got.sha256,
            o.expected_digests().sha256_hex(),
            "{key} recorded copied but differs"
        );
    }

    disk.grow("64m");
    run_to_end(&fx).await;
    assert_all_copied_byte_equal(&fx, &set).await;
    drop(disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_upload_hashes_on_from_its_last_part_without_reading_the_copy_back() {
    // No read-back after the copy: the only reason to GET the copy would be
    // to hash the parts sent before the kill.
    let transfer = format!("{TRANSFER}verify_after_copy = false\n");
    let (fx, proxy) = proxied("hash-on", &transfer, "", 20 * MIB).await;
    let audio = format!("audio{}", fx.suffix);
    let book = large(&audio, 0, 72 * MIB + 5);
    fx.fill(std::slice::from_ref(&book)).await;

    let mut child = fx.spawn_ferry(&["run", "--once"]);
    let started = Instant::now();
    while fx.count("SELECT COUNT(*) FROM parts WHERE sha256_state IS NOT NULL") < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no part arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap(); // SIGKILL
    let kept = fx.count("SELECT COUNT(*) FROM parts WHERE sha256_state IS NOT NULL");
    let (sent_before, read_before) = (proxy.sent(), proxy.stats.received.load(Ordering::Relaxed));

    run_to_end(&fx).await;
    // (Before the test's own reads below, which pass the same proxy.)
    let read = proxy.stats.received.load(Ordering::Relaxed) - read_before;
    assert!(
        read < MIB,
        "{read} bytes read from the destination after the restart: the copy was read back"
    );
    let sent = proxy.sent() - sent_before;
    assert!(
        sent <= book.size - kept as u64 * 8 * MIB + IN_FLIGHT,
        "{sent} bytes sent after the restart, with {kept} parts of 8 MiB kept"
    );
    let want = book.expected_digests().sha256_hex();
    let destination = fx.pairs().into_iter().find(|(s, _)| *s == audio).unwrap().1;
    let got = demo::observe(&fx.destination, Side::Destination, &destination, &book.key)
        .await
        .unwrap();
    assert_eq!(got.sha256, want, "the copy's bytes");
    // The whole-object SHA-256 went on from the kept parts' state, and is right.
    let (state, sha256) = only_copy(&fx);
    assert_eq!((state.as_str(), sha256), ("copied", want));
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_the_start_up_bucket_check_exits_0_within_the_grace() {
    // A source that takes connections and never answers: the bucket check
    // at start-up would wait for timeouts and retries, most of a minute.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let fx = Fixture::with_destination("silent", "", "shutdown_grace = \"10s\"", None).await;
    fx.source_through(&url);

    let child = fx.spawn_ferry(&["run", "--once"]);
    // Held open, unanswered, until the test ends.
    let (_held, _) = tokio::time::timeout(Duration::from_secs(30), silent.accept())
        .await
        .expect("ferry never asked the source")
        .unwrap();
    let signalled = Instant::now();
    support::sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("still running {:?} after SIGTERM", signalled.elapsed()))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped by a signal"), "{stdout}");
    assert!(!fx.config.ledger.exists(), "a ledger was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn under_sse_c_an_upload_that_vanished_uncompleted_is_copied_again_in_one_pass() {
    use support::faults::{FaultProxy, Plays};
    let transfer = "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";
    let (fx, sse_c) = Fixture::with_sse_c_destination("vanished", transfer).await;
    let env = sse_c.env();
    let ferry = |config: &std::path::Path| {
        support::ferry_in(fx.dir.path(), config, &["run", "--once"], &env)
    };
    let audio = format!("audio{}", fx.suffix);
    let dest = format!("hub-{audio}");
    let old = large(&audio, 0, 12 * MIB);
    fx.fill(std::slice::from_ref(&old)).await;
    let run = ferry(&fx.config_path);
    assert_eq!(run.code, 0, "{run:?}");

    // A new version of the same size: ferry's copy of the old one stays at
    // the destination while the new one's upload is under way.
    let mut new = old.clone();
    new.seed ^= 0xC0FFEE;
    demo::put(&fx.source, &new).await.unwrap();
    // Every part of the new upload arrives; its Complete never does.
    let ceph = servers().get("FERRY_CEPH_ENDPOINT");
    let proxy = FaultProxy::playing(
        ceph,
        Plays {
            refuse_complete: true,
            ..Plays::default()
        },
    )
    .await;
    let refusing = fx.dir.path().join("refusing.toml");
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&refusing, text.replacen(ceph, &proxy.url(), 1)).unwrap();
    let run = ferry(&refusing);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(proxy.injected.internal_error.load(Ordering::Relaxed) > 0);
    let parts = fx.count("SELECT COUNT(*) FROM parts");
    assert!(parts >= 2, "{parts} parts recorded");
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 1);

    // The upload vanishes uncompleted, as a lifecycle rule would abort it.
    let open = ferry::cleanup::incomplete_uploads(&fx.destination, &dest)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    fx.destination
        .abort_multipart_upload()
        .bucket(&dest)
        .key(&open[0].key)
        .upload_id(&open[0].upload_id)
        .send()
        .await
        .unwrap();

    let run = ferry(&fx.config_path);
    assert_eq!(run.code, 0, "{run:?}");
    let got = fx
        .destination
        .get_object()
        .bucket(&dest)
        .key(&new.key)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&sse_c.base64)
        .sse_customer_key_md5(&sse_c.md5_base64)
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().to_vec();
    let want = new.expected_digests().sha256_hex();
    assert_eq!(ferry::hashing::Digests::of(&bytes).sha256_hex(), want);
    let (state, sha256) = only_copy(&fx);
    assert_eq!((state.as_str(), sha256), ("verified", want));
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 0);
    assert!(ferry::cleanup::incomplete_uploads(&fx.destination, &dest)
        .await
        .unwrap()
        .is_empty());
}

/// The state and recorded SHA-256 of the fixture's one copied object.
fn only_copy(fx: &Fixture) -> (String, String) {
    fx.ledger()
        .query_row(
            "SELECT o.state, c.sha256 FROM objects o JOIN copies c ON c.object_id = o.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}
