//! `ferry run` and `ferry verify`: passes of list → copy → delete, each recorded
//! in the ledger. It orders the rooms; its own S3 calls are the bucket checks and the deletions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use bytesize::ByteSize;
use futures::stream::{self, StreamExt};

use crate::config::{Config, OnConflict};
use crate::copy::restore::{RestoreSummary, Restorer};
use crate::copy::{abort, guard, Engine};
use crate::ledger::{self, LedgerError, PassSummary, ReadBack, State, Writer};
use crate::list::{self, ListError};
use crate::store::{self, Side, StoreError};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Buckets(Vec<StoreError>),
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

/// What one pass did, for the closing lines and the exit code.
#[derive(Debug, Default)]
pub struct PassReport {
    pub pass_id: i64,
    pub listed: u64,
    pub copy: PassSummary,
    /// Buckets whose listing failed, with why.
    pub list_failures: Vec<String>,
    /// Up to [`FAILED_SHOWN`] failed objects: bucket, key, reason.
    pub failed: Vec<(String, String, String)>,
    /// Keys this pass found gone from the source for the first time.
    pub deleted_at_source: u64,
    /// Keys removed at the destination (with `delete = true`).
    pub removed: u64,
    /// Up to [`FAILED_SHOWN`] keys left alone because the destination holds
    /// what ferry did not write: bucket, key, reason.
    pub conflicts: Vec<(String, String, String)>,
    pub took: Duration,
    /// What the pass's restores of archived objects did.
    pub restores: RestoreSummary,
    /// Archived objects still in `restoring` at the end of the pass.
    pub restoring: u64,
    /// With `[backup]`: the ledger snapshot this pass wrote (None: the newest
    /// is recent enough), or why it failed.
    pub snapshot: Option<Result<Option<String>, String>>,
}

pub const FAILED_SHOWN: usize = 100;

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

impl PassReport {
    pub fn succeeded(&self) -> bool {
        self.copy.objects_failed == 0
            && self.copy.objects_mismatched == 0
            && self.copy.objects_conflict == 0
            && self.list_failures.is_empty()
            && self.failed.is_empty()
            && self.conflicts.is_empty()
            && !matches!(self.snapshot, Some(Err(_)))
    }

    /// The lines a person reads at the end of a pass.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let secs = self.took.as_secs_f64().max(1e-3);
        if self.copy.objects_copied == 0 && self.succeeded() && self.restoring == 0 {
            out.push_str(&format!(
                "pass {}: listed {} objects; nothing to copy, every listed object is already at the destination\n",
                self.pass_id, self.listed
            ));
        } else {
            out.push_str(&format!(
                "pass {}: listed {} objects; copied {} objects ({}) in {:.1}s, {}/s; verified {}; {} failed\n",
                self.pass_id,
                self.listed,
                self.copy.objects_copied,
                ByteSize(self.copy.bytes_copied).display().iec(),
                secs,
                ByteSize((self.copy.bytes_copied as f64 / secs) as u64)
                    .display()
                    .iec(),
                self.copy.objects_verified,
                self.copy.objects_failed,
            ));
        }
        if self.restoring > 0 || self.restores != RestoreSummary::default() {
            out.push_str(&format!(
                "archived objects: {} restores asked this pass, {} found done and copied; {} objects still wait for their restore at the source. They are copied by a later pass once restored: the daemon does that by itself; after `run --once`, run again later (`ferry status` shows how long they have waited)\n",
                self.restores.asked, self.restores.ready, self.restoring
            ));
        }
        if self.restores.refused > 0 {
            out.push_str(&format!(
                "{} restore requests were refused by the source (see the log; s3:RestoreObject?): asked again next pass\n",
                self.restores.refused
            ));
        }
        match &self.snapshot {
            Some(Ok(Some(key))) => out.push_str(&format!("ledger snapshot written: {key}\n")),
            Some(Err(e)) => out.push_str(&format!("ledger snapshot failed: {e}\n")),
            Some(Ok(None)) | None => {}
        }
        if self.copy.objects_adopted > 0 {
            out.push_str(&format!(
                "adopted {} objects the destination already held without a ledger record: read back, proved to be the source's bytes, not sent again\n",
                self.copy.objects_adopted
            ));
        }
        if self.deleted_at_source > 0 {
            out.push_str(&format!(
                "{} keys deleted at the source since the last pass{}\n",
                self.deleted_at_source,
                if self.removed == 0 {
                    "; kept at the destination (delete = true removes them after two passes)"
                } else {
                    ""
                }
            ));
        }
        if self.removed > 0 {
            out.push_str(&format!(
                "{} keys removed at the destination, gone from the source for two passes\n",
                self.removed
            ));
        }
        for f in &self.list_failures {
            out.push_str(&format!("listing failed: {f}\n"));
        }
        for (bucket, key, reason) in &self.failed {
            out.push_str(&format!("failed: {bucket}/{key}: {reason}\n"));
        }
        for (bucket, key, reason) in &self.conflicts {
            out.push_str(&format!("conflict: {bucket}/{key}: {reason}\n"));
        }
        if self.copy.objects_failed as usize > self.failed.len()
            && self.failed.len() == FAILED_SHOWN
        {
            out.push_str("… more failed objects: see `ferry status`\n");
        }
        out
    }
}

