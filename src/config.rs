//! The TOML config, validated into a [`Config`] before any work starts.
//! It must not touch a store or the ledger, and never holds a secret's value in an error.
//!
//! Every error names the key that is wrong and how to fix it: users edit this
//! file by hand on a server, often under time pressure.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::filter::Filter;

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

/// A secret read from the environment. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An SSE-C key for the destination (`sse_c_key_env`): 256 bits, kept in
/// base64 with its MD5, as the SSE-C headers carry them. Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey {
    key_base64: Secret,
    key_md5_base64: String,
}

impl CustomerKey {
    /// The values of `x-amz-server-side-encryption-customer-key` and `-key-MD5`.
    pub fn headers(&self) -> (&str, &str) {
        (self.key_base64.expose(), &self.key_md5_base64)
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerKey(***)")
    }
}

/// Static keys for one store, read from the env vars the config names.
#[derive(Clone, Debug)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ledger: Option<PathBuf>,
    interval: Option<String>,
    shutdown_grace: Option<String>,
    delete: Option<bool>,
    shard: Option<String>,
    create_buckets: Option<bool>,
    on_conflict: Option<String>,
    restore_requests_per_second: Option<u32>,
    source: Option<RawStore>,
    destination: Option<RawStore>,
    #[serde(default)]
    transfer: RawTransfer,
    #[serde(default)]
    buckets: Vec<RawBucket>,
    backup: Option<RawBackup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    bucket: String,
    prefix: Option<String>,
    every: Option<String>,
    keep: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    region: Option<String>,
    endpoint: Option<String>,
    profile: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    path_style: Option<bool>,
    max_requests_per_second: Option<u32>,
    max_connections: Option<usize>,
    sse_c_key_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTransfer {
    concurrency: Option<i64>,
    part_size: Option<String>,
    multipart_threshold: Option<String>,
    max_bytes_in_flight: Option<String>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    verify_after_copy: Option<bool>,
    copy_tags: Option<bool>,
    max_bandwidth: Option<String>,
    list_ranges: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    source: String,
    destination: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    min_size: Option<String>,
    max_size: Option<String>,
    modified_after: Option<String>,
    modified_before: Option<String>,
    inventory: Option<String>,
    restore: Option<String>,
    restore_days: Option<u32>,
}

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
        msg.push_str(". Remove the key or fix its spelling; README.md lists every key");
    }
    msg
}

