//! ferry-ledger-bench: the ledger at scale, fed through the real listing path.
//! It must not talk to S3: the pages come from a generator.
//!
//! Millions of synthetic listed keys go through the same listing-to-ledger
//! path as a real listing (page by page, one transaction per page, through
//! the writer thread, in key ranges side by side with `--ranges`); then the
//! time for `status` and for picking the next batch of work; how soon the
//! first key is ready to copy while the listing goes on; and `report`'s
//! merge of both stores' listings with the ledger, at the same scale.
//! `--page-delay-ms` makes each page take as long as a store's answer would.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use ferry::config::BucketPair;
use ferry::filter::Filter;
use ferry::ledger::{self, ListedObject, Writer};
use ferry::list::{self, Page, PageSource};
use ferry::report::reconcile::reconcile_pair;
use ferry::report::sorted::{LedgerKeys, StoreKeys};
use ferry::store::{Side, StoreError};

#[derive(Parser)]
#[command(about = "The ledger at millions of keys: ingest, status, next batch")]
struct Args {
    /// Keys to list.
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Where to put the ledger (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Key ranges listed side by side (as `list_ranges`).
    #[arg(long, default_value_t = 1)]
    ranges: usize,
    /// How long each page takes to come back, as from a store far away.
    #[arg(long, default_value_t = 0)]
    page_delay_ms: u64,
    /// The keys' shape (all but `deep` are generated into memory first).
    #[arg(long, value_enum, default_value_t = Shape::Deep)]
    shape: Shape,
}

/// Key shapes found in real buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Shape {
    /// `feeds/000123/onix-0001230000.xml`: 10,000 keys a folder.
    Deep,
    /// `audio/0001234.mp3`: numbered keys in one folder.
    Numbered,
    /// `onix/9783161484100.xml`: ISBN-13s, in a few publishers' blocks.
    Isbn,
    /// `media/<32 hex digits>.mp3`: hashed names.
    Hex,
    /// `deliveries/2024-03-15/delivery-0001234.zip`: one folder a day.
    Dated,
    /// All five at once, a fifth of the keys each.
    Mixed,
}

