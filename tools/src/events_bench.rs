//! The event feed measured, and shown: `ferry-bench --events` times each
//! object from its source PUT to a verified copy while a real `ferry run`
//! daemon follows an SQS queue, and counts the requests the feed made against
//! the listings it replaces; `ferry-bench --events-demo` is the demo's events
//! mode. It must not count a copy as done that was not read back equal.
//!
//! moto (scripts/s3-local.sh, :9300; FERRY_MOTO_ENDPOINT) plays AWS: the
//! source bucket, its event notifications and the queue they go to. With
//! `--events-source garage` the objects go to the local Garage source
//! instead and the bench sends each one's event to moto's queue itself, as
//! S3 would: moto, one Python process, saturates near 100 objects a second
//! when it serves the bucket too. Garage is the destination. ferry reaches
//! the source and the queue through counting proxies, so every request it
//! makes is counted by kind; the bench's own requests go direct.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    Delete, Event, NotificationConfiguration, ObjectIdentifier, QueueConfiguration,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use ferry::config::Config;
use ferry::store::{self, Side};

use crate::demo;

/// The interval a daemon without events waits between passes (ferry's default).
const PASS_INTERVAL_SECS: u64 = 15 * 60;
/// Passes a day at that interval.
const PASSES_A_DAY: u64 = 86_400 / PASS_INTERVAL_SECS;
/// ferry's default `full_listing_interval`: the feed's safety net, once a day.
const FULL_LISTINGS_A_DAY: u64 = 1;
/// Keys a LIST request returns at most.
const KEYS_PER_LIST: u64 = 1_000;
/// The receivers ferry keeps on each queue, and SQS's longest long poll:
/// an idle queue costs this many receives a day, whatever the bucket's size.
const IDLE_RECEIVES_A_DAY: u64 = 2 * 86_400 / 20;
/// The projection's large bucket.
const LARGE_BUCKET_KEYS: u64 = 50_000_000;

/// S3 Standard and SQS list prices (us-east-1), USD per request.
const PRICE_LIST: f64 = 0.005 / 1_000.0;
const PRICE_HEAD: f64 = 0.0004 / 1_000.0;
const PRICE_SQS: f64 = 0.40 / 1_000_000.0;

/// The local servers, from the env `scripts/s3-local.sh up` prints.
struct Servers {
    moto: String,
    destination: String,
    /// The Garage that plays the source in config/ferry.toml, if it runs.
    garage_source: Option<String>,
}

impl Servers {
    fn from_env() -> Result<Servers> {
        let get = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: run through scripts/bench.sh or scripts/demo.sh, or eval \"$(scripts/s3-local.sh up)\" first (moto is started unless FERRY_MOTO=0)")
            })
        };
        for name in [
            "FERRY_MOTO_ACCESS_KEY_ID",
            "FERRY_MOTO_SECRET_ACCESS_KEY",
            "FERRY_DEST_ACCESS_KEY_ID",
            "FERRY_DEST_SECRET_ACCESS_KEY",
        ] {
            get(name)?;
        }
        Ok(Servers {
            moto: get("FERRY_MOTO_ENDPOINT")?,
            destination: get("FERRY_DEST_ENDPOINT")?,
            garage_source: std::env::var("FERRY_SOURCE_ENDPOINT").ok(),
        })
    }
}

/// A ferry config with moto or Garage (or a proxy in front of either) as
/// the source and moto's queue as the bucket's feed. The source's region
/// signs the queue's requests too, and moto's SQS keeps queues per region:
/// us-east-1 for moto, Garage's own for Garage (it checks it).
#[allow(clippy::too_many_arguments)]
fn config_text(
    ledger: &Path,
    (source_keys, region): (&str, &str),
    source_endpoint: &str,
    destination_endpoint: &str,
    source: &str,
    destination: &str,
    queue_url: &str,
    top: &str,
) -> String {
    format!(
        r#"ledger = "{ledger}"
{top}

[source]
region = "{region}"
endpoint = "{source_endpoint}"
access_key_id_env = "FERRY_{source_keys}_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_{source_keys}_SECRET_ACCESS_KEY"
path_style = true

[destination]
region = "fsn1"
endpoint = "{destination_endpoint}"
access_key_id_env = "FERRY_DEST_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_DEST_SECRET_ACCESS_KEY"
path_style = true

[[buckets]]
source = "{source}"
destination = "{destination}"
events = "{queue_url}"
"#,
        ledger = ledger.display(),
    )
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

async fn clients(config: &Config) -> (Client, Client) {
    (
        store::client(Side::Source, &config.source, &config.transfer).await,
        store::client(Side::Destination, &config.destination, &config.transfer).await,
    )
}

/// The queue's name: the last part of its URL.
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// Creates (or finds) the source bucket and the queue at moto, empties
/// both, and with `notify` points the bucket's notifications
/// (s3:ObjectCreated:*, s3:ObjectRemoved:*) at the queue (a bucket at moto
/// only). Returns the queue's URL as moto names it.
async fn create_feed(
    config: &Config,
    moto: &str,
    s3: &Client,
    bucket: &str,
    queue: &str,
    notify: bool,
    visibility_timeout: Option<u32>,
) -> Result<String> {
    demo::ensure_bucket(s3, Side::Source, bucket).await?;
    empty_bucket(s3, bucket).await?;
    let sqs = store::queue_client(
        &config.source,
        &config.transfer,
        moto,
        Duration::from_secs(20),
    )
    .await;
    let url = sqs
        .create_queue()
        .queue_name(queue)
        .send()
        .await
        .with_context(|| format!("CreateQueue {queue} at moto"))?
        .queue_url()
        .context("moto named no queue URL")?
        .to_owned();
    if let Some(seconds) = visibility_timeout {
        sqs.set_queue_attributes()
            .queue_url(&url)
            .attributes("VisibilityTimeout".into(), seconds.to_string())
            .send()
            .await
            .with_context(|| format!("SetQueueAttributes {url}"))?;
    }
    // A queue left from an earlier run: its old messages are not this run's.
    // SQS allows one purge a minute (moto too); after that, they are read
    // and deleted instead.
    if sqs.purge_queue().queue_url(&url).send().await.is_err() {
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .with_context(|| format!("ReceiveMessage {url}"))?;
            if got.messages().is_empty() {
                break;
            }
            for m in got.messages() {
                if let Some(handle) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .with_context(|| format!("DeleteMessage {url}"))?;
                }
            }
        }
    }
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names("QueueArn".into())
        .send()
        .await
        .with_context(|| format!("GetQueueAttributes {url}"))?;
    let arn = attributes
        .attributes()
        .and_then(|a| a.iter().find(|(k, _)| k.as_str() == "QueueArn"))
        .map(|(_, v)| v.clone())
        .context("moto gave the queue no ARN")?;
    if !notify {
        return Ok(url);
    }
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .events(Event::from("s3:ObjectRemoved:*"))
                        .build()?,
                )
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("PutBucketNotificationConfiguration {bucket}"))?;
    Ok(url)
}