struct Validator<'a> {
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let ledger = raw.ledger.ok_or_else(|| {
            self.invalid(
                "ledger",
                "is missing: set it to the SQLite file ferry keeps its state in, e.g. ledger = \"state/ferry.sqlite\"",
            )
        })?;
        if ledger.as_os_str().is_empty() {
            return Err(self.invalid("ledger", "is empty: give a file path"));
        }
        let mut source = self.store("source", raw.source, "eu-central-1")?;
        if let Some(text) = &raw.transfer.max_bandwidth {
            let rate = parse_bandwidth(text).map_err(|_| {
                self.invalid(
                    "transfer.max_bandwidth",
                    format!("is {text:?}, which is not a bandwidth: write it like \"800Mbit/s\" or \"100MB/s\""),
                )
            })?;
            // Everything copied is read from the source once: limit it there.
            source.limits.bytes_per_second = Some(rate as u64);
        }
        let destination = self.store("destination", raw.destination, "")?;
        if destination.endpoint.is_none() {
            return Err(self.invalid(
                "destination.endpoint",
                "is missing: set the destination's URL, e.g. https://fsn1.your-objectstorage.com",
            ));
        }
        let transfer = self.transfer(raw.transfer)?;
        if destination.customer_key.is_some() && !transfer.verify_after_copy {
            return Err(self.invalid(
                "transfer.verify_after_copy",
                "is false, but destination.sse_c_key_env is set: an SSE-C object's ETag proves nothing, so ferry reads every copy back with the key. Remove verify_after_copy = false",
            ));
        }
        let interval = match raw.interval {
            None => Duration::from_secs(15 * 60),
            Some(s) => self.duration("interval", &s)?,
        };
        let shutdown_grace = match raw.shutdown_grace {
            None => Duration::from_secs(30),
            Some(s) => self.duration("shutdown_grace", &s)?,
        };
        if raw.buckets.is_empty() {
            return Err(self.invalid(
                "buckets",
                "is empty: add at least one [[buckets]] table with source = \"…\" and destination = \"…\"",
            ));
        }
        let mut buckets = Vec::new();
        for (i, b) in raw.buckets.into_iter().enumerate() {
            let key = |k: &str| format!("buckets[{i}].{k}");
            check_bucket_name(&b.source).map_err(|p| self.invalid(&key("source"), p))?;
            let destination = b.destination.unwrap_or_else(|| b.source.clone());
            check_bucket_name(&destination).map_err(|p| self.invalid(&key("destination"), p))?;
            let regexes = |name: &str, patterns: &[String]| {
                patterns
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        regex::Regex::new(p).map_err(|e| {
                            self.invalid(
                                &key(&format!("{name}[{j}]")),
                                format!("is {p:?}, which is not a regex:\n{e}"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let size = |name: &str, v: &Option<String>| {
                v.as_deref().map(|v| self.size(&key(name), v)).transpose()
            };
            let time = |name: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|v| {
                        humantime::parse_rfc3339_weak(v.trim()).map_err(|_| {
                            self.invalid(
                                &key(name),
                                format!("is {v:?}, which is not a time: write it in RFC 3339, like \"2024-01-31T00:00:00Z\""),
                            )
                        })
                    })
                    .transpose()
            };
            let filter = Filter {
                include: regexes("include", &b.include)?,
                exclude: regexes("exclude", &b.exclude)?,
                min_size: size("min_size", &b.min_size)?,
                max_size: size("max_size", &b.max_size)?,
                modified_after: time("modified_after", &b.modified_after)?,
                modified_before: time("modified_before", &b.modified_before)?,
            };
            if let (Some(min), Some(max)) = (filter.min_size, filter.max_size) {
                if min > max {
                    return Err(self.invalid(
                        &key("min_size"),
                        "is above max_size: no key could be taken; lower min_size or raise max_size",
                    ));
                }
            }
            let inventory = match &b.inventory {
                None => None,
                Some(url) => Some(parse_inventory(url).ok_or_else(|| {
                    self.invalid(
                        &key("inventory"),
                        format!("is {url:?}: write it as s3://BUCKET/PATH/manifest.json, or s3://BUCKET/PATH/ for the newest manifest under PATH"),
                    )
                })?),
            };
            let restore = match b.restore.as_deref() {
                None | Some("bulk") => RestoreTier::Bulk,
                Some("standard") => RestoreTier::Standard,
                Some("expedited") => RestoreTier::Expedited,
                Some("off") => RestoreTier::Off,
                Some(other) => return Err(self.invalid(
                    &key("restore"),
                    format!("is {other:?}, which is not a choice: write \"bulk\" (the default, cheapest), \"standard\", \"expedited\" or \"off\" (archived objects are skipped)"),
                )),
            };
            let restore_days = b.restore_days.unwrap_or(DEFAULT_RESTORE_DAYS);
            if !(1..=30).contains(&restore_days) {
                return Err(self.invalid(
                    &key("restore_days"),
                    format!("is {restore_days}: give 1 to 30 days; the restored copy must outlive the copy (and a weekend ferry is down), and each day is billed as Standard storage"),
                ));
            }
            let pair = BucketPair {
                source: b.source,
                destination,
                prefix: b.prefix,
                filter,
                inventory,
                restore,
                restore_days,
            };
            if buckets.contains(&pair) {
                return Err(self.invalid(
                    &key("source"),
                    "repeats an earlier [[buckets]] table: remove one",
                ));
            }
            buckets.push(pair);
        }
        let backup = raw.backup.map(|b| self.backup(b, &buckets)).transpose()?;
        let restore_requests_per_second = raw
            .restore_requests_per_second
            .unwrap_or(DEFAULT_RESTORE_REQUESTS_PER_SECOND);
        if !(1..=1000).contains(&restore_requests_per_second) {
            return Err(self.invalid(
                "restore_requests_per_second",
                format!("is {restore_requests_per_second}: give 1 to 1000; AWS allows 1,000 RestoreObject requests per second per account, shared with the team's other tools"),
            ));
        }
        Ok(Config {
            restore_requests_per_second,
            backup,
            path: self.path.to_owned(),
            ledger,
            source,
            destination,
            transfer,
            buckets,
            interval,
            shutdown_grace,
            delete: raw.delete.unwrap_or(false),
            create_buckets: raw.create_buckets.unwrap_or(false),
            on_conflict: match raw.on_conflict.as_deref() {
                None | Some("keep") => OnConflict::Keep,
                Some("overwrite") => OnConflict::Overwrite,
                Some(other) => {
                    return Err(self.invalid(
                        "on_conflict",
                        format!(
                        "{other:?} is not a choice: write \"keep\" (the default) or \"overwrite\""
                    ),
                    ))
                }
            },
            shard: raw
                .shard
                .map(|s| Shard::parse(&s).map_err(|p| self.invalid("shard", p)))
                .transpose()?,
        })
    }

    fn store(
        &self,
        table: &str,
        raw: Option<RawStore>,
        default_region: &str,
    ) -> Result<StoreConfig, ConfigError> {
        let raw =
            raw.ok_or_else(|| self.invalid(table, format!("is missing: add a [{table}] table")))?;
        let region = match raw.region {
            Some(r) if !r.trim().is_empty() => r,
            _ if !default_region.is_empty() => default_region.to_owned(),
            _ => {
                return Err(self.invalid(
                    &format!("{table}.region"),
                    "is missing: set the store's region, e.g. region = \"fsn1\" for Hetzner Falkenstein",
                ))
            }
        };
        if let Some(endpoint) = &raw.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(self.invalid(
                    &format!("{table}.endpoint"),
                    format!("is {endpoint:?}: it must be a URL starting with https:// or http://"),
                ));
            }
        }
        let keys = match (&raw.access_key_id_env, &raw.secret_access_key_env) {
            (None, None) => None,
            (Some(id_var), Some(secret_var)) => Some(StaticKeys {
                access_key_id: self.env_var(table, "access_key_id_env", id_var)?,
                secret_access_key: Secret(self.env_var(
                    table,
                    "secret_access_key_env",
                    secret_var,
                )?),
            }),
            (Some(_), None) => {
                return Err(self.invalid(
                    &format!("{table}.secret_access_key_env"),
                    "is missing: name the env var that holds the secret key too",
                ))
            }
            (None, Some(_)) => {
                return Err(self.invalid(
                    &format!("{table}.access_key_id_env"),
                    "is missing: name the env var that holds the access key id too",
                ))
            }
        };
        if keys.is_some() && raw.profile.is_some() {
            return Err(self.invalid(
                &format!("{table}.profile"),
                "is set together with access_key_id_env: keep one way of giving credentials",
            ));
        }
        if raw.max_requests_per_second == Some(0) {
            return Err(self.invalid(
                &format!("{table}.max_requests_per_second"),
                "must be above 0: leave it out for no limit",
            ));
        }
        if raw.max_connections == Some(0) {
            return Err(self.invalid(
                &format!("{table}.max_connections"),
                "must be above 0: leave it out for no limit",
            ));
        }
        let customer_key = match &raw.sse_c_key_env {
            None => None,
            Some(_) if table == "source" => {
                return Err(self.invalid(
                    "source.sse_c_key_env",
                    "is for the destination only: move it to [destination]. Source objects encrypted with SSE-C are skipped, with the reason",
                ))
            }
            Some(var) => Some(self.customer_key(table, var)?),
        };
        Ok(StoreConfig {
            customer_key,
            limits: crate::limits::Limits {
                requests_per_second: raw.max_requests_per_second,
                bytes_per_second: None,
                max_connections: raw.max_connections,
            },
            region,
            endpoint: raw.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            profile: raw.profile,
            keys,
            // Custom endpoints are mostly path-style (Hetzner takes both).
            path_style: raw.path_style.unwrap_or(false),
        })
    }

    /// The env var must hold a base64 256-bit key; the error never shows it.
    fn customer_key(&self, table: &str, var: &str) -> Result<CustomerKey, ConfigError> {
        use base64::Engine as _;
        use md5::Digest as _;
        let text = self.env_var(table, "sse_c_key_env", var)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                self.invalid(
                    &format!("{table}.sse_c_key_env"),
                    format!("names the env var {var}, which does not hold a base64 256-bit key: make one with `openssl rand -base64 32`"),
                )
            })?;
        Ok(CustomerKey {
            key_base64: Secret(base64::engine::general_purpose::STANDARD.encode(&key)),
            key_md5_base64: base64::engine::general_purpose::STANDARD
                .encode(md5::Md5::digest(&key)),
        })
    }

    fn env_var(&self, table: &str, key: &str, var: &str) -> Result<String, ConfigError> {
        match (self.env)(var) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.invalid(
                &format!("{table}.{key}"),
                format!(
                    "names the env var {var}, which is not set: export {var}=… (or fix the name)"
                ),
            )),
        }
    }

    fn transfer(&self, raw: RawTransfer) -> Result<TransferConfig, ConfigError> {
        // Small objects are latency-bound: 64 in flight reach the local
        // servers' ceiling (16 gave half of it). Memory is bounded by bytes.
        let concurrency = match raw.concurrency {
            None => 64,
            Some(n) if (1..=1024).contains(&n) => n as usize,
            Some(n) => {
                return Err(self.invalid(
                    "transfer.concurrency",
                    format!("is {n}: use a number from 1 to 1024"),
                ))
            }
        };
        let list_ranges = match raw.list_ranges {
            None => DEFAULT_LIST_RANGES,
            Some(n) if (1..=64).contains(&n) => n as usize,
            Some(n) => {
                return Err(self.invalid(
                    "transfer.list_ranges",
                    format!("is {n}: use a number from 1 (one listing per bucket) to 64"),
                ))
            }
        };
        let size = |key: &str, value: Option<String>, default: u64| -> Result<u64, ConfigError> {
            match value {
                None => Ok(default),
                Some(s) => self.size(&format!("transfer.{key}"), &s),
            }
        };
        let part_size = size("part_size", raw.part_size, 16 << 20)?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(self.invalid(
                "transfer.part_size",
                format!(
                    "is {}: S3 needs parts from 5MiB to 5GiB",
                    ByteSize(part_size).display().iec()
                ),
            ));
        }
        let multipart_threshold = size("multipart_threshold", raw.multipart_threshold, 16 << 20)?;
        if multipart_threshold > MAX_PART_SIZE {
            return Err(self.invalid(
                "transfer.multipart_threshold",
                "is over 5GiB, the largest single PUT S3 takes: lower it",
            ));
        }
        // Four parts in flight: the benchmark shows no gain past that on
        // large objects, and each more part costs its size in memory.
        let default_budget = (4 * part_size).max(multipart_threshold).max(64 << 20);
        let max_bytes_in_flight = size(
            "max_bytes_in_flight",
            raw.max_bytes_in_flight,
            default_budget,
        )?;
        if max_bytes_in_flight < multipart_threshold.max(1 << 20) {
            return Err(self.invalid(
                "transfer.max_bytes_in_flight",
                "is smaller than multipart_threshold: raise it, or a small object could never fit",
            ));
        }
        let duration =
            |key: &str, value: Option<String>, default: u64| -> Result<Duration, ConfigError> {
                match value {
                    None => Ok(Duration::from_secs(default)),
                    Some(s) => self.duration(&format!("transfer.{key}"), &s),
                }
            };
        Ok(TransferConfig {
            concurrency,
            part_size,
            multipart_threshold,
            max_bytes_in_flight,
            connect_timeout: duration("connect_timeout", raw.connect_timeout, 10)?,
            read_timeout: duration("read_timeout", raw.read_timeout, 60)?,
            verify_after_copy: raw.verify_after_copy.unwrap_or(true),
            copy_tags: raw.copy_tags.unwrap_or(true),
            list_ranges,
        })
    }

    fn backup(&self, b: RawBackup, pairs: &[BucketPair]) -> Result<BackupConfig, ConfigError> {
        check_bucket_name(&b.bucket).map_err(|p| self.invalid("backup.bucket", p))?;
        if pairs.iter().any(|p| p.destination == b.bucket) {
            return Err(self.invalid(
                "backup.bucket",
                format!(
                    "is {:?}, which a bucket pair copies into: its snapshots would show as extra objects there. Name a bucket of its own, e.g. \"ferry-ledger\"",
                    b.bucket
                ),
            ));
        }
        let every = match b.every {
            None => Duration::from_secs(3600),
            Some(s) => self.duration("backup.every", &s)?,
        };
        // Snapshots are named to the second.
        if every < Duration::from_secs(1) {
            return Err(self.invalid(
                "backup.every",
                "is under a second: snapshots are named to the second; write e.g. \"1h\"",
            ));
        }
        let keep = match b.keep {
            None => 5,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                return Err(self.invalid(
                    "backup.keep",
                    format!("is {n}: keep at least 1 snapshot (default 5)"),
                ))
            }
        };
        let mut prefix = b.prefix.unwrap_or_else(|| "ferry-ledger/".to_owned());
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(BackupConfig {
            bucket: b.bucket,
            prefix,
            every,
            keep,
        })
    }

    fn size(&self, key: &str, value: &str) -> Result<u64, ConfigError> {
        value.trim().parse::<ByteSize>().map(|b| b.as_u64()).map_err(|_| {
            self.invalid(
                key,
                format!("is {value:?}, which is not a size: write it like \"16MiB\", \"512KiB\" or \"1GiB\""),
            )
        })
    }

    fn duration(&self, key: &str, value: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(value.trim()).map_err(|_| {
            self.invalid(
                key,
                format!("is {value:?}, which is not a duration: write it like \"30s\", \"15m\" or \"1h\""),
            )
        })
    }
}

