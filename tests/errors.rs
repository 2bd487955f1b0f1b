//! Bad input gets a clear error that names the thing and the fix, exits with
//! the documented code, and loses nothing.

mod support;

use support::{ferry_in, servers, Fixture};

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const VALID: &str = r#"
ledger = "state/ferry.sqlite"
[source]
endpoint = "http://127.0.0.1:9000"
access_key_id_env = "FERRY_SOURCE_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_SOURCE_SECRET_ACCESS_KEY"
[destination]
endpoint = "http://127.0.0.1:9100"
region = "fsn1"
access_key_id_env = "FERRY_DEST_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_DEST_SECRET_ACCESS_KEY"
[transfer]
part_size = "16MiB"
[[buckets]]
source = "audio"
destination = "hub-audio"
"#;

fn keys() -> Vec<(String, String)> {
    [
        "FERRY_SOURCE_ACCESS_KEY_ID",
        "FERRY_SOURCE_SECRET_ACCESS_KEY",
        "FERRY_DEST_ACCESS_KEY_ID",
        "FERRY_DEST_SECRET_ACCESS_KEY",
    ]
    .iter()
    .map(|k| (k.to_string(), "test-value".to_string()))
    .collect()
}

#[test]
fn bad_configs_exit_2_and_name_the_key() {
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown key",
            VALID.replace("part_size", "partsize"),
            "partsize",
        ),
        (
            "bad size",
            VALID.replace("\"16MiB\"", "\"sixteen\""),
            "transfer.part_size",
        ),
        (
            "empty buckets",
            VALID.split("[[buckets]]").next().unwrap().to_owned(),
            "buckets",
        ),
        (
            "missing env var",
            VALID.replace(
                "\"FERRY_DEST_SECRET_ACCESS_KEY\"",
                "\"FERRY_NOT_SET_ANYWHERE\"",
            ),
            "FERRY_NOT_SET_ANYWHERE",
        ),
        (
            "bad endpoint",
            VALID.replace("http://127.0.0.1:9100", "127.0.0.1:9100"),
            "destination.endpoint",
        ),
        ("not toml", "ledger = [".to_owned(), "ferry.toml"),
    ];
    for (what, text, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), text);
        let run = ferry_in(dir.path(), &config, &["run", "--once"], &keys());
        assert_eq!(run.code, 2, "{what}: {run:?}");
        assert!(
            run.stderr.contains(named),
            "{what}: message should name {named}: {run:?}"
        );
        assert!(
            !run.stderr.contains("test-value"),
            "{what}: a secret leaked: {run:?}"
        );
        assert!(
            !dir.path().join("state").exists(),
            "{what}: a bad config must not create a ledger"
        );
    }
}

