//! ferry-bench: ferry side by side with rclone and s3sync on the same local servers,
//! and the servers' own ceiling. It must not count a tool fast that copied wrong.
//!
//! ferry-bench: ferry side by side with rclone and s3sync on the same local
//! servers, and the servers' own ceiling for the same bytes. Prints one table
//! per data set: medians of several runs, every run's copy checked byte-equal
//! so that no tool is counted fast for copying wrong.
//!
//! Run it through `scripts/bench.sh`, which installs the peers and starts the
//! servers; it reads their endpoints and keys from the `FERRY_*` env vars.
//! `--events` measures the event feed's lag instead (`events_bench`), and
//! `--events-demo` is `scripts/demo.sh --events`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use ferry::config::Config;
use ferry::store::{self, Side};
use ferry_tools::demo::{self, DemoObject, Scale};
use ferry_tools::events_bench;

#[derive(Parser)]
#[command(about = "ferry against rclone and s3sync, and the servers' ceiling")]
struct Args {
    /// Data sets: small (10,000 × 16 KiB), large (4 × 1 GiB, half multipart
    /// at the source), mix (the demo's shapes), parts256 (2 × 600 MiB
    /// uploaded at the source in 256 MiB parts: peak RSS, not speed),
    /// large-crc (large, each object with the full-object CRC64NVME that S3
    /// stores by default since 2025, which ferry then computes and checks).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "small,large,mix"
    )]
    sets: Vec<SetName>,
    /// Runs per tool; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Tiny data sets and one run: CI runs this so the bench cannot rot.
    #[arg(long)]
    smoke: bool,
    /// Tools to run besides the ceiling: ferry, rclone, s3sync.
    #[arg(long, value_delimiter = ',', default_value = "ferry,rclone,s3sync")]
    tools: Vec<String>,
    /// The ferry binary to measure.
    #[arg(long, default_value = "target/release/ferry")]
    ferry: PathBuf,
    /// Extra ferry rows, each with these `[transfer]` settings
    /// (e.g. "concurrency = 64"; `;` separates lines).
    #[arg(long)]
    ferry_transfer: Vec<String>,
    /// Also append the tables (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Put the source behind a simulated WAN link (as a Hetzner box sees
    /// AWS): this round trip added, in milliseconds ...
    #[arg(long)]
    wan_rtt_ms: Option<u64>,
    /// ... and this bandwidth each way, in Mbit/s.
    #[arg(long, default_value_t = 1000)]
    wan_mbit: u64,
    /// Only measure each checksum ferry computes on 1 GiB in memory, on one
    /// core (no servers needed), and print GiB/s and CPU-seconds per GiB.
    #[arg(long)]
    hash_speed: bool,
    /// Instead of the data sets: the event feed's lag. A bucket at moto
    /// sends its notifications to an SQS queue that a `ferry run` daemon
    /// follows; objects are PUT at --events-rate a second for
    /// --events-seconds, and each one's time from its PUT to a verified copy
    /// is measured, with the requests the feed made against 15-minute passes.
    /// Needs moto (scripts/s3-local.sh starts it). With --smoke: 20 a second for 5 s.
    #[arg(long, conflicts_with = "events_demo")]
    events: bool,
    /// --events: objects PUT at the source per second.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    events_rate: u32,
    /// --events: for how many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    events_seconds: u64,
    /// --events: where the objects are PUT. moto: its notifications go to
    /// its SQS (one Python process serves the bucket and the queue, and
    /// saturates near 100 objects a second on 2 cores). garage: the local
    /// Garage source, with the bench sending each PUT's event in S3's format
    /// to moto's SQS, as S3 would.
    #[arg(long, value_enum, default_value = "moto")]
    events_source: events_bench::EventsSource,
    /// --events: each object's size in bytes.
    #[arg(long, default_value_t = 4096)]
    events_object_bytes: usize,
    /// The demo's events mode (`scripts/demo.sh --events`), step by step:
    /// sets up the bucket, queue and notifications --events-config names at
    /// moto, runs the daemon, writes, shows `status` and `cutover`'s
    /// sign-off. Exits 1 unless cutover signs off.
    #[arg(long)]
    events_demo: bool,
    /// The config --events-demo runs with.
    #[arg(long, default_value = "config/ferry-events.toml")]
    events_config: PathBuf,
}

