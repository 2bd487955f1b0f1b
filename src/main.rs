//! The ferry binary: parse the command line, run a command, and turn errors
//! into sentences and exit codes (0 done, 1 something failed, 2 bad config or usage).

use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command, LedgerAction, Output};
use ferry::config::Config;

use ferry::report::plan::{parse_bandwidth, Assumptions};
use ferry::report::render::{emit, render, Format};
use ferry::report::status;
use ferry::run::{Runner, VerifyOptions, VerifyScope};

fn main() -> ExitCode {
    return_big_buffers_to_the_os();
    let cli = Cli::parse();
    if let Command::Generate { what } = cli.command {
        return match ferry::cli::generate(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferry: cannot write to standard output: {e}");
                ExitCode::from(1)
            }
        };
    }
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
        Err(ferry::config::ConfigError::Read { path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            eprintln!("ferry: {}", config_not_readable(&path, &source));
            return ExitCode::from(2);
        }
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
    if let Err(e) = config.name_shard_queues() {
        eprintln!("ferry: {e}");
        return ExitCode::from(2);
    }
    // A workbook goes to a file: refuse before any work is done.
    if let Command::Plan { out, .. }
    | Command::Status { out, .. }
    | Command::Report { out, .. }
    | Command::Cutover { out } = &cli.command
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
            match status::tables(&config.ledger) {
                Ok(tables) => emitted(&tables, &out),
                Err(e) => fail(&e),
            }
        }
        Command::Status { out, watch } => loop {
            let shown = status::tables(&config.ledger).map(|tables| render(&tables, out.format));
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
        Command::Run {
            once,
            restore_missing_ledger,
            ..
        } => {
            let runtime = runtime();
            if let Some(addr) = cli.metrics_addr {
                // The listener runs on this runtime; the page reads the ledger afresh.
                let (ledger, interval) =
                    (config.ledger.clone(), (!once).then_some(config.interval));
                let page: ferry::metrics::Page = std::sync::Arc::new(move || {
                    ferry::report::page::Page::read(&ledger, interval).map_or_else(
                        |e| ferry::report::page::escape(&format!("the ledger cannot be read: {e}")),
                        |p| p.html(),
                    )
                });
                if let Err(e) = runtime.block_on(ferry::metrics::serve(
                    addr,
                    &ferry::store::FailureKind::ALL.map(ferry::store::FailureKind::label),
                    page,
                )) {
                    eprintln!("ferry: {e}");
                    return ExitCode::from(2);
                }
            }
            runtime.block_on(async {
                if restore_missing_ledger && !config.ledger.exists() {
                    let restored = restore_if_missing(&config).await;
                    if restored != ExitCode::SUCCESS {
                        return restored;
                    }
                }
                run(config, once).await
            })
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
            pending,
            recopy,
            all: _,
        } => {
            let scope = match sample.as_deref().map(ferry::verify::parse_sample) {
                Some(Ok(share)) => VerifyScope::Sample(share),
                Some(Err(e)) => {
                    eprintln!("ferry: {e}");
                    return ExitCode::from(2);
                }
                None if pending => VerifyScope::Pending,
                None => VerifyScope::Audit,
            };
            runtime().block_on(verify(config, VerifyOptions { scope, recopy }))
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
        Command::Cutover { out } => runtime().block_on(cutover(config, out)),
        Command::Ledger { action } => runtime().block_on(ledger_command(config, action)),
        Command::Cleanup { all } => match runtime().block_on(ferry::cleanup::cleanup(&config, all))
        {
            Ok(report) => {
                print!("{}", report.describe());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Generate { .. } => unreachable!("generated before the config is read"),
    }
}

async fn run(config: Config, once: bool) -> ExitCode {
    let stop = ferry::shutdown::listen();
    let runner = match Runner::start(config, stop.clone()).await {
        Ok(r) => r,
        Err(e @ ferry::run::RunError::Stopped) => {
            println!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if !once {
        // Between full listings the daemon follows the queues: a pass is
        // due after the longer interval then.
        ferry::metrics::pass_interval(if runner.follows_events() {
            runner.config().full_listing_interval
        } else {
            runner.interval()
        });
        if runner.follows_events() {
            if let Err(e) = runner.check_queues().await {
                return fail(&e);
            }
        }
    }
    if let Some(backup) = &runner.config().backup {
        ferry::metrics::ledger_snapshots_every(backup.every);
    }
    loop {
        let started = std::time::Instant::now();
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
        if runner.follows_events() {
            // The queues until the next full listing, the safety net.
            let until = started + runner.config().full_listing_interval;
            match runner.follow_events(until).await {
                Ok(followed) => print!("{}", followed.describe()),
                Err(e) => return fail(&e),
            }
            if stop.is_cancelled() {
                return ExitCode::SUCCESS;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(runner.interval()) => {}
            _ = stop.cancelled() => return ExitCode::SUCCESS,
        }
    }
}

async fn cutover(config: Config, out: ferry::cli::Output) -> ExitCode {
    let stop = ferry::shutdown::listen();
    let runner = match Runner::start(config, stop).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match runner.cutover().await {
        Ok(cut) => {
            if let Err(e) = emit(&cut.tables(), out.format, out.output.as_deref()) {
                return fail(&e);
            }
            if cut.signed_off() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&e),
    }
}

/// `run --restore-missing-ledger`: the newest snapshot, or a new ledger.
async fn restore_if_missing(config: &Config) -> ExitCode {
    if config.backup.is_none() {
        eprintln!("ferry: --restore-missing-ledger needs a [backup] table in the config, naming the bucket of the ledger's snapshots");
        return ExitCode::from(2);
    }
    ledger_command(
        config.clone(),
        LedgerAction::Restore {
            from: None,
            if_missing: true,
        },
    )
    .await
}

async fn ledger_command(config: Config, action: LedgerAction) -> ExitCode {
    use ferry::backup;
    let Some(settings) = config.backup.clone() else {
        eprintln!(
            "ferry: the config has no [backup] table: add one naming a bucket at the destination for the ledger's snapshots, e.g.\n[backup]\nbucket = \"ferry-ledger\""
        );
        return ExitCode::from(2);
    };
    let destination = ferry::store::client(
        ferry::store::Side::Destination,
        &config.destination,
        &config.transfer,
    )
    .await;
    match action {
        LedgerAction::Snapshot => {
            match backup::snapshot_if_due(&config, &destination, true).await {
                Ok(Some(key)) => {
                    println!("ledger snapshot written: s3://{}/{key}", settings.bucket);
                    ExitCode::SUCCESS
                }
                Ok(None) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        LedgerAction::Snapshots => {
            let prefix = backup::prefix_of(&settings, config.shard);
            match backup::list(&destination, &settings.bucket, &prefix).await {
                Ok(all) => {
                    for s in all {
                        println!(
                            "{}\t{}\t{}",
                            humantime::format_rfc3339_seconds(s.taken),
                            bytesize::ByteSize(s.size).display().iec(),
                            s.key
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        LedgerAction::Restore {
            if_missing: true, ..
        } if config.ledger.exists() => {
            println!(
                "a ledger is at {}: nothing restored",
                config.ledger.display()
            );
            ExitCode::SUCCESS
        }
        LedgerAction::Restore { from, if_missing } => {
            match backup::restore(&config, &destination, from.as_deref()).await {
                Err(backup::BackupError::NoSnapshot { .. }) if if_missing => {
                    println!("no ledger snapshot yet: ferry starts with a new ledger");
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    println!(
                        "restored the ledger snapshot {} (taken {}, schema {}) to {}; `ferry run` carries on from it, and adopts the copies made since",
                        r.key,
                        humantime::format_rfc3339_seconds(r.taken),
                        r.schema_version,
                        config.ledger.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
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
    // An audit reads: it creates no bucket and needs no tag permission.
    let runner = match Runner::start_read_only(config, stop).await {
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
    match ferry::run::plan(&config, &assumptions, deep, count_tags).await {
        Ok(tables) => emitted(&tables, &out),
        Err(e) => fail(&e),
    }
}

/// The config is there but this user may not read it (a root-only file and
/// systemd's dynamic user, say): who ferry runs as, what stands in the way,
/// and the two fixes. "Pass the right file" would send the user astray.
fn config_not_readable(path: &std::path::Path, source: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    let (me, owner) = match std::fs::metadata("/proc/self") {
        Ok(m) => (format!("uid {}", m.uid()), m.uid().to_string()),
        Err(_) => ("this user".to_owned(), "USER".to_owned()),
    };
    let path = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_owned());
    let describe = |p: &std::path::Path, m: &std::fs::Metadata| {
        format!(
            "{} is owned by uid {} gid {}, mode {:o}",
            p.display(),
            m.uid(),
            m.gid(),
            m.mode() & 0o777
        )
    };
    // A directory on the way that this user may not enter hides the file.
    let mut ancestors: Vec<&std::path::Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    let closed = ancestors.into_iter().find_map(|dir| {
        let entered = std::fs::metadata(dir.join("."));
        match (entered, std::fs::metadata(dir)) {
            (Err(e), Ok(m)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Some(format!("the directory {}", describe(dir, &m)))
            }
            _ => None,
        }
    });
    let what = closed.unwrap_or_else(|| match std::fs::metadata(&path) {
        Ok(m) => describe(&path, &m),
        Err(_) => format!("{} cannot be reached", path.display()),
    });
    format!(
        "cannot read config file {path}: {source}. ferry runs as {me}, and {what}. \
         Under systemd with DynamicUser=, keep the file root-only and hand it over with \
         LoadCredential=ferry.toml:{path} and --config ${{CREDENTIALS_DIRECTORY}}/ferry.toml \
         (as deploy/ferry.service does); otherwise give it to the user ferry runs as: \
         chown {owner} {path} && chmod 600 {path}",
        path = path.display(),
    )
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
