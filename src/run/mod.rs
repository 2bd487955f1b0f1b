//! `ferry run` and `ferry verify`: passes of list → copy → delete, each recorded
//! in the ledger. It orders the rooms; its own S3 calls are the bucket checks and the deletions.
//!
//! One file per step: `pass.rs` the order of a pass, `deletes.rs` what
//! `delete = true` removes, `commands.rs` `verify` and the listing `plan`
//! needs, `report.rs` what a pass and a verify tell a person; here the
//! runner itself, started once the buckets are checked.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;

use crate::config::Config;
use crate::copy::restore::Restorer;
use crate::copy::Engine;
use crate::ledger::{self, LedgerError, Writer};
use crate::store::{self, Side, StoreError};
use tokio_util::sync::CancellationToken;

mod commands;
mod cutover;
mod deletes;
mod follow;
mod pass;
mod report;

pub use commands::plan;
pub use cutover::Cutover;
pub use follow::FollowReport;
pub use report::{PassReport, VerifyOptions, VerifyReport, VerifyScope, FAILED_SHOWN};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Buckets(Vec<StoreError>),
    /// An event queue cannot be read (named, with the fix).
    #[error("{0}")]
    Events(String),
    /// The first signal came while ferry was starting: nothing was copied.
    #[error("stopped by a signal while starting (checking the buckets), before anything was copied; the next run starts from the ledger as it is")]
    Stopped,
    /// The ledger was listed with another shard: its other keys would look
    /// deleted at the source.
    #[error("the ledger {ledger} was listed with shard {recorded} for bucket {bucket}; this run asks for {wanted}. A listing under another shard would call the other shards' keys deleted at the source. Run each shard with a ledger of its own, or go back to {recorded}")]
    Scope {
        ledger: String,
        bucket: String,
        recorded: String,
        wanted: String,
    },
}

impl RunError {
    /// 2 for what the user must change before anything can run, 0 for a
    /// stop asked for, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scope { .. } => 2,
            RunError::Stopped => 0,
            _ => 1,
        }
    }
}

/// A key missing from this many complete listings in a row is removed at the
/// destination (with `delete = true`): never on the first, so that a listing
/// glitch deletes nothing.
pub const DELETE_AFTER_PASSES: u32 = 2;

/// How many buckets are listed at once: each listing is one request at a
/// time, so a few side by side hide the stores' latency without crowding them.
const LISTINGS_AT_ONCE: usize = 4;

/// What the listings of a pass found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub pass_id: i64,
    /// Buckets listed (completely or until a stop).
    pub listed: Vec<i64>,
    pub seen: u64,
    pub newly_missing: u64,
    /// Every listing ran to the end.
    pub complete: bool,
    pub failures: Vec<String>,
}

pub struct Runner {
    pub(crate) config: Config,
    pub(crate) stop: CancellationToken,
    pub(crate) engine: Arc<Engine>,
    pub(crate) bucket_ids: Vec<i64>,
    /// The rate of restore requests, kept across the daemon's passes.
    restorer: Restorer,
    /// Every pass lists, whatever inventories the buckets name (`cutover`).
    pub(crate) list_always: std::sync::atomic::AtomicBool,
}

impl Runner {
    /// Opens the ledger, builds both clients and checks that every configured
    /// bucket can be reached before anything is written; with
    /// `create_buckets = true`, creates the missing destination buckets.
    pub async fn start(config: Config, stop: CancellationToken) -> Result<Runner, RunError> {
        Runner::start_with(config, stop, true).await
    }

    /// As [`Runner::start`], for `plan` and `run --dry-run`: nothing is
    /// created at the destination, whatever `create_buckets` says.
    pub async fn start_read_only(
        config: Config,
        stop: CancellationToken,
    ) -> Result<Runner, RunError> {
        Runner::start_with(config, stop, false).await
    }

