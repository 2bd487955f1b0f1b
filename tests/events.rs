//! S3 event notifications through SQS (issue 26): a daemon that follows the
//! queue copies each change within seconds, with no listing between; the
//! same events twice or out of order end the same; a kill between the
//! ledger's commit and the message's delete loses nothing; the full listing
//! catches a gap in the feed; `cutover` says when the destination is equal.
//! moto plays AWS as the source and its SQS (it delivers S3's notifications
//! itself, without `sequencer`); Garage or Ceph is the destination.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use support::faults::{FaultProxy, Plays};
use support::{servers, Fixture};
use tokio::io::AsyncBufReadExt;

/// moto is one Python process: the seeded schedules load it enough to
/// stretch the other tests' few-second waits, so they run alone.
static MOTO: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn moto_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MOTO.read().unwrap_or_else(|e| e.into_inner())
}

fn moto_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MOTO.write().unwrap_or_else(|e| e.into_inner())
}

struct World {
    fx: Fixture,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    source: String,
    dest: String,
}

/// A bucket at moto, its queue, and a config that follows it (through
/// `queue_host` if given: a proxy in front of moto's SQS).
async fn world(name: &str, top: &str, notify: bool, queue_host: Option<&str>) -> World {
    let moto = servers().get("FERRY_MOTO_ENDPOINT").to_owned();
    let suffix = format!("-{name}-{:06x}", fastrand::u32(..0xffffff));
    let (source, dest) = (format!("ev{suffix}"), format!("hub-ev{suffix}"));
    let sqs_config = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(&moto)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            servers().get("FERRY_MOTO_ACCESS_KEY_ID"),
            servers().get("FERRY_MOTO_SECRET_ACCESS_KEY"),
            None,
            None,
            "test",
        ))
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(sqs_config);
    let queue = sqs
        .create_queue()
        .queue_name(format!("q{suffix}"))
        // A message read and not deleted comes back after 2 s.
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .expect("queue at moto")
        .queue_url()
        .unwrap()
        .to_owned();
    let events_url = match queue_host {
        Some(host) => queue.replacen(&moto, host, 1),
        None => queue.clone(),
    };
    let events = format!("events = \"{events_url}\"");
    let text = support::moto_source_config(top, &moto, (&source, &dest), &events);
    let fx = support::moto_fixture(name, &suffix, &text, (&source, &dest)).await;
    let w = World {
        fx,
        sqs,
        queue,
        source,
        dest,
    };
    if notify {
        w.notify(true).await;
    }
    w
}