/// Each checksum ferry may compute, over 1 GiB held in memory, one core.
fn hash_speed() -> String {
    use ferry::hashing::stored::{Algorithm, ChecksumHasher};
    use ferry::hashing::Hasher;
    let buffer: Vec<u8> = (0..64 * MIB)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let rounds = 16; // 16 × 64 MiB = 1 GiB
    let time = |f: &mut dyn FnMut(&[u8])| {
        let started = Instant::now();
        for _ in 0..rounds {
            f(&buffer);
        }
        started.elapsed().as_secs_f64()
    };
    let mut rows = vec![
        ("MD5 (every part's ETag)", {
            let mut h = Hasher::new(true, false);
            time(&mut |b| h.update(b))
        }),
        ("SHA-256 (every object)", {
            let mut h = Hasher::new(false, true);
            time(&mut |b| h.update(b))
        }),
    ];
    for (name, a) in [
        ("CRC64NVME (S3's default since 2025)", Algorithm::Crc64Nvme),
        ("CRC32C", Algorithm::Crc32c),
        ("CRC32", Algorithm::Crc32),
        ("SHA-1", Algorithm::Sha1),
        ("SHA-256 (a stored one)", Algorithm::Sha256),
    ] {
        let mut h = ChecksumHasher::new(a);
        rows.push((name, time(&mut |b| h.update(b))));
    }
    let mut out = String::from(
        "| checksum over 1 GiB in memory, one core | GiB/s | CPU-s per GiB |\n|---|---:|---:|\n",
    );
    for (name, secs) in rows {
        out += &format!("| {name} | {:.2} | {:.3} |\n", 1.0 / secs, secs);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SetName {
    Small,
    Large,
    LargeCrc,
    Mix,
    Parts256,
}

const MIB: u64 = 1 << 20;

fn data_set(name: SetName, smoke: bool) -> Vec<DemoObject> {
    let (bucket, _) = buckets(name, smoke);
    match name {
        SetName::Small => (0..if smoke { 200 } else { 10_000 })
            .map(|i| DemoObject::new(&bucket, format!("onix/{i:05}.xml"), 16 << 10, "text/xml"))
            .collect(),
        SetName::Large | SetName::LargeCrc => (0..if smoke { 2 } else { 4 })
            .map(|i| {
                let size = if smoke { 24 * MIB + 5 } else { 1024 * MIB };
                let mut o =
                    DemoObject::new(&bucket, format!("audio/book-{i}.mp3"), size, "audio/mpeg");
                o.multipart = i % 2 == 0;
                if name == SetName::LargeCrc {
                    o.checksum = Some((ChecksumAlgorithm::Crc64Nvme, ChecksumType::FullObject));
                }
                o
            })
            .collect(),
        // Parts far over the 64 MiB byte budget: they must stream through.
        SetName::Parts256 => (0..2)
            .map(|i| {
                let (part, last) = if smoke {
                    (6 * MIB, MIB)
                } else {
                    (256 * MIB, 88 * MIB)
                };
                DemoObject::new(&bucket, format!("audio/box-set-{i}.mp3"), 0, "audio/mpeg")
                    .with_parts(&[part, part, last])
            })
            .collect(),
        SetName::Mix => {
            // The demo's four buckets in one: their keys do not overlap.
            let scale = if smoke { Scale::Small } else { Scale::Full };
            // Without the data-quality cases: a tool that mishandles a key
            // such as `covers//x.jpg` would be measured on other bytes.
            let odd: Vec<String> = demo::data_quality_cases("")
                .into_iter()
                .map(|(o, _)| o.key)
                .collect();
            let set: Vec<DemoObject> = demo::data_set(scale, "")
                .into_iter()
                .filter(|o| !odd.contains(&o.key))
                .map(|mut o| {
                    o.bucket = bucket.clone();
                    o
                })
                .collect();
            let mut keys: Vec<&str> = set.iter().map(|o| o.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), set.len(), "the demo's keys overlap");
            set
        }
    }
}

/// The source and destination buckets of a data set. Smoke runs use buckets
/// of their own, so a full data set left on the same servers by an earlier
/// bench does not count as extra objects.
fn buckets(name: SetName, smoke: bool) -> (String, String) {
    let src = format!(
        "bench-{}{}",
        format!("{name:?}").to_lowercase(),
        if smoke { "-smoke" } else { "" }
    );
    let dst = format!("{src}-copy");
    (src, dst)
}

/// What every correct copy must hold: size, MD5 and SHA-256 per key.
struct Expected {
    objects: HashMap<String, (u64, String, String)>,
    bytes: u64,
}

impl Expected {
    fn of(set: &[DemoObject]) -> Expected {
        let objects: HashMap<_, _> = set
            .iter()
            .map(|o| {
                let d = o.expected_digests();
                (o.key.clone(), (o.size, d.md5_hex(), d.sha256_hex()))
            })
            .collect();
        Expected {
            bytes: set.iter().map(|o| o.size).sum(),
            objects,
        }
    }
}

/// One tool with one set of flags: one command, or several run one after
/// another and measured as one (a copy, then a check).
struct Variant {
    tool: &'static str,
    flags: String,
    program: String,
    steps: Vec<Vec<String>>,
    env: Vec<(String, String)>,
    env_remove: Vec<&'static str>,
    /// Which server ceiling it is measured against.
    reads_back: bool,
}

#[derive(Clone)]
struct Endpoints {
    source: String,
    destination: String,
    source_key: (String, String),
    destination_key: (String, String),
}

impl Endpoints {
    fn from_env() -> Result<Endpoints> {
        let get = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: run through scripts/bench.sh, or eval \"$(scripts/s3-local.sh up)\" first")
            })
        };
        Ok(Endpoints {
            source: get("FERRY_SOURCE_ENDPOINT")?,
            destination: get("FERRY_DEST_ENDPOINT")?,
            source_key: (
                get("FERRY_SOURCE_ACCESS_KEY_ID")?,
                get("FERRY_SOURCE_SECRET_ACCESS_KEY")?,
            ),
            destination_key: (
                get("FERRY_DEST_ACCESS_KEY_ID")?,
                get("FERRY_DEST_SECRET_ACCESS_KEY")?,
            ),
        })
    }
}

