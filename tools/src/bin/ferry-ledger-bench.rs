//! ferry-ledger-bench: the ledger at scale, fed through the real listing path.
//! It must not talk to S3: the pages come from a generator.
//!
//! ferry-ledger-bench: the ledger at scale. Millions of synthetic listed keys
//! go through the same listing-to-ledger path as a real listing (page by
//! page, one transaction per page, through the writer thread); then the time
//! for `status` and for picking the next batch of work.
//!
//! The pages come from a generator, not S3: this measures the ledger.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use ferry::filter::Filter;
use ferry::ledger::{self, ListedObject, Writer};
use ferry::list::{self, Page, PageSource};
use ferry::store::StoreError;

#[derive(Parser)]
#[command(about = "The ledger at millions of keys: ingest, status, next batch")]
struct Args {
    /// Keys to list.
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Where to put the ledger (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Keys in listing (byte) order, 1,000 a page, as S3 returns them.
struct Synthetic {
    total: u64,
    next: u64,
}

impl PageSource for Synthetic {
    fn name(&self) -> &str {
        "synthetic"
    }

    async fn page(&mut self, _after: Option<&str>) -> Result<Page, StoreError> {
        let end = (self.next + 1000).min(self.total);
        let objects = (self.next..end)
            .map(|i| ListedObject {
                key: format!("feeds/{:06}/onix-{i:010}.xml", i / 10_000),
                size: 2_000 + (i * 7919) % 300_000,
                etag: format!("{:032x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                last_modified: Some("2026-11-01T12:00:00Z".into()),
                storage_class: Some("STANDARD".into()),
                filtered: None,
            })
            .collect();
        self.next = end;
        Ok(Page {
            objects,
            truncated: end < self.total,
        })
    }
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

    println!("\n### Ledger: {} synthetic keys\n", args.keys);
    println!("| step | time s | keys/s | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    for (step, pass) in [
        ("first listing (new keys)", 1),
        ("second listing (unchanged keys)", 2),
    ] {
        let pass_id = writer.call(|c| ledger::start_pass(c)).await?;
        let started = Instant::now();
        let pages = Synthetic {
            total: args.keys,
            next: 0,
        };
        let listed = list::list_into_ledger(
            pages,
            &writer,
            bucket_id,
            pass_id,
            (None, &Filter::default()),
            &stop,
        )
        .await?;
        let took = started.elapsed().as_secs_f64();
        assert_eq!(listed.seen, args.keys, "pass {pass}: keys lost on the way");
        println!(
            "| {step} | {took:.1} | {:.0} | {:.0} |",
            args.keys as f64 / took,
            peak_rss_mib()
        );
    }
    drop(writer);

    // `ferry status` opens its own read-only connection, as here.
    let started = Instant::now();
    let rows = ferry::report::status::read(&path)?;
    let status = started.elapsed().as_secs_f64();
    assert_eq!(rows.iter().map(|r| r.listed).sum::<u64>(), args.keys);
    println!("| `status` | {status:.3} | – | {:.0} |", peak_rss_mib());

    let conn = ledger::open_reader(&path)?;
    for (what, after) in [
        ("next batch, from the start", 0),
        ("next batch, half-way", args.keys as i64 / 2),
    ] {
        let started = Instant::now();
        let batch = ledger::pending_batch(&conn, &[bucket_id], after, 512)?;
        let took = started.elapsed().as_secs_f64();
        assert_eq!(batch.len(), 512.min(args.keys as usize));
        println!(
            "| {what} (512 objects) | {took:.4} | – | {:.0} |",
            peak_rss_mib()
        );
    }
    let size = std::fs::metadata(&path)?.len();
    println!(
        "\nledger file: {:.0} MiB ({:.0} bytes a key)",
        size as f64 / (1 << 20) as f64,
        size as f64 / args.keys as f64
    );
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(())
}