/// Which copies `ferry verify` reads back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VerifyScope {
    /// Every copy: an audit, which a later `verify` carries on if this one is cut off.
    Audit,
    /// Only the copies never read back.
    Pending,
    /// A random share of every copy, 0 < share <= 1.
    Sample(f64),
}

pub struct VerifyOptions {
    pub scope: VerifyScope,
    /// Queue mismatched objects to be copied again by the next `run`.
    pub recopy: bool,
}

#[derive(Debug)]
pub struct VerifyReport {
    pub summary: PassSummary,
    /// Mismatched objects (up to [`FAILED_SHOWN`]): bucket, key, reason.
    pub mismatched: Vec<(String, String, String)>,
    pub requeued: usize,
    pub took: Duration,
    /// The audit read back (a plain `verify`), and whether it carried on an earlier one.
    pub audit: Option<ledger::Audit>,
    /// Stopped before it read back all it had to.
    pub cut_off: bool,
    /// Every copy by what proved its bytes were read as the source holds
    /// them (`ledger::proof_totals`).
    pub proofs: Vec<(String, u64)>,
}

impl VerifyReport {
    /// Nothing differs, nothing was unreadable, and nothing was left unread:
    /// a cut-off audit proves nothing about the copies it did not reach.
    pub fn succeeded(&self) -> bool {
        self.summary.objects_mismatched == 0 && self.summary.objects_failed == 0 && !self.cut_off
    }

    pub fn describe(&self) -> String {
        let secs = self.took.as_secs_f64().max(1e-3);
        let s = &self.summary;
        let mut out = String::new();
        if let Some(audit) = self.audit.as_ref().filter(|a| a.resumed) {
            out.push_str(&format!(
                "carrying on the audit begun at {}: copies read back since then are not read again\n",
                audit.started_at
            ));
        }
        out += &format!(
            "verified {} objects ({}) in {:.1}s, {}/s; {} mismatched; {} could not be read\n",
            s.objects_verified,
            ByteSize(s.bytes_verified).display().iec(),
            secs,
            ByteSize((s.bytes_verified as f64 / secs) as u64)
                .display()
                .iec(),
            s.objects_mismatched,
            s.objects_failed,
        );
        if self.cut_off {
            out.push_str(if self.audit.is_some() {
                "stopped before every copy was read back: run `ferry verify` again to carry on where it stopped\n"
            } else {
                "stopped before every copy was read back\n"
            });
        }
        if !self.proofs.is_empty() {
            let named: Vec<String> = self
                .proofs
                .iter()
                .map(|(proof, n)| format!("{n} {}", proof_words(proof)))
                .collect();
            out.push_str(&format!(
                "the bytes copied were proved the source's: {}\n",
                named.join(", ")
            ));
        }
        for (bucket, key, reason) in &self.mismatched {
            out.push_str(&format!("mismatched: {bucket}/{key}: {reason}\n"));
        }
        if self.requeued > 0 {
            out.push_str(&format!(
                "{} mismatched objects queued to be copied again by the next `ferry run`\n",
                self.requeued
            ));
        }
        out
    }
}

