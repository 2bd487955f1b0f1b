//! Archived objects (issue 25): restored at the source, once, then copied.
//! moto plays AWS as the source (only it has archive classes and
//! RestoreObject), Garage is the destination, and our fault proxy sits in
//! front of moto to count RestoreObject requests by key and to play what
//! moto lacks: an expired restored copy, an Intelligent-Tiering archive tier.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;
use support::faults::{FaultProxy, Plays};
use support::{servers, Fixture};

/// moto's restores stay under way for the first HEADs after the ask (its
/// state manager counts the requests for the key: the ask, then two HEADs
/// answer `ongoing-request="true"`), then are done. Every test here sets the
/// same, as the setting is moto-wide.
async fn restores_take_a_few_heads() {
    let body =
        r#"{"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 2}}"#;
    let status = moto_post("/moto-api/state-manager/set-transition", body).await;
    assert!(
        status.contains(" 201 ") || status.contains(" 200 "),
        "moto set-transition: {status}"
    );
}

/// A POST to moto's own API; returns its status line.
async fn moto_post(path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let endpoint = servers().get("FERRY_MOTO_ENDPOINT");
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("moto answers");
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

struct World {
    fx: Fixture,
    proxy: FaultProxy,
    source: String,
    dest: String,
    /// Key → (storage class, bytes).
    objects: HashMap<String, (StorageClass, Vec<u8>)>,
}

/// A bucket at moto (through the proxy) holding `objects`, copied to Garage.
async fn world(
    name: &str,
    plays: Plays,
    top: &str,
    objects: &[(&str, StorageClass, usize)],
) -> World {
    restores_take_a_few_heads().await;
    let proxy = FaultProxy::playing(servers().get("FERRY_MOTO_ENDPOINT"), plays).await;
    let suffix = format!("-{name}-{:06x}", fastrand::u32(..0xffffff));
    let (source, dest) = (format!("arch{suffix}"), format!("hub-arch{suffix}"));
    let text = support::moto_source_config(top, &proxy.url(), (&source, &dest), "");
    let fx = support::moto_fixture(name, &suffix, &text, (&source, &dest)).await;
    let mut stored = HashMap::new();
    for (key, class, size) in objects {
        let bytes: Vec<u8> = (0..*size).map(|_| fastrand::u8(..)).collect();
        fx.source
            .put_object()
            .bucket(&source)
            .key(*key)
            .storage_class(class.clone())
            .body(ByteStream::from(bytes.clone()))
            .send()
            .await
            .expect("put at moto");
        stored.insert(key.to_string(), (class.clone(), bytes));
    }
    World {
        fx,
        proxy,
        source,
        dest,
        objects: stored,
    }
}

impl World {
    /// RestoreObject requests that reached moto for `key`.
    fn asked(&self, key: &str) -> usize {
        let restores = self.proxy.injected.restores.lock().unwrap();
        restores.iter().filter(|k| k.as_str() == key).count()
    }

    fn state(&self, key: &str) -> String {
        self.fx
            .ledger()
            .query_row("SELECT state FROM objects WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// The destination's bytes of `key`, if it is there.
    async fn at_destination(&self, key: &str) -> Option<Vec<u8>> {
        let got = self
            .fx
            .destination
            .get_object()
            .bucket(&self.dest)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(got.body.collect().await.unwrap().into_bytes().to_vec())
    }

    fn archived(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, (c, _))| matches!(c, StorageClass::Glacier | StorageClass::DeepArchive))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// While a key waits for its restore, nothing of it is at the destination.
    async fn assert_nothing_restoring_was_copied(&self) {
        for key in self.objects.keys() {
            if self.state(key) == "restoring" {
                assert!(
                    self.at_destination(key).await.is_none(),
                    "{key} is at the destination while its restore is awaited"
                );
            }
        }
    }

    /// `run --once` until nothing waits for a restore (for at most a
    /// minute: ferry asks an awaited restore again after a quarter of its
    /// age); returns how many runs ended with restores still awaited.
    async fn run_until_restored(&self) -> usize {
        let started = std::time::Instant::now();
        let mut waited = 0;
        while started.elapsed() < Duration::from_secs(60) {
            let run = self.fx.ferry(&["run", "--once"]);
            assert_eq!(run.code, 0, "restores waiting are no failure: {run:?}");
            self.assert_nothing_restoring_was_copied().await;
            if self
                .fx
                .count("SELECT COUNT(*) FROM objects WHERE state = 'restoring'")
                == 0
            {
                return waited;
            }
            waited += 1;
            assert!(
                run.stdout.contains("still wait for their restore"),
                "the summary says restores wait: {run:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("restores still awaited after a minute ({waited} runs)");
    }

    /// Every object is at the destination, byte for byte, and verified.
    async fn assert_all_copied_byte_equal(&self) {
        for (key, (_, bytes)) in &self.objects {
            let there = self
                .at_destination(key)
                .await
                .unwrap_or_else(|| panic!("{key} missing"));
            assert!(there == *bytes, "{key} differs at the destination");
            assert_eq!(self.state(key), "verified", "{key}");
        }
        let _ = &self.source;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_objects_are_restored_once_and_copied_only_once_restored() {
    let w = world(
        "restore",
        // moto reads Intelligent-Tiering objects as normal: the proxy plays
        // the archive tier with S3's answer to its GET, once.
        Plays {
            refused_once: Some("tiered".into()),
            ..Plays::default()
        },
        "",
        &[
            ("plain.bin", StorageClass::Standard, 100_000),
            ("cold/flexible.bin", StorageClass::Glacier, 200_000),
            ("cold/deep.bin", StorageClass::DeepArchive, 6 << 20),
            ("tiered.bin", StorageClass::IntelligentTiering, 50_000),
        ],
    )
    .await;

    // Before anything is asked, `plan` gives each tier's cost and time.
    let plan = w.fx.ferry(&["plan", "--format", "csv"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let (header, rows) = support::csv_table(&plan.stdout, "restores");
    let col = |row: &csv::StringRecord, name: &str| {
        row[header.iter().position(|h| h == name).unwrap()].to_owned()
    };
    let mut classes: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                col(r, "storage_class"),
                col(r, "tier"),
                col(r, "objects"),
                col(r, "restore_time"),
            )
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        [
            (
                "DEEP_ARCHIVE".into(),
                "Bulk".into(),
                "1".into(),
                "up to 48 hours".into()
            ),
            (
                "GLACIER".into(),
                "Bulk".into(),
                "1".into(),
                "5–12 hours".into()
            ),
        ],
        "{plan:?}"
    );
    assert_eq!(
        w.proxy.injected.restores.lock().unwrap().len(),
        0,
        "plan asks nothing"
    );

    let first = w.fx.ferry(&["run", "--once"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stdout
            .contains("2 objects still wait for their restore"),
        "{first:?}"
    );
    for key in w.archived() {
        assert_eq!(w.asked(&key), 1, "{key}: one restore asked");
        assert_eq!(w.state(&key), "restoring");
    }
    let status = w.fx.ferry(&["status", "--format", "csv"]);
    let (header, rows) = support::csv_table(&status.stdout, "status");
    let column = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].to_owned();
    assert_eq!(column("restoring"), "2", "{status:?}");
    assert_ne!(column("oldest_restore_hours"), "", "{status:?}");
    w.assert_nothing_restoring_was_copied().await;
    assert_eq!(
        w.at_destination("plain.bin").await.as_deref(),
        Some(&w.objects["plain.bin"].1[..])
    );
    // The archived Intelligent-Tiering object was asked for (moto then
    // says it is not archived, as AWS does once it is back) and copied.
    assert_eq!(w.asked("tiered.bin"), 1);
    assert_eq!(w.asked("plain.bin"), 0);

    let waited = w.run_until_restored().await;
    assert!(
        waited >= 1,
        "moto held the restores under way for a pass at least"
    );
    for key in w.archived() {
        assert_eq!(
            w.asked(&key),
            1,
            "{key}: asked once, however many passes waited"
        );
    }
    w.assert_all_copied_byte_equal().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_while_restores_are_asked_asks_no_object_twice() {
    let objects: Vec<(String, StorageClass, usize)> = (0..6)
        .map(|i| (format!("cold/{i}.bin"), StorageClass::Glacier, 10_000 + i))
        .chain([("plain.bin".to_string(), StorageClass::Standard, 10_000)])
        .collect();
    let refs: Vec<(&str, StorageClass, usize)> = objects
        .iter()
        .map(|(k, c, s)| (k.as_str(), c.clone(), *s))
        .collect();
    // Two asks a second: the asks take three seconds, long enough to be cut.
    let w = world(
        "restore-kill",
        Plays::default(),
        "interval = \"1h\"\nrestore_requests_per_second = 2",
        &refs,
    )
    .await;
    let mut daemon = w.fx.spawn_ferry(&["run"]);
    let asked_sql = "SELECT COUNT(*) FROM archive_restores WHERE requested_at IS NOT NULL";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while w.fx.count(asked_sql) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "ferry asked no restore in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.kill().await.expect("kill -9 ferry");
    let recorded = w.fx.count(asked_sql) as usize;
    let sent = w.proxy.injected.restores.lock().unwrap().len();
    assert!(
        sent <= recorded,
        "an ask left before the ledger held it: {sent} sent, {recorded} recorded"
    );
    assert!(
        recorded < 6,
        "the kill came after every ask ({recorded}): nothing was cut off"
    );

    w.run_until_restored().await;
    for key in w.archived() {
        assert_eq!(w.asked(&key), 1, "{key}: one restore, across the kill");
    }
    w.assert_all_copied_byte_equal().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_copy_that_expired_before_the_copy_is_restored_again() {
    // moto keeps a restored copy readable forever: the proxy plays its
    // expiry with S3's answer to the GET of an archived object, once.
    let w = world(
        "restore-expired",
        Plays {
            refused_once: Some("expiring".into()),
            ..Plays::default()
        },
        "",
        &[("expiring.bin", StorageClass::Glacier, 300_000)],
    )
    .await;
    w.run_until_restored().await;
    assert_eq!(w.asked("expiring.bin"), 2, "asked, expired, asked again");
    assert_eq!(
        w.proxy
            .injected
            .refused_gets
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let asked: i64 =
        w.fx.ledger()
            .query_row("SELECT asked FROM archive_restores", [], |r| r.get(0))
            .unwrap();
    assert_eq!(asked, 2);
    w.assert_all_copied_byte_equal().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_that_may_not_read_restore_states_still_list_and_copy() {
    use ferry_tools::demo::DemoObject;
    // The listing asks for RestoreStatus; AWS may refuse that to credentials
    // that may list. Our proxy plays the refusal in front of Garage.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            refuse_restore_status: true,
            ..Plays::default()
        },
    )
    .await;
    let fx = Fixture::new("restore-status-refused", "").await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..3)
        .map(|i| DemoObject::new(&onix, format!("feeds/{i}.xml"), 2_000, "application/xml"))
        .collect();
    fx.fill(&set).await;
    fx.source_through(&proxy.url());
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("was refused (403): listing without it"),
        "{run:?}"
    );
    let refused = proxy
        .injected
        .restore_status_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    let asked = proxy
        .injected
        .restore_status_asked
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= 1, "the play refused nothing");
    assert_eq!(asked, refused, "asked again after a refusal");
    let copied = fx.count("SELECT COUNT(*) FROM objects WHERE state = 'verified'");
    assert_eq!(copied as usize, set.len());
}
