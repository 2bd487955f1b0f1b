//! The copy engine: takes pending objects from the ledger and streams each one
//! from source to destination. It must not mark an object copied before the store said so.
//!
//! `pool.rs` runs at most `concurrency` objects at once; `single.rs` copies
//! an object in one PUT, `multipart/` part by part; `readback.rs` proves the
//! copy; `restore.rs` has archived objects restored at the source first;
//! `guard.rs` decides whether a key may be written; `adopt.rs` what to do
//! with a taken key, and takes a copy found there as ferry's when its bytes
//! prove the source's; `retry.rs` retries.

pub mod abort;
mod adopt;
pub mod guard;
mod held;
pub mod metadata;
pub mod multipart;
mod pool;
pub(crate) mod proof;
pub(crate) use pool::Totals;
pub(crate) use proof::{check_source, check_stored, etag_is_md5, Proved};
pub mod readback;
pub mod restore;
mod retry;
mod single;
pub mod tags;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use crate::config::{CustomerKey, OnConflict, TransferConfig};
use crate::hashing;
use crate::hashing::stored::Stored;
use crate::ledger::{
    self, CopyRecord, LedgerError, PassSummary, State, VerifyItem, WorkItem, Writer,
};
use crate::limits::budget::Budget;
use crate::store::{FailureKind, Side, StoreError};
use multipart::layout;