/// `s3://BUCKET/PATH` → the inventory's bucket and path.
fn parse_inventory(url: &str) -> Option<InventoryLocation> {
    let (bucket, path) = url.trim().strip_prefix("s3://")?.split_once('/')?;
    check_bucket_name(bucket).ok()?;
    Some(InventoryLocation {
        bucket: bucket.to_owned(),
        path: path.to_owned(),
    })
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

/// A file others can read (the config names key variables; the ledger names
/// every object) is worth a warning, not a refusal. A file in systemd's
/// `$CREDENTIALS_DIRECTORY` (`LoadCredential=`, as `deploy/ferry.service`
/// hands the config over) is systemd's private copy for this service: it may
/// show group read (an ACL for the service's user) and draws a warning only
/// when everyone may read it.
pub fn warn_if_shared(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    let in_credentials = std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|dir| {
        let dir = Path::new(&dir);
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
        canonical(path).starts_with(canonical(dir))
    });
    let readable_by_others = if in_credentials { 0o004 } else { 0o044 };
    if mode & readable_by_others != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "{what} can be read by other users: chmod 600 it"
        );
    }
}

/// The S3 naming rules that matter for a typo: length and characters.
fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if (3..=63).contains(&name.len()) && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "is {name:?}, which is not a bucket name: use 3 to 63 characters of a-z, 0-9, '-' and '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        ledger = "state/ferry.sqlite"
        [source]
        region = "eu-central-1"
        endpoint = "http://127.0.0.1:9000"
        access_key_id_env = "SRC_ID"
        secret_access_key_env = "SRC_SECRET"
        path_style = true
        [destination]
        endpoint = "http://127.0.0.1:9100/"
        region = "fsn1"
        access_key_id_env = "DST_ID"
        secret_access_key_env = "DST_SECRET"
        [transfer]
        concurrency = 8
        part_size = "8MiB"
        multipart_threshold = "32MiB"
        [[buckets]]
        source = "audio"
        destination = "hub-audio"
        prefix = "books/"
        [[buckets]]
        source = "onix"
    "#;

    fn env(name: &str) -> Option<String> {
        match name {
            "SRC_ID" => Some("GKsource".into()),
            "SRC_SECRET" => Some("very-secret-source".into()),
            "DST_ID" => Some("GKdest".into()),
            "DST_SECRET" => Some("very-secret-dest".into()),
            "SSE_KEY" => Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
            "SHORT_KEY" => Some("c2hvcnQtc2VjcmV0LWtleQ==".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("ferry.toml"), text, &env)
    }

    fn error(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn a_full_config_is_read_with_its_values() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.ledger, PathBuf::from("state/ferry.sqlite"));
        assert_eq!(c.source.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            c.destination.endpoint.as_deref(),
            Some("http://127.0.0.1:9100")
        );
        assert_eq!(c.destination.region, "fsn1");
        assert!(c.source.path_style);
        assert_eq!(c.source.keys.as_ref().unwrap().access_key_id, "GKsource");
        assert_eq!(c.transfer.concurrency, 8);
        assert_eq!(c.transfer.part_size, 8 << 20);
        assert_eq!(c.transfer.multipart_threshold, 32 << 20);
        assert_eq!(c.transfer.max_bytes_in_flight, 64 << 20);
        assert_eq!(c.interval, Duration::from_secs(900));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(
            c.buckets,
            vec![
                BucketPair {
                    source: "audio".into(),
                    destination: "hub-audio".into(),
                    prefix: "books/".into(),
                    ..Default::default()
                },
                BucketPair {
                    source: "onix".into(),
                    destination: "onix".into(),
                    prefix: "".into(),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = parse(GOOD).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("GKsource"));
    }

    #[test]
    fn an_unknown_key_is_named_with_the_fix() {
        let e = error(&GOOD.replace("concurrency = 8", "concurency = 8"));
        assert!(e.contains("concurency"), "{e}");
        assert!(e.contains("Remove the key or fix its spelling"), "{e}");
    }

    #[test]
    fn a_missing_env_var_is_named() {
        let e = error(&GOOD.replace("\"DST_SECRET\"", "\"NOT_SET_ANYWHERE\""));
        assert!(e.contains("destination.secret_access_key_env"), "{e}");
        assert!(e.contains("NOT_SET_ANYWHERE"), "{e}");
        assert!(!e.contains("very-secret"), "{e}");
    }

    #[test]
    fn a_bad_size_is_named_with_an_example() {
        let e = error(&GOOD.replace("\"8MiB\"", "\"eight megs\""));
        assert!(e.contains("transfer.part_size"), "{e}");
        assert!(e.contains("16MiB"), "{e}");
        let e = error(&GOOD.replace("\"8MiB\"", "\"1MiB\""));
        assert!(e.contains("5MiB to 5GiB"), "{e}");
        let e = error(&GOOD.replace("concurrency = 8", "max_bandwidth = \"fast\""));
        assert!(
            e.contains("transfer.max_bandwidth") && e.contains("800Mbit/s"),
            "{e}"
        );
        let c = parse(&GOOD.replace("concurrency = 8", "max_bandwidth = \"800Mbit/s\"")).unwrap();
        assert_eq!(c.source.limits.bytes_per_second, Some(100_000_000));
    }

    #[test]
    fn filters_are_read_and_a_bad_one_is_named_with_its_position() {
        let filtered = GOOD.replace(
            "prefix = \"books/\"\n",
            "prefix = \"books/\"\ninclude = [\"\\\\.mp3$\"]\nexclude = [\"^books/tmp/\", \"/cache/\"]\nmin_size = \"1KiB\"\nmodified_after = \"2024-01-31T00:00:00Z\"\n",
        );
        let c = parse(&filtered).unwrap();
        let f = &c.buckets[0].filter;
        assert_eq!(f.exclude.len(), 2);
        assert_eq!(f.min_size, Some(1024));
        assert_eq!(f.leaves_out("books/a.mp3", 2048, None), None);
        assert!(f.leaves_out("books/a.wav", 2048, None).is_some());
        assert!(c.buckets[1].filter.takes_everything());

        let e = error(&filtered.replace("\"/cache/\"", "\"(cache\""));
        assert!(e.contains("buckets[0].exclude[1]"), "{e}");
        // regex's own message shows where the pattern goes wrong.
        assert!(e.contains("^") && e.contains("unclosed group"), "{e}");
        let e = error(&filtered.replace("2024-01-31T00:00:00Z", "last week"));
        assert!(
            e.contains("buckets[0].modified_after") && e.contains("RFC 3339"),
            "{e}"
        );
        let e = error(&filtered.replace("\"1KiB\"", "\"1GiB\"\nmax_size = \"1MiB\""));
        assert!(e.contains("buckets[0].min_size"), "{e}");
    }

    #[test]
    fn an_sse_c_key_is_read_checked_and_never_shown() {
        let with = |var: &str| {
            GOOD.replace(
                "[destination]\n",
                &format!("[destination]\nsse_c_key_env = \"{var}\"\n"),
            )
        };
        let c = parse(&with("SSE_KEY")).unwrap();
        let key = c.destination.customer_key.as_ref().unwrap();
        assert_eq!(
            key.headers().0,
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        );
        assert_eq!(format!("{key:?}"), "CustomerKey(***)");
        assert!(!format!("{c:?}").contains("MDEyMzQ1Njc4"));
        let e = error(&with("SHORT_KEY"));
        assert!(
            e.contains("destination.sse_c_key_env") && e.contains("256-bit"),
            "{e}"
        );
        assert!(!e.contains("c2hvcnQt"), "{e}");
        let e = error(&with("NO_SUCH_VAR"));
        assert!(e.contains("NO_SUCH_VAR") && e.contains("not set"), "{e}");
        let e = error(&with("SSE_KEY").replace("concurrency = 8", "verify_after_copy = false"));
        assert!(e.contains("transfer.verify_after_copy"), "{e}");
        let e = error(&GOOD.replace("[source]\n", "[source]\nsse_c_key_env = \"SSE_KEY\"\n"));
        assert!(
            e.contains("source.sse_c_key_env") && e.contains("destination only"),
            "{e}"
        );
    }

    #[test]
    fn store_limits_are_read_and_zero_is_refused() {
        let limited = GOOD.replace("[destination]\n", "[destination]\nmax_connections = 200\n");
        let c = parse(&limited).unwrap();
        assert_eq!(c.destination.limits.max_connections, Some(200));
        assert_eq!(c.source.limits.max_connections, None);
        let e = error(&limited.replace("= 200", "= 0"));
        assert!(
            e.contains("destination.max_connections") && e.contains("leave it out"),
            "{e}"
        );
    }

    #[test]
    fn empty_buckets_are_refused() {
        let text = GOOD.split("[[buckets]]").next().unwrap();
        let e = error(text);
        assert!(e.contains("`buckets` is empty"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = error(&GOOD.replace("concurrency = 8", "concurrency = 0"));
        assert!(e.contains("transfer.concurrency"), "{e}");
        let e = error(&GOOD.replace("source = \"onix\"", "source = \"Onix Feeds\""));
        assert!(e.contains("buckets[1].source"), "{e}");
        let e = error(&GOOD.replace("http://127.0.0.1:9100/", "127.0.0.1:9100"));
        assert!(e.contains("destination.endpoint"), "{e}");
        let e = error(&GOOD.replace("ledger = \"state/ferry.sqlite\"", ""));
        assert!(e.contains("`ledger` is missing"), "{e}");
        let e = error(&GOOD.replace("access_key_id_env = \"DST_ID\"", ""));
        assert!(e.contains("destination.access_key_id_env"), "{e}");
    }

    #[test]
    fn restores_default_to_bulk_for_a_week_and_bad_ones_are_named() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.buckets[0].restore, RestoreTier::Bulk);
        assert_eq!(c.buckets[0].restore_days, 7);
        assert_eq!(c.restore_requests_per_second, 100);
        let c = parse(&GOOD.replace(
            "source = \"onix\"",
            "source = \"onix\"\nrestore = \"off\"\nrestore_days = 2",
        ))
        .unwrap();
        assert_eq!(
            (c.buckets[1].restore, c.buckets[1].restore_days),
            (RestoreTier::Off, 2)
        );
        let e = error(&GOOD.replace("source = \"onix\"", "source = \"onix\"\nrestore = \"fast\""));
        assert!(
            e.contains("buckets[1].restore") && e.contains("\"bulk\""),
            "{e}"
        );
        let e = error(&GOOD.replace("source = \"onix\"", "source = \"onix\"\nrestore_days = 0"));
        assert!(e.contains("buckets[1].restore_days"), "{e}");
        let e = error(&format!("restore_requests_per_second = 5000\n{GOOD}"));
        assert!(
            e.contains("restore_requests_per_second") && e.contains("1,000"),
            "{e}"
        );
    }

    #[test]
    fn shards_split_keys_stably_and_completely() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for k in 0..300 {
            let key = format!("feeds/onix-{k}.xml");
            assert_eq!(shards.iter().filter(|s| s.owns(&key)).count(), 1, "{key}");
        }
        let counts: Vec<usize> = shards
            .iter()
            .map(|s| (0..300).filter(|k| s.owns(&format!("k{k}"))).count())
            .collect();
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
        // Stable: a known key lands where the first 8 bytes of its SHA-256,
        // read big-endian, say (worked out with Python's hashlib).
        for (key, n, index) in [
            ("audio/book.mp3", 2, 0),
            ("audio/book.mp3", 3, 2),
            ("feeds/onix-1.xml", 4, 2),
        ] {
            let shard = Shard { index, count: n };
            assert!(shard.owns(key), "{key} in {index}/{n}");
        }
        for bad in ["3/3", "1", "a/b", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let e = error(&GOOD.replace("ledger = ", "shard = \"5/2\"\nledger = "));
        assert!(e.contains("`shard`"), "{e}");
    }

    #[test]
    fn on_conflict_keeps_by_default_and_names_its_choices() {
        assert_eq!(parse(GOOD).unwrap().on_conflict, OnConflict::Keep);
        let c =
            parse(&GOOD.replace("ledger = ", "on_conflict = \"overwrite\"\nledger = ")).unwrap();
        assert_eq!(c.on_conflict, OnConflict::Overwrite);
        let e = error(&GOOD.replace("ledger = ", "on_conflict = \"replace\"\nledger = "));
        assert!(e.contains("`on_conflict`") && e.contains("\"keep\""), "{e}");
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        let any = |_: &str| Some("set".to_owned());
        for (name, text) in [
            ("config/ferry.toml", include_str!("../config/ferry.toml")),
            (
                "config/hetzner.example.toml",
                include_str!("../config/hetzner.example.toml"),
            ),
            (
                "deploy/compose-ferry.toml",
                include_str!("../deploy/compose-ferry.toml"),
            ),
        ] {
            let c = Config::parse(Path::new(name), text, &any).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.buckets.len(), 4, "{name}");
        }
    }

    #[test]
    fn toml_syntax_errors_say_where() {
        let e = error("ledger = \n");
        assert!(e.contains("ferry.toml"), "{e}");
    }
}
