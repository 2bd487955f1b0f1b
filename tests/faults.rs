//! A hostile network: a proxy of our own injects errors, resets, stalls,
//! truncations and flipped bits on both sides, and ferry must still end with
//! every object byte-equal, never having completed a corrupt one.

mod support;

use std::time::Duration;

use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject};
use support::faults::{FaultProxy, Rates};
use support::{servers, Fixture};

fn rates(flip_request: f64, flip_response: f64) -> Rates {
    Rates {
        slow_down: 0.05,
        internal_error: 0.02,
        reset_before: 0.02,
        reset_during: 0.02,
        stall: 0.01,
        truncate: 0.02,
        flip_request,
        flip_response,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_copied_through_ten_percent_faults_on_both_sides_ends_byte_equal() {
    let transfer = "concurrency = 16\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\nread_timeout = \"2s\"";
    let fx = Fixture::new("faults", transfer).await;
    // The whole demo: 443 objects, 550 MiB, every shape and odd key.
    let set = demo::data_set(demo::Scale::Full, &fx.suffix);
    fx.fill(&set).await;

    // ≥ 10 % of requests on each side get a fault; flips go in request bodies
    // towards the destination and in response bodies from the source.
    let stall = Duration::from_secs(3);
    let source = FaultProxy::start(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        // A flip in any part of a multipart source object fails the whole
        // object's check (S3 gives no per-part MD5), so the 300 MiB book is
        // read again whole: kept low enough that it gets through in a few tries.
        rates(0.0, 0.02),
        stall,
    )
    .await;
    let destination = FaultProxy::start(
        servers().get("FERRY_DEST_ENDPOINT"),
        rates(0.06, 0.0),
        stall,
    )
    .await;
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace(servers().get("FERRY_SOURCE_ENDPOINT"), &source.url())
        .replace(servers().get("FERRY_DEST_ENDPOINT"), &destination.url())
        // The destination goes through ferry's own socket-capped client, the
        // source through the SDK's: both must classify faults for retry.
        .replace("[destination]\n", "[destination]\nmax_connections = 6\n");
    assert!(text.contains("max_connections = 6"));
    let hostile = fx.dir.path().join("hostile.toml");
    std::fs::write(&hostile, text).unwrap();

    let mut runs = 0;
    // Log lines where ferry refused bytes: a hash that differs from the
    // source's ETag, or a store that refused a body (Content-MD5).
    let (mut caught_at_source, mut caught_at_destination) = (Vec::new(), Vec::new());
    // Attempts ferry gave up for another fault (a part whose upload then
    // failed): bytes read in them, flipped or not, were never used.
    let mut abandoned = Vec::new();
    loop {
        runs += 1;
        let mut env = servers().env.clone();
        env.push(("FERRY_LOG".into(), "ferry=debug".into()));
        let run = support::ferry_in(fx.dir.path(), &hostile, &["run", "--once"], &env);
        let lines = |words: &[&str]| -> Vec<String> {
            run.stderr
                .lines()
                .filter(|l| words.iter().any(|w| l.contains(w)))
                .map(String::from)
                .collect()
        };
        caught_at_source.extend(lines(&["the bytes read hash to"]));
        abandoned.extend(lines(&["retrying"]));
        caught_at_destination.extend(lines(&[
            "BadDigest",
            "the bytes sent have MD5",
            "XAmzContentSHA256Mismatch",
        ]));
        // Whatever is visible at the destination (read directly) is whole and right.
        for o in &set {
            let dest = format!("hub-{}", o.bucket);
            if let Ok(got) = demo::observe(&fx.destination, Side::Destination, &dest, &o.key).await
            {
                assert_eq!(
                    got.sha256,
                    o.expected_digests().sha256_hex(),
                    "a corrupt {} was completed (run {runs})",
                    o.key
                );
            }
        }
        if run.code == 0 {
            break;
        }
        assert!(runs < 8, "still failing after {runs} runs: {run:?}");
    }
    let db = fx.ledger();
    let verified: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM objects WHERE state = 'verified'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(verified as usize, set.len());
    for o in &set {
        let sha: String = db
            .query_row("SELECT c.sha256 FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.key = ?1", [&o.key], |r| r.get(0))
            .unwrap();
        assert_eq!(sha, o.expected_digests().sha256_hex(), "{}", o.key);
    }
    let (s, d) = (&source.injected, &destination.injected);
    let flipped_at_source = s.flipped_keys.lock().unwrap().clone();
    let flipped_at_destination = d.flipped_keys.lock().unwrap().clone();
    eprintln!(
        "faults: {runs} runs; source: {} faults in {} requests, {} bodies with a flipped bit ({} whole), \
         {} refused by ferry; destination: {} faults in {} requests, {} bodies with a flipped bit ({} whole), \
         {} refused",
        s.total(),
        s.requests(),
        s.flips(),
        flipped_at_source.len(),
        caught_at_source.len(),
        d.total(),
        d.requests(),
        d.flips(),
        flipped_at_destination.len(),
        caught_at_destination.len(),
    );
    assert!(
        s.total() * 10 >= s.requests() && d.total() * 10 >= d.requests(),
        "fewer than 10 % of requests got a fault"
    );
    assert!(
        !flipped_at_source.is_empty() && !flipped_at_destination.is_empty(),
        "no flipped body went through on one side: the test proved nothing there"
    );
    // Every flipped body that went through whole was refused, naming its
    // object, or belonged to an attempt abandoned for another fault; and
    // nothing was refused that the proxy had not flipped.
    for (side, flipped, caught) in [
        ("source", &flipped_at_source, &caught_at_source),
        (
            "destination",
            &flipped_at_destination,
            &caught_at_destination,
        ),
    ] {
        for key in flipped {
            let named = |lines: &Vec<String>| lines.iter().any(|l| l.contains(key.as_str()));
            assert!(
                named(caught) || named(&abandoned),
                "a flipped bit in {key} from the {side} went unnoticed"
            );
        }
        for line in caught {
            assert!(
                flipped.iter().any(|key| line.contains(key.as_str())),
                "refused at the {side} without a flip: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttling_store_lowers_the_requests_in_flight_and_success_raises_them() {
    let fx = Fixture::new("throttle", "concurrency = 16").await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..150)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("feeds/onix-{i:03}.xml"),
                4_000,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    let slow = Rates {
        slow_down: 0.15,
        ..Rates::default()
    };
    let destination =
        FaultProxy::start(servers().get("FERRY_DEST_ENDPOINT"), slow, Duration::ZERO).await;
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace(servers().get("FERRY_DEST_ENDPOINT"), &destination.url());
    let throttled = fx.dir.path().join("throttled.toml");
    std::fs::write(&throttled, text).unwrap();
    let mut runs = 0;
    let mut logs = String::new();
    loop {
        runs += 1;
        let run = support::ferry_in(
            fx.dir.path(),
            &throttled,
            &["run", "--once"],
            &servers().env,
        );
        logs.push_str(&run.stderr);
        if run.code == 0 {
            break;
        }
        assert!(runs < 5, "{run:?}");
    }
    assert!(
        logs.contains("the store is throttling: fewer requests in flight from=16 to=8"),
        "{logs}"
    );
    assert!(
        logs.contains("requests succeed again: one more in flight"),
        "{logs}"
    );
    for o in &set {
        let got = demo::observe(
            &fx.destination,
            Side::Destination,
            &format!("hub-{onix}"),
            &o.key,
        )
        .await
        .unwrap();
        assert_eq!(got.sha256, o.expected_digests().sha256_hex());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_upload_with_a_corrupt_kept_part_is_never_completed() {
    // A single-part source object sent in parts of 5 MiB: its ETag is the
    // MD5 of the whole, the only proof the source gives of its bytes.
    let transfer = "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";
    let fx = Fixture::new("corrupt-kept", transfer).await;
    let audio = format!("audio{}", fx.suffix);
    let book = DemoObject::new(
        &audio,
        "books/9783161484100/chapter-01.mp3".into(),
        (30 << 20) + 3,
        "audio/mpeg",
    );
    fx.fill(std::slice::from_ref(&book)).await;
    let original = std::fs::read_to_string(&fx.config_path).unwrap();
    let config_through = |name: &str, source: &str, destination: &str| {
        let text = original
            .replace(servers().get("FERRY_SOURCE_ENDPOINT"), source)
            .replace(servers().get("FERRY_DEST_ENDPOINT"), destination);
        let path = fx.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    // Run 1: part 2's bytes come from the source with a flipped bit (sent,
    // acknowledged and recorded, as they hash alike on both ends), and part
    // 6 is refused until the run gives the object up, its upload kept.
    let flipping = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        support::faults::Plays {
            flip_range: Some(format!("bytes={}-", 5 << 20)),
            ..Default::default()
        },
    )
    .await;
    let refusing = FaultProxy::playing(
        servers().get("FERRY_DEST_ENDPOINT"),
        support::faults::Plays {
            refuse_part: Some(6),
            ..Default::default()
        },
    )
    .await;
    let first = config_through("first.toml", &flipping.url(), &refusing.url());
    let run = support::ferry_in(fx.dir.path(), &first, &["run", "--once"], &servers().env);
    assert_ne!(run.code, 0, "part 6 was refused: {run:?}");
    assert_eq!(
        flipping.injected.flipped_keys.lock().unwrap().as_slice(),
        std::slice::from_ref(&book.key),
        "part 2 went through with its flipped bit"
    );
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM parts WHERE part_number = 2 AND md5_state IS NOT NULL"),
        1,
        "the corrupt part 2 is recorded, to be kept on resume"
    );
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 1);
    assert!(refusing.injected.completes.lock().unwrap().is_empty());

    // Run 2 resumes the upload with its kept parts: the whole MD5 carried on
    // from them cannot be the source's ETag, so the object is read again
    // whole before anything is completed.
    let counting = FaultProxy::playing(
        servers().get("FERRY_DEST_ENDPOINT"),
        support::faults::Plays::default(),
    )
    .await;
    let second = config_through(
        "second.toml",
        servers().get("FERRY_SOURCE_ENDPOINT"),
        &counting.url(),
    );
    let run = support::ferry_in(fx.dir.path(), &second, &["run", "--once"], &servers().env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("resuming a multipart upload"),
        "the upload was resumed: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the bytes read hash to"),
        "the kept corrupt part was caught: {}",
        run.stderr
    );
    assert_eq!(
        counting.injected.completes.lock().unwrap().as_slice(),
        std::slice::from_ref(&book.key),
        "one CompleteMultipartUpload: the copy proved whole, never the corrupt one"
    );
    let destination = fx.pairs().into_iter().find(|(s, _)| *s == audio).unwrap().1;
    let got = demo::observe(&fx.destination, Side::Destination, &destination, &book.key)
        .await
        .unwrap();
    let want = book.expected_digests();
    assert_eq!(got.sha256, want.sha256_hex(), "the copy's bytes");
    let (sha256, md5): (String, String) = fx
        .ledger()
        .query_row("SELECT sha256, md5 FROM copies", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((sha256, md5), (want.sha256_hex(), want.md5_hex()));
    assert_eq!(fx.count("SELECT COUNT(*) FROM uploads"), 0);
}