#[test]
fn a_missing_config_file_says_how_to_pass_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = ferry_in(
        dir.path(),
        &dir.path().join("nope.toml"),
        &["status"],
        &keys(),
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("nope.toml") && run.stderr.contains("--config"),
        "{run:?}"
    );
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = ferry_in(
        dir.path(),
        &dir.path().join("ferry.toml"),
        &["teleport"],
        &keys(),
    );
    assert_eq!(run.code, 2, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_named_before_anything_is_written() {
    let fx = Fixture::new("nobucket", "").await;
    // No fill: none of the fixture's buckets exist on either server.
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "{run:?}");
    let audio = format!("audio{}", fx.suffix);
    assert!(
        run.stderr.contains(&audio) && run.stderr.contains("does not exist"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!("hub-{audio}")),
        "every missing bucket is named: {run:?}"
    );
    assert!(
        !fx.config.ledger.exists(),
        "no ledger is written for a run that cannot start"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_named_and_the_secret_is_not_shown() {
    let s = servers();
    let fx = Fixture::new("badkeys", "").await;
    fx.fill(&[]).await;
    let wrong_secret = "0000000000000000000000000000000000000000000000000000000000000bad";
    let mut env = s.env.clone();
    for (k, v) in env.iter_mut() {
        if k == "FERRY_DEST_SECRET_ACCESS_KEY" {
            *v = wrong_secret.to_owned();
        }
    }
    let run = ferry_in(fx.dir.path(), &fx.config_path, &["run", "--once"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("destination") && run.stderr.contains("credentials"),
        "{run:?}"
    );
    for (_, secret) in s.env.iter().filter(|(k, _)| k.contains("SECRET")) {
        assert!(
            !run.stderr.contains(secret.as_str()) && !run.stdout.contains(secret.as_str()),
            "a secret leaked: {run:?}"
        );
    }
    assert!(!run.stderr.contains(wrong_secret), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) is closed on loopback.
    let text = VALID.replace("http://127.0.0.1:9100", "http://127.0.0.1:9");
    let config = write_config(dir.path(), &text);
    let run = ferry_in(dir.path(), &config, &["run", "--once"], &servers().env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("could not reach the destination endpoint"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_destination_bucket_is_named_and_created_only_when_asked() {
    use ferry_tools::demo::DemoObject;
    let fx = Fixture::new("nodest", "").await;
    let onix = format!("onix{}", fx.suffix);
    let set = [DemoObject::new(
        &onix,
        "a.xml".into(),
        100,
        "application/xml",
    )];
    // Source buckets only.
    for (src, _) in fx.pairs() {
        ferry_tools::demo::ensure_bucket(&fx.source, ferry::store::Side::Source, &src)
            .await
            .unwrap();
    }
    ferry_tools::demo::put(&fx.source, &set[0]).await.unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!("hub-{onix}")) && run.stderr.contains("create_buckets = true"),
        "{run:?}"
    );
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, format!("create_buckets = true\n{text}")).unwrap();
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let got = ferry_tools::demo::observe(
        &fx.destination,
        ferry::store::Side::Destination,
        &format!("hub-{onix}"),
        "a.xml",
    )
    .await
    .unwrap();
    assert_eq!(got.sha256, set[0].expected_digests().sha256_hex());
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_keys_empty_objects_and_part_size_edges_arrive_intact() {
    use ferry_tools::demo::DemoObject;
    let fx = Fixture::new(
        "oddkeys",
        "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"",
    )
    .await;
    let onix = format!("onix{}", fx.suffix);
    let part = 5u64 << 20;
    let mut long = String::from("k/");
    while long.len() < 1024 {
        long.push('x');
    }
    let cases = [
        (long, 10),
        ("tab\there".to_owned(), 10),
        ("bell\u{7}and\u{1b}escape".to_owned(), 10),
        ("new\nline".to_owned(), 10),
        ("empty".to_owned(), 0),
        ("exactly-part-size".to_owned(), part),
        ("part-size-minus-1".to_owned(), part - 1),
        ("part-size-plus-1".to_owned(), part + 1),
        ("a+b%20c d".to_owned(), 10),
    ];
    let set: Vec<DemoObject> = cases
        .iter()
        .map(|(k, n)| DemoObject::new(&onix, k.clone(), *n, "application/octet-stream"))
        .collect();
    fx.fill(&set).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let dest = format!("hub-{onix}");
    for o in &set {
        let got = ferry_tools::demo::observe(
            &fx.destination,
            ferry::store::Side::Destination,
            &dest,
            &o.key,
        )
        .await
        .unwrap();
        assert_eq!(
            (got.size, got.sha256),
            (o.size, o.expected_digests().sha256_hex()),
            "{:?}",
            o.key
        );
    }
    let parts = |key: &str| -> i64 {
        fx.ledger().query_row("SELECT c.part_count FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.key = ?1", [key], |r| r.get(0)).unwrap()
    };
    assert_eq!(
        parts("part-size-minus-1"),
        1,
        "below the threshold: one PUT"
    );
    assert_eq!(parts("exactly-part-size"), 1, "at the threshold: one part");
    assert_eq!(parts("part-size-plus-1"), 2, "one byte over: two parts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_that_is_not_sqlite_is_refused_and_left_alone() {
    let fx = Fixture::new("notsqlite", "").await;
    fx.fill(&[]).await;
    std::fs::create_dir_all(fx.dir.path().join("state")).unwrap();
    let junk = b"id,key\n1,not a ledger\n".repeat(300);
    std::fs::write(&fx.config.ledger, &junk).unwrap();
    for args in [&["run", "--once"][..], &["status"], &["report"]] {
        let run = fx.ferry(args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("not a SQLite file")
                && run.stderr.contains("Point `ledger` at a new path"),
            "{run:?}"
        );
    }
    assert_eq!(std::fs::read(&fx.config.ledger).unwrap(), junk);
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_objects_are_skipped_or_failed_fast_with_the_fix() {
    use ferry_tools::demo::DemoObject;
    use support::faults::{FaultProxy, Plays};
    // Garage has no archive tier: our proxy plays one in front of the source.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            // Listed as DEEP_ARCHIVE: ferry must not even try it.
            listed: Some("archived-".into()),
            // Listed as STANDARD, but not readable (archived since): S3's
            // 403 InvalidObjectState, which no retry can fix.
            refused: Some("thawing-".into()),
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::new("archive", "").await;
    let audio = format!("audio{}", fx.suffix);
    let set: Vec<DemoObject> = ["archived-1998.mp3", "thawing-2001.mp3", "plain.mp3"]
        .iter()
        .map(|k| DemoObject::new(&audio, k.to_string(), 1_000, "audio/mpeg"))
        .collect();
    fx.fill(&set).await;
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace(servers().get("FERRY_SOURCE_ENDPOINT"), &proxy.url());
    // Restores off: archived objects are skipped (or fail, when only their
    // GET tells), as before ferry asked restores (tests/restore.rs).
    let text = text.replace("[[buckets]]\n", "[[buckets]]\nrestore = \"off\"\n");
    let config = fx.dir.path().join("archive.toml");
    std::fs::write(&config, text).unwrap();

    let run = ferry_in(fx.dir.path(), &config, &["run", "--once"], &servers().env);
    assert_eq!(run.code, 1, "a failed object exits 1: {run:?}");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("thawing-2001.mp3"), "{said}");
    assert!(said.contains("restore it at the source"), "{said}");
    assert_eq!(
        proxy
            .injected
            .refused_gets
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "InvalidObjectState is final: no retries"
    );

    let state = |key: &str| -> (String, String) {
        fx.ledger()
            .query_row(
                "SELECT state, COALESCE(last_error, '') FROM objects WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (skipped, why) = state("archived-1998.mp3");
    assert_eq!(skipped, "skipped");
    assert!(
        why.contains("DEEP_ARCHIVE") && why.contains("restore it at the source"),
        "{why}"
    );
    let (failed, why) = state("thawing-2001.mp3");
    assert_eq!(failed, "failed");
    assert!(why.contains("restore it at the source first"), "{why}");
    assert_eq!(state("plain.mp3").0, "verified");

    let dest = format!("hub-{audio}");
    let there: Vec<String> = support::list_all(&fx.destination, &dest)
        .await
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(
        there,
        vec!["plain.mp3".to_string()],
        "only the readable object arrives"
    );
    let status = fx.ferry(&["status", "--format", "csv"]);
    let (header, rows) = support::csv_table(&status.stdout, "status");
    let row = rows
        .iter()
        .find(|r| r[0] == audio)
        .expect("a status row for the bucket");
    let column = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
    assert_eq!(
        (column("skipped"), column("failed"), column("verified")),
        ("1", "1", "1"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_c_objects_are_skipped_with_the_reason_and_read_once() {
    use ferry_tools::demo::DemoObject;
    use support::faults::{FaultProxy, Plays};
    // Without the customer's key S3 refuses every read of an SSE-C object:
    // our proxy plays that for keys under one prefix.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            customer_key: Some("locked-".into()),
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::new(
        "sse-c",
        "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"",
    )
    .await;
    let audio = format!("audio{}", fx.suffix);
    let mut set: Vec<DemoObject> = ["locked-single.mp3", "plain.mp3"]
        .iter()
        .map(|k| DemoObject::new(&audio, k.to_string(), 1_000, "audio/mpeg"))
        .collect();
    set.push(
        DemoObject::new(&audio, "locked-multipart.mp3".into(), 0, "audio/mpeg")
            .with_parts(&[5 << 20, 1_000]),
    );
    fx.fill(&set).await;
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace(servers().get("FERRY_SOURCE_ENDPOINT"), &proxy.url());
    let config = fx.dir.path().join("sse-c.toml");
    std::fs::write(&config, text).unwrap();

    let run = ferry_in(fx.dir.path(), &config, &["run", "--once"], &servers().env);
    assert_eq!(run.code, 0, "skipped is not failed: {run:?}");
    for key in ["locked-single.mp3", "locked-multipart.mp3"] {
        let (state, why): (String, String) = fx
            .ledger()
            .query_row(
                "SELECT state, COALESCE(last_error, '') FROM objects WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(state, "skipped", "{key}: {why}");
        assert!(why.contains("SSE-C") && why.contains(key), "{key}: {why}");
    }
    // One GET for the single-part object. For the multipart one, the HEADs
    // of its first and last parts, of the whole (for its stored checksum)
    // and its tags, asked side by side, then a 1-byte GET that says why:
    // refusals are final, nothing is retried.
    assert_eq!(
        proxy
            .injected
            .customer_key_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    let there: Vec<String> = support::list_all(&fx.destination, &format!("hub-{audio}"))
        .await
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(there, vec!["plain.mp3".to_string()]);
}