const SOURCE_REGION: &str = "eu-central-1";
const DESTINATION_REGION: &str = "fsn1";

fn ferry_config(
    ep: &Endpoints,
    dir: &Path,
    (src, dst): (&str, &str),
    file: &str,
    transfer: &str,
) -> Result<PathBuf> {
    let text = format!(
        r#"ledger = "{ledger}"

[source]
region = "{SOURCE_REGION}"
endpoint = "{source}"
access_key_id_env = "FERRY_SOURCE_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_SOURCE_SECRET_ACCESS_KEY"
path_style = true

[destination]
region = "{DESTINATION_REGION}"
endpoint = "{destination}"
access_key_id_env = "FERRY_DEST_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_DEST_SECRET_ACCESS_KEY"
path_style = true

[transfer]
{transfer}

[[buckets]]
source = "{src}"
destination = "{dst}"
"#,
        ledger = dir.join("ledger.sqlite").display(),
        source = ep.source,
        destination = ep.destination,
    );
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

fn variants(
    args: &Args,
    ep: &Endpoints,
    ferry_configs: &[(String, PathBuf)],
    (src, dst): (&str, &str),
) -> Vec<Variant> {
    let mut out = Vec::new();
    if args.tools.iter().any(|t| t == "ferry") {
        for (flags, config) in ferry_configs {
            out.push(Variant {
                tool: "ferry",
                flags: flags.clone(),
                program: args.ferry.display().to_string(),
                steps: vec![vec![
                    "-c".into(),
                    config.display().to_string(),
                    "--no-progress".into(),
                    "run".into(),
                    "--once".into(),
                ]],
                env: vec![],
                env_remove: vec![],
                reads_back: !flags.contains("verify_after_copy = false"),
            });
        }
    }
    if args.tools.iter().any(|t| t == "rclone") {
        let env = |remote: &str, endpoint: &str, key: &(String, String), region: &str| {
            let p = format!("RCLONE_CONFIG_{remote}_");
            vec![
                (format!("{p}TYPE"), "s3".to_string()),
                (format!("{p}PROVIDER"), "Other".into()),
                (format!("{p}ENDPOINT"), endpoint.into()),
                (format!("{p}ACCESS_KEY_ID"), key.0.clone()),
                (format!("{p}SECRET_ACCESS_KEY"), key.1.clone()),
                (format!("{p}REGION"), region.into()),
            ]
        };
        let mut remotes = env("SRC", &ep.source, &ep.source_key, SOURCE_REGION);
        remotes.extend(env(
            "DST",
            &ep.destination,
            &ep.destination_key,
            DESTINATION_REGION,
        ));
        for flags in [
            "",
            "--transfers 16 --checkers 16",
            "--transfers 32 --checkers 32 --fast-list --s3-upload-concurrency 8 --s3-chunk-size 16M",
        ] {
            let mut a = vec!["copy".to_string(), format!("SRC:{src}"), format!("DST:{dst}")];
            a.extend(flags.split_whitespace().map(String::from));
            out.push(Variant {
                tool: "rclone",
                flags: if flags.is_empty() { "defaults".into() } else { flags.into() },
                program: "rclone".into(),
                steps: vec![a],
                env: remotes.clone(),
                // rclone fails on every S3 remote while AWS_CA_BUNDLE is set.
                env_remove: vec!["AWS_CA_BUNDLE"],
                reads_back: false,
            });
        }
        // The peers' way to the proof ferry gives: copy, then download both
        // sides and compare every byte.
        let flags = "--transfers 16 --checkers 16";
        let step = |verb: &str, more: &[&str]| {
            let mut a = vec![verb.to_string(), format!("SRC:{src}"), format!("DST:{dst}")];
            a.extend(more.iter().map(|s| s.to_string()));
            a.extend(flags.split_whitespace().map(String::from));
            a
        };
        out.push(Variant {
            tool: "rclone",
            flags: format!("copy, then check --download; {flags}"),
            program: "rclone".into(),
            steps: vec![step("copy", &[]), step("check", &["--download"])],
            env: remotes.clone(),
            env_remove: vec!["AWS_CA_BUNDLE"],
            reads_back: true,
        });
    }
    if args.tools.iter().any(|t| t == "s3sync") {
        let env = vec![
            ("SOURCE_ACCESS_KEY".to_string(), ep.source_key.0.clone()),
            ("SOURCE_SECRET_ACCESS_KEY".into(), ep.source_key.1.clone()),
            ("TARGET_ACCESS_KEY".into(), ep.destination_key.0.clone()),
            (
                "TARGET_SECRET_ACCESS_KEY".into(),
                ep.destination_key.1.clone(),
            ),
        ];
        // --auto-chunksize in both: without it s3sync exits 3 on sources
        // with multipart objects (ETag warnings).
        for flags in [
            "--worker-size 16 --auto-chunksize",
            "--worker-size 64 --auto-chunksize",
        ] {
            let mut a: Vec<String> = [
                "--source-region",
                SOURCE_REGION,
                "--source-endpoint-url",
                &ep.source,
                "--source-force-path-style",
                "--target-region",
                DESTINATION_REGION,
                "--target-endpoint-url",
                &ep.destination,
                "--target-force-path-style",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.extend(flags.split_whitespace().map(String::from));
            a.push(format!("s3://{src}/"));
            a.push(format!("s3://{dst}/"));
            out.push(Variant {
                tool: "s3sync",
                flags: flags.into(),
                program: "s3sync".into(),
                steps: vec![a],
                env: env.clone(),
                env_remove: vec![],
                reads_back: false,
            });
        }
    }
    out
}

struct Measured {
    wall: Duration,
    /// User plus system CPU seconds.
    cpu: f64,
    /// Connections and requests to the source behind the simulated WAN.
    source_asked: Option<(u64, u64)>,
    /// ferry only: from the start of its pass to its first copied object.
    first_copy: Option<Duration>,
    rss_kib: u64,
    /// Empty when the copy is byte-equal; else what was wrong.
    wrong: String,
    exit: i32,
}

/// What `/usr/bin/time -v` saw of a run.
struct Timed {
    wall: Duration,
    cpu: f64,
    rss_kib: u64,
    exit: i32,
    tail: String,
}

/// Runs one variant's steps under `/usr/bin/time -v`, stopping at the first
/// that fails: wall and CPU time add up, peak RSS is the largest.
fn run_timed(v: &Variant) -> Result<Timed> {
    let mut all = Timed {
        wall: Duration::ZERO,
        cpu: 0.0,
        rss_kib: 0,
        exit: 0,
        tail: String::new(),
    };
    for args in &v.steps {
        let one = run_step(v, args)?;
        all.wall += one.wall;
        all.cpu += one.cpu;
        all.rss_kib = all.rss_kib.max(one.rss_kib);
        (all.exit, all.tail) = (one.exit, one.tail);
        if all.exit != 0 {
            break;
        }
    }
    Ok(all)
}

fn run_step(v: &Variant, args: &[String]) -> Result<Timed> {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v").arg(&v.program).args(args);
    for (k, val) in &v.env {
        cmd.env(k, val);
    }
    for k in &v.env_remove {
        cmd.env_remove(k);
    }
    let started = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("cannot run /usr/bin/time {}: install `time`", v.program))?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|n| n.trim().to_owned())
            .with_context(|| format!("no {name:?} in /usr/bin/time's output"))
    };
    let rss_kib = field("Maximum resident set size (kbytes): ")?.parse()?;
    let cpu = field("User time (seconds): ")?.parse::<f64>()?
        + field("System time (seconds): ")?.parse::<f64>()?;
    let exit = output.status.code().unwrap_or(-1);
    let tail: String = stderr
        .lines()
        .filter(|l| !l.starts_with('\t'))
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    Ok(Timed {
        wall,
        cpu,
        rss_kib,
        exit,
        tail,
    })
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
            break;
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
    for upload in ferry::cleanup::incomplete_uploads(client, bucket).await? {
        client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await?;
    }
    Ok(())
}

