//! ferry-demo: fills the source buckets of a config with the demo data set, and
//! compares every copy byte for byte. It must not be pointed at production buckets.

use std::path::PathBuf;
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::{Parser, Subcommand};
use ferry::config::Config;
use ferry::store::{self, Side};
use ferry_tools::demo::{self, Scale};

#[derive(Parser)]
#[command(about = "Demo data for ferry: fill the source, compare source and destination")]
struct Args {
    #[arg(long, short, default_value = "config/ferry.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Put the demo objects in the configured source buckets (named audio,
    /// mediafiles, onix and packages, each with the same suffix).
    Fill {
        #[arg(long, value_enum, default_value = "full")]
        scale: Scale,
        /// The suffix the config's source bucket names carry after e.g. `audio`.
        #[arg(long, default_value = "")]
        suffix: String,
    },
    /// Read every source object and its copy; exit 1 on any difference.
    Compare,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let source = store::client(Side::Source, &config.source, &config.transfer).await;
    let destination = store::client(Side::Destination, &config.destination, &config.transfer).await;
    let pairs: Vec<(String, String)> = config
        .buckets
        .iter()
        .map(|b| (b.source.clone(), b.destination.clone()))
        .collect();
    match args.command {
        Cmd::Fill { scale, suffix } => {
            let set = demo::data_set(scale, &suffix);
            let bytes: u64 = set.iter().map(|o| o.size).sum();
            match demo::fill(&source, &destination, &pairs, &set, 8).await {
                Ok(()) => {
                    println!(
                        "filled the source with {} objects, {}",
                        set.len(),
                        ByteSize(bytes).display().iec()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ferry-demo: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Compare => match demo::compare(&source, &destination, &pairs).await {
            Ok(c) => {
                for d in &c.differences {
                    println!("DIFFERENT {d}");
                }
                println!(
                    "compared {} objects, {}: {} byte-equal with equal metadata, {} with equal ETags",
                    c.objects,
                    ByteSize(c.bytes).display().iec(),
                    c.objects as usize - c.differences.len().min(c.objects as usize),
                    c.etags_equal
                );
                if c.differences.is_empty() && c.objects > 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("ferry-demo: {e}");
                ExitCode::from(1)
            }
        },
    }
}