/// `n` keys of a shape, sorted as a store lists them.
fn shaped_keys(shape: Shape, n: u64) -> Vec<String> {
    let one = |shape: Shape, i: u64| -> String {
        match shape {
            Shape::Deep => key_of(i),
            Shape::Numbered => format!("audio/{i:07}.mp3"),
            Shape::Isbn => {
                let block = ["316", "349", "140", "006"][(i % 4) as usize];
                let body = format!("978{block}{:06}", i / 4);
                let check = body
                    .bytes()
                    .enumerate()
                    .map(|(j, d)| u64::from(d - b'0') * if j % 2 == 0 { 1 } else { 3 })
                    .sum::<u64>();
                format!("onix/{body}{}.xml", (10 - check % 10) % 10)
            }
            Shape::Hex => format!(
                "media/{:032x}.mp3",
                u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
            ),
            Shape::Dated => {
                let day = i * 2_000 / n.max(1);
                let (year, rest) = (2019 + day / 336, day % 336);
                format!(
                    "deliveries/{year}-{:02}-{:02}/delivery-{i:07}.zip",
                    1 + rest / 28,
                    1 + rest % 28
                )
            }
            Shape::Mixed => unreachable!("mixed is made of the others"),
        }
    };
    let mut keys: Vec<String> = match shape {
        Shape::Mixed => {
            let shapes = [
                Shape::Deep,
                Shape::Numbered,
                Shape::Isbn,
                Shape::Hex,
                Shape::Dated,
            ];
            (0..n)
                .map(|i| one(shapes[(i % 5) as usize], i / 5))
                .collect()
        }
        _ => (0..n).map(|i| one(shape, i)).collect(),
    };
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Keys per synthetic "folder": `feeds/000123/` holds keys 1,230,000 on.
const PER_FOLDER: u64 = 10_000;

fn key_of(i: u64) -> String {
    format!("feeds/{:06}/onix-{i:010}.xml", i / PER_FOLDER)
}

/// The index of the first of `total` keys after `after`, any string (the
/// range splitter asks after points between keys): keys are made in order,
/// so a binary search finds it.
fn first_after(after: Option<&str>, total: u64) -> u64 {
    let Some(after) = after else { return 0 };
    let (mut low, mut high) = (0, total);
    while low < high {
        let mid = (low + high) / 2;
        if key_of(mid).as_str() <= after {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// Keys in listing (byte) order, 1,000 a page, as S3 returns them: the
/// deep shape made on the fly (for tens of millions), others from memory.
struct Synthetic {
    total: u64,
    shaped: Option<std::sync::Arc<Vec<String>>>,
    delay: std::time::Duration,
}

fn listed(key: String, i: u64) -> ListedObject {
    ListedObject {
        key,
        size: 2_000 + (i * 7919) % 300_000,
        etag: format!("{:032x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        last_modified: Some("2026-11-01T12:00:00Z".into()),
        storage_class: Some("STANDARD".into()),
        filtered: None,
    }
}

impl PageSource for Synthetic {
    fn name(&self) -> &str {
        "synthetic"
    }

    async fn page(&mut self, after: Option<&str>) -> Result<Page, StoreError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(keys) = &self.shaped {
            let next = keys.partition_point(|k| after.is_some_and(|a| k.as_str() <= a));
            let end = (next + 1000).min(keys.len());
            return Ok(Page {
                objects: (next..end)
                    .map(|i| listed(keys[i].clone(), i as u64))
                    .collect(),
                truncated: end < keys.len(),
                restores: Vec::new(),
            });
        }
        let next = first_after(after, self.total);
        let end = (next + 1000).min(self.total);
        Ok(Page {
            objects: (next..end).map(|i| listed(key_of(i), i)).collect(),
            truncated: end < self.total,
            restores: Vec::new(),
        })
    }
}

/// Polls the ledger, as the copy pool does, on its own read-only connection
/// until a key is pending; returns the seconds since `started`.
fn first_key_ready(
    path: &std::path::Path,
    bucket_id: i64,
    started: Instant,
) -> std::thread::JoinHandle<Result<f64>> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let conn = ledger::open_reader(&path)?;
        loop {
            if !ledger::pending_batch(&conn, &[bucket_id], 0, 1)?.is_empty() {
                return Ok(started.elapsed().as_secs_f64());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    })
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let temp = std::env::temp_dir().join(format!("ferry-ledger-bench-{}", std::process::id()));
    let dir = args.dir.clone().unwrap_or_else(|| temp.clone());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("ledger.sqlite");
    let _ = std::fs::remove_file(&path);
    let writer = Writer::open(&path)?;
    let bucket_id = writer
        .call(|c| ledger::ensure_bucket(c, "onix", "hub-onix", ""))
        .await?;
    let stop = CancellationToken::new();

    println!(
        "\n### Ledger: {} synthetic keys ({:?}), {} range(s), {} ms a page\n",
        args.keys, args.shape, args.ranges, args.page_delay_ms
    );
    let shaped = (args.shape != Shape::Deep)
        .then(|| std::sync::Arc::new(shaped_keys(args.shape, args.keys)));
    let keys = shaped.as_ref().map_or(args.keys, |k| k.len() as u64);
    println!("| step | time s | keys/s | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    for (step, pass) in [
        ("first listing (new keys)", 1),
        ("second listing (unchanged keys)", 2),
    ] {
        let pass_id = writer.call(|c| ledger::start_pass(c)).await?;
        let started = Instant::now();
        // The copy pool's view: how soon the queue holds a key to copy.
        let first_ready = (pass == 1).then(|| first_key_ready(&path, bucket_id, started));
        let pages = || Synthetic {
            total: keys,
            shaped: shaped.clone(),
            delay: std::time::Duration::from_millis(args.page_delay_ms),
        };
        // As ferry plans a fresh listing: probes the first time, the
        // ledger's keys the second.
        let plan = match args.ranges {
            1 => list::RangePlan::default(),
            n => list::plan_ranges(&writer, bucket_id, pages, "", n).await?,
        };
        let listed = list::list_into_ledger(
            pages,
            &writer,
            (bucket_id, pass_id),
            (None, &Filter::default()),
            (plan, args.ranges),
            &stop,
        )
        .await?;
        let took = started.elapsed().as_secs_f64();
        assert_eq!(listed.seen, keys, "pass {pass}: keys lost on the way");
        println!(
            "| {step}, {} splits | {took:.1} | {:.0} | {:.0} |",
            listed.splits,
            keys as f64 / took,
            peak_rss_mib()
        );
        if let Some(ready) = first_ready {
            let ready = ready.join().expect("first-key watcher")?;
            println!(
                "| first key ready to copy, listing still going | {ready:.3} | – | {:.0} |",
                peak_rss_mib()
            );
        }
    }
    drop(writer);

    // `ferry status` opens its own read-only connection, as here.
    let started = Instant::now();
    let rows = ferry::report::status::read(&path)?;
    let status = started.elapsed().as_secs_f64();
    assert_eq!(rows.iter().map(|r| r.listed).sum::<u64>(), keys);
    println!("| `status` | {status:.3} | – | {:.0} |", peak_rss_mib());

    let conn = ledger::open_reader(&path)?;
    for (what, after) in [
        ("next batch, from the start", 0),
        ("next batch, half-way", keys as i64 / 2),
    ] {
        let started = Instant::now();
        let batch = ledger::pending_batch(&conn, &[bucket_id], after, 512)?;
        let took = started.elapsed().as_secs_f64();
        assert_eq!(batch.len(), 512.min(keys as usize));
        println!(
            "| {what} (512 objects) | {took:.4} | – | {:.0} |",
            peak_rss_mib()
        );
    }
    // `ferry report`'s merge: both stores list every key (here, the same
    // generator on each side) against the ledger, in key order.
    let pair = BucketPair {
        source: "onix".into(),
        destination: "hub-onix".into(),
        prefix: String::new(),
        filter: Filter::default(),
        inventory: None,
        ..Default::default()
    };
    let pages = || Synthetic {
        total: keys,
        shaped: shaped.clone(),
        delay: std::time::Duration::ZERO,
    };
    let conns = [ledger::open_reader(&path)?];
    let started = Instant::now();
    let mut problems = Vec::new();
    let counts = reconcile_pair(
        &pair,
        (
            StoreKeys::from_pages(pages(), Side::Source),
            StoreKeys::from_pages(pages(), Side::Destination),
            LedgerKeys::new(&conns, ("onix", "hub-onix", "")),
        ),
        (true, None),
        &mut problems,
    )
    .await?;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(counts.listed, keys, "report: keys lost on the way");
    assert!(problems.is_empty(), "report: {} problems", problems.len());
    println!(
        "| `report` ({} keys a side and in the ledger) | {took:.1} | {:.0} | {:.0} |",
        keys,
        keys as f64 / took,
        peak_rss_mib()
    );

    let size = std::fs::metadata(&path)?.len();
    println!(
        "\nledger file: {:.0} MiB ({:.0} bytes a key)",
        size as f64 / (1 << 20) as f64,
        size as f64 / keys as f64
    );
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(())
}