/// Every object in `bucket`: its size and bare ETag.
async fn listing(client: &Client, bucket: &str) -> Result<HashMap<String, (u64, String)>> {
    let mut listed = HashMap::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.try_next().await? {
        for o in page.contents() {
            let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_owned();
            listed.insert(
                o.key().unwrap_or_default().to_owned(),
                (o.size().unwrap_or(0) as u64, etag),
            );
        }
    }
    Ok(listed)
}

/// Every expected object at the destination with its bytes, and nothing else.
/// Single-part copies are checked by the server's MD5 of what it received;
/// the rest are read back and hashed.
async fn check_copy(client: &Client, bucket: &str, expected: &Expected) -> Result<String> {
    let listed = listing(client, bucket).await?;
    let mut wrong = Vec::new();
    let extra = listed
        .keys()
        .filter(|k| !expected.objects.contains_key(*k))
        .count();
    if extra > 0 {
        wrong.push(format!("{extra} extra"));
    }
    let mut to_read = Vec::new();
    let mut missing = 0;
    for (key, (size, md5, sha)) in &expected.objects {
        match listed.get(key) {
            None => missing += 1,
            Some((got, _)) if got != size => wrong.push(format!("{key}: {got} bytes, not {size}")),
            Some((_, etag)) if etag == md5 => {}
            Some(_) => to_read.push((key.clone(), sha.clone())),
        }
    }
    if missing > 0 {
        wrong.push(format!("{missing} missing"));
    }
    let differ: Vec<String> = futures::stream::iter(to_read)
        .map(|(key, sha)| async move {
            let got = sha256_of(client, bucket, &key).await?;
            Ok::<_, anyhow::Error>((got != sha).then_some(key))
        })
        .buffer_unordered(4)
        .try_filter_map(|k| async move { Ok(k) })
        .try_collect()
        .await?;
    if !differ.is_empty() {
        wrong.push(format!("{} with other bytes", differ.len()));
    }
    Ok(wrong.join(", "))
}