/// `copies.proof` as a person reads it.
fn proof_words(proof: &str) -> &str {
    match proof {
        "etag" => "by their ETag",
        "checksum" => "by the checksum the source stored",
        "etag+checksum" => "by both",
        "none" => "by nothing but this read-back (no MD5 ETag, no stored checksum)",
        _ => "before ferry recorded proofs",
    }
}

pub struct Runner {
    pub(crate) config: Config,
    pub(crate) stop: CancellationToken,
    pub(crate) engine: Arc<Engine>,
    pub(crate) bucket_ids: Vec<i64>,
    /// The rate of restore requests, kept across the daemon's passes.
    restorer: Restorer,
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
            let (tier, days) = (b.restore.name(), b.restore_days);
            writer
                .call(move |c| ledger::set_restore_policy(c, id, tier, days))
                .await?;
            bucket_ids.push(id);
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
        })
    }

    /// One pass: list every bucket into the ledger and copy what is pending
    /// while the listings go on; then copy what the listings sent back into
    /// the queue behind the copy (new versions of older keys).
    pub async fn pass(&self) -> Result<PassReport, RunError> {
        let started = Instant::now();
        // The backlog for the metrics during the pass, on a reader of its own.
        let (path, mut reader) = (self.config.ledger.clone(), None);
        let _metrics = crate::metrics::pass_started(move || {
            if reader.is_none() {
                reader = ledger::open_reader(&path).ok();
            }
            let rows = ledger::bucket_status(reader.as_ref()?).ok()?;
            Some(crate::metrics::backlog(
                rows.iter()
                    .map(|b| (b.pending, b.bytes_listed, b.bytes_copied)),
            ))
        });
        // A first pass can take days: snapshots are due during it too.
        let snapshots = self.snapshots_during_pass();
        let writer = &self.engine.writer;
        let (listed, listing_done) = tokio::sync::watch::channel(false);
        let listing = async {
            let listing = self.list_all().await;
            let _ = listed.send(true);
            listing
        };
        let copying = self.engine.copy_while_listing(
            self.bucket_ids.clone(),
            listing_done,
            &self.stop,
            self.config.shutdown_grace,
        );
        let (listing, copied) = tokio::join!(listing, copying);
        let (listing, mut copied) = (listing?, copied?);
        let pass_id = listing.pass_id;
        let listed_ids = listing.listed;
        // Archived objects: restores checked and asked as soon as the
        // listing is done, beside the copy of what it left behind (a restore
        // takes hours: it must not wait for a long copy, nor for a pass that
        // a restart cuts off); the ones found done are copied after. One
        // still under way waits for a later pass (`run --once` says so).
        let mut restores = RestoreSummary::default();
        if !self.stop.is_cancelled() {
            let (behind, asked) = tokio::join!(
                self.engine.copy_pending(
                    listed_ids.clone(),
                    &self.stop,
                    self.config.shutdown_grace
                ),
                crate::copy::restore::step(&self.engine, &self.restorer, &listed_ids, &self.stop)
            );
            copied.add(&behind?);
            restores = asked?;
            if restores.ready > 0 && !self.stop.is_cancelled() {
                let restored = self
                    .engine
                    .copy_pending(listed_ids.clone(), &self.stop, self.config.shutdown_grace)
                    .await?;
                copied.add(&restored);
            }
        }
        let mut report = PassReport {
            restores,
            pass_id,
            listed: listing.seen,
            deleted_at_source: listing.newly_missing,
            list_failures: listing.failures,
            copy: copied,
            ..PassReport::default()
        };
        let every_listing_complete = listing.complete;
        if self.config.transfer.verify_after_copy && !self.stop.is_cancelled() {
            // Objects a cut-off run copied but never read back.
            let leftover = crate::verify::read_back(
                &self.engine,
                listed_ids.clone(),
                ReadBack::Unread,
                1.0,
                &self.stop,
                self.config.shutdown_grace,
            )
            .await?;
            report.copy.add(&leftover);
        }
        // A pass whose listings are not all complete deletes nothing: a key
        // it did not see may still be at the source.
        if self.config.delete && every_listing_complete && !self.stop.is_cancelled() {
            report.removed = self.remove_deleted().await?;
        }
        if !self.stop.is_cancelled() {
            abort::abort_unwanted_uploads(&self.engine).await?;
        }
        let summary = report.copy.clone();
        writer
            .call(move |c| ledger::finish_pass(c, pass_id, &summary))
            .await?;
        report.failed = writer
            .call(|c| ledger::objects_in_state(c, State::Failed, FAILED_SHOWN))
            .await?;
        let mismatched = writer
            .call(|c| ledger::objects_in_state(c, State::Mismatched, FAILED_SHOWN))
            .await?;
        report.failed.extend(mismatched);
        report.conflicts = writer
            .call(|c| ledger::objects_in_state(c, State::Conflict, FAILED_SHOWN))
            .await?;
        report.restoring = writer
            .call(|c| ledger::restores_waiting(c))
            .await?
            .iter()
            .map(|w| w.objects)
            .sum();
        report.took = started.elapsed();
        let backlog = writer.call(|c| ledger::bucket_status(c)).await?;
        crate::metrics::pass_finished(
            pass_id,
            report.took,
            backlog.iter().map(|b| b.pending).sum(),
            backlog
                .iter()
                .map(|b| b.bytes_listed - b.bytes_copied.min(b.bytes_listed))
                .sum(),
        );
        if let Some(snapshots) = snapshots {
            snapshots.finish().await;
        }
        if !self.stop.is_cancelled() && self.config.backup.is_some() {
            report.snapshot = Some(
                crate::backup::snapshot_if_due(&self.config, &self.engine.destination, false)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "ledger snapshot failed; the next pass tries again");
                        crate::metrics::failed("ledger_snapshot");
                        e.to_string()
                    }),
            );
        }
        tracing::info!(
            pass = pass_id,
            objects_copied = report.copy.objects_copied,
            bytes_copied = report.copy.bytes_copied,
            objects_failed = report.copy.objects_failed,
            objects_verified = report.copy.objects_verified,
            objects_mismatched = report.copy.objects_mismatched,
            deleted_at_source = report.deleted_at_source,
            took = ?report.took,
            "pass finished"
        );
        Ok(report)
    }

    /// With `[backup]`, a task that takes a snapshot each time one is due
    /// while the pass runs, until told to stop (it finishes the one in flight).
    fn snapshots_during_pass(&self) -> Option<SnapshotsDuringPass> {
        let every = self.config.backup.as_ref()?.every;
        let (config, destination) = (self.config.clone(), self.engine.destination.clone());
        let stop = CancellationToken::new();
        let told = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = told.cancelled() => return,
                }
                if let Err(e) = crate::backup::snapshot_if_due(&config, &destination, false).await {
                    tracing::warn!(error = %e, "ledger snapshot failed; tried again when the next is due");
                    crate::metrics::failed("ledger_snapshot");
                }
            }
        });
        Some(SnapshotsDuringPass {
            stop,
            task: Some(task),
        })
    }

    /// Starts a pass and lists every bucket into the ledger. A bucket whose
    /// listing fails is reported and left out of the pass; only a ledger
    /// error stops it.
    pub(crate) async fn list_all(&self) -> Result<Listing, RunError> {
        let writer = &self.engine.writer;
        let pass_id = writer.call(|c| ledger::start_pass(c)).await?;
        writer.call(|c| ledger::requeue_failed(c)).await?;
        let mut listing = Listing {
            pass_id,
            complete: true,
            ..Listing::default()
        };
        // Buckets are listed side by side, a few at a time.
        let mut listings = stream::iter(self.config.buckets.iter().zip(&self.bucket_ids))
            .map(|(pair, &bucket_id)| async move {
                let listed = list::list_bucket(
                    &self.engine.source,
                    writer,
                    (bucket_id, pass_id),
                    pair,
                    (self.config.shard, self.config.transfer.list_ranges),
                    &self.stop,
                )
                .await;
                (pair, bucket_id, listed)
            })
            .buffer_unordered(LISTINGS_AT_ONCE);
        while let Some((pair, bucket_id, listed)) = listings.next().await {
            match listed {
                Ok(listed) => {
                    tracing::info!(bucket = %pair.source, prefix = %pair.prefix, objects = listed.seen,
                        gone_at_source = listed.newly_missing, ranges = listed.ranges,
                        largest_range = listed.largest_range, splits = listed.splits, "listed");
                    listing.seen += listed.seen;
                    listing.newly_missing += listed.newly_missing as u64;
                    listing.complete &= listed.complete;
                    listing.listed.push(bucket_id);
                }
                Err(ListError::Ledger(e)) => return Err(e.into()),
                Err(ListError::Store(e)) => {
                    tracing::error!(bucket = %pair.source, error = %e, "listing failed");
                    listing.failures.push(e.to_string());
                    listing.complete = false;
                }
            }
        }
        Ok(listing)
    }

    /// `delete = true`: keys missing at the source for two complete listings
    /// in a row are removed at the destination. Never in the pass that first
    /// saw them gone: a listing glitch must not delete anything. Only ferry's
    /// own copy is removed: a key that holds anything else is a conflict.
    async fn remove_deleted(&self) -> Result<u64, RunError> {
        let writer = &self.engine.writer;
        let mut removed = 0;
        let mut after_id = 0;
        loop {
            let ids = self.bucket_ids.clone();
            let batch = writer
                .call(move |c| ledger::deletable(c, &ids, DELETE_AFTER_PASSES, after_id, 500))
                .await?;
            let Some(last) = batch.last() else {
                return Ok(removed);
            };
            after_id = last.object_id;
            for gone in batch {
                match self.remove_one(&gone).await {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    // Tried again next pass.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not remove a key deleted at the source")
                    }
                }
            }
        }
    }

    /// What removing a key deleted at the source finds at the destination:
    /// ferry's own copy (to delete), nothing, or another writer's object.
    /// With `on_conflict = "overwrite"` whatever is there is taken as ferry's.
    pub(crate) async fn removal(
        &self,
        gone: &ledger::Deletable,
    ) -> Result<guard::Verdict, RunError> {
        if self.config.on_conflict == OnConflict::Overwrite {
            return Ok(guard::Verdict::Ours);
        }
        // A PUT ferry meant but never heard back from is its own copy too,
        // and so is an upload of ferry's that completed unheard (a kill, a
        // lost answer): the same two that a write may go over (`may_write`).
        let id = gone.object_id;
        let (upload_etag, intents) = self
            .engine
            .writer
            .call(move |c| {
                Ok((
                    ledger::etag_of_upload(c, id)?,
                    ledger::write_intents_of(c, id)?,
                ))
            })
            .await?;
        let mut also: Vec<guard::Known> = intents
            .iter()
            .map(|(md5, size)| guard::Known {
                etag: md5,
                size: Some(*size),
            })
            .collect();
        if let Some(etag) = &upload_etag {
            // Its ETag names its parts' MD5s and their count.
            also.push(guard::Known { etag, size: None });
        }
        guard::inspect(
            &self.engine.destination,
            self.engine.customer_key.as_ref(),
            (&gone.dest_bucket, &gone.key),
            gone.copied_etag.as_deref(),
            &also,
        )
        .await
        .map_err(|e| RunError::Buckets(vec![e]))
    }

    /// Whether a HEAD finds the key at the source. Only "no such key" says it
    /// is gone; any other failure keeps it (tried again next pass).
    async fn still_at_source(&self, gone: &ledger::Deletable) -> Result<bool, RunError> {
        let what = format!(
            "HeadObject {}/{} (before removing it)",
            gone.source_bucket, gone.key
        );
        match self
            .engine
            .source
            .head_object()
            .bucket(&gone.source_bucket)
            .key(&gone.key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match StoreError::from_sdk(Side::Source, what, e) {
                e if e.kind == store::FailureKind::NoSuchKey => Ok(false),
                e => Err(RunError::Buckets(vec![e])),
            },
        }
    }

    /// Removes one key deleted at the source, if what the destination holds
    /// is ferry's copy. Returns whether it removed it.
    async fn remove_one(&self, gone: &ledger::Deletable) -> Result<bool, RunError> {
        let (writer, id) = (&self.engine.writer, gone.object_id);
        let (bucket, key) = (&gone.dest_bucket, &gone.key);
        // Two listings said it is gone; the source itself must say so too
        // before anything is deleted (an inventory or a listing can miss a key).
        if self.still_at_source(gone).await? {
            tracing::warn!(bucket = %gone.source_bucket, key = %key,
                "listed as gone, but the source still answers for it: not removed");
            writer
                .call(move |c| ledger::record_still_at_source(c, id))
                .await?;
            return Ok(false);
        }
        match self.removal(gone).await? {
            guard::Verdict::Absent => {
                writer.call(move |c| ledger::record_removed(c, id)).await?;
                return Ok(false);
            }
            guard::Verdict::Foreign(why) => {
                let reason = format!("deleted at the source; {why}");
                tracing::warn!(bucket = %bucket, key = %key, reason = %reason, "conflict: not removed");
                writer
                    .call(move |c| ledger::record_conflict(c, id, &reason))
                    .await?;
                return Ok(false);
            }
            guard::Verdict::Ours | guard::Verdict::Known => {}
        }
        self.engine
            .destination
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                RunError::Buckets(vec![StoreError::from_sdk(
                    Side::Destination,
                    format!("DeleteObject {bucket}/{key}"),
                    e,
                )])
            })?;
        tracing::info!(bucket = %bucket, key = %key, "removed at the destination: deleted at the source two passes ago");
        writer.call(move |c| ledger::record_removed(c, id)).await?;
        Ok(true)
    }

    /// Lists every bucket whose listing the ledger does not hold complete
    /// (for `plan`, which needs a listing but copies nothing).
    pub async fn list_unlisted(&self) -> Result<(), RunError> {
        let writer = &self.engine.writer;
        for (pair, &bucket_id) in self.config.buckets.iter().zip(&self.bucket_ids) {
            let pairs = [pair.clone()];
            let db = writer.clone();
            let listed = db
                .call(move |c| crate::report::plan::all_listed(c, &pairs))
                .await?;
            if listed {
                continue;
            }
            tracing::info!(bucket = %pair.source, "listing for the plan");
            // Pass 0: a listing made by `plan`, before any pass ran.
            list::list_bucket(
                &self.engine.source,
                writer,
                (bucket_id, 0),
                pair,
                (self.config.shard, self.config.transfer.list_ranges),
                &self.stop,
            )
            .await
            .map_err(|e| match e {
                ListError::Ledger(e) => RunError::Ledger(e),
                ListError::Store(e) => RunError::Buckets(vec![e]),
            })?;
        }
        Ok(())
    }

    /// `ferry verify`: read copies back and record what they hold.
    pub async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport, RunError> {
        let started = Instant::now();
        let writer = &self.engine.writer;
        let audit = match options.scope {
            VerifyScope::Audit => Some(writer.call(|c| ledger::begin_or_resume_audit(c)).await?),
            _ => None,
        };
        let (read_back, sample) = match (&audit, options.scope) {
            (Some(audit), _) => (ReadBack::NotSince(audit.started_at.clone()), 1.0),
            (None, VerifyScope::Sample(share)) => (ReadBack::Arrived, share),
            (None, _) => (ReadBack::Unread, 1.0),
        };
        let summary = crate::verify::read_back(
            &self.engine,
            self.bucket_ids.clone(),
            read_back,
            sample,
            &self.stop,
            self.config.shutdown_grace,
        )
        .await?;
        let cut_off = self.stop.is_cancelled();
        if let Some(audit) = audit.as_ref().filter(|_| !cut_off) {
            let id = audit.id;
            writer.call(move |c| ledger::finish_audit(c, id)).await?;
        }
        let mismatched = writer
            .call(|c| ledger::objects_in_state(c, State::Mismatched, FAILED_SHOWN))
            .await?;
        let ids = self.bucket_ids.clone();
        let proofs = writer.call(move |c| ledger::proof_totals(c, &ids)).await?;
        let requeued = if options.recopy {
            writer.call(|c| ledger::requeue_mismatched(c)).await?
        } else {
            0
        };
        Ok(VerifyReport {
            summary,
            mismatched,
            requeued,
            took: started.elapsed(),
            audit,
            cut_off,
            proofs,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }
}

/// The task of [`Runner::snapshots_during_pass`]. Dropped (a pass that
/// ends in an error), it is told to stop and ends on its own.
struct SnapshotsDuringPass {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SnapshotsDuringPass {
    /// Stops the task, letting a snapshot in flight finish rather than
    /// leave its upload behind.
    async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SnapshotsDuringPass {
    fn drop(&mut self) {
        self.stop.cancel();
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