/// Waits until the queue has a message to receive (none in flight).
async fn until_visible(config: &Config, moto: &str, url: &str, limit: Duration) -> Result<()> {
    let sqs = store::queue_client(
        &config.source,
        &config.transfer,
        moto,
        Duration::from_secs(20),
    )
    .await;
    let started = tokio::time::Instant::now();
    loop {
        let answer = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names("ApproximateNumberOfMessages".into())
            .attribute_names("ApproximateNumberOfMessagesNotVisible".into())
            .send()
            .await
            .with_context(|| format!("GetQueueAttributes {url}"))?;
        let count = |name: &str| {
            answer
                .attributes()
                .and_then(|a| a.iter().find(|(k, _)| k.as_str() == name))
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if count("ApproximateNumberOfMessages") > 0
            && count("ApproximateNumberOfMessagesNotVisible") == 0
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("no message visible on {url} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Undoes [`create_feed`]: notifications off, the bucket emptied and
/// removed, the queue removed.
async fn remove_feed(
    config: &Config,
    moto: &str,
    s3: &Client,
    bucket: &str,
    queue_url: &str,
    notify: bool,
) -> Result<()> {
    if notify {
        s3.put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(NotificationConfiguration::builder().build())
            .send()
            .await?;
    }
    empty_bucket(s3, bucket).await?;
    s3.delete_bucket().bucket(bucket).send().await?;
    let sqs = store::queue_client(
        &config.source,
        &config.transfer,
        moto,
        Duration::from_secs(20),
    )
    .await;
    sqs.delete_queue().queue_url(queue_url).send().await?;
    Ok(())
}

async fn empty_bucket(client: &Client, bucket: &str) -> Result<()> {
    loop {
        let page = client.list_objects_v2().bucket(bucket).send().await?;
        let keys: Vec<ObjectIdentifier> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        client
            .delete_objects()
            .bucket(bucket)
            .delete(
                Delete::builder()
                    .set_objects(Some(keys))
                    .quiet(true)
                    .build()?,
            )
            .send()
            .await?;
    }
}

/// PUTs `body`; returns the ETag.
async fn put(client: &Client, bucket: &str, key: &str, body: Bytes) -> Result<String> {
    let put = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .with_context(|| format!("PutObject {bucket}/{key}"))?;
    Ok(put.e_tag().unwrap_or_default().trim_matches('"').to_owned())
}

/// `t` as S3 writes an event's time: RFC 3339, UTC, milliseconds.
fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

/// One record of S3's own event format, as AWS documents it: what the
/// bench sends for a bucket at Garage, which sends no notifications.
fn s3_event(
    bucket: &str,
    key: &str,
    size: usize,
    etag: &str,
    at: SystemTime,
    sequencer: u64,
) -> String {
    format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-central-1","eventTime":"{time}","eventName":"ObjectCreated:Put","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"{key}","size":{size},"eTag":"{etag}","sequencer":"{sequencer:016X}"}}}}}}]}}"#,
        time = rfc3339_millis(at),
    )
}

/// What the destination holds at `key`, if anything.
async fn held(client: &Client, bucket: &str, key: &str) -> Option<Bytes> {
    let got = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    got.body.collect().await.ok().map(|b| b.into_bytes())
}

