//! Resuming a multipart upload: which parts of an earlier attempt still count,
//! and aborting what must not stay. It must not send parts; `send.rs` does.
//!
//! The ledger says what was meant, the destination what arrived (ListParts):
//! a part counts as sent only when both agree on it.

use std::collections::HashMap;

use super::layout::Layout;
use super::part::PartDone;
use super::send::{head_destination, read_back_verdict};
use crate::copy::abort::upload_gone;
use crate::copy::{copy_record, CopyError, Engine};
use crate::hashing::stored::Stored;
use crate::hashing::{bare_etag, multipart_etag};
use crate::ledger::{self, CopyRecord, PartRecord, UploadRecord, WorkItem};
use crate::store::{Side, StoreError};

/// The upload an earlier attempt left for this very source version, if any.
/// Uploads of an older version are aborted: parts of two versions are never
/// stitched together.
pub(super) async fn previous_upload(
    engine: &Engine,
    item: &WorkItem,
) -> Result<Option<UploadRecord>, CopyError> {
    let id = item.object_id;
    match engine
        .writer
        .call(move |c| ledger::upload_of(c, id))
        .await?
    {
        Some(previous) if previous.source_etag == item.source_etag => Ok(Some(previous)),
        Some(stale) => {
            tracing::info!(key = %item.key, upload_id = %stale.upload_id, "aborting the upload of an older source version");
            abort(engine, &stale).await?;
            Ok(None)
        }
        None => {
            // An attempt cut off between CreateMultipartUpload and recording
            // its id: abort the upload only if it is provably ferry's.
            crate::copy::abort::abort_lost_uploads(engine, item.object_id, None).await?;
            Ok(None)
        }
    }
}

pub(super) enum Reconciled {
    /// CompleteMultipartUpload had succeeded; only the ledger had not heard.
    Completed(CopyRecord),
    /// The upload is alive: these parts arrived and need not be sent again.
    Resume(Vec<PartDone>),
    /// The upload is gone; start again.
    Gone,
}

/// The destination is the truth about what arrived, the ledger about what
/// was meant: a part counts as sent only when both agree on it.
/// `whole_md5`: the source's ETag is the MD5 of the whole object, sent in parts.
pub(super) async fn reconcile(
    engine: &Engine,
    item: &WorkItem,
    upload: &UploadRecord,
    layout: &Layout,
    proofs: (bool, Option<&Stored>),
) -> Result<Reconciled, CopyError> {
    let (id, upload_id) = (item.object_id, upload.upload_id.clone());
    let recorded = engine
        .writer
        .call(move |c| ledger::parts_of(c, id, &upload_id))
        .await?;
    let in_layout = |p: &PartRecord| {
        layout
            .parts
            .get(p.part_number as usize - 1)
            .is_some_and(|plan| plan.offset == p.offset && plan.length == p.length)
    };
    match list_parts(engine, upload).await {
        Ok(arrived) => {
            let kept: Vec<PartDone> = recorded
                .iter()
                .filter(|p| {
                    in_layout(p) && arrived.get(&p.part_number) == Some(&(p.etag.clone(), p.length))
                })
                .map(PartDone::from_record)
                .collect();
            tracing::info!(key = %item.key, upload_id = %upload.upload_id, parts_kept = kept.len(),
                parts = layout.parts.len(), "resuming a multipart upload");
            Ok(Reconciled::Resume(kept))
        }
        Err(e) if upload_gone(&e) => {
            if recorded.len() == layout.parts.len() && recorded.iter().all(in_layout) {
                if let Some(record) =
                    completed_unrecorded(engine, item, layout, &recorded, proofs).await?
                {
                    return Ok(Reconciled::Completed(record));
                }
            }
            tracing::info!(key = %item.key, upload_id = %upload.upload_id, "the upload is gone; starting the object again");
            engine
                .writer
                .call(move |c| ledger::forget_upload(c, id))
                .await?;
            Ok(Reconciled::Gone)
        }
        Err(e) => Err(e.into()),
    }
}