async fn sha256_of(client: &Client, bucket: &str, key: &str) -> Result<String> {
    let mut body = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.try_next().await? {
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Puts the data set at the source unless it is there already.
async fn fill(client: &Client, bucket: &str, set: &[DemoObject]) -> Result<()> {
    demo::ensure_bucket(client, Side::Source, bucket).await?;
    let present = listing(client, bucket).await?;
    let missing: Vec<&DemoObject> = set
        .iter()
        .filter(|o| present.get(&o.key).map(|(size, _)| size) != Some(&o.size))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("bench: putting {} objects in {bucket}", missing.len());
    futures::stream::iter(missing)
        .map(|o| demo::put(client, o))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The servers alone: every object read from the source with nothing done
/// to the bytes; the same sizes written to the destination from memory; a
/// minimal copy (GET, then PUT of the bytes, no checks, no ledger); and the
/// same with the copy read back (GET, PUT, GET).
async fn ceiling(
    source: &Client,
    destination: &Client,
    set: &[DemoObject],
    dst_bucket: &str,
) -> Result<[Duration; 4]> {
    let concurrency = if set.len() > 100 {
        64
    } else {
        set.len().max(1)
    };
    let started = Instant::now();
    futures::stream::iter(set)
        .map(|o| async move {
            let mut body = source
                .get_object()
                .bucket(&o.bucket)
                .key(&o.key)
                .send()
                .await?
                .body;
            while body.try_next().await?.is_some() {}
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let get = started.elapsed();
    // Bodies are made before the clock starts; each is unique (Garage
    // deduplicates blocks).
    let bodies: Vec<(String, Bytes)> = set
        .iter()
        .map(|o| (o.key.clone(), demo::content(o.seed ^ 1, 0, o.size as usize)))
        .collect();
    let started = Instant::now();
    futures::stream::iter(bodies)
        .map(|(key, body)| put_one(destination, dst_bucket, key, body))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let put = started.elapsed();
    empty_bucket(destination, dst_bucket).await?;
    let started = Instant::now();
    let copy = |read_back: bool| {
        futures::stream::iter(set)
            .map(move |o| async move {
                let got = source
                    .get_object()
                    .bucket(&o.bucket)
                    .key(&o.key)
                    .send()
                    .await?;
                let body = got.body.collect().await?.into_bytes();
                put_one(destination, dst_bucket, o.key.clone(), body).await?;
                if read_back {
                    let mut back = destination
                        .get_object()
                        .bucket(dst_bucket)
                        .key(&o.key)
                        .send()
                        .await?
                        .body;
                    while back.try_next().await?.is_some() {}
                }
                Ok::<_, anyhow::Error>(())
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
    };
    copy(false).await?;
    let get_put = started.elapsed();
    empty_bucket(destination, dst_bucket).await?;
    let started = Instant::now();
    copy(true).await?;
    Ok([get, put, get_put, started.elapsed()])
}

async fn put_one(client: &Client, bucket: &str, key: String, body: Bytes) -> Result<()> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await?;
    Ok(())
}

/// How long after its pass began ferry's first object was copied, from its
/// own ledger: what a user waits for before the first byte lands.
fn first_copy(ledger: &Path) -> Option<Duration> {
    let conn = rusqlite::Connection::open(ledger).ok()?;
    let secs: f64 = conn
        .query_row(
            "SELECT (julianday(MIN(c.copied_at)) - julianday((SELECT MIN(started_at) FROM passes))) * 86400
             FROM copies c",
            [],
            |r| r.get(0),
        )
        .ok()?;
    Some(Duration::from_secs_f64(secs.max(0.0)))
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort_unstable();
    v[v.len() / 2]
}

struct Row {
    tool: String,
    flags: String,
    wall: Duration,
    cpu: Option<f64>,
    rss_mib: Option<f64>,
    /// The ceiling row it is a % of.
    ceiling: Option<Duration>,
    /// Behind the simulated WAN: the tool's connections and requests to
    /// the source, the median of its runs.
    source: Option<(u64, u64)>,
    note: String,
}

/// The link the source sits behind, if any: its bandwidth in MiB/s.
struct Link {
    mib_per_sec: f64,
}

fn render(
    name: SetName,
    expected: &Expected,
    runs: usize,
    rows: &[Row],
    link: Option<&Link>,
) -> String {
    let ferry_wall = rows
        .iter()
        .find(|r| r.tool == "ferry")
        .map(|r| r.wall.as_secs_f64());
    let mut out = format!(
        "\n### {name:?}: {} objects, {:.1} MiB (median of {runs} run{}){}\n\n",
        expected.objects.len(),
        expected.bytes as f64 / MIB as f64,
        if runs == 1 { "" } else { "s" },
        link.map_or(String::new(), |l| format!(
            ", source over a simulated WAN of {:.0} MiB/s",
            l.mib_per_sec
        )),
    );
    let gib = expected.bytes as f64 / (1u64 << 30) as f64;
    out.push_str("| tool | flags | wall s | MiB/s | objects/s | CPU s per GiB | peak RSS MiB | % of its ceiling |");
    out.push_str(if link.is_some() {
        " % of the link | source requests per object (connections) |"
    } else {
        ""
    });
    out.push_str(" time ÷ ferry's | copy |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|");
    out.push_str(if link.is_some() { "---:|---:|" } else { "" });
    out.push_str("---:|---|\n");
    for r in rows {
        let secs = r.wall.as_secs_f64().max(1e-9);
        let mib_per_sec = expected.bytes as f64 / MIB as f64 / secs;
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.1} | {:.0} | {} | {} | {} |",
            r.tool,
            r.flags,
            secs,
            mib_per_sec,
            expected.objects.len() as f64 / secs,
            r.cpu.map_or("–".into(), |c| format!("{:.1}", c / gib)),
            r.rss_mib.map_or("–".into(), |m| format!("{m:.0}")),
            r.ceiling.map_or("–".into(), |c| format!(
                "{:.0} %",
                c.as_secs_f64() / secs * 100.0
            )),
        ));
        if let Some(l) = link {
            out.push_str(&format!(" {:.0} % |", mib_per_sec / l.mib_per_sec * 100.0));
            let objects = expected.objects.len() as f64;
            out.push_str(&match r.source {
                Some((connections, requests)) => {
                    format!(" {:.2} ({connections}) |", requests as f64 / objects)
                }
                None => " – |".into(),
            });
        }
        out.push_str(&format!(
            " {} | {} |\n",
            ferry_wall.map_or("–".into(), |f| format!("{:.2}", secs / f)),
            r.note,
        ));
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.hash_speed {
        print!("{}", hash_speed());
        return Ok(());
    }
    if args.events {
        let (rate, seconds) = if args.smoke {
            (20, 5)
        } else {
            (args.events_rate, args.events_seconds)
        };
        let table = events_bench::bench(&events_bench::BenchOptions {
            ferry: args.ferry.clone(),
            source: args.events_source,
            rate,
            seconds,
            size: args.events_object_bytes,
        })
        .await?;
        println!("{table}");
        if let Some(path) = &args.out {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
                .write_all(table.as_bytes())?;
        }
        return Ok(());
    }
    if args.events_demo {
        let signed_off = events_bench::demo(&events_bench::DemoOptions {
            ferry: args.ferry.clone(),
            config: args.events_config.clone(),
        })
        .await?;
        if !signed_off {
            bail!("the events demo ended without cutover's sign-off");
        }
        return Ok(());
    }
    let runs = if args.smoke { 1 } else { args.runs.max(1) };
    let direct = Endpoints::from_env()?;
    // The tools and the ceiling reach the source through the link; the data
    // set is put there directly.
    let wan = match args.wan_rtt_ms {
        Some(ms) => Some(
            ferry_tools::wan::Wan::start(
                &direct.source,
                Duration::from_millis(ms),
                args.wan_mbit * 1_000_000,
            )
            .await?,
        ),
        None => None,
    };
    let link = wan.as_ref().map(|_| Link {
        mib_per_sec: args.wan_mbit as f64 * 1e6 / 8.0 / MIB as f64,
    });
    let ep = Endpoints {
        source: wan.as_ref().map_or(direct.source.clone(), |w| w.url()),
        ..direct.clone()
    };
    if args.tools.iter().any(|t| t == "ferry") && !args.ferry.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release`",
            args.ferry.display()
        );
    }
    let work = std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id()));
    let mut all = String::new();
    for &name in &args.sets {
        let set = data_set(name, args.smoke);
        let (src, dst) = buckets(name, args.smoke);
        let dir = work.join(format!("{name:?}"));
        std::fs::create_dir_all(&dir)?;
        let config_path = ferry_config(&ep, &dir, (&src, &dst), "ferry.toml", "")?;
        let mut ferry_configs = vec![
            (
                "defaults (reads every copy back)".to_string(),
                config_path.clone(),
            ),
            (
                "verify_after_copy = false".to_string(),
                ferry_config(
                    &ep,
                    &dir,
                    (&src, &dst),
                    "noverify.toml",
                    "verify_after_copy = false",
                )?,
            ),
        ];
        for (i, lines) in args.ferry_transfer.iter().enumerate() {
            let transfer = lines.replace(';', "\n");
            let path = ferry_config(
                &ep,
                &dir,
                (&src, &dst),
                &format!("extra-{i}.toml"),
                &transfer,
            )?;
            ferry_configs.push((lines.clone(), path));
        }
        let config = Config::load(&config_path)?;
        let source = store::client(Side::Source, &config.source, &config.transfer).await;
        let destination =
            store::client(Side::Destination, &config.destination, &config.transfer).await;
        {
            let direct_config = ferry_config(&direct, &dir, (&src, &dst), "direct.toml", "")?;
            let direct_config = Config::load(&direct_config)?;
            let direct_source =
                store::client(Side::Source, &direct_config.source, &direct_config.transfer).await;
            fill(&direct_source, &src, &set).await?;
        }
        demo::ensure_bucket(&destination, Side::Destination, &dst).await?;
        eprintln!("bench: {name:?}: hashing the expected bytes");
        let expected = Expected::of(&set);

        let mut rows = Vec::new();
        let mut ceilings: [Vec<Duration>; 4] = Default::default();
        for _ in 0..runs {
            empty_bucket(&destination, &dst).await?;
            let measured = ceiling(&source, &destination, &set, &dst).await?;
            for (all, one) in ceilings.iter_mut().zip(measured) {
                all.push(one);
            }
        }
        let concurrency = if set.len() > 100 { 64 } else { set.len() };
        let ceilings = ceilings.map(median);
        for (what, wall) in [
            "GET only",
            "PUT only",
            "GET then PUT, no checks",
            "GET, PUT, then GET the copy back",
        ]
        .into_iter()
        .zip(ceilings)
        {
            rows.push(Row {
                tool: "server ceiling".into(),
                flags: format!("{what}, {concurrency} in flight"),
                wall,
                cpu: None,
                rss_mib: None,
                ceiling: None,
                source: None,
                note: "–".into(),
            });
        }
        for v in variants(&args, &ep, &ferry_configs, (&src, &dst)) {
            let mut measured = Vec::new();
            for run in 0..runs {
                empty_bucket(&destination, &dst).await?;
                let _ = std::fs::remove_file(dir.join("ledger.sqlite"));
                let counted_before = wan.as_ref().map(|w| w.counts());
                let Timed {
                    wall,
                    cpu,
                    rss_kib,
                    exit,
                    tail,
                } = run_timed(&v)?;
                let source_asked = wan.as_ref().zip(counted_before).map(|(w, (c0, r0))| {
                    let (c, r) = w.counts();
                    (c - c0, r - r0)
                });
                let wrong = check_copy(&destination, &dst, &expected).await?;
                eprintln!(
                    "bench: {name:?} {} {} run {}: {:.2}s, {} MiB, exit {exit}{}",
                    v.tool,
                    v.flags,
                    run + 1,
                    wall.as_secs_f64(),
                    rss_kib / 1024,
                    if wrong.is_empty() {
                        String::new()
                    } else {
                        format!(", WRONG: {wrong}; {tail}")
                    }
                );
                let first_copy = (v.tool == "ferry")
                    .then(|| first_copy(&dir.join("ledger.sqlite")))
                    .flatten();
                measured.push(Measured {
                    wall,
                    cpu,
                    source_asked,
                    first_copy,
                    rss_kib,
                    wrong,
                    exit,
                });
            }
            let bad: Vec<String> = measured
                .iter()
                .filter(|m| !m.wrong.is_empty() || m.exit != 0)
                .map(|m| format!("exit {}: {}", m.exit, m.wrong))
                .collect();
            rows.push(Row {
                tool: v.tool.into(),
                flags: v.flags.clone(),
                wall: median(measured.iter().map(|m| m.wall).collect()),
                cpu: Some({
                    let mut cpus: Vec<f64> = measured.iter().map(|m| m.cpu).collect();
                    cpus.sort_by(f64::total_cmp);
                    cpus[cpus.len() / 2]
                }),
                ceiling: Some(ceilings[if v.reads_back { 3 } else { 2 }]),
                rss_mib: Some(median(measured.iter().map(|m| m.rss_kib).collect()) as f64 / 1024.0),
                source: wan.as_ref().map(|_| {
                    let asked = |f: fn(&(u64, u64)) -> u64| {
                        median(
                            measured
                                .iter()
                                .filter_map(|m| m.source_asked.as_ref().map(f))
                                .collect(),
                        )
                    };
                    (asked(|a| a.0), asked(|a| a.1))
                }),
                note: if bad.is_empty() {
                    let firsts: Vec<Duration> =
                        measured.iter().filter_map(|m| m.first_copy).collect();
                    if firsts.is_empty() {
                        "byte-equal".into()
                    } else {
                        format!(
                            "byte-equal; first copy {:.2} s after the pass began",
                            median(firsts).as_secs_f64()
                        )
                    }
                } else {
                    format!("WRONG in {}/{runs}: {}", bad.len(), bad.join("; "))
                },
            });
        }
        empty_bucket(&destination, &dst).await?;
        let table = render(name, &expected, runs, &rows, link.as_ref());
        println!("{table}");
        all.push_str(&table);
    }
    let _ = std::fs::remove_dir_all(&work);
    if let Some(path) = &args.out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(all.as_bytes())?;
    }
    Ok(())
}