/// Polls the destination until it holds `want` at `key` (None: nothing):
/// every 50 ms for 2 s, then every 500 ms, so that many slow copies do not
/// add up to a load of their own. Returns when it first did, or None after
/// `limit`.
async fn until_held(
    client: &Client,
    bucket: &str,
    key: &str,
    want: Option<&[u8]>,
    limit: Duration,
) -> Option<SystemTime> {
    let started = tokio::time::Instant::now();
    loop {
        if held(client, bucket, key).await.as_deref() == want {
            return Some(SystemTime::now());
        }
        if started.elapsed() > limit {
            return None;
        }
        let pause = if started.elapsed() < Duration::from_secs(2) {
            50
        } else {
            500
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn ms_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

// ---------------------------------------------------------------------------
// A counting proxy: every request by kind.

/// A TCP proxy in front of moto that counts each request by what it asks:
/// the SQS action (its `X-Amz-Target`), or the S3 method (a GET with
/// `list-type=` is a LIST). It changes no byte.
struct Counter {
    url: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    async fn start(upstream: &str) -> Result<Counter> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let counted = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counted, upstream) = (counted.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async move {
                        let mut requests = Requests::default();
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            for kind in requests.feed(&buf[..n]) {
                                *counted.lock().unwrap().entry(kind).or_default() += 1;
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Ok(Counter { url, counts, task })
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests read off one connection: headers, then Content-Length bytes of
/// body, then the next request.
#[derive(Default)]
struct Requests {
    buf: Vec<u8>,
    body_left: usize,
    lost: bool,
}

impl Requests {
    fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut kinds = Vec::new();
        if self.lost {
            return kinds;
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.body_left > 0 {
                let n = self.body_left.min(self.buf.len());
                self.buf.drain(..n);
                self.body_left -= n;
                if self.body_left > 0 {
                    return kinds;
                }
            }
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.buf.len() > 1 << 16 {
                    // Not HTTP/1.1 as expected: stop counting this connection.
                    self.lost = true;
                    kinds.push("(not counted)".into());
                }
                return kinds;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end + 4);
            let header = |name: &str| {
                head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            if header("transfer-encoding").is_some() {
                self.lost = true;
                kinds.push("(not counted)".into());
                return kinds;
            }
            self.body_left = header("content-length")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut line = head.lines().next().unwrap_or("").split_whitespace();
            let (method, target) = (line.next().unwrap_or("?"), line.next().unwrap_or(""));
            kinds.push(match header("x-amz-target") {
                Some(t) => format!("SQS {}", t.trim_start_matches("AmazonSQS.")),
                None if method == "GET" && target.contains("list-type=") => "S3 LIST".into(),
                None if method == "GET" && target.contains("uploads") => {
                    "S3 ListMultipartUploads".into()
                }
                None => format!("S3 {method}"),
            });
        }
    }
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

// ---------------------------------------------------------------------------
// The daemon.

/// `ferry run` as a daemon, its output in a file. Dropped while running, it
/// is killed: a failed bench leaves no daemon behind.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(ferry: &Path, config: &Path, log: &Path) -> Result<Daemon> {
        let out = std::fs::File::create(log)?;
        let child = Command::new(ferry)
            .args(["--config"])
            .arg(config)
            .args(["--no-progress", "run"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", ferry.display()))?;
        Ok(Daemon {
            child,
            log: log.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fails with the log's tail if the daemon has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the daemon exited ({status}):\n{}", self.tail(30));
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 60 s).
    async fn terminate(mut self) -> Result<(std::process::ExitStatus, String)> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, self.log()));
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                bail!(
                    "the daemon did not stop within 60 s of SIGTERM:\n{}",
                    self.tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The ledger, read beside the daemon.

fn ledger(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("opening the ledger {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Waits until the daemon has done its first pass and found the queue
/// empty: `event_feeds.drained_at` is set.
async fn until_following(daemon: &mut Daemon, path: &Path) -> Result<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        daemon.alive()?;
        if path.exists() {
            let n: i64 = ledger(path)?
                .query_row(
                    "SELECT COUNT(*) FROM event_feeds WHERE drained_at IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if n > 0 {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!(
                "the daemon did not follow the queue within 90 s:\n{}",
                daemon.tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One key as the ledger holds it.
struct Row {
    state: String,
    /// ferry's own lag: the event's time to the copy read back.
    event_lag_ms: Option<i64>,
    /// When the copy was read back equal, ms since the epoch.
    checked_at_ms: Option<f64>,
}

fn rows(path: &Path, prefix: &str) -> Result<HashMap<String, Row>> {
    let conn = ledger(path)?;
    let mut stmt = conn.prepare(
        "SELECT o.key, o.state, o.event_lag_ms,
                (julianday(v.checked_at) - 2440587.5) * 86400000.0
         FROM objects o LEFT JOIN verifications v ON v.object_id = o.id AND v.ok
         WHERE substr(o.key, 1, length(?1)) = ?1",
    )?;
    let rows = stmt
        .query_map([prefix], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Row {
                    state: r.get(1)?,
                    event_lag_ms: r.get(2)?,
                    checked_at_ms: r.get(3)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn done(row: &Row) -> bool {
    row.state == "verified"
        && row.event_lag_ms.is_some_and(|l| l >= 0)
        && row.checked_at_ms.is_some()
}

// ---------------------------------------------------------------------------
// Figures.

/// p50, p95 and max of `ms` (nearest rank), in seconds.
fn spread(ms: &[f64]) -> Option<(f64, f64, f64)> {
    if ms.is_empty() {
        return None;
    }
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((rank(50.0) / 1e3, rank(95.0) / 1e3, v[v.len() - 1] / 1e3))
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn lists_per_pass(keys: u64) -> u64 {
    keys.div_ceil(KEYS_PER_LIST).max(1)
}

// ---------------------------------------------------------------------------
// The bench.

/// Where the bench's objects are PUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsSource {
    /// A bucket at moto, whose notifications moto delivers to its own SQS.
    Moto,
    /// A bucket at the local Garage source; the bench sends each PUT's event,
    /// in S3's own format, to moto's SQS itself (Garage sends none). moto
    /// then serves the queue only.
    Garage,
}

impl EventsSource {
    fn name(self) -> &'static str {
        match self {
            EventsSource::Moto => "moto",
            EventsSource::Garage => "Garage",
        }
    }
}

pub struct BenchOptions {
    pub ferry: PathBuf,
    pub source: EventsSource,
    /// Objects PUT at the source per second.
    pub rate: u32,
    pub seconds: u64,
    /// Each object's size in bytes.
    pub size: usize,
}

/// One PUT at the source, as the bench saw it.
struct Written {
    key: String,
    body: Bytes,
    /// When the PUT was sent and when it was answered, ms since the epoch.
    sent_ms: f64,
    answered_ms: f64,
    /// With a Garage source: when the bench's SendMessage of its event was answered.
    event_sent_ms: Option<f64>,
    /// Sampled objects only: when a GET at the destination first gave its bytes.
    seen_equal_ms: Option<Option<f64>>,
}

/// What the source serves on this machine now, with no daemon: objects a
/// second when each is PUT, HEADed and read back (the requests an object
/// costs the source under the feed, besides the queue's), 32 at once, in a
/// bucket with no notifications.
async fn source_ceiling(s3: &Client, bucket: &str, size: usize) -> Result<f64> {
    use futures::{StreamExt, TryStreamExt};
    demo::ensure_bucket(s3, Side::Source, bucket).await?;
    let n = 400u64;
    let started = tokio::time::Instant::now();
    let served = futures::stream::iter(0..n)
        .map(|i| async move {
            let key = format!("ceiling/{i:04}");
            put(s3, bucket, &key, demo::content(i, 0, size)).await?;
            s3.head_object().bucket(bucket).key(&key).send().await?;
            let got = s3.get_object().bucket(bucket).key(&key).send().await?;
            got.body.collect().await?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    empty_bucket(s3, bucket).await?;
    s3.delete_bucket().bucket(bucket).send().await?;
    served?;
    Ok(rate)
}

/// Runs the events bench; returns its tables (Markdown).
pub async fn bench(o: &BenchOptions) -> Result<String> {
    let servers = Servers::from_env()?;
    if !o.ferry.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release`",
            o.ferry.display()
        );
    }
    let work = std::env::temp_dir().join(format!("ferry-bench-events-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let tag = format!("{:06x}", fastrand::u32(..0xff_ffff));
    let (source, destination) = (
        format!("bench-events-{tag}"),
        format!("bench-events-{tag}-copy"),
    );
    let queue = format!("bench-events-{tag}");
    let ledger_path = work.join("ledger.sqlite");
    let garage = o.source == EventsSource::Garage;
    let (source_endpoint, source_keys) = if garage {
        let endpoint = servers.garage_source.clone().context(
            "FERRY_SOURCE_ENDPOINT is not set: eval \"$(scripts/s3-local.sh up)\" first",
        )?;
        (endpoint, ("SOURCE", "eu-central-1"))
    } else {
        (servers.moto.clone(), ("MOTO", "us-east-1"))
    };
    // The bench's own clients reach the source and moto directly.
    let direct = work.join("direct.toml");
    write_private(
        &direct,
        &config_text(
            &ledger_path,
            source_keys,
            &source_endpoint,
            &servers.destination,
            &source,
            &destination,
            &format!("{}/123456789012/{queue}", servers.moto),
            "",
        ),
    )?;
    let direct = Config::load(&direct)?;
    let (s3, dst) = clients(&direct).await;
    eprintln!(
        "bench: events: bucket {source} at {}, queue {queue} at moto, {destination} at the destination",
        o.source.name()
    );
    let measured = async {
        let ceiling = source_ceiling(&s3, &format!("{source}-ceiling"), o.size).await?;
        eprintln!(
            "bench: events: {} serves {ceiling:.0} objects/s of PUT + HEAD + GET with no daemon",
            o.source.name()
        );
        let queue_url =
            create_feed(&direct, &servers.moto, &s3, &source, &queue, !garage, None).await?;
        demo::ensure_bucket(&dst, Side::Destination, &destination).await?;
        let plan = Plan {
            direct: &direct,
            source_endpoint: &source_endpoint,
            source_keys,
            ceiling,
        };
        measure(
            o,
            &plan,
            &servers,
            &work,
            &s3,
            &dst,
            (&source, &destination),
            &queue_url,
        )
        .await
    }
    .await;
    // Cleaned up whatever happened (moto names a queue by its account and name).
    let queue_url = format!("{}/123456789012/{queue}", servers.moto);
    if let Err(e) = remove_feed(&direct, &servers.moto, &s3, &source, &queue_url, !garage).await {
        eprintln!("bench: events: could not remove {source} or its queue: {e:#}");
    }
    let removed = async {
        empty_bucket(&dst, &destination).await?;
        dst.delete_bucket().bucket(&destination).send().await?;
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = removed.await {
        eprintln!("bench: events: could not remove {destination}: {e:#}");
    }
    match &measured {
        Ok((_, true)) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        _ => eprintln!(
            "bench: events: kept {} (the daemon's log and its ledger) for a look",
            work.display()
        ),
    }
    measured.map(|(table, _)| table)
}

/// What [`measure`] needs besides the buckets.
struct Plan<'a> {
    /// The config with the source and moto reached directly.
    direct: &'a Config,
    source_endpoint: &'a str,
    /// `FERRY_{source_keys}_ACCESS_KEY_ID` and so on, and the region.
    source_keys: (&'static str, &'static str),
    /// The source's ceiling, objects a second.
    ceiling: f64,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    o: &BenchOptions,
    plan: &Plan<'_>,
    servers: &Servers,
    work: &Path,
    s3: &Client,
    dst: &Client,
    (source, destination): (&str, &str),
    queue_url: &str,
) -> Result<(String, bool)> {
    let garage = o.source == EventsSource::Garage;
    let ceiling = plan.ceiling;
    // ferry reaches the source and the queue through counters.
    let source_counter = Counter::start(plan.source_endpoint).await?;
    let queue_counter = Counter::start(&servers.moto).await?;
    let counts = || {
        let mut all = source_counter.counts();
        for (k, v) in queue_counter.counts() {
            *all.entry(k).or_default() += v;
        }
        all
    };
    let ledger_path = work.join("ledger.sqlite");
    let config_path = work.join("ferry.toml");
    write_private(
        &config_path,
        &config_text(
            &ledger_path,
            plan.source_keys,
            &source_counter.url,
            &servers.destination,
            source,
            destination,
            &queue_url.replacen(&servers.moto, &queue_counter.url, 1),
            "full_listing_interval = \"1h\"",
        ),
    )?;
    // With a Garage source, the bench plays S3's notifications.
    let sqs = store::queue_client(
        &plan.direct.source,
        &plan.direct.transfer,
        &servers.moto,
        Duration::from_secs(20),
    )
    .await;
    let mut daemon = Daemon::start(&o.ferry, &config_path, &work.join("daemon.log"))?;
    let took = until_following(&mut daemon, &ledger_path).await?;
    eprintln!(
        "bench: events: the daemon follows the queue {:.1} s after its start; writing {} objects/s for {} s",
        took.as_secs_f64(),
        o.rate,
        o.seconds
    );
    let before = counts();
    let following_at = tokio::time::Instant::now();

    // The writes: one PUT every 1/rate s, each on its own task so that a
    // slow answer does not slow the rate; every 10th is also polled for at
    // the destination.
    let n = (o.rate as u64 * o.seconds) as usize;
    let sample_every = 10;
    let prefix = "events/";
    let started = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::with_capacity(n);
    // At most 32 PUTs in flight: moto is one Python process, and a pile of
    // waiting PUTs would only slow ferry's own requests to it further.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    // At most 10 objects polled for at once: when copies fall behind,
    // more pollers would only be more load.
    let pollers = Arc::new(tokio::sync::Semaphore::new(10));
    for i in 0..n {
        let key = format!("{prefix}{i:06}.json");
        let body = demo::content(0xe7e7 ^ i as u64, 0, o.size);
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / o.rate as f64)).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let pollers = pollers.clone();
        let (s3, dst, sqs, source, destination, queue_url) = (
            s3.clone(),
            dst.clone(),
            sqs.clone(),
            source.to_owned(),
            destination.to_owned(),
            queue_url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let sent_ms = ms_since_epoch(SystemTime::now());
            let etag = put(&s3, &source, &key, body.clone()).await?;
            let answered = SystemTime::now();
            let answered_ms = ms_since_epoch(answered);
            let event_sent_ms = if garage {
                sqs.send_message()
                    .queue_url(&queue_url)
                    .message_body(s3_event(
                        &source,
                        &key,
                        body.len(),
                        &etag,
                        answered,
                        i as u64 + 1,
                    ))
                    .send()
                    .await
                    .with_context(|| format!("SendMessage of {key}'s event to moto"))?;
                Some(ms_since_epoch(SystemTime::now()))
            } else {
                None
            };
            drop(permit);
            let polling = if i % sample_every == 0 {
                pollers.clone().try_acquire_owned().ok()
            } else {
                None
            };
            let seen_equal_ms = if let Some(_polling) = polling {
                Some(
                    until_held(
                        &dst,
                        &destination,
                        &key,
                        Some(&body),
                        Duration::from_secs(120),
                    )
                    .await
                    .map(ms_since_epoch),
                )
            } else {
                None
            };
            Ok::<_, anyhow::Error>(Written {
                key,
                body,
                sent_ms,
                answered_ms,
                event_sent_ms,
                seen_equal_ms,
            })
        }));
    }
    let mut written = Vec::with_capacity(n);
    for t in tasks {
        written.push(t.await??);
    }
    let first_sent = written.iter().map(|w| w.sent_ms).fold(f64::MAX, f64::min);
    let last_answered = written.iter().map(|w| w.answered_ms).fold(0.0, f64::max);
    let put_rate = n as f64 / ((last_answered - first_sent) / 1e3).max(1e-3);

    // Every key in the ledger as read back, with its lag measured.
    let waited = tokio::time::Instant::now();
    let ledger_rows = loop {
        daemon.alive()?;
        let got = rows(&ledger_path, prefix)?;
        if got.len() == n && got.values().all(done) {
            break got;
        }
        if waited.elapsed() > Duration::from_secs(180) {
            let done = got.values().filter(|r| done(r)).count();
            bail!(
                "after 180 s, {done} of {n} objects are read back with their lag measured:\n{}",
                daemon.tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let window = following_at.elapsed();
    let following = diff(&counts(), &before);
    let feed: (i64, i64) = ledger(&ledger_path)?.query_row(
        "SELECT events, stale_events FROM event_feeds",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;

    let (status, log) = daemon.terminate().await?;
    let stopped = log
        .lines()
        .rev()
        .find(|l| l.contains("followed the event queues"))
        .unwrap_or("(no report of the feed in its log)")
        .to_owned();
    let messages: Option<u64> = stopped
        .split("followed the event queues: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok());

    // Every copy, read back by the bench itself.
    let wrong: Vec<String> = futures::future::join_all(written.iter().map(|w| async move {
        let got = held(dst, destination, &w.key).await;
        (got.as_deref() != Some(&w.body[..])).then(|| w.key.clone())
    }))
    .await
    .into_iter()
    .flatten()
    .collect();

    // A pass over the same keys, counted: what every 15-minute pass costs.
    let before_pass = counts();
    let pass_started = tokio::time::Instant::now();
    let pass = {
        let (ferry, config) = (o.ferry.clone(), config_path.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(ferry)
                .arg("--config")
                .arg(config)
                .args(["--no-progress", "run", "--once"])
                .output()
        })
        .await??
    };
    let pass_took = pass_started.elapsed();
    let pass_requests = diff(&counts(), &before_pass);
    let pass_said = String::from_utf8_lossy(&pass.stdout)
        .lines()
        .find(|l| l.starts_with("pass "))
        .unwrap_or("")
        .to_owned();

    // The lags.
    let by_key: HashMap<&str, &Written> = written.iter().map(|w| (w.key.as_str(), w)).collect();
    let ferry_lags: Vec<f64> = ledger_rows
        .values()
        .filter_map(|r| r.event_lag_ms.map(|l| l as f64))
        .collect();
    let ledger_lags: Vec<f64> = ledger_rows
        .iter()
        .filter_map(|(k, r)| Some(r.checked_at_ms? - by_key.get(k.as_str())?.answered_ms))
        .collect();
    let polled: Vec<&Written> = written
        .iter()
        .filter(|w| w.seen_equal_ms.is_some())
        .collect();
    let poll_lags: Vec<f64> = polled
        .iter()
        .filter_map(|w| Some(w.seen_equal_ms.flatten()? - w.answered_ms))
        .collect();
    let put_times: Vec<f64> = written.iter().map(|w| w.answered_ms - w.sent_ms).collect();
    let event_times: Vec<f64> = written
        .iter()
        .filter_map(|w| Some(w.event_sent_ms? - w.answered_ms))
        .collect();
    let at = match o.source {
        EventsSource::Moto => "at moto, its notifications delivered to its own SQS".to_owned(),
        EventsSource::Garage => {
            "at Garage, each one's S3 event sent to moto's SQS by the bench (Garage sends none)"
                .to_owned()
        }
    };

    let mut out = format!(
        "\n### Events: {} PUTs of {} {at}, {} a second for {} s, followed by `ferry run` into the Garage destination\n\n",
        thousands(n as u64),
        bytesize::ByteSize(o.size as u64).display().iec(),
        o.rate,
        o.seconds,
    );
    out.push_str("| lag from the source PUT to a verified copy | objects | p50 s | p95 s | max s |\n|---|---:|---:|---:|---:|\n");
    let mut worst_p95: f64 = 0.0;
    for (what, lags, counts) in [
        (
            "ferry's own (`objects.event_lag_ms`): the event's time → the copy read back".to_owned(),
            &ferry_lags,
            true,
        ),
        (
            "the bench's clock: PUT answered → the ledger's read-back (`verifications.checked_at`)".to_owned(),
            &ledger_lags,
            true,
        ),
        (
            "the bench's clock: PUT answered → a GET at the destination gives the same bytes (1 in 10 while at most 10 are polled at once; every 50 ms for 2 s, then every 500 ms)".to_owned(),
            &poll_lags,
            true,
        ),
        (
            "of which: PUT answered → its event on the queue (the bench's SendMessage answered)".to_owned(),
            &event_times,
            false,
        ),
        (
            format!("for scale: the PUT at {} itself, sent → answered", o.source.name()),
            &put_times,
            false,
        ),
    ] {
        let Some((p50, p95, max)) = spread(lags) else {
            continue;
        };
        if counts {
            worst_p95 = worst_p95.max(p95);
        }
        out.push_str(&format!(
            "| {what} | {} | {p50:.2} | {p95:.2} | {max:.2} |\n",
            thousands(lags.len() as u64)
        ));
    }
    let missed_polls = polled.len() - poll_lags.len();
    // The rate asked is not the rate measured when the source could not take it.
    let short = put_rate < 0.9 * o.rate as f64;
    let met = worst_p95 <= 5.0 && missed_polls == 0 && wrong.is_empty() && !short;
    out.push_str(&format!(
        "\nTarget p95 ≤ 5 s: {} (the worst p95 above is {worst_p95:.2} s). PUTs arrived at {put_rate:.1}/s; {} alone served {ceiling:.0} objects/s (PUT + HEAD + GET, 32 at once, no daemon) just before. {}{}\n",
        if met {
            "met"
        } else if short {
            "NOT measured: the source did not take the rate"
        } else {
            "NOT met"
        },
        o.source.name(),
        if wrong.is_empty() {
            format!("All {} copies read back byte-equal by the bench after the run.", thousands(n as u64))
        } else {
            format!("{} copies WRONG or missing, e.g. {}.", wrong.len(), wrong[0])
        },
        if missed_polls > 0 {
            format!(" {missed_polls} polled objects never appeared within 120 s.")
        } else {
            String::new()
        },
    ));
    if short {
        out.push_str(&format!(
            "The PUTs arrived at {put_rate:.1}/s, not {}/s: {} could not take them beside the daemon's own requests, and its queue fell behind{}.\n",
            o.rate,
            o.source.name(),
            if o.source == EventsSource::Moto {
                " (moto is one Python process; its SQS scans the whole queue on each receive and delete). `--events-source garage` puts the objects at Garage and only the queue at moto"
            } else {
                ""
            }
        ));
    }
    out.push_str(&format!(
        "The daemon: {} events recorded, {} stale; stopped by SIGTERM with {status}: \"{stopped}\".\n",
        thousands(feed.0 as u64),
        feed.1,
    ));

    // The requests.
    let count = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let receives = count(&following, "SQS ReceiveMessage");
    let deletes =
        count(&following, "SQS DeleteMessageBatch") + count(&following, "SQS DeleteMessage");
    let attributes = count(&following, "SQS GetQueueAttributes");
    let heads = count(&following, "S3 HEAD");
    let feed_requests = receives + deletes + attributes + heads;
    let events = n as u64;
    out.push_str(&format!(
        "\n| ferry's requests to the source and the queue while following ({:.1} s, {} messages) | count | per object written |\n|---|---:|---:|\n",
        window.as_secs_f64(),
        messages.map_or("?".into(), thousands),
    ));
    for (k, v) in &following {
        out.push_str(&format!(
            "| {k} | {} | {:.3} |\n",
            thousands(*v),
            *v as f64 / events as f64
        ));
    }
    if !following.contains_key("S3 LIST") {
        out.push_str("| S3 LIST | 0 | 0 |\n");
    }
    let per_change = feed_requests as f64 / events as f64;
    let per_day = |r: u64| (r as f64 * 86_400.0 / window.as_secs_f64()).round() as u64;
    let feed_a_day = per_day(feed_requests);
    let changes_a_day = per_day(events);
    let pass_lists = count(&pass_requests, "S3 LIST");
    let ranges = ferry::config::DEFAULT_LIST_RANGES as u64;
    let pass_lists_said = if pass_lists > lists_per_pass(n as u64) {
        format!(
            "⌈keys / 1,000⌉ = {}, plus the short last pages of the {ranges} ranges ferry lists a known bucket in. \
The table's first row counts the LISTs measured; the 50 M row ⌈keys / 1,000⌉, to which the ranges add at most {} a pass",
            lists_per_pass(n as u64),
            ranges - 1
        )
    } else {
        "⌈keys / 1,000⌉, as the table counts".to_owned()
    };
    out.push_str(&format!(
        "\nThe feed's own requests are the receives, deletes, queue attributes and HEADs: {per_change:.2} per change here: 1 HEAD, and a receive and a delete per {:.1} messages (a receive takes what is there, up to 10: the busier the queue, the fuller the batch). \
The GETs are the copies, which a pass makes too. One `ferry run --once` over the {} keys afterwards made {pass_lists} LIST request(s) in {:.1} s ({}): {pass_lists_said}.\n",
        events as f64 / receives.max(1) as f64,
        thousands(n as u64),
        pass_took.as_secs_f64(),
        if pass_said.is_empty() {
            format!("exit {}", pass.status)
        } else {
            pass_said.clone()
        },
    ));

    out.push_str(&format!(
        "\nRequests a day. Passes every 15 min (ferry's default `interval`): 96 × ⌈keys / 1,000⌉ LIST. \
The feed, at this run's rate ({} changes a day): its requests in this run × 86,400 s / {:.1} s = {} a day, \
plus its safety net, one full listing a day (`full_listing_interval` = 24h): ⌈keys / 1,000⌉ LIST. \
Both copy the same changed objects, so GETs and PUTs are left out.\n\n",
        thousands(changes_a_day),
        window.as_secs_f64(),
        thousands(feed_a_day),
    ));
    out.push_str("| keys | passes every 15 min: LIST a day | the feed: SQS + HEAD + LIST a day | saved a day | USD a day, passes → feed |\n|---:|---:|---:|---:|---:|\n");
    let sqs_a_day = per_day(receives + deletes + attributes);
    let heads_a_day = per_day(heads);
    for keys in [n as u64, LARGE_BUCKET_KEYS] {
        let per_pass = if keys == n as u64 && pass_lists > 0 {
            pass_lists
        } else {
            lists_per_pass(keys)
        };
        let passes = PASSES_A_DAY * per_pass;
        let listing = FULL_LISTINGS_A_DAY * per_pass;
        let feed_total = feed_a_day + listing;
        let saved = passes as i64 - feed_total as i64;
        out.push_str(&format!(
            "| {} | {} | {} | {}{} | {:.2} → {:.2} |\n",
            thousands(keys),
            thousands(passes),
            thousands(feed_total),
            if saved < 0 { "−" } else { "" },
            thousands(saved.unsigned_abs()),
            passes as f64 * PRICE_LIST,
            sqs_a_day as f64 * PRICE_SQS
                + heads_a_day as f64 * PRICE_HEAD
                + listing as f64 * PRICE_LIST,
        ));
    }
    let break_even = |keys: u64| {
        let room = (PASSES_A_DAY - FULL_LISTINGS_A_DAY) * lists_per_pass(keys);
        room.saturating_sub(IDLE_RECEIVES_A_DAY) as f64 / per_change
    };
    let large_break_even = break_even(LARGE_BUCKET_KEYS);
    let large_cost = |feed: bool| {
        if feed {
            sqs_a_day as f64 * PRICE_SQS
                + heads_a_day as f64 * PRICE_HEAD
                + (FULL_LISTINGS_A_DAY * lists_per_pass(LARGE_BUCKET_KEYS)) as f64 * PRICE_LIST
        } else {
            (PASSES_A_DAY * lists_per_pass(LARGE_BUCKET_KEYS)) as f64 * PRICE_LIST
        }
    };
    out.push_str(&format!(
        "\nThe feed makes fewer requests than 15-minute passes while changes a day < ((96 − 1) × ⌈keys / 1,000⌉ − {idle} receives of an idle queue) ÷ {per_change:.2} requests per change: \
{} changes a day ({:.1}/s) at 50 M keys, {} at {} keys. \
This run's rate, all day, is {} that at 50 M keys in requests, and the feed costs {} in price (${:.2} against ${:.2} a day): \
a LIST is priced as 12.5 HEADs, and an SQS request as one HEAD (S3 Standard and SQS list prices, us-east-1: LIST $0.005 and HEAD $0.0004 per 1,000, SQS $0.40 per million). \
Either way a pass finds a change up to 15 min late (plus its listing's hours at 50 M keys); the feed within the lag above.\n",
        thousands(large_break_even as u64),
        large_break_even / 86_400.0,
        thousands(break_even(n as u64) as u64),
        thousands(n as u64),
        if (changes_a_day as f64) < large_break_even { "within" } else { "past" },
        if large_cost(true) < large_cost(false) { "less" } else { "more" },
        large_cost(true),
        large_cost(false),
        idle = thousands(IDLE_RECEIVES_A_DAY),
    ));
    Ok((out, met))
}

// ---------------------------------------------------------------------------
// The demo's events mode.

pub struct DemoOptions {
    pub ferry: PathBuf,
    /// A config whose source is moto and whose bucket follows a queue there.
    pub config: PathBuf,
}

fn shown(ferry: &Path, config: &Path, args: &str) -> String {
    format!("$ {} -c {} {args}", ferry.display(), config.display())
}

/// Runs ferry with the output shown as it comes; returns its exit code.
async fn ferry_shown(ferry: &Path, config: &Path, args: &[&str]) -> Result<i32> {
    println!("{}", shown(ferry, config, &args.join(" ")));
    let (ferry, config) = (ferry.to_owned(), config.to_owned());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(ferry)
            .arg("-c")
            .arg(config)
            .arg("--no-progress")
            .args(args)
            .status()
    })
    .await??;
    Ok(status.code().unwrap_or(-1))
}

/// The demo's events mode, step by step: the feed set up at moto, the daemon
/// following it, writes copied within a second or so, `status` with its
/// events table, and `cutover`'s sign-off. Ok(true) when cutover signed off.
pub async fn demo(o: &DemoOptions) -> Result<bool> {
    // The keys' env vars, checked with a hint where they come from.
    Servers::from_env()?;
    let config = Config::load(&o.config)?;
    let Some(pair) = config.buckets.iter().find(|b| b.events.is_some()).cloned() else {
        bail!("{}: no [[buckets]] with `events`", o.config.display());
    };
    let queue = pair.events.clone().unwrap();
    let endpoint = config.source.endpoint.clone().unwrap_or_default();
    // The demo empties buckets and removes a ledger: only ever local ones.
    let local =
        |url: &str| url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:");
    if !local(&endpoint) || !local(&queue.url) {
        bail!("{}: the events demo runs against the local moto only (source endpoint {endpoint:?}, queue {:?})", o.config.display(), queue.url);
    }
    let (s3, dst) = clients(&config).await;
    let started = tokio::time::Instant::now();

    println!(
        "-- moto plays AWS: bucket {}, SQS queue {}, and the bucket's notifications (s3:ObjectCreated:*, s3:ObjectRemoved:*) sent to the queue",
        pair.source,
        queue_name(&queue.url)
    );
    let url = create_feed(
        &config,
        &endpoint,
        &s3,
        &pair.source,
        queue_name(&queue.url),
        true,
        // A message received by a receive that was cut off (the daemon's
        // long poll when it stops) is back on the queue 2 s later.
        Some(2),
    )
    .await?;
    if url != queue.url {
        bail!(
            "moto named the queue {url}, the config says {}: fix `events` in {}",
            queue.url,
            o.config.display()
        );
    }
    demo::ensure_bucket(&dst, Side::Destination, &pair.destination).await?;
    empty_bucket(&dst, &pair.destination).await?;
    for end in ["", "-wal", "-shm"] {
        let mut p = config.ledger.clone().into_os_string();
        p.push(end);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    if let Some(dir) = config.ledger.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    println!(
        "   a fresh ledger ({}); {} emptied at the destination",
        config.ledger.display(),
        pair.destination
    );

    let catalog: Vec<(String, Bytes)> = (0..12)
        .map(|i| {
            (
                format!("catalog/book-{i:03}.xml"),
                demo::content(0xca7 ^ i, 0, 2_000 + 500 * i as usize),
            )
        })
        .collect();
    for (key, body) in &catalog {
        put(&s3, &pair.source, key, body.clone()).await?;
    }
    println!(
        "-- {} objects at the source before the daemon starts: its first full pass copies them",
        catalog.len()
    );

    let log = config.ledger.with_extension("log");
    println!(
        "{} &   (the daemon; its log: {})",
        shown(&o.ferry, &o.config, "run"),
        log.display()
    );
    let mut daemon = Daemon::start(&o.ferry, &o.config, &log)?;
    let took = until_following(&mut daemon, &config.ledger).await?;
    println!(
        "   after {:.1} s it follows the queue: its first pass is done, and a receive found the queue empty (event_feeds.drained_at is set; an empty long poll waits 20 s)",
        took.as_secs_f64()
    );

    println!(
        "-- 20 new objects, 10 a second: each is copied when its event arrives, with no listing"
    );
    let mut new = Vec::new();
    let mut waits = Vec::new();
    let t0 = tokio::time::Instant::now();
    for i in 0..20u64 {
        tokio::time::sleep_until(t0 + Duration::from_millis(100 * i)).await;
        let key = format!("releases/2026-12/chapter-{i:02}.mp3");
        let body = demo::content(0xbeef ^ i, 0, 24 << 10);
        put(&s3, &pair.source, &key, body.clone()).await?;
        let answered = SystemTime::now();
        let (dst, bucket, k, b) = (
            dst.clone(),
            pair.destination.clone(),
            key.clone(),
            body.clone(),
        );
        waits.push(tokio::spawn(async move {
            until_held(&dst, &bucket, &k, Some(&b), Duration::from_secs(30)).await
        }));
        new.push((key, body, answered));
    }
    let mut seen = Vec::new();
    for w in waits {
        seen.push(w.await?);
    }
    // ferry's own lag, once the ledger has it.
    let waited = tokio::time::Instant::now();
    let lags = loop {
        let got = rows(&config.ledger, "releases/")?;
        if got.values().filter(|r| done(r)).count() == new.len()
            || waited.elapsed() > Duration::from_secs(30)
        {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut observed = Vec::new();
    for ((key, _, answered), seen) in new.iter().zip(&seen) {
        let Some(seen) = seen else {
            bail!(
                "{key} did not arrive at the destination within 30 s:\n{}",
                daemon.tail(20)
            );
        };
        let after = seen
            .duration_since(*answered)
            .unwrap_or_default()
            .as_secs_f64();
        observed.push(after * 1e3);
        println!(
            "   PUT {key} (24 KiB) → byte-equal at the destination {after:.2} s later; ferry's lag, event → read back: {}",
            lags.get(key)
                .and_then(|r| r.event_lag_ms)
                .map_or("-".into(), |l| format!("{:.2} s", l as f64 / 1e3))
        );
    }
    if let Some((p50, p95, max)) = spread(&observed) {
        println!("   PUT → byte-equal copy: p50 {p50:.2} s, p95 {p95:.2} s, max {max:.2} s");
    }

    let (changed_key, _, _) = &new[0];
    let changed = demo::content(0xf00d, 0, 31 << 10);
    put(&s3, &pair.source, changed_key, changed.clone()).await?;
    let t = tokio::time::Instant::now();
    until_held(
        &dst,
        &pair.destination,
        changed_key,
        Some(&changed),
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("the overwrite of {changed_key} did not arrive"))?;
    println!(
        "-- overwrite {changed_key} → the new bytes at the destination {:.2} s later",
        t.elapsed().as_secs_f64()
    );
    let (gone_key, _, _) = &new[1];
    s3.delete_object()
        .bucket(&pair.source)
        .key(gone_key)
        .send()
        .await?;
    let t = tokio::time::Instant::now();
    if config.delete {
        until_held(
            &dst,
            &pair.destination,
            gone_key,
            None,
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("the delete of {gone_key} did not reach the destination"))?;
        println!(
            "-- delete {gone_key} → a HEAD at the source confirms it, and it is gone at the destination {:.2} s later (delete = true)",
            t.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "-- delete {gone_key} → recorded as deleted; the destination keeps it (delete = false)"
        );
    }

    println!("-- where it stands, while the daemon runs");
    ferry_shown(&o.ferry, &o.config, &["status", "--format", "markdown"]).await?;

    println!(
        "$ kill -TERM {}   (the daemon stops; its last words:)",
        daemon.pid()
    );
    let (status, log_text) = daemon.terminate().await?;
    for line in log_text
        .lines()
        .filter(|l| l.starts_with("followed the event queues") || l.starts_with("pass "))
    {
        println!("   {line}");
    }
    if !status.success() {
        bail!("the daemon exited with {status}");
    }

    let last_key = "releases/2026-12/epilogue.mp3";
    let last = demo::content(0x1a57, 0, 40 << 10);
    put(&s3, &pair.source, last_key, last.clone()).await?;
    println!(
        "-- one last write while no daemon runs ({last_key}): its event waits on the queue. Then the source is frozen, and:"
    );
    // The stopped daemon's last long polls may still be open at moto and
    // take the message with them: it is visible again after the queue's
    // 2 s visibility timeout. cutover is run once it is there to drain.
    let t = tokio::time::Instant::now();
    until_visible(&config, &endpoint, &queue.url, Duration::from_secs(45)).await?;
    println!(
        "   its event is visible on the queue {:.1} s later",
        t.elapsed().as_secs_f64()
    );
    let code = ferry_shown(&o.ferry, &o.config, &["cutover", "--format", "markdown"]).await?;
    let arrived = held(&dst, &pair.destination, last_key).await.as_deref() == Some(&last[..]);
    println!(
        "-- cutover exited {code}; {last_key} is at the destination {}; the events demo took {:.0} s",
        if arrived { "byte-equal" } else { "NOT equal" },
        started.elapsed().as_secs_f64()
    );
    Ok(code == 0 && arrived)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_kind_across_reads_and_bodies() {
        let mut r = Requests::default();
        let body = "{\"QueueUrl\":\"x\",\"WaitTimeSeconds\":20}\r\n\r\nGET / HTTP/1.1";
        let stream = format!(
            "POST / HTTP/1.1\r\nX-Amz-Target: AmazonSQS.ReceiveMessage\r\ncontent-length: {}\r\n\r\n{body}\
             HEAD /b/k HTTP/1.1\r\nHost: x\r\n\r\nGET /b?list-type=2&prefix= HTTP/1.1\r\n\r\nGET /b/k HTTP/1.1\r\n\r\n",
            body.len()
        );
        let mut kinds = Vec::new();
        for piece in stream.as_bytes().chunks(7) {
            kinds.extend(r.feed(piece));
        }
        assert_eq!(
            kinds,
            ["SQS ReceiveMessage", "S3 HEAD", "S3 LIST", "S3 GET"]
        );
    }

    #[test]
    fn spread_is_by_nearest_rank() {
        let ms: Vec<f64> = (1..=100).map(|i| i as f64 * 1000.0).collect();
        assert_eq!(spread(&ms), Some((50.0, 95.0, 100.0)));
        assert_eq!(thousands(50_000_000), "50,000,000");
        assert_eq!(lists_per_pass(3_000), 3);
        assert_eq!(lists_per_pass(3_001), 4);
    }
}
