//! Archived objects restored at the source before they are copied: one RestoreObject per version, a HEAD per awaited restore.
//! It must not send an ask the ledger has not recorded first, exceed `restore_requests_per_second`, nor copy anything itself.
//!
//! An object in `restoring` is asked for once (the ask is in the ledger
//! before the request leaves, so a kill -9 never asks twice); each pass then
//! HEADs the awaited ones (`x-amz-restore`) and sends the done ones back to
//! `listed`, where the copy pool takes them like any other. A GET that still
//! finds one archived (its restored copy expired) sends it back here.

use std::num::NonZeroU32;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, Tier};
use futures::stream::{self, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::ledger::{self, ArchivedObject, LedgerError};
use crate::store::{FailureKind, Side, StoreError};

/// Requests (asks and HEADs) in flight at once: the rate is the limit, this
/// only hides each request's latency.
const AT_ONCE: usize = 16;
/// Awaited or to-ask objects read from the ledger at a time.
const BATCH: usize = 512;

/// The rate at which restores are asked and checked, shared by all buckets.
pub struct Restorer {
    limiter: DefaultDirectRateLimiter,
}

impl Restorer {
    pub fn new(requests_per_second: u32) -> Restorer {
        let rate = NonZeroU32::new(requests_per_second).unwrap_or(NonZeroU32::MIN);
        Restorer {
            limiter: RateLimiter::direct(Quota::per_second(rate)),
        }
    }
}

/// What a pass's restore step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// RestoreObject requests sent (or found already under way).
    pub asked: u64,
    /// Restores found done: their objects are back in the copy queue.
    pub ready: u64,
    /// Asks the source refused (say, no `s3:RestoreObject`): asked again next pass.
    pub refused: u64,
}

/// The tier actually asked: Expedited exists for Flexible Retrieval
/// (GLACIER) only; Deep Archive and Intelligent-Tiering get Standard.
pub fn tier_for(tier: &str, storage_class: Option<&str>) -> Tier {
    match (tier, storage_class) {
        ("Expedited", Some("GLACIER")) => Tier::Expedited,
        ("Expedited" | "Standard", _) => Tier::Standard,
        _ => Tier::Bulk,
    }
}

/// Intelligent-Tiering's archive tiers take no `Days`: the object moves
/// back to its frequent tier instead of getting a temporary copy.
fn takes_days(storage_class: Option<&str>) -> bool {
    storage_class != Some("INTELLIGENT_TIERING")
}

/// One pass's restore work over `bucket_ids`: archived objects skipped
/// before are woken, awaited restores are checked, new ones are asked.
pub async fn step(
    engine: &Engine,
    restorer: &Restorer,
    bucket_ids: &[i64],
    stop: &CancellationToken,
) -> Result<RestoreSummary, LedgerError> {
    let ids = bucket_ids.to_vec();
    engine
        .writer
        .call(move |c| ledger::wake_skipped_archives(c, &ids))
        .await?;
    let mut summary = RestoreSummary::default();
    // Checked before new ones are asked: one asked a moment ago is not done.
    let mut after = 0;
    while !stop.is_cancelled() {
        let ids = bucket_ids.to_vec();
        let batch = engine
            .writer
            .call(move |c| ledger::restores_awaited(c, &ids, after, BATCH))
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.object_id;
        let checked: Vec<Result<bool, LedgerError>> = stream::iter(batch)
            .map(|o| check(engine, restorer, o))
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        for ready in checked {
            summary.ready += u64::from(ready?);
        }
    }
    let mut after = 0;
    while !stop.is_cancelled() {
        let ids = bucket_ids.to_vec();
        let batch = engine
            .writer
            .call(move |c| ledger::restores_to_ask(c, &ids, after, BATCH))
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.object_id;
        let asked: Vec<Result<Asked, LedgerError>> = stream::iter(batch)
            .map(|o| ask(engine, restorer, o))
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        for outcome in asked {
            match outcome? {
                Asked::Yes => summary.asked += 1,
                Asked::NotArchived => summary.ready += 1,
                Asked::Refused => summary.refused += 1,
            }
        }
    }
    let waiting = engine.writer.call(|c| ledger::restores_waiting(c)).await?;
    for tier in ["Bulk", "Standard", "Expedited"] {
        let w = waiting.iter().find(|w| w.tier == tier);
        crate::metrics::restores_waiting(
            tier,
            w.map_or(0, |w| w.objects),
            w.and_then(|w| w.oldest_secs).unwrap_or(0),
        );
    }
    Ok(summary)
}

