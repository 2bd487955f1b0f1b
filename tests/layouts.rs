//! Every multipart layout S3 allows at the source is copied, and the
//! destination ETag equals the source's wherever the layout can be kept:
//! unequal parts, a last part of 1 byte, parts a destination would refuse,
//! and a source store (Ceph RGW) that cannot tell its part boundaries.

mod support;

use ferry_tools::demo::{self, DemoObject};
use support::{assert_all_copied_byte_equal, list_all, Fixture};

const MIB: u64 = 1 << 20;

const TRANSFER: &str = r#"
concurrency = 4
part_size = "8MiB"
multipart_threshold = "8MiB"
"#;

fn book(fx: &Fixture, name: &str, parts: &[u64]) -> DemoObject {
    let [audio, ..] = demo::bucket_names(&fx.suffix);
    DemoObject::new(&audio, format!("books/{name}.mp3"), 0, "audio/mpeg").with_parts(parts)
}

/// (key, dest ETag, part count, etag_note) of every copy in the ledger.
fn copies(fx: &Fixture) -> Vec<(String, String, i64, Option<String>)> {
    fx.ledger()
        .prepare("SELECT o.key, c.dest_etag, c.part_count, c.etag_note FROM copies c JOIN objects o ON o.id = c.object_id ORDER BY o.key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sources_with_unequal_parts_keep_their_etag() {
    let fx = Fixture::new("unequal", TRANSFER).await;
    let set = vec![
        // Equal parts and a last part of 1 byte: part 1 tells them all.
        book(&fx, "equal-last-1-byte", &[7 * MIB, 7 * MIB, 1]),
        // Too short for part 1's length: every part is asked.
        book(&fx, "short-middle", &[8 * MIB, 5 * MIB, 8 * MIB, 1]),
        // Part 1 fits, the last part does not: caught before a byte is read.
        book(&fx, "long-last", &[8 * MIB, 8 * MIB, 5 * MIB, 6 * MIB]),
        // Part 1 and the last part both fit; the middle ones do not. Only the
        // parts' MD5s can tell, after the copy: a wrong guess, never "corrupt".
        book(&fx, "unequal-middle", &[6 * MIB, 5 * MIB, 7 * MIB, 3 * MIB]),
        // Growing parts, as some streaming uploaders make.
        book(&fx, "growing", &[5 * MIB, 6 * MIB, 7 * MIB + 1]),
    ];
    fx.fill(&set).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stderr.contains("reading the object again") && !run.stderr.contains("hash to"),
        "a source was called corrupt for its layout: {run:?}"
    );
    let relayouts: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("copying again with its exact boundaries"))
        .collect();
    assert!(
        relayouts.len() == 1 && relayouts[0].contains("unequal-middle"),
        "only the layout that fits part 1 and the last part is found out late: {relayouts:?}"
    );
    assert_all_copied_byte_equal(&fx, &set).await;

    let [audio, ..] = demo::bucket_names(&fx.suffix);
    let source = list_all(&fx.source, &audio).await;
    let destination = list_all(&fx.destination, &format!("hub-{audio}")).await;
    assert_eq!(source.len(), set.len());
    assert_eq!(destination, source, "sizes and ETags at both ends");
    for (key, etag, parts, note) in copies(&fx) {
        let o = set.iter().find(|o| o.key == key).unwrap();
        assert_eq!(parts as usize, o.part_lengths.len(), "{key}");
        assert!(etag.ends_with(&format!("-{parts}")), "{key}: {etag}");
        assert_eq!(note, None, "{key}");
    }

    for command in [["verify", "--all"].as_slice(), &["report"]] {
        let out = fx.ferry(command);
        assert_eq!(out.code, 0, "{command:?}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_layout_a_destination_would_refuse_is_recut_and_the_reason_kept() {
    let fx = Fixture::new("refusable", TRANSFER).await;
    // A 1 MiB middle part: AWS and Ceph refuse it (EntityTooSmall), and
    // Hetzner would too. The source here (Garage) accepted it.
    let set = vec![book(&fx, "tiny-middle", &[5 * MIB, MIB, 5 * MIB])];
    fx.fill(&set).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_all_copied_byte_equal(&fx, &set).await;
    let copied = copies(&fx);
    let (_, etag, parts, note) = &copied[0];
    let source_etag = &list_all(&fx.source, &set[0].bucket).await[0].2;
    assert_ne!(etag, source_etag);
    assert_eq!(*parts, 2, "ferry's own 8 MiB parts for 11 MiB");
    let note = note.as_deref().expect("the reason is recorded");
    assert!(note.contains("part 2") && note.contains("5 MiB"), "{note}");
    assert!(
        run.stderr.contains("the destination ETag differs"),
        "{run:?}"
    );
    assert_eq!(fx.ferry(&["report"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_cannot_tell_its_parts_is_copied_and_proved_by_reading_back() {
    let fx = Fixture::with_ceph_source("ceph-source", TRANSFER).await;
    let set = vec![
        book(&fx, "from-ceph", &[8 * MIB, 5 * MIB, 8 * MIB, 1]),
        book(&fx, "from-ceph-equal", &[5 * MIB, 5 * MIB]),
    ];
    fx.fill(&set).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("reading the object again"), "{run:?}");
    assert_all_copied_byte_equal(&fx, &set).await;
    for (key, _, _, note) in copies(&fx) {
        let note = note.unwrap_or_else(|| panic!("{key}: no reason recorded"));
        assert!(note.contains("does not tell its part boundaries"), "{note}");
    }
    assert_eq!(fx.ferry(&["verify", "--all"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_kms_source_is_not_proved_by_its_etag_but_by_reading_back() {
    use support::faults::{FaultProxy, Plays};
    use support::servers;
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            kms: Some("books/kms-".into()),
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::new("kms", TRANSFER).await;
    let mut single = book(&fx, "kms-single", &[MIB]);
    single.multipart = false;
    let set = vec![
        single,
        book(&fx, "kms-multipart", &[6 * MIB, 7 * MIB]),
        book(&fx, "plain-multipart", &[8 * MIB, 5 * MIB]),
    ];
    fx.fill(&set).await;
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace(servers().get("FERRY_SOURCE_ENDPOINT"), &proxy.url());
    std::fs::write(&fx.config_path, text).unwrap();

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_all_copied_byte_equal(&fx, &set).await;
    let source = list_all(&fx.source, &set[0].bucket).await;
    for (key, etag, parts, note) in copies(&fx) {
        let source_etag = &source.iter().find(|s| s.0 == key).unwrap().2;
        match key.as_str() {
            "books/kms-multipart.mp3" => {
                // Not copied in the source's parts on the word of its ETag.
                let note = note.expect("the reason is recorded");
                assert!(note.contains("aws:kms"), "{note}");
                assert_ne!(&etag, source_etag);
                assert_eq!(parts, 2);
            }
            _ => assert_eq!(note, None, "{key}"),
        }
    }
    assert_eq!(fx.ferry(&["verify", "--all"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_answers_parts_with_their_own_etag_is_copied_in_one_pass() {
    use std::sync::atomic::Ordering;
    use support::faults::{FaultProxy, Plays};
    use support::servers;
    // moto, the usual AWS stand-in, answers HEAD ?partNumber=N with the
    // part's own ETag, so an If-Match with the object's ETag hears 412.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            part_etags: true,
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::new("part-etags", TRANSFER).await;
    let mut single = book(&fx, "single", &[3 * MIB]);
    single.multipart = false;
    let set = vec![
        book(&fx, "equal", &[8 * MIB, 8 * MIB, 1]),
        book(&fx, "unequal", &[8 * MIB, 5 * MIB, 8 * MIB, 1]),
        // One part: its size is its layout, proved by the source's ETag.
        book(&fx, "one-part", &[6 * MIB]),
        single,
    ];
    fx.fill(&set).await;
    fx.source_through(&proxy.url());

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        proxy.injected.part_answers_refused.load(Ordering::Relaxed) > 0,
        "the proxy never played the part ETags"
    );
    assert!(!run.stderr.contains("changed mid-copy"), "{run:?}");
    assert!(
        run.stderr
            .contains("the source refused a part's If-Match, but the object is unchanged"),
        "the reason is not logged: {run:?}"
    );
    assert_all_copied_byte_equal(&fx, &set).await;
    assert_eq!(fx.count("SELECT COUNT(*) FROM passes"), 1);
    let source = list_all(&fx.source, &set[0].bucket).await;
    for (key, etag, _, note) in copies(&fx) {
        let source_etag = &source.iter().find(|s| s.0 == key).unwrap().2;
        match key.as_str() {
            "books/equal.mp3" | "books/unequal.mp3" => {
                // Not cut on the word of the part answers: ferry's own parts.
                let note = note.unwrap_or_else(|| panic!("{key}: no reason recorded"));
                assert!(note.contains("does not tell its part boundaries"), "{note}");
            }
            _ => {
                assert_eq!(note, None, "{key}");
                assert_eq!(&etag, source_etag, "{key}");
            }
        }
    }
    assert_eq!(fx.ferry(&["verify", "--all"]).code, 0);
}

/// Runs the real binary as a daemon until the ledger records its first pass
/// finished; returns its peak resident memory (VmHWM) then, in bytes, and
/// stops it. (The kernel's ru_maxrss of a child is no use here: it starts
/// from the test process's own, inherited across the spawn.)
async fn first_pass_peak_memory(fx: &Fixture) -> u64 {
    use std::time::Duration;
    let mut child = fx.spawn_ferry(&["run"]);
    let pid = child.id().unwrap();
    while fx.count("SELECT COUNT(*) FROM passes WHERE finished_at IS NOT NULL") == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ferry ended before its first pass finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in\n{status}"));
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_later_part_streams_through_within_the_byte_budget() {
    const BUDGET: u64 = 20 * MIB;
    // ferry itself (runtime, SDK, TLS, SQLite) and the stream windows:
    // 30 MiB in all was measured; holding the large part made it 189 MiB.
    const OVERHEAD: u64 = 48 * MIB;
    let transfer = "concurrency = 4\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\nmax_bytes_in_flight = \"20MiB\"";
    let fx =
        Fixture::with_destination("large-later-part", transfer, "interval = \"1h\"", None).await;
    // Part 1 is small enough to hold four of in the budget; part 2 is eight
    // times the whole budget.
    let set = vec![book(
        &fx,
        "large-later-part",
        &[5 * MIB, 160 * MIB, 5 * MIB],
    )];
    fx.fill(&set).await;

    let peak = first_pass_peak_memory(&fx).await;
    eprintln!(
        "peak RSS {:.1} MiB with a budget of {} MiB",
        peak as f64 / MIB as f64,
        BUDGET / MIB
    );
    assert!(
        peak <= BUDGET + OVERHEAD,
        "peak RSS {:.1} MiB: over the budget of {} MiB plus {} MiB",
        peak as f64 / MIB as f64,
        BUDGET / MIB,
        OVERHEAD / MIB
    );
    assert_all_copied_byte_equal(&fx, &set).await;
    let (_, etag, parts, note) = &copies(&fx)[0];
    assert_eq!(
        (*parts, note.as_deref()),
        (3, None),
        "the source's own parts"
    );
    assert_eq!(etag, &list_all(&fx.source, &set[0].bucket).await[0].2);
}