use crate::store::ATTEMPTS;
/// How many times an object is read whole when its bytes hash to something
/// other than the source's ETag: once more, then it is `failed` with the
/// reason, and the next pass tries again. Each read costs egress.
const WHOLE_READS: u32 = 2;
/// Why an SSE-C copy's ETag cannot be checked (`copies.etag_note`).
const SSE_C_NOTE: &str = "encrypted with SSE-C at the destination: its ETag is not an MD5 of the bytes; proved by SHA-256 read back with the key";
/// How often a copy that has caught up with its listing asks for more.
const LISTING_POLL: Duration = Duration::from_millis(250);
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
    /// SSE-C at the destination: on every write and read of its objects.
    pub customer_key: Option<CustomerKey>,
    /// Whether new keys may be written with If-None-Match instead of a HEAD first.
    pub(crate) conditional: guard::ConditionalWrites,
    /// A copy was found at the destination without a ledger record (a lost
    /// or restored ledger): from then on every write asks with a HEAD
    /// first, so that such copies are adopted before a byte is read from
    /// the source, not after (If-None-Match would read the source first).
    pub(crate) adopting: std::sync::atomic::AtomicBool,
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
            customer_key: None,
            conditional: guard::ConditionalWrites::default(),
            adopting: Default::default(),
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
            .call(move |c| ledger::totals_in_states(c, &ids, State::PENDING))
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
        self.drive(
            fetch,
            work,
            ("copy", Totals::Known(totals.0, totals.1)),
            stop,
            grace,
        )
        .await
    }

    /// Copies pending objects of `bucket_ids` while their listing goes on:
    /// each committed page feeds the queue, so the first object is copied
    /// seconds after the pass starts, at any bucket size. Only keys that this
    /// listing has seen are taken: one from an earlier pass may be gone from
    /// the source. Ends when the queue is empty and `listing_done` says so.
    /// The rest (keys behind this pass's cursor, listings that failed) are
    /// for [`Engine::copy_pending`] after the listing.
    pub async fn copy_while_listing(
        self: &Arc<Self>,
        bucket_ids: Vec<i64>,
        listing_done: tokio::sync::watch::Receiver<bool>,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError> {
        let writer = self.writer.clone();
        let fetch = move |after_id| {
            let (writer, ids, mut done) =
                (writer.clone(), bucket_ids.clone(), listing_done.clone());
            async move {
                // Read before the query: a listing done by then has committed
                // every page that the query can see.
                let finished = *done.borrow_and_update();
                let batch = writer
                    .call(move |c| ledger::pending_seen_batch(c, &ids, after_id, BATCH))
                    .await?;
                if let Some(last) = batch.last().map(|i| i.object_id) {
                    return Ok(Some((last, batch)));
                }
                if finished {
                    return Ok(None);
                }
                // Nothing new yet: wait for the listing, then let the pool
                // look at the stop token before asking again.
                let _ = tokio::time::timeout(LISTING_POLL, done.changed()).await;
                Ok(Some((after_id, Vec::new())))
            }
        };
        let work = |engine: Arc<Engine>, item| async move { engine.copy_and_record(item).await };
        self.drive(fetch, work, ("copy", Totals::Growing), stop, grace)
            .await
    }

    /// Copies one object and writes the outcome to the ledger. A source that
    /// changes mid-copy is read again and the new version copied from scratch.
    async fn copy_and_record(&self, mut item: WorkItem) -> Result<PassSummary, LedgerError> {
        let started = std::time::Instant::now();
        let (mut versions_seen, mut whole_reads, mut refusals) = (1, 1, 0);
        let id = item.object_id;
        let new_key = self.on_conflict == OnConflict::Keep
            && !item.recopy_approved
            && item.copied_etag.is_none()
            && !self.sends_in_parts(&item)
            && !self.adopting.load(std::sync::atomic::Ordering::Relaxed);
        let mut guard = self.conditional.guard_for(new_key);
        let _probe =
            (guard == guard::WriteGuard::Probe).then_some(guard::Probing(&self.conditional));
        if guard != guard::WriteGuard::IfAbsent {
            if let Some(not_written) = self.unless_writable(&item).await? {
                return Ok(not_written);
            }
        }
        let result = loop {
            let result = if self.sends_in_parts(&item) {
                if guard == guard::WriteGuard::IfAbsent {
                    // A new version too large for one PUT: an upload's
                    // Complete carries no If-None-Match here, so HEAD first.
                    if let Some(not_written) = self.unless_writable(&item).await? {
                        return Ok(not_written);
                    }
                    guard = guard::WriteGuard::Inspect;
                }
                multipart::copy(self, &item).await
            } else {
                single::copy(self, &item, guard).await
            };
            match result {
                // Taken since the listing: a HEAD says whether it is ferry's.
                Err(CopyError::Store(e)) if e.kind == FailureKind::Occupied => {
                    refusals += 1;
                    if refusals >= ATTEMPTS {
                        break Err(refused_every_time(e, refusals).into());
                    }
                    if let Some(not_written) = self.unless_writable(&item).await? {
                        return Ok(not_written);
                    }
                    guard = guard::WriteGuard::Inspect;
                }
                Err(CopyError::Store(e))
                    if e.kind == FailureKind::SourceChanged && versions_seen < ATTEMPTS =>
                {
                    versions_seen += 1;
                    match self.new_source_version(&item).await {
                        Ok(newer) if self.holds_copy_of(&newer).await? => {
                            return Ok(PassSummary::default())
                        }
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
            Ok(mut record) => {
                if self.customer_key.is_some() && record.etag_note.is_none() {
                    record.etag_note = Some(SSE_C_NOTE.to_owned());
                }
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
            // Archived after all: an Intelligent-Tiering archive tier, or a
            // restored copy that expired before it was copied.
            Err(CopyError::Store(e)) if e.kind == FailureKind::Archived => {
                let reason =
                    "archived at the source (its GET said so): ferry restores it, then copies it";
                let restoring = self
                    .writer
                    .call(move |c| ledger::record_archived(c, id, reason))
                    .await?;
                if !restoring {
                    return self.record_failure(&item, e).await;
                }
                tracing::info!(bucket = %item.source_bucket, key = %item.key, "archived at the source: a restore is asked");
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

    pub(super) fn sends_in_parts(&self, item: &WorkItem) -> bool {
        item.source_etag.contains('-') || item.size >= self.transfer.multipart_threshold
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

impl Engine {
    /// Whether the destination's ETag agrees with the one the bytes sent
    /// make. With SSE-C the ETag is not an MD5 of the bytes: any agrees, and
    /// the copy is proved by reading it back with the key instead.
    pub(crate) fn etag_agrees(&self, expected: &str, got: &str) -> bool {
        got == expected || self.customer_key.is_some()
    }
}

/// An ETag that does not match the MD5 of what was sent: the store holds
/// something other than what ferry read. With SSE-C the ETag is not an MD5
/// of the bytes: it is taken as given, and the copy is read back instead.
pub(crate) fn check_etag(
    engine: &Engine,
    action: &str,
    expected: &str,
    got: Option<&str>,
) -> Result<String, CopyError> {
    let got = hashing::bare_etag(got.unwrap_or_default()).to_owned();
    if engine.etag_agrees(expected, &got) {
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

/// A store that answers 412 Precondition Failed to writes of a key that a
/// HEAD finds free, or ferry's own, again and again (to a plain PUT, which
/// carries no precondition): the object fails, saying so, and the pass goes on.
fn refused_every_time(last: StoreError, refusals: u32) -> StoreError {
    StoreError::new(
        Side::Destination,
        FailureKind::Refused,
        last.action.clone(),
        format!(
            "the destination answered 412 Precondition Failed to {refusals} writes of this key, \
             although a HEAD found it free or holding ferry's own bytes; ferry gave up on it \
             for this pass (last answer: {})",
            last.message
        ),
    )
}

/// What the ledger keeps of a finished copy; `layout` is None for one PUT.
pub(crate) fn copy_record(
    item: &WorkItem,
    dest_etag: String,
    whole: &hashing::Digests,
    layout: Option<&layout::Layout>,
    proved: &Proved,
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
        proved_by_etag: proved.etag,
        source_checksum: proved.checksum.as_ref().map(Stored::to_text),
    }
}