/// Every part the destination holds for an upload: number → (ETag, size).
pub(super) async fn list_parts(
    engine: &Engine,
    upload: &UploadRecord,
) -> Result<HashMap<u32, (String, u64)>, StoreError> {
    let mut arrived = HashMap::new();
    let mut marker: Option<String> = None;
    loop {
        let page = engine
            .destination
            .list_parts()
            .bucket(&upload.dest_bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .map_err(|e| {
                StoreError::from_sdk(
                    Side::Destination,
                    format!("ListParts {}/{}", upload.dest_bucket, upload.key),
                    e,
                )
            })?;
        for p in page.parts() {
            if let Some(n) = p.part_number() {
                let etag = bare_etag(p.e_tag().unwrap_or_default()).to_owned();
                arrived.insert(n as u32, (etag, p.size().unwrap_or(0).max(0) as u64));
            }
        }
        marker = page.next_part_number_marker().map(str::to_owned);
        if !page.is_truncated().unwrap_or(false) || marker.is_none() {
            return Ok(arrived);
        }
    }
}

/// The upload is gone but every part was acknowledged: if the destination
/// holds the object with the size and ETag those parts make (any ETag with
/// SSE-C), the earlier CompleteMultipartUpload succeeded; the read-back
/// proves it, and with `whole_md5` its MD5 must be the source's ETag too.
/// An object that reads back otherwise is not these parts completed: the
/// upload vanished uncompleted (a lifecycle rule, say), and the object is
/// copied again from scratch.
pub(super) async fn completed_unrecorded(
    engine: &Engine,
    item: &WorkItem,
    layout: &Layout,
    recorded: &[PartRecord],
    (whole_md5, stored): (bool, Option<&Stored>),
) -> Result<Option<CopyRecord>, CopyError> {
    let parts: Vec<PartDone> = recorded.iter().map(PartDone::from_record).collect();
    let expected = multipart_etag(&parts.iter().map(|p| p.md5).collect::<Vec<_>>());
    let Ok((size, etag)) = head_destination(engine, item, "HeadObject").await else {
        return Ok(None);
    };
    if size != item.size as i64 || !engine.etag_agrees(&expected, &etag) {
        return Ok(None);
    }
    // With SSE-C any ETag agrees: only the bytes tell whether this object
    // is these parts completed, or an earlier copy of the same size.
    let (whole, parts_ok) =
        read_back_verdict(engine, item, &layout.parts, &parts, whole_md5).await?;
    if let Err(why) = parts_ok {
        tracing::info!(key = %item.key, why = %why,
            "the upload vanished uncompleted: the object at the destination is not its parts; copying it again");
        return Ok(None);
    }
    tracing::info!(key = %item.key, "the upload had completed before the last stop; accepting the object");
    let proved = match super::prove::at_source(
        item,
        layout,
        &parts,
        Some(&whole),
        (whole_md5, stored),
    ) {
        Ok(proved) => proved,
        Err(e) => {
            // Completed by an attempt that had not proved it (an older
            // ferry): ferry's own object, written over by a new upload now.
            tracing::warn!(key = %item.key, error = %e,
                "the object completed before the last stop is not the source's bytes; copying it again");
            return Ok(None);
        }
    };
    // The destination's own ETag: the one `verify` will read back.
    Ok(Some(copy_record(item, etag, &whole, Some(layout), &proved)))
}

/// Aborts one of ferry's uploads; one the store would not abort is kept in
/// the ledger and tried again every pass.
pub(super) async fn abort(engine: &Engine, upload: &UploadRecord) -> Result<bool, CopyError> {
    Ok(crate::copy::abort::abort_upload(
        &engine.destination,
        &engine.writer,
        &upload.dest_bucket,
        &upload.key,
        &upload.upload_id,
    )
    .await?)
}
