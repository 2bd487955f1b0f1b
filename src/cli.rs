//! The command line, as clap sees it: commands, flags and their help.
//! It must not do work; `main.rs` calls the library with what was parsed.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::progress::LogFormat;
use crate::report::render::Format;

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Moves object storage from AWS S3 to Hetzner Object Storage and proves every byte arrived"
)]
pub struct Cli {
    /// The TOML config file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "ferry.toml",
        env = "FERRY_CONFIG"
    )]
    pub config: PathBuf,

    /// Log lines as human-readable text or as JSON for log shippers.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Draw progress bars (default: when stderr is a terminal and logs are text).
    #[arg(long, global = true, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never draw progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9898.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Take only shard I of N of the keys (overrides `shard` in the config).
    #[arg(long, global = true, value_name = "I/N")]
    pub shard: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the source buckets into the ledger and copy what is not yet copied.
    Run {
        /// Make one pass and exit; without it, a pass starts `interval` after the last one ends.
        #[arg(long)]
        once: bool,
        /// List and decide, and write nothing to the destination: print what a
        /// run would copy, copy again, delete, and leave alone. One pass.
        #[arg(long)]
        dry_run: bool,
        /// For --dry-run: table or markdown give one row per bucket, csv and
        /// json one row per key.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// With no ledger at the config's `ledger` path, first bring back
        /// the newest snapshot ([backup]), as `ferry ledger restore` would;
        /// with none yet, start a new ledger. For a box or an allocation that
        /// may come up without its disk.
        #[arg(long)]
        restore_missing_ledger: bool,
    },
    /// Catalog the source before anything moves: objects, bytes, size spread,
    /// storage classes, warnings, time and egress cost. Lists if needed; copies nothing.
    Plan {
        /// The bandwidth the copy can sustain, for the time estimate.
        #[arg(long, default_value = "1Gbit/s")]
        bandwidth: String,
        /// AWS internet egress price in USD per GB, for the cost estimate.
        #[arg(long, default_value_t = 0.09)]
        egress_price_per_gb: f64,
        #[command(flatten)]
        out: Output,
        /// Also HEAD a random sample of objects at the source and report
        /// Content-Types that contradict the extension.
        #[arg(long)]
        deep: bool,
        /// Also ask the source for each object's tags (one GetObjectTagging
        /// per object not yet asked; the counts are kept in the ledger).
        #[arg(long)]
        count_tags: bool,
        /// Objects per bucket that --deep asks.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        deep_sample: u64,
    },
    /// Print where each bucket stands, from the ledger; runs beside `ferry run`.
    Status {
        #[command(flatten)]
        out: Output,
        /// Print again every N seconds (default 2) until stopped.
        #[arg(long, num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
    /// Read every copy back from the destination and compare it with the
    /// ledger (an audit; a cut-off one carries on where it stopped).
    Verify {
        /// Read back a random share of the copies instead, e.g. 5%.
        #[arg(long, conflicts_with = "pending")]
        sample: Option<String>,
        /// Read back only the copies never read back before.
        #[arg(long)]
        pending: bool,
        /// Queue mismatched objects to be copied again by the next `run`.
        #[arg(long)]
        recopy: bool,
        /// Every copy, as a plain `verify` does (kept for scripts that pass it).
        #[arg(long, hide = true, conflicts_with_all = ["pending", "sample"])]
        all: bool,
    },
    /// Reconcile both stores with the ledger: every key in one class; exit 1 on any problem.
    Report {
        /// From the two listings alone (size and ETag); ignores verification results.
        #[arg(long)]
        fast: bool,
        #[command(flatten)]
        out: Output,
        /// Ledgers to read (repeat for shards); default: the config's `ledger`.
        #[arg(long = "ledger")]
        ledgers: Vec<PathBuf>,
    },
    /// Once the source is frozen: drain the event queues, list and copy once more, reconcile both stores, and sign off; exit 0 only when every key is equal.
    Cutover {
        #[command(flatten)]
        out: Output,
    },
    /// Abort incomplete multipart uploads at the destination that ferry started.
    Cleanup {
        /// Abort every incomplete upload in the destination buckets, not only ferry's.
        #[arg(long)]
        all: bool,
    },
    /// The ledger's snapshots at the destination (the config's [backup]).
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// Print a man page or a shell's completions (needs no config), e.g.
    /// `ferry generate man > ferry.1`, `ferry generate bash > /etc/bash_completion.d/ferry`.
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

/// What `ferry generate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// Writes the man page (roff) or a shell's completion script for ferry's
/// command line as clap knows it: flags and commands never drift from it.
pub fn generate(what: Generated, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut command = Cli::command();
    let shell = match what {
        Generated::Man => return clap_mangen::Man::new(command).render(out),
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
        Generated::Elvish => Shell::Elvish,
        Generated::Powershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "ferry", out);
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum LedgerAction {
    /// Write a snapshot of the ledger now, whatever [backup] every says.
    Snapshot,
    /// List the snapshots at the destination, oldest first.
    Snapshots,
    /// Bring a snapshot back to the config's `ledger` path, where there
    /// must be no ledger: on a new box, after the old one was lost.
    Restore {
        /// The snapshot to restore (its key or name, as `ledger snapshots`
        /// lists it); default: the newest.
        #[arg(long)]
        from: Option<String>,
        /// Restore only if there is no ledger, and succeed when there is no
        /// snapshot yet: for a start-up step that runs on every start (the
        /// Nomad job's prestart task).
        #[arg(long, conflicts_with = "from")]
        if_missing: bool,
    },
}

/// Where a report goes, and in which form.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// table and markdown for people, csv for spreadsheets, json for
    /// scripts, xlsx for a workbook with one sheet per table.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write to this file instead of standard output (required for xlsx).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(what: Generated) -> String {
        let mut out = Vec::new();
        generate(what, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_man_page_and_completions_name_every_command() {
        use clap::CommandFactory;
        let man = generated(Generated::Man);
        assert!(man.starts_with(".ie") || man.contains(".TH ferry"), "{man}");
        let bash = generated(Generated::Bash);
        assert!(bash.contains("complete -F _ferry"), "{bash}");
        let zsh = generated(Generated::Zsh);
        for command in Cli::command().get_subcommands() {
            let name = command.get_name();
            assert!(man.contains(name), "the man page lacks {name}");
            assert!(
                bash.contains(name) && zsh.contains(name),
                "completions lack {name}"
            );
        }
        assert!(bash.contains("--metrics-addr"), "{bash}");
    }
}
