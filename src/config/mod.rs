//! The TOML config, validated into a [`Config`] before any work starts.
//! It must not touch a store or the ledger, and never holds a secret's value in an error.
//!
//! Every error names the key that is wrong and how to fix it: users edit this
//! file by hand on a server, often under time pressure.
//!
//! One file per idea: the config's types here (what the rest of ferry
//! reads), `raw.rs` the TOML as written, `validate.rs` the checks that turn
//! one into the other, `secrets.rs` what must never be shown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::filter::Filter;

mod raw;
mod secrets;
#[cfg(test)]
mod tests;
mod validate;

use raw::RawConfig;
pub use secrets::{warn_if_shared, CustomerKey, Secret, StaticKeys};
use validate::Validator;

/// S3 refuses parts under 5 MiB (all but the last) and over 5 GiB.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3 allows at most 10,000 parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}. Pass the right file with --config PATH")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// `shard = "I/N"`: this ferry takes only the keys whose stable hash falls
/// in shard I of N (I counts from 0, like Nomad's allocation index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("{text:?} is not a shard: write I/N with 0 <= I < N, e.g. \"0/4\"");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// SHA-256 of the key: the same on every machine and in every version.
    pub fn owns(&self, key: &str) -> bool {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        hash % self.count == self.index
    }
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub limits: crate::limits::Limits,
    pub region: String,
    /// None means AWS itself.
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    pub keys: Option<StaticKeys>,
    pub path_style: bool,
    /// SSE-C at the destination: every write and read carries this key.
    pub customer_key: Option<CustomerKey>,
}

#[derive(Clone, Debug)]
pub struct TransferConfig {
    pub concurrency: usize,
    pub part_size: u64,
    pub multipart_threshold: u64,
    /// Cap on object bytes held in memory at once, across all workers.
    pub max_bytes_in_flight: u64,
    pub connect_timeout: Duration,
    /// A stream that sends no byte for this long is dropped and retried.
    pub read_timeout: Duration,
    /// Read each object back from the destination right after copying it.
    pub verify_after_copy: bool,
    /// Copy each object's tags (GetObjectTagging, then x-amz-tagging).
    pub copy_tags: bool,
    /// Key ranges a fresh listing of one bucket is split into, listed side by side.
    pub list_ranges: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPair {
    pub source: String,
    pub destination: String,
    pub prefix: String,
    /// Which keys under `prefix` are taken; the rest are recorded as `filtered`.
    pub filter: Filter,
    /// An AWS S3 Inventory to read instead of listing the bucket.
    pub inventory: Option<InventoryLocation>,
    /// How archived objects (Glacier, Deep Archive, Intelligent-Tiering's
    /// archive tiers) are restored before they are copied, if at all.
    pub restore: RestoreTier,
    /// How long a restored copy stays readable at the source, in days.
    pub restore_days: u32,
    /// The SQS queue that S3's event notifications for this bucket go to:
    /// the daemon follows it between full listings.
    pub events: Option<EventQueue>,
}

impl Default for BucketPair {
    fn default() -> Self {
        BucketPair {
            source: String::new(),
            destination: String::new(),
            prefix: String::new(),
            filter: Filter::default(),
            inventory: None,
            restore: RestoreTier::default(),
            restore_days: DEFAULT_RESTORE_DAYS,
            events: None,
        }
    }
}

/// `restore`: the retrieval tier asked for an archived object, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreTier {
    /// The cheapest: ferry runs for days, and `plan` shows the cost first.
    #[default]
    Bulk,
    Standard,
    Expedited,
    /// Archived objects are `skipped`, as before restores were asked for.
    Off,
}

impl RestoreTier {
    /// The tier's name in a RestoreObject request and in the ledger.
    pub fn name(self) -> &'static str {
        match self {
            RestoreTier::Bulk => "Bulk",
            RestoreTier::Standard => "Standard",
            RestoreTier::Expedited => "Expedited",
            RestoreTier::Off => "off",
        }
    }
}

/// Days a restored copy stays readable unless configured: it must outlive
/// a weekend in which ferry is down.
pub const DEFAULT_RESTORE_DAYS: u32 = 7;
/// RestoreObject requests per second unless configured: AWS allows 1,000
/// per account, and the team's other tools share them.
pub const DEFAULT_RESTORE_REQUESTS_PER_SECOND: u32 = 100;

/// `events = "https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE"`: the queue's
/// URL, and the endpoint its API answers at (the URL's scheme and host).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventQueue {
    pub url: String,
    pub endpoint: String,
}

impl Config {
    /// Gives each `events` queue URL its shard: with shards, each ferry
    /// needs a queue of its own (S3 → SNS → one queue per shard), or the
    /// shards would take each other's messages and drop them. The URL
    /// names the shard's queue with `{shard}`, its index.
    pub fn name_shard_queues(&mut self) -> Result<(), String> {
        for (i, pair) in self.buckets.iter_mut().enumerate() {
            let Some(queue) = pair.events.as_mut() else {
                continue;
            };
            match (self.shard, queue.url.contains(SHARD_PLACEHOLDER)) {
                (Some(shard), true) => {
                    queue.url = queue.url.replace(SHARD_PLACEHOLDER, &shard.index.to_string())
                }
                (None, false) => {}
                (Some(shard), false) => return Err(format!(
                    "buckets[{i}].events is one queue for every shard, and this ferry is shard {}/{}: each shard would delete the others' events. Fan the bucket's events out to one queue per shard (an SNS topic with a queue per shard) and write the URL with {SHARD_PLACEHOLDER} where the shard's index goes, e.g. \"…/ferry-events-{SHARD_PLACEHOLDER}\"",
                    shard.index, shard.count
                )),
                (None, true) => return Err(format!(
                    "buckets[{i}].events has {SHARD_PLACEHOLDER} in it, but this ferry runs no shard: give --shard I/N (or `shard`), or write the queue's own URL"
                )),
            }
        }
        Ok(())
    }
}

