//! The copy engine: takes pending objects from the ledger and streams each one
//! from the source to the destination, through a bounded pool of workers.
//!
//! `single.rs` copies an object in one PUT, `multipart.rs` part by part;
//! `hashing.rs` checks the bytes on their way; `scheduler.rs` bounds the pool.

pub mod abort;
pub mod guard;
pub mod hashing;
pub mod layout;
pub mod metadata;
mod multipart;
pub mod scheduler;
mod single;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{OnConflict, TransferConfig};
use crate::ledger::{self, CopyRecord, LedgerError, PassSummary, VerifyItem, WorkItem, Writer};
use crate::store::{FailureKind, Side, StoreError};
use scheduler::Budget;

use crate::store::ATTEMPTS;
/// How many times an object is read whole when its bytes hash to something
/// other than the source's ETag: once more, then it is `failed` with the
/// reason, and the next pass tries again. Each read costs egress.
const WHOLE_READS: u32 = 2;
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
    pub(crate) budget: Arc<Budget>,
    /// Whether a destination key ferry did not write last may be written.
    pub on_conflict: OnConflict,
}

impl Engine {
    /// `budget` comes from [`Engine::budget_for`], shared with the clients'
    /// throttle watch.
    pub fn new(
        source: Client,
        destination: Client,
        writer: Writer,
        transfer: TransferConfig,
        budget: Arc<Budget>,
    ) -> Engine {
        Engine {
            source,
            destination,
            writer,
            transfer,
            budget,
            on_conflict: OnConflict::Keep,
        }
    }

    pub fn budget_for(transfer: &TransferConfig) -> Arc<Budget> {
        Arc::new(Budget::new(
            transfer.concurrency,
            transfer.max_bytes_in_flight,
        ))
    }

