//! Running for days: passes on an interval that pick up what changed,
//! deletions, status read from a second process, shards.

mod support;

use std::time::{Duration, Instant};

use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject};
use support::faults::{FaultProxy, Plays};
use support::{list_all, scrape, servers, Fixture};

fn onix(fx: &Fixture, n: u64) -> Vec<DemoObject> {
    let bucket = format!("onix{}", fx.suffix);
    (0..n)
        .map(|i| {
            DemoObject::new(
                &bucket,
                format!("feeds/onix-{i:04}.xml"),
                1_000 + i * 37,
                "application/xml",
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_split_the_keys_and_together_copy_everything() {
    let fx = Fixture::new("shard", "concurrency = 8").await;
    let set = onix(&fx, 60);
    fx.fill(&set).await;
    let mut owned = Vec::new();
    for i in 0..2 {
        let ledger = format!("state/shard-{i}.sqlite");
        let text = std::fs::read_to_string(&fx.config_path)
            .unwrap()
            .replace("state/ferry.sqlite", &ledger);
        let path = fx.dir.path().join(format!("shard-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let shard = format!("{i}/2");
        let run = support::ferry_in(
            fx.dir.path(),
            &path,
            &["--shard", &shard, "run", "--once"],
            &support::servers().env,
        );
        assert_eq!(run.code, 0, "{run:?}");
        let db = rusqlite::Connection::open(fx.dir.path().join(&ledger)).unwrap();
        let keys: Vec<String> = db
            .prepare("SELECT key FROM objects")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !keys.is_empty() && keys.len() < set.len(),
            "shard {i} took {} of {}",
            keys.len(),
            set.len()
        );
        // One shard's ledger, read alone, answers for its own keys: the
        // other shard's are not "missing", they are not this shard's.
        let report = fx.ferry(&["report", "--format", "csv", "--ledger", &ledger]);
        assert_eq!(report.code, 0, "shard {i}'s report: {report:?}");
        let buckets = support::csv_block(&report.stdout, "buckets");
        let row = buckets.iter().find(|r| r[0] == set[0].bucket).unwrap();
        assert_eq!(
            (&row[2], &row[row.len() - 1]),
            (keys.len().to_string().as_str(), shard.as_str()),
            "listed and shards of shard {i}: {report:?}"
        );
        owned.push(keys);
    }
    assert!(
        owned[0].iter().all(|k| !owned[1].contains(k)),
        "a key in both shards"
    );
    assert_eq!(owned[0].len() + owned[1].len(), set.len());
    let dest = format!("hub-{}", set[0].bucket);
    assert_eq!(list_all(&fx.destination, &dest).await.len(), set.len());
    let report = fx.ferry(&[
        "report",
        "--ledger",
        "state/shard-0.sqlite",
        "--ledger",
        "state/shard-1.sqlite",
    ]);
    assert_eq!(report.code, 0, "{report:?}");
}

async fn dest_keys(fx: &Fixture, bucket: &str) -> Vec<String> {
    list_all(&fx.destination, bucket)
        .await
        .into_iter()
        .map(|k| k.0)
        .collect()
}

/// Waits until the ledger records `pass` as finished and returns its copied count.
async fn pass_finished(fx: &Fixture, pass: i64) -> i64 {
    let started = Instant::now();
    loop {
        let copied = fx.count(&format!(
            "SELECT objects_copied FROM passes WHERE id = {pass} AND finished_at IS NOT NULL"
        ));
        let done = fx.count(&format!(
            "SELECT COUNT(*) FROM passes WHERE id = {pass} AND finished_at IS NOT NULL"
        ));
        if done == 1 {
            return copied;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pass {pass} never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_copies_exactly_what_changed_and_removes_deletions_after_two_passes() {
    let fx = Fixture::with_destination(
        "daemon",
        "concurrency = 8",
        "interval = \"3s\"\ndelete = true",
        None,
    )
    .await;
    let mut set = onix(&fx, 20);
    fx.fill(&set).await;
    let dest = format!("hub-{}", set[0].bucket);
    let daemon = fx.spawn_ferry(&["run"]);

    assert_eq!(pass_finished(&fx, 1).await, 20);
    // Between passes: two new keys, one changed, one deleted.
    let mut added: Vec<DemoObject> = onix(&fx, 22).split_off(20);
    for o in &added {
        demo::put(&fx.source, o).await.unwrap();
    }
    set[5].seed ^= 99;
    demo::put(&fx.source, &set[5]).await.unwrap();
    let gone = set.remove(7);
    fx.delete_at_source(&gone).await;

    assert_eq!(
        pass_finished(&fx, 2).await,
        3,
        "the pass copies exactly the new and the changed keys"
    );
    // status, from a second process, while the daemon runs.
    let status = fx.ferry(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let row = json["status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == set[0].bucket.as_str())
        .unwrap();
    assert_eq!(row["deleted"].as_u64(), Some(1), "{json}");
    assert_eq!(row["pending"].as_u64(), Some(0), "{json}");
    let keys = dest_keys(&fx, &dest).await;
    assert!(
        keys.contains(&gone.key),
        "deleted at the destination in the pass that first saw it gone"
    );

    pass_finished(&fx, 3).await;
    let keys = dest_keys(&fx, &dest).await;
    assert!(
        !keys.contains(&gone.key),
        "still at the destination after two passes without it"
    );

    set.append(&mut added);
    for o in &set {
        let got = demo::observe(&fx.destination, Side::Destination, &dest, &o.key)
            .await
            .unwrap();
        assert_eq!(got.sha256, o.expected_digests().sha256_hex(), "{}", o.key);
    }
    assert_eq!(keys.len(), set.len());

    let pid = daemon.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::time::timeout(Duration::from_secs(30), daemon.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("pass finished"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_delete_a_key_deleted_at_the_source_stays_and_is_reported() {
    let fx = Fixture::new("keep", "concurrency = 8").await;
    let set = onix(&fx, 5);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    fx.delete_at_source(&set[0]).await;
    for _ in 0..3 {
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let dest = format!("hub-{}", set[0].bucket);
    assert_eq!(
        list_all(&fx.destination, &dest).await.len(),
        5,
        "nothing is removed without delete = true"
    );
    let report = fx.ferry(&["report", "--format", "csv"]);
    assert!(
        report.stdout.contains("deleted at the source"),
        "{report:?}"
    );
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_is_scraped_during_a_run() {
    let fx =
        Fixture::with_destination("metrics", "concurrency = 8", "interval = \"1h\"", None).await;
    let set = onix(&fx, 12);
    fx.fill(&set).await;
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let daemon = fx.spawn_ferry(&["--metrics-addr", &addr, "run"]);
    pass_finished(&fx, 1).await;
    let text = scrape(&addr).await;
    assert!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{text}"
    );
    let bytes: u64 = set.iter().map(|o| o.size).sum();
    assert_eq!(
        metric(&text, "ferry_objects_copied_total"),
        Some(set.len() as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, "ferry_bytes_copied_total"),
        Some(bytes as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, "ferry_objects_verified_total"),
        Some(set.len() as f64),
        "{text}"
    );
    assert_eq!(metric(&text, "ferry_pass"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "ferry_backlog_objects"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "ferry_objects_in_flight"),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric(&text, "ferry_last_pass_seconds").unwrap() > 0.0,
        "{text}"
    );
    drop(daemon); // kill_on_drop
}

/// Removes terminal escape sequences, keeping the text.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn bars_are_drawn_on_a_terminal_and_never_tear_log_lines() {
    let fx = Fixture::new(
        "bars",
        "concurrency = 4\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"",
    )
    .await;
    let mut set = onix(&fx, 30);
    let mut book = DemoObject::new(
        &format!("audio{}", fx.suffix),
        "books/a/full.mp3".into(),
        40 << 20,
        "audio/mpeg",
    );
    book.multipart = true;
    set.push(book);
    fx.fill(&set).await;

    // `script` gives ferry a pseudo-terminal and records what it drew.
    let capture = fx.dir.path().join("terminal.txt");
    let command = format!(
        "{} --config {} run --once",
        env!("CARGO_BIN_EXE_ferry"),
        fx.config_path.display()
    );
    let status = std::process::Command::new("script")
        .args(["-qfec", &command])
        .arg(&capture)
        .current_dir(fx.dir.path())
        .envs(
            support::servers()
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script (util-linux) runs ferry in a pty");
    assert!(status.success());
    let drawn = std::fs::read_to_string(&capture).unwrap();
    assert!(
        drawn.contains('█') && drawn.contains("objects "),
        "no bars drawn:\n{drawn}"
    );
    assert!(
        drawn.contains("part "),
        "no line for the large object:\n{drawn}"
    );
    let text = plain(&drawn);
    let mut log_lines = 0;
    for segment in text.split(['\r', '\n']) {
        if segment.contains(" INFO ") {
            log_lines += 1;
            assert!(
                segment.starts_with("20"),
                "a log line torn by a bar: {segment:?}"
            );
        }
    }
    assert!(log_lines >= 3, "{text}");

    // Without a terminal: logs only, no bar characters.
    assert_eq!(fx.ferry(&["verify", "--all"]).code, 0);
    let piped = fx.ferry(&["run", "--once"]);
    assert!(
        !piped.stderr.contains('█') && !piped.stderr.contains('\x1b'),
        "{piped:?}"
    );
    assert!(piped.stderr.contains("INFO"), "{piped:?}");
}

/// `delete = true` takes two listings' word that a key is gone, and then the
/// source's own: a key that listings miss but the source still holds is
/// never removed at the destination.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_listings_miss_but_the_source_holds_is_not_removed() {
    let fx = Fixture::with_destination("unlisted", "", "delete = true", None).await;
    let set = onix(&fx, 4);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    let missed = &set[2];
    let plays = Plays {
        unlisted: Some(missed.key.clone()),
        ..Plays::default()
    };
    let proxy = FaultProxy::playing(servers().get("FERRY_SOURCE_ENDPOINT"), plays).await;
    fx.source_through(&proxy.url());
    for _ in 0..3 {
        let run = fx.ferry(&["run", "--once"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let dest = format!("hub-{}", missed.bucket);
    assert_eq!(
        dest_keys(&fx, &dest).await.len(),
        set.len(),
        "a key still at the source was removed at the destination"
    );
    let reason: String = fx
        .ledger()
        .query_row(
            "SELECT state || ': ' || COALESCE(last_error, '') FROM objects WHERE key = ?1",
            [&missed.key],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reason.starts_with("deleted: ") && reason.contains("the source still answers for it"),
        "{reason}"
    );
}

/// What a headless browser makes of a page: Debian's chromium, as the
/// operator's browser would, with the DOM it built written out.
fn browser_dom(url: &str) -> String {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=2000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium runs: scripts/test.sh installs Debian's chromium package");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The number a page's bucket row shows in one field (a size, as its
/// exact count of bytes: the cell itself reads "14.6 KiB").
fn page_field(dom: &str, bucket: &str, field: &str) -> Option<u64> {
    let row = &dom[dom.find(&format!("data-bucket=\"{bucket}\""))?..];
    let row = &row[..row.find("</tr>")?];
    let cell = &row[row.find(&format!("data-field=\"{field}\""))?..];
    let cell = &cell[..cell.find("</td>")?];
    if let Some(at) = cell.find("data-bytes=\"") {
        let bytes = &cell[at + "data-bytes=\"".len()..];
        return bytes[..bytes.find('"')?].parse().ok();
    }
    cell[cell.find('>')? + 1..].trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_what_status_says_and_a_hostile_key_as_text() {
    let fx = Fixture::with_destination("page", "concurrency = 8", "interval = \"1h\"", None).await;
    let mut set = onix(&fx, 12);
    let hostile = "feeds/<script>document.title='owned'</script>.xml";
    set.push(DemoObject::new(
        &set[0].bucket,
        hostile.into(),
        500,
        "application/xml",
    ));
    fx.fill(&set).await;
    // Another writer's object under the hostile key: ferry leaves it, and
    // the page lists the key with the reason.
    let dest = format!("hub-{}", set[0].bucket);
    fx.destination
        .put_object()
        .bucket(&dest)
        .key(hostile)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"not the source's",
        ))
        .send()
        .await
        .unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let daemon = fx.spawn_ferry(&["--metrics-addr", &addr, "run"]);
    pass_finished(&fx, 1).await;

    let dom = browser_dom(&format!("http://{addr}/"));
    let status = fx.ferry(&["status", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let mut rows = 0;
    for row in json["status"].as_array().unwrap() {
        let bucket = row["source"].as_str().unwrap();
        if bucket == "total" {
            continue;
        }
        rows += 1;
        for field in [
            "listed",
            "copied",
            "verified",
            "conflict",
            "failed",
            "skipped",
            "restoring",
            "pending",
            "bytes_listed",
            "bytes_copied",
        ] {
            assert_eq!(
                page_field(&dom, bucket, field),
                row[field].as_u64(),
                "{bucket} {field}: {dom}"
            );
        }
    }
    assert_eq!(rows, 4, "{json}");
    assert_eq!(
        page_field(&dom, &set[0].bucket, "conflict"),
        Some(1),
        "{dom}"
    );
    // The key is text on the page, its script never ran.
    assert!(dom.contains("<title>ferry</title>"), "{dom}");
    assert!(
        dom.contains("feeds/&lt;script&gt;document.title='owned'&lt;/script&gt;.xml"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains("Last pass:"), "{dom}");
    // The metrics are still where Prometheus scrapes them.
    assert!(scrape(&addr)
        .await
        .contains("ferry_objects_copied_total 12"));
    drop(daemon);
}