enum Asked {
    Yes,
    NotArchived,
    Refused,
}

/// Asks for one object's restore, the ask recorded first.
async fn ask(
    engine: &Engine,
    restorer: &Restorer,
    o: ArchivedObject,
) -> Result<Asked, LedgerError> {
    let class = o.storage_class.clone();
    let tier = tier_for(&o.tier, class.as_deref());
    let (record, name) = (o.clone(), tier.as_str().to_owned());
    // The wait first, so the ask is recorded a moment before it leaves:
    // one cut off in between is found missing by the next HEAD, asked again.
    restorer.limiter.until_ready().await;
    engine
        .writer
        .call(move |c| ledger::record_restore_asked(c, &record, &name))
        .await?;
    let params = GlacierJobParameters::builder()
        .tier(tier)
        .build()
        .expect("the tier is set");
    let mut request = RestoreRequest::builder().glacier_job_parameters(params);
    if takes_days(class.as_deref()) {
        request = request.days(o.days as i32);
    }
    let request = request.build();
    let sent = engine
        .source
        .restore_object()
        .bucket(&o.source_bucket)
        .key(&o.key)
        .restore_request(request)
        // Sent once: a retry the ledger did not record, outside the rate,
        // is a second ask. One whose answer is lost is found by the HEAD.
        .customize()
        .config_override(crate::store::no_sdk_retries())
        .send()
        .await;
    let id = o.object_id;
    match sent {
        Ok(_) => {
            tracing::info!(bucket = %o.source_bucket, key = %o.key, tier = %o.tier, "restore asked");
            Ok(Asked::Yes)
        }
        // Someone (or a run whose answer was lost) asked already: it counts.
        Err(e) if e.code() == Some("RestoreAlreadyInProgress") => Ok(Asked::Yes),
        // AWS's 403 for an Intelligent-Tiering object back in an access
        // tier: nothing to restore, it is read as it is.
        Err(e) if e.code() == Some("ObjectAlreadyInActiveTierError") => {
            engine
                .writer
                .call(move |c| ledger::record_not_archived(c, id))
                .await?;
            Ok(Asked::NotArchived)
        }
        Err(e) => {
            let e = StoreError::from_sdk(Side::Source, format!("RestoreObject {}", o.key), e);
            if e.kind == FailureKind::Archived {
                // InvalidObjectState on a restore: not in an archive (tier) now.
                engine
                    .writer
                    .call(move |c| ledger::record_not_archived(c, id))
                    .await?;
                return Ok(Asked::NotArchived);
            }
            let reason = if e.kind == FailureKind::AccessDenied {
                format!("{e}. The source credentials need s3:RestoreObject to restore archived objects (or set restore = \"off\" for this bucket pair)")
            } else {
                e.to_string()
            };
            crate::metrics::failed("restore_refused");
            tracing::warn!(bucket = %o.source_bucket, key = %o.key, error = %reason, "restore refused; asked again next pass");
            engine
                .writer
                .call(move |c| ledger::record_restore_refused(c, id, &reason))
                .await?;
            Ok(Asked::Refused)
        }
    }
}