/// Where a shard's index goes in an `events` queue URL.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

/// Between two full listings of a bucket with `events`, only the keys the
/// events name are looked at: the listing is the safety net, not the feed.
pub const DEFAULT_FULL_LISTING_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `inventory = "s3://BUCKET/PATH/manifest.json"`, or the prefix that
/// holds the dated manifests (the newest is taken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryLocation {
    pub bucket: String,
    /// A manifest's key, or a prefix when it does not end in `manifest.json`.
    pub path: String,
}

/// Ranges a big bucket's listing is split into unless configured: AWS
/// answers a page in 50–150 ms, so one range lists 50 M keys in hours.
pub const DEFAULT_LIST_RANGES: usize = 8;

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub ledger: PathBuf,
    pub source: StoreConfig,
    pub destination: StoreConfig,
    pub transfer: TransferConfig,
    pub buckets: Vec<BucketPair>,
    /// Pause between passes of `ferry run` without `--once`.
    pub interval: Duration,
    /// With a bucket's `events`, the pause between full listings; the daemon
    /// follows the queues in between.
    pub full_listing_interval: Duration,
    /// After the first SIGINT/SIGTERM, how long work in flight may go on.
    pub shutdown_grace: Duration,
    /// Remove at the destination what was deleted at the source (after two passes).
    pub delete: bool,
    pub shard: Option<Shard>,
    /// Create destination buckets that do not exist yet.
    pub create_buckets: bool,
    /// What to do with a destination key that ferry did not write last.
    pub on_conflict: OnConflict,
    /// Snapshots of the ledger at the destination (`[backup]`), if any.
    pub backup: Option<BackupConfig>,
    /// RestoreObject requests (and the HEADs that ask how a restore goes)
    /// per second, across all buckets.
    pub restore_requests_per_second: u32,
}

/// `[backup]`: where the ledger's snapshots go and how many are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupConfig {
    /// A bucket at the destination, not one that a bucket pair copies into.
    pub bucket: String,
    /// Key prefix of the snapshots; a shard's go under `shard-I-of-N/` in it.
    pub prefix: String,
    /// A pass ends with a snapshot when the newest is older than this.
    pub every: Duration,
    /// How many snapshots are kept; older ones are deleted.
    pub keep: usize,
}

/// `on_conflict`: a destination key holds something ferry did not write
/// (another writer changed it, or it was there before ferry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Touch nothing: the key becomes `conflict`, with the reason.
    #[default]
    Keep,
    /// Overwrite or delete it anyway, as the source says.
    Overwrite,
}

// ---- the file as written -------------------------------------------------

impl Config {
    /// Reads and validates the file; env vars named in it are read now, so a
    /// missing key is reported before anything moves.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        warn_if_shared(path, "the config");
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses `text` as if read from `path`, looking env vars up with `env`.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_message(&e),
        })?;
        let v = Validator { path, env };
        v.build(raw)
    }
}

/// toml's own message names the key and the line; add the fix for unknown keys.
fn parse_message(e: &toml::de::Error) -> String {
    let mut msg = e.message().to_string();
    if let Some(span) = e.span() {
        msg = format!("{msg} (at byte {}..{})", span.start, span.end);
    }
    if msg.contains("unknown field") {
        msg.push_str(
            ". Remove the key or fix its spelling; docs/src/configuration.md lists every key",
        );
    }
    msg
}

/// Parses a bandwidth like "1Gbit/s", "800Mbit/s", "100MB/s" or "50MiB/s"
/// into bytes per second.
pub fn parse_bandwidth(text: &str) -> Result<f64, String> {
    let t = text.trim().trim_end_matches("/s").trim_end_matches("ps");
    let err = || format!("--bandwidth {text:?}: write it like 1Gbit/s, 800Mbit/s or 100MB/s");
    let value = if let Some(bits) = t.strip_suffix("bit").or_else(|| t.strip_suffix("b")) {
        let (number, scale) = match bits.chars().last() {
            Some('k' | 'K') => (&bits[..bits.len() - 1], 1e3),
            Some('M') => (&bits[..bits.len() - 1], 1e6),
            Some('G') => (&bits[..bits.len() - 1], 1e9),
            Some('T') => (&bits[..bits.len() - 1], 1e12),
            _ => (bits, 1.0),
        };
        number.trim().parse::<f64>().map_err(|_| err())? * scale / 8.0
    } else {
        t.parse::<bytesize::ByteSize>().map_err(|_| err())?.as_u64() as f64
    };
    if value > 0.0 {
        Ok(value)
    } else {
        Err(err())
    }
}
