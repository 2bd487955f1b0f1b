//! The copy engine: takes pending objects from the ledger and streams each one
//! from the source to the destination, through a bounded pool of workers.
//!
//! `single.rs` copies an object in one PUT, `multipart.rs` part by part;
//! `hashing.rs` checks the bytes on their way; `scheduler.rs` bounds the pool.

pub mod hashing;
pub mod metadata;
mod multipart;
pub mod scheduler;
mod single;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::TransferConfig;
use crate::ledger::{self, CopyRecord, LedgerError, PassSummary, WorkItem, Writer};
use crate::store::{FailureKind, Side, StoreError};
use scheduler::Budget;

/// How many times one request is tried before its object counts as failed.
const ATTEMPTS: u32 = 4;
/// How many pending objects are read from the ledger at a time.
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger cannot record progress (a full disk, say): the run stops.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Everything a worker needs, shared by all of them.
pub struct Engine {
    pub source: Client,
    pub destination: Client,
    pub writer: Writer,
    pub transfer: TransferConfig,
    budget: Budget,
}

impl Engine {
    pub fn new(
        source: Client,
        destination: Client,
        writer: Writer,
        transfer: TransferConfig,
    ) -> Engine {
        let budget = Budget::new(transfer.concurrency, transfer.max_bytes_in_flight);
        Engine {
            source,
            destination,
            writer,
            transfer,
            budget,
        }
    }

    /// Copies every pending object of `bucket_ids`. Objects that fail are
    /// recorded as failed and the pass goes on; only a ledger error stops it.
    ///
    /// When `stop` is cancelled no new object starts; objects in flight get
    /// `grace` to finish and are then dropped. A dropped object keeps its
    /// upload and acknowledged parts in the ledger and resumes next run.
    pub async fn copy_pending(
        self: &Arc<Self>,
        bucket_ids: Vec<i64>,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError> {
        let mut summary = PassSummary::default();
        let mut workers = JoinSet::new();
        let mut after_id = 0;
        'batches: while !stop.is_cancelled() {
            let ids = bucket_ids.clone();
            let batch = self
                .writer
                .call(move |c| ledger::pending_batch(c, &ids, after_id, BATCH))
                .await?;
            let Some(last) = batch.last() else { break };
            after_id = last.object_id;
            for item in batch {
                while workers.len() >= self.transfer.concurrency {
                    tokio::select! {
                        done = workers.join_next() => tally(&mut summary, done)?,
                        _ = stop.cancelled() => break 'batches,
                    }
                }
                let engine = self.clone();
                workers.spawn(async move { engine.copy_and_record(item).await });
            }
        }
        let mut deadline = None;
        loop {
            let next = if stop.is_cancelled() {
                let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                match tokio::time::timeout_at(deadline, workers.join_next()).await {
                    Ok(done) => done,
                    Err(_) => {
                        tracing::warn!(
                            objects = workers.len(),
                            "shutdown grace is over: dropping work in flight; it resumes on the next run"
                        );
                        workers.shutdown().await;
                        break;
                    }
                }
            } else {
                tokio::select! {
                    done = workers.join_next() => done,
                    // A signal while the last objects run starts the grace period.
                    _ = stop.cancelled() => continue,
                }
            };
            match next {
                Some(done) => tally(&mut summary, Some(done))?,
                None => break,
            }
        }
        Ok(summary)
    }

    /// Copies one object and writes the outcome to the ledger. A source that
    /// changes mid-copy is read again and the new version copied from scratch.
    async fn copy_and_record(&self, mut item: WorkItem) -> Result<Outcome, LedgerError> {
        let started = std::time::Instant::now();
        let mut versions_seen = 1;
        let result = loop {
            let result = if item.source_etag.contains('-')
                || item.size >= self.transfer.multipart_threshold
            {
                multipart::copy(self, &item).await
            } else {
                single::copy(self, &item).await
            };
            match result {
                Err(CopyError::Store(e))
                    if e.kind == FailureKind::SourceChanged && versions_seen < ATTEMPTS =>
                {
                    versions_seen += 1;
                    match self.new_source_version(&item).await {
                        Ok(newer) => item = newer,
                        Err(e) => break Err(e),
                    }
                }
                other => break other,
            }
        };
        let id = item.object_id;
        match result {
            Ok(record) => {
                let bytes = record.size;
                self.writer
                    .call(move |c| ledger::record_copied(c, &record))
                    .await?;
                tracing::debug!(bucket = %item.source_bucket, key = %item.key, bytes, took = ?started.elapsed(), "copied");
                Ok(Outcome::Copied(bytes))
            }
            Err(CopyError::Ledger(e)) => Err(e),
            Err(CopyError::Store(e)) => {
                let text = e.to_string();
                tracing::warn!(bucket = %item.source_bucket, key = %item.key, error = %text, "copy failed");
                self.writer
                    .call(move |c| ledger::record_failed(c, id, &text))
                    .await?;
                Ok(Outcome::Failed)
            }
        }
    }