    /// Copies every pending object of `bucket_ids`. Objects that fail are
    /// recorded as failed and the pass goes on; only a ledger error stops it.
    pub async fn copy_pending(
        self: &Arc<Self>,
        bucket_ids: Vec<i64>,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError> {
        let ids = bucket_ids.clone();
        let totals = self
            .writer
            .call(move |c| ledger::totals_in_states(c, &ids, "'listed', 'copying'"))
            .await?;
        let writer = self.writer.clone();
        let fetch = move |after_id| {
            let (writer, ids) = (writer.clone(), bucket_ids.clone());
            async move {
                let batch = writer
                    .call(move |c| ledger::pending_batch(c, &ids, after_id, BATCH))
                    .await?;
                Ok(batch.last().map(|i| i.object_id).map(|last| (last, batch)))
            }
        };
        let work = |engine: Arc<Engine>, item| async move { engine.copy_and_record(item).await };
        self.drive(fetch, work, ("copy", totals), stop, grace).await
    }

    /// Reads back every copied object of `bucket_ids` (with `again`, the
    /// verified ones too), or a random `sample` fraction of them, and records
    /// what it found.
    pub async fn verify_pending(
        self: &Arc<Self>,
        bucket_ids: Vec<i64>,
        again: bool,
        sample: f64,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError> {
        let ids = bucket_ids.clone();
        let states = if again {
            "'copied', 'verified', 'mismatched'"
        } else {
            "'copied'"
        };
        let (objects, bytes) = self
            .writer
            .call(move |c| ledger::totals_in_states(c, &ids, states))
            .await?;
        let totals = (
            (objects as f64 * sample.min(1.0)) as u64,
            (bytes as f64 * sample.min(1.0)) as u64,
        );
        let writer = self.writer.clone();
        let fetch = move |after_id| {
            let (writer, ids) = (writer.clone(), bucket_ids.clone());
            async move {
                let mut batch = writer
                    .call(move |c| ledger::verify_batch(c, &ids, again, after_id, BATCH))
                    .await?;
                let last = batch.last().map(|i| i.object_id);
                batch.retain(|_| sample >= 1.0 || fastrand::f64() < sample);
                Ok(last.map(|last| (last, batch)))
            }
        };
        let work = |engine: Arc<Engine>, item: VerifyItem| async move {
            engine.verify_and_record(&item).await
        };
        self.drive(fetch, work, ("verify", totals), stop, grace)
            .await
    }

    /// The bounded pool: takes batches from `fetch` (the last id seen and the
    /// items, or None when done) and runs `work` on each item, at most
    /// `concurrency` at a time.
    ///
    /// When `stop` is cancelled no new item starts; items in flight get
    /// `grace` to finish and are then dropped. A dropped copy keeps its
    /// upload and acknowledged parts in the ledger and resumes next run.
    async fn drive<I, Fetch, FetchFut, Work, WorkFut>(
        self: &Arc<Self>,
        mut fetch: Fetch,
        work: Work,
        (label, (objects, bytes)): (&str, (u64, u64)),
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError>
    where
        Fetch: FnMut(i64) -> FetchFut,
        FetchFut: Future<Output = Result<Option<(i64, Vec<I>)>, LedgerError>>,
        Work: Fn(Arc<Engine>, I) -> WorkFut,
        WorkFut: Future<Output = Result<PassSummary, LedgerError>> + Send + 'static,
    {
        let mut summary = PassSummary::default();
        let mut workers = JoinSet::new();
        let mut after_id = 0;
        crate::progress::pass_started(label, objects, bytes);
        let mut finished = 0;
        let mut settle = |summary: &mut PassSummary, done| {
            tally(summary, done)?;
            finished += 1;
            crate::progress::objects_done(finished, objects);
            Ok::<(), LedgerError>(())
        };
        'batches: while !stop.is_cancelled() {
            let Some((last, batch)) = fetch(after_id).await? else {
                break;
            };
            after_id = last;
            for item in batch {
                while workers.len() >= self.transfer.concurrency {
                    tokio::select! {
                        done = workers.join_next() => settle(&mut summary, done)?,
                        _ = stop.cancelled() => break 'batches,
                    }
                }
                let in_flight = crate::metrics::InFlight::object();
                let job = work(self.clone(), item);
                workers.spawn(async move {
                    let _in_flight = in_flight;
                    job.await
                });
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
                Some(done) => settle(&mut summary, Some(done))?,
                None => break,
            }
        }
        crate::progress::pass_finished();
        Ok(summary)
    }

    /// Reads one copy back and records the verdict.
    async fn verify_and_record(&self, item: &VerifyItem) -> Result<PassSummary, LedgerError> {
        let verdict = match crate::verify::verify_object(self, item).await {
            Ok(v) => v,
            Err(CopyError::Ledger(e)) => return Err(e),
            // Could not read it (network, credentials): no verdict either way.
            Err(CopyError::Store(e)) => {
                tracing::warn!(bucket = %item.dest_bucket, key = %item.key, error = %e, "could not verify");
                return Ok(PassSummary {
                    objects_failed: 1,
                    ..PassSummary::default()
                });
            }
        };
        let ok = verdict.ok;
        if ok {
            crate::metrics::verified(item.size);
        } else {
            crate::metrics::failed("mismatch");
            tracing::warn!(bucket = %item.dest_bucket, key = %item.key, reason = ?verdict.reason, "mismatch");
        }
        self.writer
            .call(move |c| ledger::record_verification(c, &verdict))
            .await?;
        Ok(if ok {
            PassSummary {
                objects_verified: 1,
                bytes_verified: item.size,
                ..PassSummary::default()
            }
        } else {
            PassSummary {
                objects_mismatched: 1,
                ..PassSummary::default()
            }
        })
    }

    /// Copies one object and writes the outcome to the ledger. A source that
    /// changes mid-copy is read again and the new version copied from scratch.
    async fn copy_and_record(&self, mut item: WorkItem) -> Result<PassSummary, LedgerError> {
        let started = std::time::Instant::now();
        let (mut versions_seen, mut whole_reads) = (1, 1);
        let id = item.object_id;
        match self.may_write(&item).await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                tracing::warn!(bucket = %item.dest_bucket, key = %item.key, reason = %reason, "conflict: not copied");
                crate::metrics::failed("conflict");
                self.writer
                    .call(move |c| ledger::record_conflict(c, id, &reason))
                    .await?;
                return Ok(PassSummary {
                    objects_conflict: 1,
                    ..PassSummary::default()
                });
            }
            Err(CopyError::Ledger(e)) => return Err(e),
            Err(CopyError::Store(e)) => return self.record_failure(&item, e).await,
        }
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
                Err(CopyError::Store(e))
                    if e.kind == FailureKind::SourceCorrupt && whole_reads < WHOLE_READS =>
                {
                    whole_reads += 1;
                    crate::metrics::retried();
                    tracing::warn!(bucket = %item.source_bucket, key = %item.key, error = %e, "reading the object again");
                }
                other => break other,
            }
        };
        match result {
            Ok(record) => {
                let bytes = record.size;
                let check = VerifyItem {
                    object_id: id,
                    source_bucket: item.source_bucket.clone(),
                    dest_bucket: item.dest_bucket.clone(),
                    key: item.key.clone(),
                    size: record.size,
                    dest_etag: record.dest_etag.clone(),
                    sha256: record.sha256.clone(),
                    md5: record.md5.clone(),
                };
                self.writer
                    .call(move |c| ledger::record_copied(c, &record))
                    .await?;
                tracing::debug!(bucket = %item.source_bucket, key = %item.key, bytes, took = ?started.elapsed(), "copied");
                crate::metrics::copied(bytes);
                let copied = PassSummary {
                    objects_copied: 1,
                    bytes_copied: bytes,
                    ..PassSummary::default()
                };
                if !self.transfer.verify_after_copy {
                    return Ok(copied);
                }
                let verified = self.verify_and_record(&check).await?;
                if verified.objects_mismatched > 0 {
                    // A mismatch is a retry, never a success: the next pass copies it again.
                    let reason = "read back after the copy, it differs from what was sent; it will be copied again";
                    self.writer
                        .call(move |c| ledger::record_failed(c, id, reason))
                        .await?;
                    return Ok(PassSummary {
                        objects_failed: 1,
                        ..verified
                    });
                }
                Ok(PassSummary {
                    objects_failed: verified.objects_failed,
                    ..PassSummary {
                        objects_verified: verified.objects_verified,
                        bytes_verified: verified.bytes_verified,
                        ..copied
                    }
                })
            }
            Err(CopyError::Ledger(e)) => Err(e),
            Err(CopyError::Store(e)) if e.kind == FailureKind::CustomerKey => {
                let reason = e.to_string();
                tracing::warn!(bucket = %item.source_bucket, key = %item.key, reason = %reason, "skipped");
                self.writer
                    .call(move |c| ledger::record_skipped(c, id, &reason))
                    .await?;
                Ok(PassSummary::default())
            }
            Err(CopyError::Store(e)) => self.record_failure(&item, e).await,
        }
    }

    async fn record_failure(
        &self,
        item: &WorkItem,
        e: StoreError,
    ) -> Result<PassSummary, LedgerError> {
        crate::metrics::failed(e.kind.label());
        let text = e.to_string();
        tracing::warn!(bucket = %item.source_bucket, key = %item.key, error = %text, "copy failed");
        let id = item.object_id;
        self.writer
            .call(move |c| ledger::record_failed(c, id, &text))
            .await?;
        Ok(PassSummary {
            objects_failed: 1,
            ..PassSummary::default()
        })
    }

    /// None when the copy may be written; else why not. ferry may overwrite
    /// only its own copy (or an upload of its own that completed before a
    /// crash, or bytes identical to the source's), and nothing at all is
    /// checked with `on_conflict = "overwrite"`.
    async fn may_write(&self, item: &WorkItem) -> Result<Option<String>, CopyError> {
        if self.on_conflict == OnConflict::Overwrite || item.recopy_approved {
            return Ok(None);
        }
        let id = item.object_id;
        let upload_etag = self
            .writer
            .call(move |c| ledger::etag_of_upload(c, id))
            .await?;
        // Bytes identical to the source version at hand, and an upload of
        // ferry's own that completed before a crash, are ferry's to write over.
        let mut also = vec![guard::Known {
            etag: &item.source_etag,
            size: Some(item.size),
        }];
        if let Some(etag) = &upload_etag {
            also.push(guard::Known {
                etag,
                size: Some(item.size),
            });
        }
        let verdict = guard::inspect(
            &self.destination,
            &item.dest_bucket,
            &item.key,
            item.copied_etag.as_deref(),
            &also,
        )
        .await?;
        Ok(match verdict {
            guard::Verdict::Foreign(why) => Some(why),
            guard::Verdict::Absent | guard::Verdict::Ours => None,
        })
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

fn tally(
    summary: &mut PassSummary,
    done: Option<Result<Result<PassSummary, LedgerError>, tokio::task::JoinError>>,
) -> Result<(), LedgerError> {
    match done {
        None => {}
        Some(Ok(Ok(one))) => summary.add(&one),
        Some(Ok(Err(e))) => return Err(e),
        // A worker panicked: a bug, but the object stays pending in the ledger.
        Some(Err(e)) => {
            tracing::error!(error = %e, "a worker stopped unexpectedly");
            summary.objects_failed += 1;
        }
    }
    Ok(())
}

/// Runs `attempt` until it succeeds, fails in a way retrying cannot fix, or
/// has been tried [`ATTEMPTS`] times. Backoff is exponential with jitter.
/// Successes raise the requests in flight again after a store throttled
/// (the clients' throttle watch lowers them).
pub(crate) async fn with_retries<T, F, Fut>(
    budget: &Budget,
    what: &str,
    mut attempt: F,
) -> Result<T, CopyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CopyError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let result = attempt().await;
        if result.is_ok() {
            budget.succeeded();
        }
        match result {
            Err(CopyError::Store(e)) if e.kind.is_retryable() && tries < ATTEMPTS => {
                let backoff = Duration::from_millis(200 * 2u64.pow(tries - 1));
                let jitter =
                    Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                tracing::debug!(what, tries, error = %e, "retrying");
                crate::metrics::retried();
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

/// Whether a source ETag is the MD5 of the object's bytes: a single-part
/// upload, stored unencrypted or with SSE-S3 (SSE-KMS and SSE-C ETags are not).
pub(crate) fn etag_is_md5(
    etag: &str,
    sse: Option<&aws_sdk_s3::types::ServerSideEncryption>,
) -> bool {
    use aws_sdk_s3::types::ServerSideEncryption as Sse;
    etag.len() == 32
        && etag.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(sse, None | Some(Sse::Aes256))
}

/// The bytes read must be the source's: compare what was computed with what
/// the source's ETag says they are.
pub(crate) fn check_source(item: &WorkItem, computed_etag: &str) -> Result<(), CopyError> {
    if computed_etag == item.source_etag {
        return Ok(());
    }
    Err(StoreError::new(
        Side::Source,
        FailureKind::SourceCorrupt,
        format!("GetObject {}/{}", item.source_bucket, item.key),
        format!(
            "the bytes read hash to {computed_etag}, but the source's ETag is {}",
            item.source_etag
        ),
    )
    .into())
}

/// What the ledger keeps of a finished copy; `layout` is None for one PUT.
pub(crate) fn copy_record(
    item: &WorkItem,
    dest_etag: String,
    whole: &hashing::Digests,
    layout: Option<&layout::Layout>,
) -> CopyRecord {
    CopyRecord {
        object_id: item.object_id,
        source_etag: item.source_etag.clone(),
        dest_etag,
        size: whole.len,
        sha256: whole.sha256_hex(),
        md5: whole.md5_hex(),
        part_size: layout.map(layout::Layout::part_size),
        part_count: layout.map_or(1, |l| l.parts.len() as u32),
        etag_note: layout.and_then(layout::Layout::etag_note),
    }
}