/// One awaited restore, asked with a HEAD (If-Match: the version asked
/// for). Returns whether it is done.
async fn check(
    engine: &Engine,
    restorer: &Restorer,
    o: ArchivedObject,
) -> Result<bool, LedgerError> {
    restorer.limiter.until_ready().await;
    let head = engine
        .source
        .head_object()
        .bucket(&o.source_bucket)
        .key(&o.key)
        .if_match(format!("\"{}\"", o.source_etag))
        .send()
        .await;
    let id = o.object_id;
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            let e = StoreError::from_sdk(Side::Source, format!("HeadObject {}", o.key), e);
            if matches!(e.kind, FailureKind::Refused | FailureKind::CustomerKey) {
                // Refused for good (an SSE-C object, whose HEAD needs its
                // key): the copy's own probe says why and records it.
                tracing::info!(bucket = %o.source_bucket, key = %o.key, error = %e, "a restore's HEAD was refused; the copy will say why");
                engine
                    .writer
                    .call(move |c| ledger::record_not_archived(c, id))
                    .await?;
                return Ok(true);
            }
            // A new version or a deleted key is the next listing's to record.
            tracing::warn!(bucket = %o.source_bucket, key = %o.key, error = %e, "could not ask how a restore goes; asked again next pass");
            return Ok(false);
        }
    };
    match restore_header(head.restore()) {
        Restore::Ongoing => {
            engine
                .writer
                .call(move |c| ledger::record_restore_checked(c, id))
                .await?;
            Ok(false)
        }
        Restore::Done(expiry) => {
            tracing::info!(bucket = %o.source_bucket, key = %o.key, expiry = ?expiry, "restore done");
            engine
                .writer
                .call(move |c| ledger::record_restore_ready(c, id, expiry.as_deref()))
                .await?;
            Ok(true)
        }
        Restore::None => {
            let archived = ledger::is_archived(head.storage_class().map(|s| s.as_str()))
                || head.archive_status().is_some();
            if archived {
                // No restore under way or done: it expired, or was never
                // taken. Asked again.
                let reason = "archived, and its restore is gone (expired?): asked again";
                engine
                    .writer
                    .call(move |c| ledger::record_archived(c, id, reason))
                    .await?;
                Ok(false)
            } else {
                engine
                    .writer
                    .call(move |c| ledger::record_not_archived(c, id))
                    .await?;
                Ok(true)
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Restore {
    None,
    Ongoing,
    /// Done; readable until the expiry date, when the store gave one.
    Done(Option<String>),
}

/// Reads `x-amz-restore`: `ongoing-request="true"`, or
/// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`.
fn restore_header(header: Option<&str>) -> Restore {
    let Some(h) = header else {
        return Restore::None;
    };
    if h.contains("ongoing-request=\"true\"") {
        return Restore::Ongoing;
    }
    if !h.contains("ongoing-request=\"false\"") {
        return Restore::None;
    }
    let expiry = h
        .split_once("expiry-date=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(date, _)| date.to_owned());
    Restore::Done(expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_header_is_read_as_aws_writes_it() {
        assert_eq!(restore_header(None), Restore::None);
        assert_eq!(
            restore_header(Some("ongoing-request=\"true\"")),
            Restore::Ongoing
        );
        assert_eq!(
            restore_header(Some(
                "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\""
            )),
            Restore::Done(Some("Fri, 21 Dec 2012 00:00:00 GMT".into()))
        );
    }

    #[test]
    fn expedited_is_asked_only_where_aws_offers_it() {
        assert_eq!(tier_for("Expedited", Some("GLACIER")), Tier::Expedited);
        assert_eq!(tier_for("Expedited", Some("DEEP_ARCHIVE")), Tier::Standard);
        assert_eq!(
            tier_for("Expedited", Some("INTELLIGENT_TIERING")),
            Tier::Standard
        );
        assert_eq!(tier_for("Bulk", Some("DEEP_ARCHIVE")), Tier::Bulk);
        assert!(!takes_days(Some("INTELLIGENT_TIERING")));
    }
}