    /// Reads the source's current version of an object that changed and
    /// records it in the ledger as the version to copy.
    async fn new_source_version(&self, item: &WorkItem) -> Result<WorkItem, CopyError> {
        let what = format!("HeadObject {}/{}", item.source_bucket, item.key);
        let head = self
            .source
            .head_object()
            .bucket(&item.source_bucket)
            .key(&item.key)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
        let mut newer = item.clone();
        newer.size = head.content_length().unwrap_or(0).max(0) as u64;
        newer.source_etag = hashing::bare_etag(head.e_tag().unwrap_or_default()).to_owned();
        tracing::info!(bucket = %item.source_bucket, key = %item.key, old_etag = %item.source_etag,
            new_etag = %newer.source_etag, "the source object changed mid-copy; copying the new version");
        let (id, size, etag) = (newer.object_id, newer.size, newer.source_etag.clone());
        self.writer
            .call(move |c| ledger::record_new_version(c, id, size, &etag))
            .await?;
        Ok(newer)
    }
}

enum Outcome {
    Copied(u64),
    Failed,
}

fn tally(
    summary: &mut PassSummary,
    done: Option<Result<Result<Outcome, LedgerError>, tokio::task::JoinError>>,
) -> Result<(), LedgerError> {
    match done {
        None => {}
        Some(Ok(Ok(Outcome::Copied(bytes)))) => {
            summary.objects_copied += 1;
            summary.bytes_copied += bytes;
        }
        Some(Ok(Ok(Outcome::Failed))) => summary.objects_failed += 1,
        Some(Ok(Err(e))) => return Err(e),
        // A worker panicked: a bug, but the object stays pending in the ledger.
        Some(Err(e)) => {
            tracing::error!(error = %e, "a copy worker stopped unexpectedly");
            summary.objects_failed += 1;
        }
    }
    Ok(())
}

/// Runs `attempt` until it succeeds, fails in a way retrying cannot fix, or
/// has been tried [`ATTEMPTS`] times. Backoff is exponential with jitter.
pub(crate) async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, CopyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CopyError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(CopyError::Store(e)) if e.kind.is_retryable() && tries < ATTEMPTS => {
                let backoff = Duration::from_millis(200 * 2u64.pow(tries - 1));
                let jitter =
                    Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                tracing::debug!(what, tries, error = %e, "retrying");
                tokio::time::sleep(backoff + jitter).await;
            }
            other => return other,
        }
    }
}

/// An ETag that does not match the MD5 of what was sent: the store holds
/// something other than what ferry read.
pub(crate) fn check_etag(
    action: &str,
    expected: &str,
    got: Option<&str>,
) -> Result<String, CopyError> {
    let got = hashing::bare_etag(got.unwrap_or_default()).to_owned();
    if got == expected {
        Ok(got)
    } else {
        Err(StoreError::new(
            Side::Destination,
            FailureKind::Corrupt,
            action,
            format!("the destination answered ETag {got:?} but the bytes sent have MD5 {expected}"),
        )
        .into())
    }
}

pub(crate) fn copy_record(
    item: &WorkItem,
    dest_etag: String,
    whole: &hashing::Digests,
    part_size: Option<u64>,
    part_count: u32,
) -> CopyRecord {
    CopyRecord {
        object_id: item.object_id,
        source_etag: item.source_etag.clone(),
        dest_etag,
        size: whole.len,
        sha256: whole.sha256_hex(),
        md5: whole.md5_hex(),
        part_size,
        part_count,
    }
}