impl World {
    /// Switches the bucket's notifications to the queue on or off.
    async fn notify(&self, on: bool) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let mut config = NotificationConfiguration::builder();
        if on {
            config = config.queue_configurations(
                QueueConfiguration::builder()
                    .queue_arn(arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .events(Event::from("s3:ObjectRemoved:*"))
                    .build()
                    .unwrap(),
            );
        }
        self.fx
            .source
            .put_bucket_notification_configuration()
            .bucket(&self.source)
            .notification_configuration(config.build())
            .send()
            .await
            .expect("notification configuration at moto");
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> String {
        let put = self
            .fx
            .source
            .put_object()
            .bucket(&self.source)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .expect("put at moto");
        put.e_tag().unwrap().trim_matches('"').to_owned()
    }

    async fn delete(&self, key: &str) {
        self.fx
            .source
            .delete_object()
            .bucket(&self.source)
            .key(key)
            .send()
            .await
            .expect("delete at moto");
    }

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

    /// Waits up to `limit` for the destination to hold `want` at `key`
    /// (None: nothing); returns how long it took.
    async fn until_destination(&self, key: &str, want: Option<&[u8]>, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let held = self.at_destination(key).await;
            if held.as_deref() == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{key} at the destination is not {} after {limit:?} (it holds {} bytes)",
                want.map_or("gone".to_owned(), |w| format!("{} bytes", w.len())),
                held.map_or(0, |h| h.len())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `bodies` to the queue, as S3 (or a test) would.
    async fn send(&self, bodies: &[String]) {
        for body in bodies {
            self.sqs
                .send_message()
                .queue_url(&self.queue)
                .message_body(body)
                .send()
                .await
                .expect("send to moto's queue");
        }
    }

    fn passes(&self) -> i64 {
        self.fx.count("SELECT COUNT(*) FROM passes")
    }

    fn feed(&self, column: &str) -> i64 {
        self.fx
            .count(&format!("SELECT COALESCE({column}, 0) FROM event_feeds"))
    }

    /// Waits until the daemon's first pass is done and it follows the queue.
    async fn until_following(&self) {
        let started = Instant::now();
        while self
            .fx
            .count("SELECT COUNT(*) FROM event_feeds WHERE drained_at IS NOT NULL")
            == 0
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the daemon never followed the queue"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Messages on the queue, visible or not.
    async fn on_queue(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let got = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        got.attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    }
}

/// A ferry daemon whose log is kept, read as it runs.
struct Daemon {
    child: tokio::process::Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(fx: &Fixture) -> Daemon {
        let mut child = fx.spawn_ferry(&["run"]);
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        Daemon { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// One record of S3's own event format, as AWS documents it.
fn s3_event(bucket: &str, name: &str, key: &str, etag: &str, sequencer: &str) -> String {
    let key = key.replace(' ', "+");
    format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"{time}","eventName":"{name}","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"{key}","size":1,"eTag":"{etag}","sequencer":"{sequencer}"}}}}}}]}}"#,
        time = humantime::format_rfc3339_millis(std::time::SystemTime::now()),
    )
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| fastrand::u8(..)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_with_events_copies_each_change_within_seconds_without_a_listing_and_the_next_full_listing_catches_a_gap(
) {
    let _moto = moto_shared();
    // The gap must be older than the feed's delivery allowance (60 s) when
    // the next full listing looks: it comes 90 s after the first.
    let w = world(
        "follow",
        "delete = true\nfull_listing_interval = \"90s\"\ninterval = \"1h\"",
        true,
        None,
    )
    .await;
    let old = bytes(3000);
    w.put("feeds/old.xml", &old).await;
    let daemon = Daemon::start(&w.fx);
    w.until_following().await;
    w.until_destination("feeds/old.xml", Some(&old), Duration::from_secs(30))
        .await;
    let passes = w.passes();

    // A change no event will tell: notifications off for one write.
    w.notify(false).await;
    let gap = bytes(1234);
    w.put("feeds/unannounced.xml", &gap).await;
    w.notify(true).await;

    let new_key = "audio/new book+1 é.mp3";
    let new = bytes(200_000);
    w.put(new_key, &new).await;
    let took = w
        .until_destination(new_key, Some(&new), Duration::from_secs(10))
        .await;
    eprintln!("events: a new object copied {took:?} after its PUT");
    let newer = bytes(5000);
    w.put("feeds/old.xml", &newer).await;
    let took = w
        .until_destination("feeds/old.xml", Some(&newer), Duration::from_secs(10))
        .await;
    eprintln!("events: an overwrite copied {took:?} after its PUT");
    w.delete(new_key).await;
    let took = w
        .until_destination(new_key, None, Duration::from_secs(10))
        .await;
    eprintln!("events: a delete removed {took:?} after it");
    assert_eq!(w.passes(), passes, "no listing ran between the events");
    assert!(
        w.at_destination("feeds/unannounced.xml").await.is_none(),
        "nothing told ferry of it yet"
    );
    let state: String =
        w.fx.ledger()
            .query_row(
                "SELECT state FROM objects WHERE key = ?1",
                ["feeds/old.xml"],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(state, "verified", "the overwrite was read back");
    assert!(
        w.fx.count("SELECT COUNT(*) FROM objects WHERE event_lag_ms IS NOT NULL") >= 1,
        "each event's lag is measured"
    );

    // The next full listing is the safety net: it copies the change the
    // feed missed, and says the feed has a gap.
    w.until_destination(
        "feeds/unannounced.xml",
        Some(&gap),
        Duration::from_secs(120),
    )
    .await;
    assert!(w.passes() > passes);
    let started = Instant::now();
    while !daemon.log().contains("gap in the feed") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the gap is not named:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("gap in the feed")).unwrap();
    assert!(line.contains("feeds/unannounced.xml"), "{line}");
    assert_eq!(
        w.feed("missed_keys"),
        1,
        "only the unannounced key was missed"
    );
    let status = w.fx.ferry(&["status", "--format", "json"]);
    assert!(status.stdout.contains("lag_seconds"), "{status:?}");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_twice_and_out_of_order_end_the_same_and_an_unreadable_message_stays_on_the_queue() {
    let _moto = moto_shared();
    let w = world("order", "full_listing_interval = \"1h\"", false, None).await;
    let v1 = bytes(1000);
    let e1 = w.put("feeds/a b+c.xml", &v1).await;
    let daemon = Daemon::start(&w.fx);
    w.until_following().await;
    w.until_destination("feeds/a b+c.xml", Some(&v1), Duration::from_secs(30))
        .await;

    // v2 replaces v1 at the source; its event arrives before v1's, and
    // twice. Sequencers of unequal length compare right-padded with zeros:
    // "0A5" is "0A50", after "0A4F".
    let v2 = bytes(2000);
    let e2 = w.put("feeds/a b+c.xml", &v2).await;
    let (bucket, key) = (w.source.clone(), "feeds/a b%2Bc.xml");
    w.send(&[
        s3_event(&bucket, "ObjectCreated:Put", key, &e2, "0A5"),
        s3_event(&bucket, "ObjectCreated:Put", key, &e1, "0A4F"),
        s3_event(&bucket, "ObjectCreated:Put", key, &e2, "0A5"),
        "this is not an event".to_owned(),
    ])
    .await;
    w.until_destination("feeds/a b+c.xml", Some(&v2), Duration::from_secs(10))
        .await;
    let started = Instant::now();
    while w.feed("stale_events") < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stale events: {}",
            w.feed("stale_events")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        w.feed("stale_events"),
        2,
        "the older event and the repeat are both ignored"
    );
    assert_eq!(w.feed("events"), 1, "one event applied");
    assert_eq!(
        w.at_destination("feeds/a b+c.xml").await.as_deref(),
        Some(&v2[..])
    );
    assert_eq!(
        w.on_queue().await,
        1,
        "the unreadable message stays for the redrive policy"
    );
    assert!(daemon.log().contains("cannot read"), "{}", daemon.log());

    // A delete, then the create before it arriving late: the key stays gone.
    w.delete("feeds/a b+c.xml").await;
    w.send(&[
        s3_event(&bucket, "ObjectRemoved:Delete", key, "", "0A6"),
        s3_event(&bucket, "ObjectCreated:Put", key, &e2, "0A5"),
    ])
    .await;
    let started = Instant::now();
    loop {
        let state: String =
            w.fx.ledger()
                .query_row(
                    "SELECT state FROM objects WHERE key = ?1",
                    ["feeds/a b+c.xml"],
                    |r| r.get(0),
                )
                .unwrap();
        if state == "deleted" && w.feed("stale_events") == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "state {state}, stale {}",
            w.feed("stale_events")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_between_the_ledger_commit_and_the_message_delete_loses_nothing_and_copies_nothing_twice(
) {
    let _moto = moto_shared();
    let proxy = FaultProxy::playing(
        servers().get("FERRY_MOTO_ENDPOINT"),
        Plays {
            hold_queue_deletes: true,
            ..Plays::default()
        },
    )
    .await;
    let w = world(
        "kill9",
        "full_listing_interval = \"1h\"",
        false,
        Some(&proxy.url()),
    )
    .await;
    let first = bytes(100);
    w.put("first.xml", &first).await;
    let mut daemon = Daemon::start(&w.fx);
    w.until_following().await;
    // From now on each receive's delete is held: first moto's TestEvent's
    // (one receiver waits on it), then new.mp3's (the other).
    w.notify(true).await;
    let body = bytes(70_000);
    w.put("books/new.mp3", &body).await;
    let started = Instant::now();
    while w
        .fx
        .count("SELECT COUNT(*) FROM objects WHERE key = 'books/new.mp3' AND event_at IS NOT NULL")
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the event never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy
            .injected
            .queue_deletes_held
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    daemon.child.start_kill().unwrap();
    daemon.child.wait().await.unwrap();
    assert!(w.on_queue().await >= 1, "the message was not deleted");

    // Restarted without the hold: the messages come back and change nothing.
    let w2 = w;
    let text = std::fs::read_to_string(&w2.fx.config_path).unwrap();
    std::fs::write(
        &w2.fx.config_path,
        text.replace(&proxy.url(), servers().get("FERRY_MOTO_ENDPOINT")),
    )
    .unwrap();
    let daemon = Daemon::start(&w2.fx);
    w2.until_destination("books/new.mp3", Some(&body), Duration::from_secs(30))
        .await;
    let started = Instant::now();
    while w2.on_queue().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "messages left: {}",
            w2.on_queue().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        w2.fx
            .count("SELECT COUNT(*) FROM objects WHERE attempts > 1"),
        0,
        "no object was copied twice"
    );
    assert_eq!(
        w2.fx
            .count("SELECT COUNT(*) FROM objects WHERE state = 'verified'"),
        2
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn cutover_on_a_frozen_source_exits_0_with_the_time_and_names_a_key_still_different() {
    let _moto = moto_shared();
    let w = world("cutover", "full_listing_interval = \"1h\"", true, None).await;
    let a = bytes(4000);
    w.put("feeds/a.xml", &a).await;
    w.put("feeds/b.xml", &bytes(10)).await;
    let run = w.fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    // Written after the last pass: only the queue tells of it.
    let late = bytes(3333);
    w.put("feeds/late.xml", &late).await;
    let cut = w.fx.ferry(&["cutover"]);
    assert_eq!(cut.code, 0, "{cut:?}");
    assert!(cut.stdout.contains("equal since"), "{}", cut.stdout);
    assert!(cut.stdout.contains("last event"), "{}", cut.stdout);
    assert_eq!(
        w.at_destination("feeds/late.xml").await.as_deref(),
        Some(&late[..])
    );
    assert_eq!(w.on_queue().await, 0, "cutover drained the queue");

    // Another writer changes a copy at the destination: cutover must not
    // sign off, and names the key.
    w.fx.destination
        .put_object()
        .bucket(&w.dest)
        .key("feeds/a.xml")
        .body(ByteStream::from_static(b"someone else"))
        .send()
        .await
        .unwrap();
    let cut = w.fx.ferry(&["cutover"]);
    assert_eq!(cut.code, 1, "{cut:?}");
    assert!(cut.stdout.contains("feeds/a.xml"), "{}", cut.stdout);
    assert!(!cut.stdout.contains("equal since"), "{}", cut.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_that_does_not_answer_is_named_before_the_first_pass() {
    let _moto = moto_shared();
    let w = world("noqueue", "", false, None).await;
    let text = std::fs::read_to_string(&w.fx.config_path).unwrap();
    let missing = w.queue.replace("/q-noqueue", "/no-such-queue-noqueue");
    std::fs::write(&w.fx.config_path, text.replace(&w.queue, &missing)).unwrap();
    w.put("a.xml", b"a").await;
    let run = w.fx.ferry(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&missing), "names the queue: {run:?}");
    assert!(
        run.stderr.contains("sqs:ReceiveMessage"),
        "says what to check: {run:?}"
    );
    assert_eq!(w.passes(), 0, "nothing ran on a feed that cannot be read");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_whose_key_the_source_will_not_head_is_recorded_and_not_lost() {
    let _moto = moto_shared();
    // The proxy answers HEAD and GET of `sse/` keys as S3 does for an SSE-C
    // object asked without its key (400): the HEAD cannot say what the key
    // is, so the event's own word is recorded and the copy decides.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_MOTO_ENDPOINT"),
        Plays {
            customer_key: Some("sse/".into()),
            ..Plays::default()
        },
    )
    .await;
    let w = world("nohead", "full_listing_interval = \"1h\"", true, None).await;
    let text = std::fs::read_to_string(&w.fx.config_path).unwrap();
    let moto = servers().get("FERRY_MOTO_ENDPOINT");
    let text = text.replacen(
        &format!("endpoint = \"{moto}\""),
        &format!("endpoint = \"{}\"", proxy.url()),
        1,
    );
    std::fs::write(&w.fx.config_path, text).unwrap();
    let daemon = Daemon::start(&w.fx);
    w.until_following().await;
    w.put("sse/secret.bin", &bytes(100)).await;
    let started = Instant::now();
    loop {
        let state =
            w.fx.ledger()
                .query_row(
                    "SELECT state FROM objects WHERE key = 'sse/secret.bin'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .unwrap_or_default();
        if state == "skipped" && w.on_queue().await == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "state {state:?}, {} on the queue\n{}",
            w.on_queue().await,
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(w.at_destination("sse/secret.bin").await.is_none());
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_damaged_on_the_way_is_not_read_and_is_applied_when_it_comes_back() {
    let _moto = moto_shared();
    // The proxy in front of moto's SQS changes one byte of the first answer
    // that carries the bucket's name: the event then names a bucket no pair
    // copies, and only the MD5 SQS sent with the body tells.
    let proxy = FaultProxy::playing(
        servers().get("FERRY_MOTO_ENDPOINT"),
        Plays {
            damage_queue_message: Some("ev-damaged-".into()),
            ..Plays::default()
        },
    )
    .await;
    // No notifications: moto's own test event would carry the name first.
    let w = world(
        "damaged",
        "full_listing_interval = \"1h\"",
        false,
        Some(&proxy.url()),
    )
    .await;
    let daemon = Daemon::start(&w.fx);
    w.until_following().await;
    let passes = w.passes();
    let body = bytes(4000);
    let etag = w.put("books/late.mp3", &body).await;
    w.send(&[s3_event(
        &w.source,
        "ObjectCreated:Put",
        "books/late.mp3",
        &etag,
        "01",
    )])
    .await;
    // Left on the queue, it comes back whole after its visibility timeout.
    w.until_destination("books/late.mp3", Some(&body), Duration::from_secs(60))
        .await;
    assert_eq!(
        proxy
            .injected
            .queue_messages_damaged
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(daemon.log().contains("arrived damaged"), "{}", daemon.log());
    assert_eq!(w.passes(), passes, "the feed copied it, not a listing");
    drop(daemon);
}

/// One record of S3's event format without a `sequencer`, as moto sends
/// them: what the feed cannot order, only confirm. The key is form-encoded
/// as S3 does (space as `+`, the rest percent-encoded).
fn unsequenced_event(bucket: &str, name: &str, key: &str, etag: &str) -> String {
    let key: String = key
        .split(' ')
        .map(|part| {
            percent_encoding::utf8_percent_encode(part, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("+");
    format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"{time}","eventName":"{name}","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"{key}","size":1,"eTag":"{etag}"}}}}}}]}}"#,
        time = humantime::format_rfc3339_millis(std::time::SystemTime::now()),
    )
}

/// The keys a feed schedule changes: odd ones among them.
const FEED_KEYS: [&str; 6] = [
    "feeds/a b+c.xml",
    "audio/100%.mp3",
    "plain.bin",
    "é/ü ß.xml",
    "packages/2026/delivery.zip",
    "empty-or-not",
];

/// One seeded schedule against a daemon that follows the queue: writes,
/// overwrites in quick succession, deletes, repeated and out-of-order
/// (unsequenced) events, events naming keys that are gone or changed since,
/// unreadable messages, and kill -9s of the daemon. The last third runs
/// with no restart, so no full listing can stand in for the feed there.
/// Returns how many steps it took.
async fn feed_schedule(seed: u64) -> usize {
    use std::collections::BTreeMap;
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = world(
        &format!("feed{seed}"),
        "delete = true\nfull_listing_interval = \"1h\"\ninterval = \"1h\"",
        true,
        None,
    )
    .await;
    // Objects of 5 MiB and more go as multipart uploads: copies that last
    // long enough for the next version's event to arrive meanwhile.
    let text = std::fs::read_to_string(&w.fx.config_path).unwrap();
    let multipart = "[transfer]\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\n";
    std::fs::write(
        &w.fx.config_path,
        text.replacen("[transfer]\n", multipart, 1),
    )
    .unwrap();
    let mut source: BTreeMap<&str, (Vec<u8>, String)> = BTreeMap::new();
    let mut log: Vec<String> = Vec::new();
    let sizes = [0usize, 1, 1000, 70_000, 300_000, 11 << 20];
    for key in &FEED_KEYS[..2] {
        let body = bytes(sizes[rng.usize(..sizes.len())]);
        let etag = w.put(key, &body).await;
        source.insert(key, (body, etag));
    }
    let mut daemon = Daemon::start(&w.fx);
    w.until_following().await;
    let steps = 30;
    let mut unreadable = 0u64;
    let mut passes_after_last_start = w.passes();
    for step in 0..steps {
        let key = FEED_KEYS[rng.usize(..FEED_KEYS.len())];
        let roll = rng.u32(..100);
        match roll {
            0..=39 => {
                // A write, and sometimes another right behind it: two
                // versions whose events and copies overlap.
                let again = rng.u32(..100) < 30;
                for _ in 0..1 + usize::from(again) {
                    let body = bytes(sizes[rng.usize(..sizes.len())]);
                    let etag = w.put(key, &body).await;
                    log.push(format!("{step}: put {key:?} ({} bytes)", body.len()));
                    source.insert(key, (body, etag));
                }
            }
            40..=54 => {
                if source.remove(key).is_some() {
                    w.delete(key).await;
                    log.push(format!("{step}: delete {key:?}"));
                }
            }
            55..=69 => {
                // The event of an older state, again and late: a create
                // for a key since deleted or overwritten, a delete for a
                // key written since.
                let (name, etag) = match source.get(key) {
                    Some((_, etag)) if rng.bool() => ("ObjectCreated:Put", etag.clone()),
                    Some(_) => ("ObjectRemoved:Delete", String::new()),
                    None => ("ObjectCreated:Put", format!("{:032x}", rng.u128(..))),
                };
                let copies = 1 + rng.usize(..3);
                let body = unsequenced_event(&w.source, name, key, &etag);
                w.send(&vec![body; copies]).await;
                log.push(format!("{step}: {copies} × late {name} for {key:?}"));
            }
            70..=74 => {
                w.send(&[format!("not an event {step}")]).await;
                unreadable += 1;
                log.push(format!("{step}: an unreadable message"));
            }
            75..=84 if step < steps * 2 / 3 => {
                let pause = Duration::from_millis(rng.u64(..400));
                tokio::time::sleep(pause).await;
                daemon.child.start_kill().unwrap();
                daemon.child.wait().await.unwrap();
                log.push(format!("{step}: kill -9 after {pause:?}, restarted"));
                // A daemon lists every bucket once as it starts, then follows.
                let finished = "SELECT COUNT(*) FROM passes WHERE finished_at IS NOT NULL";
                let before = w.fx.count(finished);
                daemon = Daemon::start(&w.fx);
                let started = Instant::now();
                while w.fx.count(finished) == before {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "{}",
                        daemon.log()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                passes_after_last_start = w.passes();
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(..250))).await;
    }
    let schedule = || format!("seed {seed}:\n{}", log.join("\n"));

    // Every key ends as the source holds it, with no listing since the
    // daemon last started: the feed alone brought the last third across.
    let started = Instant::now();
    for key in FEED_KEYS {
        let want = source.get(key).map(|(b, _)| &b[..]);
        loop {
            if w.at_destination(key).await.as_deref() == want {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{key:?} at the destination is not the source's ({}) after 60 s\n{}\n{}",
                want.map_or("gone".into(), |b| format!("{} bytes", b.len())),
                schedule(),
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        w.passes(),
        passes_after_last_start,
        "no listing ran after the daemon last started\n{}",
        schedule()
    );
    // Nothing extra at the destination, and the ledger says what is there.
    let listed =
        w.fx.destination
            .list_objects_v2()
            .bucket(&w.dest)
            .send()
            .await
            .unwrap();
    let mut there: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    there.sort();
    let want: Vec<&str> = source.keys().copied().collect();
    assert_eq!(there, want, "{}", schedule());
    let started = Instant::now();
    loop {
        let states: Vec<(String, String)> = {
            let ledger = w.fx.ledger();
            let mut rows = ledger
                .prepare("SELECT key, state FROM objects ORDER BY key")
                .unwrap();
            rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let settled = states.iter().all(|(key, state)| {
            let present = source.contains_key(key.as_str());
            // Gone: `removed` from the destination, or `deleted` when no
            // copy was ever made.
            (present && state == "verified")
                || (!present && (state == "removed" || state == "deleted"))
        }) && states.len() >= source.len();
        // Only the unreadable messages stay on the queue, for its redrive policy.
        if settled && w.on_queue().await == unreadable {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ledger {states:?}, {} on the queue (unreadable {unreadable})\n{}\n{}",
            w.on_queue().await,
            schedule(),
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(daemon);
    steps
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_feed_schedules_end_with_every_key_as_the_source_holds_it() {
    let _moto = moto_alone();
    // FERRY_FEED_SEEDS=7 replays one schedule; =1-40 runs a range.
    let seeds: Vec<u64> = match std::env::var("FERRY_FEED_SEEDS") {
        Ok(text) => match text.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect(),
            None => vec![text.parse().expect("FERRY_FEED_SEEDS: a seed or a range")],
        },
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        let started = Instant::now();
        let steps = feed_schedule(seed).await;
        eprintln!(
            "feed schedule: seed {seed} passed, {steps} steps in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
