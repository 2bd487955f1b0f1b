//! One pass: list every bucket while the copy takes what the listings saw, then what they left behind, restores, read-backs, deletions and the ledger's snapshot.
//! It must not speak SQL or stream bytes; the rooms it orders do.

use std::time::Instant;

use futures::stream::{self, StreamExt};

use crate::copy::abort;
use crate::copy::restore::RestoreSummary;
use crate::ledger::{self, ReadBack, State};
use crate::list::{self, ListError};
use tokio_util::sync::CancellationToken;

use super::*;

impl Runner {
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
            // The feeds are not read during a full pass: their lag grows.
            if let Ok(feeds) = ledger::feed_status(reader.as_ref()?) {
                crate::metrics::feed_lags(
                    feeds
                        .iter()
                        .map(|f| (f.source.as_str(), f.lag_seconds.unwrap_or(0.0))),
                );
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
                let listed = async {
                    // The safety net under an event feed, and cut-over's
                    // last look, must see today's bucket and its deletes:
                    // a listing, not an inventory of yesterday (which
                    // calls nothing gone). The first pass may read one.
                    let mut pair = pair.clone();
                    if pair.inventory.is_some()
                        && (self.list_always.load(std::sync::atomic::Ordering::Relaxed)
                            || (pair.events.is_some()
                                && writer
                                    .call(move |c| ledger::ever_listed(c, bucket_id))
                                    .await?))
                    {
                        pair.inventory = None;
                    }
                    list::list_bucket(
                        &self.engine.source,
                        writer,
                        (bucket_id, pass_id),
                        &pair,
                        (self.config.shard, self.config.transfer.list_ranges),
                        &self.stop,
                    )
                    .await
                }
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
