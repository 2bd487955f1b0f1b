//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::progress::LogFormat;

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
    },
    /// Print where each bucket stands, from the ledger.
    Status,
    /// Read copies back from the destination and compare them with the ledger.
    Verify {
        /// Verify a random share of the copied objects, e.g. 5%.
        #[arg(long)]
        sample: Option<String>,
        /// Queue mismatched objects to be copied again by the next `run`.
        #[arg(long)]
        recopy: bool,
        /// Read back objects that were verified before, too.
        #[arg(long)]
        all: bool,
    },
    /// Abort incomplete multipart uploads at the destination that ferry started.
    Cleanup {
        /// Abort every incomplete upload in the destination buckets, not only ferry's.
        #[arg(long)]
        all: bool,
    },
}
