//! The checks that turn the TOML as written into a [`Config`]: every value in range, every bucket name valid, every env var named there.
//! It must not read a store or the ledger; each error names the key and the fix.

use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;

use super::raw::*;
use super::*;

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    pub(super) fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
        let full_listing_interval = match raw.full_listing_interval {
            None => DEFAULT_FULL_LISTING_INTERVAL,
            Some(s) => self.duration("full_listing_interval", &s)?,
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
            let events = b
                .events
                .as_deref()
                .map(|url| {
                    parse_queue_url(url).ok_or_else(|| {
                        self.invalid(
                            &key("events"),
                            format!("is {url:?}, which is not an SQS queue URL: copy the queue's URL from the SQS console or `aws sqs get-queue-url`, like \"https://sqs.eu-central-1.amazonaws.com/123456789012/ferry-events\""),
                        )
                    })
                })
                .transpose()?;
            let pair = BucketPair {
                events,
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
            full_listing_interval,
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

/// An SQS queue URL: `http(s)://HOST/ACCOUNT/QUEUE`. The API is asked at
/// the URL's own host, so a local or regional endpoint needs no other key.
fn parse_queue_url(url: &str) -> Option<EventQueue> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let (host, path) = rest.split_once('/')?;
    let (account, queue) = path.trim_end_matches('/').split_once('/')?;
    let queue = queue.replace(SHARD_PLACEHOLDER, "0");
    let named = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if !matches!(scheme, "https" | "http") || host.is_empty() || !named(account) || !named(&queue) {
        return None;
    }
    Some(EventQueue {
        url: url.trim_end_matches('/').to_owned(),
        endpoint: format!("{scheme}://{host}"),
    })
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