    /// `copying`: a run that copies, which may create destination buckets
    /// and must be able to read the source's tags; `plan` and the dry run
    /// do neither.
    async fn start_with(
        config: Config,
        stop: CancellationToken,
        copying: bool,
    ) -> Result<Runner, RunError> {
        let budget = Engine::budget_for(&config.transfer);
        let checked = async {
            let source = store::client_with(
                Side::Source,
                &config.source,
                &config.transfer,
                Some(budget.clone()),
            )
            .await;
            let destination = store::client_with(
                Side::Destination,
                &config.destination,
                &config.transfer,
                Some(budget.clone()),
            )
            .await;
            check_buckets(&config, &source, &destination, copying).await?;
            Ok::<_, RunError>((source, destination))
        };
        // A store that does not answer holds the checks for minutes of
        // timeouts and retries; they have nothing to finish, so a signal
        // ends them at once.
        let (source, destination) = tokio::select! {
            checked = checked => checked?,
            _ = stop.cancelled() => return Err(RunError::Stopped),
        };
        let writer = Writer::open(&config.ledger)?;
        let mut bucket_ids = Vec::new();
        let wanted = config.shard.map(|s| s.to_string());
        for b in &config.buckets {
            let (s, d, p) = (b.source.clone(), b.destination.clone(), b.prefix.clone());
            let id = writer
                .call(move |c| ledger::ensure_bucket(c, &s, &d, &p))
                .await?;
            let shard = wanted.clone();
            let recorded = writer
                .call(move |c| ledger::check_scope(c, id, shard.as_deref()))
                .await?;
            if let Some(recorded) = recorded {
                return Err(RunError::Scope {
                    ledger: config.ledger.display().to_string(),
                    bucket: b.source.clone(),
                    recorded,
                    wanted: wanted.unwrap_or_else(|| "all".into()),
                });
            }
            if b.events.is_none() {
                writer.call(move |c| ledger::stop_following(c, id)).await?;
            }
            let (tier, days) = (b.restore.name(), b.restore_days);
            writer
                .call(move |c| ledger::set_restore_policy(c, id, tier, days))
                .await?;
            bucket_ids.push(id);
        }
        let followed = config.buckets.iter().filter(|b| b.events.is_some()).count();
        if followed > 0 && followed < config.buckets.len() {
            tracing::warn!(
                full_listing_interval = ?config.full_listing_interval,
                "some buckets follow an event queue and some do not: the daemon lists every bucket only every full_listing_interval, so the others' changes wait that long; give each bucket its `events`, or run them under a ferry of their own"
            );
        }
        let restorer = Restorer::new(config.restore_requests_per_second);
        let mut engine = Engine::new(source, destination, writer, config.transfer.clone(), budget);
        engine.on_conflict = config.on_conflict;
        engine.customer_key = config.destination.customer_key.clone();
        let engine = Arc::new(engine);
        Ok(Runner {
            config,
            stop,
            engine,
            bucket_ids,
            restorer,
            list_always: Default::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }
}

/// Every bucket is checked up front, so a typo is reported at once, all
/// together, and not as a thousand failed objects.
async fn check_buckets(
    config: &Config,
    source: &Client,
    destination: &Client,
    copying: bool,
) -> Result<(), RunError> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut wanted: Vec<Vec<(Side, &Client, &String)>> = config
        .buckets
        .iter()
        .map(|b| {
            vec![
                (Side::Source, source, &b.source),
                (Side::Destination, destination, &b.destination),
            ]
        })
        .collect();
    // The ledger's snapshots go there at the end of a pass.
    if let (Some(backup), true) = (&config.backup, copying) {
        wanted.push(vec![(Side::Destination, destination, &backup.bucket)]);
    }
    for pair in wanted {
        for (side, client, name) in pair {
            if !seen.insert((side == Side::Source, name.clone())) {
                continue;
            }
            if let Err(e) = client.head_bucket().bucket(name).send().await {
                let mut e = StoreError::from_sdk(side, format!("bucket {name}"), e);
                if e.kind == store::FailureKind::NoSuchKey {
                    // HEAD has no body, so a missing bucket is a bare 404.
                    e.kind = store::FailureKind::NoSuchBucket;
                    e.message = format!("does not exist. Create it at the {side}, or fix the bucket name in the config");
                    if side == Side::Destination {
                        e.message.push_str(", or set create_buckets = true");
                    }
                }
                if e.kind == store::FailureKind::NoSuchBucket
                    && side == Side::Destination
                    && config.create_buckets
                {
                    if !copying {
                        tracing::info!(bucket = %name, "the destination bucket does not exist; a run would create it (create_buckets = true)");
                        continue;
                    }
                    match client.create_bucket().bucket(name).send().await {
                        Ok(_) => {
                            tracing::info!(bucket = %name, "created the destination bucket (create_buckets = true)");
                            continue;
                        }
                        Err(create) => {
                            e = StoreError::from_sdk(side, format!("CreateBucket {name}"), create)
                        }
                    }
                }
                if e.kind == store::FailureKind::Unreachable {
                    let store = if side == Side::Source {
                        &config.source
                    } else {
                        &config.destination
                    };
                    let endpoint = store.endpoint.as_deref().unwrap_or("AWS");
                    e.message = format!("{} [{side}.endpoint = {endpoint}]", e.message);
                }
                problems.push(e);
            } else if side == Side::Source && copying && config.transfer.copy_tags {
                if let Err(e) = crate::copy::tags::check_readable(client, name).await {
                    problems.push(e);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RunError::Buckets(problems))
    }
}
