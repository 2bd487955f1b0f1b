//! The config as the TOML file writes it, before any check: every key optional, unknown keys refused.
//! It must not hold a decision; `validate.rs` makes them.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) ledger: Option<PathBuf>,
    pub(super) interval: Option<String>,
    pub(super) full_listing_interval: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) delete: Option<bool>,
    pub(super) shard: Option<String>,
    pub(super) create_buckets: Option<bool>,
    pub(super) on_conflict: Option<String>,
    pub(super) restore_requests_per_second: Option<u32>,
    pub(super) source: Option<RawStore>,
    pub(super) destination: Option<RawStore>,
    #[serde(default)]
    pub(super) transfer: RawTransfer,
    #[serde(default)]
    pub(super) buckets: Vec<RawBucket>,
    pub(super) backup: Option<RawBackup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    pub(super) bucket: String,
    pub(super) prefix: Option<String>,
    pub(super) every: Option<String>,
    pub(super) keep: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) profile: Option<String>,
    pub(super) access_key_id_env: Option<String>,
    pub(super) secret_access_key_env: Option<String>,
    pub(super) path_style: Option<bool>,
    pub(super) max_requests_per_second: Option<u32>,
    pub(super) max_connections: Option<usize>,
    pub(super) sse_c_key_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    pub(super) concurrency: Option<i64>,
    pub(super) part_size: Option<String>,
    pub(super) multipart_threshold: Option<String>,
    pub(super) max_bytes_in_flight: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) read_timeout: Option<String>,
    pub(super) verify_after_copy: Option<bool>,
    pub(super) copy_tags: Option<bool>,
    pub(super) max_bandwidth: Option<String>,
    pub(super) list_ranges: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBucket {
    pub(super) source: String,
    pub(super) destination: Option<String>,
    #[serde(default)]
    pub(super) prefix: String,
    #[serde(default)]
    pub(super) include: Vec<String>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    pub(super) min_size: Option<String>,
    pub(super) max_size: Option<String>,
    pub(super) modified_after: Option<String>,
    pub(super) modified_before: Option<String>,
    pub(super) inventory: Option<String>,
    pub(super) restore: Option<String>,
    pub(super) restore_days: Option<u32>,
    pub(super) events: Option<String>,
}
