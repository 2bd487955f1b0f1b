//! The ferry binary: parse the command line, run a command, and turn errors
//! into sentences and exit codes (0 done, 1 something failed, 2 bad config or usage).

use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command, Output};
use ferry::config::Config;
use ferry::ledger;
use ferry::report::plan::{self, parse_bandwidth, Assumptions};
use ferry::report::quality::{self, Quality};
use ferry::report::render::{emit, render, Format};
use ferry::report::status;
use ferry::run::{Runner, VerifyOptions};

fn main() -> ExitCode {
    return_big_buffers_to_the_os();
    let cli = Cli::parse();
    let bars = match (cli.progress, cli.no_progress) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    ferry::progress::init(
        cli.log_format,
        ferry::progress::wanted(bars, cli.log_format),
    );
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = config;
    if let Some(text) = &cli.shard {
        match ferry::config::Shard::parse(text) {
            Ok(shard) => config.shard = Some(shard),
            Err(e) => {
                eprintln!("ferry: --shard {e}");
                return ExitCode::from(2);
            }
        }
    }
    // A workbook goes to a file: refuse before any work is done.
    if let Command::Plan { out, .. } | Command::Status { out, .. } | Command::Report { out, .. } =
        &cli.command
    {
        if out.format == Format::Xlsx && out.output.is_none() {
            eprintln!(
                "ferry: {}",
                ferry::report::render::OutputError::WorkbookNeedsFile
            );
            return ExitCode::from(2);
        }
    }
    match cli.command {
        Command::Status { out, watch } if watch.is_none() || out.output.is_some() => {
            match status::read(&config.ledger) {
                Ok(rows) => emitted(&[status::table(&rows)], &out),
                Err(e) => fail(&e),
            }
        }
        Command::Status { out, watch } => loop {
            let shown = status::read(&config.ledger)
                .map(|rows| render(&[status::table(&rows)], out.format));
            match (shown, watch) {
                (Ok(text), None) => {
                    print!("{text}");
                    return ExitCode::SUCCESS;
                }
                (Ok(text), Some(every)) => {
                    // Clear the screen and home the cursor, as `watch` does.
                    print!("\x1b[2J\x1b[H{text}");
                    std::thread::sleep(std::time::Duration::from_secs(every.max(1)));
                }
                (Err(e), _) => return fail(&e),
            }
        },
        Command::Run {
            dry_run: true,
            format,
            ..
        } => runtime().block_on(dry_run(config, format)),
        Command::Run { once, .. } => {
            let runtime = runtime();
            if let Some(addr) = cli.metrics_addr {
                // The exporter's listener runs on this runtime.
                if let Err(e) = runtime.block_on(async {
                    ferry::metrics::serve(
                        addr,
                        &ferry::store::FailureKind::ALL.map(ferry::store::FailureKind::label),
                    )
                }) {
                    eprintln!("ferry: {e}");
                    return ExitCode::from(2);
                }
            }
            runtime.block_on(run(config, once))
        }
        Command::Plan {
            bandwidth,
            egress_price_per_gb,
            out,
            deep,
            deep_sample,
            count_tags,
        } => {
            let assumptions = match parse_bandwidth(&bandwidth) {
                Ok(b) if egress_price_per_gb >= 0.0 => Assumptions {
                    bandwidth: b,
                    bandwidth_text: bandwidth,
                    egress_price_per_gb,
                    copy_tags: config.transfer.copy_tags,
                },
                Ok(_) => {
                    eprintln!("ferry: --egress-price-per-gb must not be negative");
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return ExitCode::from(2);
                }
            };
            let deep = deep.then_some(deep_sample as usize);
            runtime().block_on(plan(config, assumptions, deep, count_tags, out))
        }
        Command::Verify {
            sample,
            recopy,
            all,
        } => {
            let sample = match sample
                .as_deref()
                .map(ferry::verify::parse_sample)
                .transpose()
            {
                Ok(s) => s.unwrap_or(1.0),
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = VerifyOptions {
                sample,
                again: all,
                recopy,
            };
            runtime().block_on(verify(config, options))
        }
        Command::Report { fast, out, ledgers } => {
            let ledgers = if ledgers.is_empty() {
                vec![config.ledger.clone()]
            } else {
                ledgers
            };
            match runtime().block_on(ferry::report::reconcile::reconcile(&config, &ledgers, fast)) {
                Ok(r) => {
                    if let Err(e) = emit(&r.tables(), out.format, out.output.as_deref()) {
                        return fail(&e);
                    }
                    if r.is_clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Command::Cleanup { all } => match runtime().block_on(ferry::cleanup::cleanup(&config, all))
        {
            Ok(report) => {
                print!("{}", report.describe());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

async fn run(config: Config, once: bool) -> ExitCode {
    let stop = ferry::shutdown::listen();
    let runner = match Runner::start(config, stop.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if !once {
        ferry::metrics::pass_interval(runner.interval());
    }
    loop {
        let report = match runner.pass().await {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        print!("{}", report.describe());
        if stop.is_cancelled() {
            println!("stopped by a signal; everything acknowledged is in the ledger, and the next run carries on from there");
            return ExitCode::SUCCESS;
        }
        if once {
            return if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        tokio::select! {
            _ = tokio::time::sleep(runner.interval()) => {}
            _ = stop.cancelled() => return ExitCode::SUCCESS,
        }
    }
}

async fn dry_run(config: Config, format: Format) -> ExitCode {
    let runner = match Runner::start_read_only(config, ferry::shutdown::listen()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let per_key = matches!(format, Format::Csv | Format::Json);
    match runner.dry_run(per_key).await {
        Ok(plan) => {
            let tables = if per_key {
                vec![plan.summary(), plan.keys()]
            } else {
                vec![plan.summary()]
            };
            print!("{}", render(&tables, format));
            for f in &plan.list_failures {
                eprintln!("ferry: listing failed: {f}");
            }
            if plan.list_failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&e),
    }
}

async fn verify(config: Config, options: VerifyOptions) -> ExitCode {
    let stop = ferry::shutdown::listen();
    let runner = match Runner::start(config, stop).await {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match runner.verify(options).await {
        Ok(report) => {
            print!("{}", report.describe());
            if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&e),
    }
}

async fn plan(
    config: Config,
    assumptions: Assumptions,
    deep: Option<usize>,
    count_tags: bool,
    out: Output,
) -> ExitCode {
    let listed = ledger::open_reader(&config.ledger)
        .and_then(|c| Ok(plan::all_listed(&c, &config.buckets)?))
        .unwrap_or(false);
    if !listed {
        let runner = match Runner::start_read_only(config.clone(), ferry::shutdown::listen()).await
        {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        if let Err(e) = runner.list_unlisted().await {
            return fail(&e);
        }
    }
    if count_tags {
        if let Err(e) = count_source_tags(&config).await {
            return fail(&e);
        }
    }
    let mut quality = Quality::default();
    if let Some(n) = deep {
        let samples = ledger::open_reader(&config.ledger).and_then(|c| {
            let mut samples = Vec::new();
            for pair in &config.buckets {
                let (keys, of) = quality::content_type_sample(&c, pair, n)?;
                samples.push((pair.clone(), keys, of));
            }
            Ok(samples)
        });
        let samples = match samples {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let source =
            ferry::store::client(ferry::store::Side::Source, &config.source, &config.transfer)
                .await;
        quality::check_content_types(&source, samples, &mut quality).await;
    }
    let tables = ledger::open_reader(&config.ledger).and_then(|c| {
        Ok(plan::plan_tables(
            &c,
            &config.buckets,
            &assumptions,
            quality,
        )?)
    });
    match tables {
        Ok(t) => emitted(&t, &out),
        Err(e) => fail(&e),
    }
}

/// `plan --count-tags`: records each object's tag count in the ledger.
async fn count_source_tags(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let writer = ferry::ledger::Writer::open(&config.ledger)?;
    let source =
        ferry::store::client(ferry::store::Side::Source, &config.source, &config.transfer).await;
    let counted = ferry::list::tag_count::count_tags(&writer, &source, &config.buckets).await?;
    tracing::info!(
        asked = counted.asked,
        gone_since_listing = counted.gone,
        without_tagging = ?counted.without_tagging,
        "tags counted"
    );
    Ok(())
}

/// Prints or writes the tables; an output that cannot be written is exit 1.
fn emitted(tables: &[ferry::report::render::Table], out: &Output) -> ExitCode {
    match emit(tables, out.format, out.output.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry-worker")
        .build()
        .expect("tokio runtime")
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ferry: {e}");
    ExitCode::from(1)
}

/// HTTP read buffers (up to ~400 KiB) come and go on every worker thread.
/// glibc raises its mmap threshold after the first such free and then keeps
/// them in per-thread arenas, where they fragment: peak RSS copying 4 × 1 GiB
/// was 134 MiB with a 64 MiB byte budget, 85 MiB with the threshold pinned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_big_buffers_to_the_os() {
    // SAFETY: mallopt only sets an allocator tunable; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_big_buffers_to_the_os() {}
