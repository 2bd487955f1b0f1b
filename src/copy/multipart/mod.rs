//! Multipart copies: learn the layout, resume what an earlier attempt left, send
//! the rest. It must not leave an upload that is neither completed nor aborted.
//!
//! Objects at or above the multipart threshold, and every object that was a
//! multipart upload at the source: learn the layout (`layout.rs`), resume
//! what an earlier attempt left (`resume.rs`), send the rest (`send.rs`).
//! A source multipart object keeps its own part boundaries, so the
//! destination ETag equals the source ETag.

pub mod layout;
mod part;
mod prove;
mod resume;
mod send;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;

use crate::copy::abort::abort_lost_uploads;
use crate::copy::metadata::Metadata;
use crate::copy::proof::stored_of_head;
use crate::copy::retry::with_retries;
use crate::copy::single::quoted;
use crate::copy::{etag_is_md5, CopyError, Engine};
use crate::hashing::stored::Stored;
use crate::ledger::{self, CopyRecord, UploadIntent, UploadRecord, WorkItem};
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};
use layout::{Layout, Origin, PartHead};
use part::PartDone;
use resume::{abort, previous_upload, reconcile, Reconciled};
use send::send_parts_and_complete;

pub(super) async fn copy(engine: &Engine, item: &WorkItem) -> Result<CopyRecord, CopyError> {
    // If-Match: a source that changed since it was listed fails here, before
    // any upload is started or resumed. The questions that do not depend on
    // each other go side by side: each is a round trip to a source that may
    // be an ocean away. A HEAD of part 1 does not count a multipart object's
    // tags, so they are always asked for; nor does it say for sure whether
    // the checksum it may carry is the part's or the object's, so the
    // whole object is asked for that.
    let multipart_source = layout::source_part_count(&item.source_etag).is_some();
    let (head, last, tags, whole) = tokio::join!(
        head_source(engine, item),
        layout::head_last_part(engine, item),
        async {
            if multipart_source {
                Some(crate::copy::tags::of_source(engine, item, None).await)
            } else {
                None
            }
        },
        async {
            if multipart_source {
                Some(layout::head_whole(engine, item).await)
            } else {
                None
            }
        }
    );
    let head = head?;
    let tags = match tags {
        Some(asked) => asked?,
        None => crate::copy::tags::of_source(engine, item, head.tag_count()).await?,
    };
    let stored = match whole {
        Some(whole) => stored_of_head(&whole?),
        None => stored_of_head(&head),
    };
    let source = Source {
        head: &head,
        last: last.as_ref(),
        tags: tags.as_deref(),
        stored: stored.as_ref(),
    };
    let record = copy_with_head(engine, item, &source).await?;
    if let Some(sent) = &tags {
        crate::copy::tags::confirm(engine, item, sent).await?;
    }
    Ok(record)
}

/// What the source answered before a byte is read.
struct Source<'a> {
    /// Its HEAD: of part 1 for a multipart source, else of the object.
    head: &'a HeadObjectOutput,
    /// Its HEAD of the last part, when asked beside part 1.
    last: Option<&'a PartHead>,
    tags: Option<&'a str>,
    /// The checksum it stored with the object.
    stored: Option<&'a Stored>,
}

impl Source<'_> {
    /// What proves the bytes read on `layout`: the whole MD5 (see
    /// [`whole_md5`]) and the stored checksum.
    fn proofs(&self, item: &WorkItem, layout: &Layout) -> (bool, Option<&Stored>) {
        (whole_md5(item, self.head, layout), self.stored)
    }
}

async fn copy_with_head(
    engine: &Engine,
    item: &WorkItem,
    source: &Source<'_>,
) -> Result<CopyRecord, CopyError> {
    let heads = (source.head, source.last);
    if let Some(previous) = previous_upload(engine, item).await? {
        let layout = layout::plan(engine, item, heads, previous.part_size, false).await?;
        let proofs = source.proofs(item, &layout);
        match reconcile(engine, item, &previous, &layout, proofs).await? {
            Reconciled::Completed(record) => return Ok(record),
            Reconciled::Resume(kept) => {
                return finish_or_relayout(engine, item, &previous, layout, kept, source).await
            }
            Reconciled::Gone => {}
        }
    }
    let layout = layout::plan(engine, item, heads, engine.transfer.part_size, false).await?;
    let upload = start_upload(engine, item, source.head, &layout, source.tags).await?;
    finish_or_relayout(engine, item, &upload, layout, Vec::new(), source).await
}

/// A layout guessed from part 1 whose parts' MD5s do not make the source
/// ETag was a wrong guess, not a corrupt source, until every part has been
/// asked: the source is called corrupt only when the parts sent are its own.
async fn finish_or_relayout(
    engine: &Engine,
    item: &WorkItem,
    upload: &UploadRecord,
    layout: Layout,
    kept: Vec<PartDone>,
    source: &Source<'_>,
) -> Result<CopyRecord, CopyError> {
    match finish(engine, item, upload, &layout, kept, source).await {
        Err(CopyError::Store(e))
            if e.kind == FailureKind::SourceCorrupt && layout.origin == Origin::SourceGuessed =>
        {
            let heads = (source.head, None);
            let exact = layout::plan(engine, item, heads, layout.part_size(), true).await?;
            if exact.parts == layout.parts {
                return Err(e.into());
            }
            // `finish` aborted the upload: SourceCorrupt is not retryable.
            tracing::info!(key = %item.key, parts = exact.parts.len(),
                "the source's parts are not equal; copying again with its exact boundaries");
            let upload = start_upload(engine, item, source.head, &exact, source.tags).await?;
            finish(engine, item, &upload, &exact, Vec::new(), source).await
        }
        other => other,
    }
}

/// CreateMultipartUpload (with the source's tags), with the id written to
/// the ledger before any part. Before the first request, the intent: the
/// key's uploads at that moment, so that an upload made by a request whose
/// answer was lost can be told from another writer's (`abort_lost_uploads`).
async fn start_upload(
    engine: &Engine,
    item: &WorkItem,
    head: &HeadObjectOutput,
    layout: &Layout,
    tags: Option<&str>,
) -> Result<UploadRecord, CopyError> {
    let id = item.object_id;
    engine
        .writer
        .call(move |c| ledger::record_copying(c, id))
        .await?;
    let known_before =
        crate::cleanup::incomplete_uploads_under(&engine.destination, &item.dest_bucket, &item.key)
            .await?
            .into_iter()
            .filter(|u| u.key == item.key)
            .map(|u| u.upload_id)
            .collect();
    let intent = UploadIntent {
        object_id: id,
        dest_bucket: item.dest_bucket.clone(),
        key: item.key.clone(),
        known_before,
        attempts: 0,
        // Kept by the ledger's clock when recorded and when each request goes.
        window: (String::new(), None),
    };
    engine
        .writer
        .call(move |c| ledger::record_upload_intent(c, &intent))
        .await?;
    let what = format!("CreateMultipartUpload {}/{}", item.dest_bucket, item.key);
    let mut metadata = Metadata::from_head(head);
    metadata.tags = tags.map(str::to_owned);
    let create = || async {
        // Counted before it is sent: a request cut off may still make an upload.
        engine
            .writer
            .call(move |c| ledger::count_upload_attempt(c, id))
            .await?;
        let request = engine
            .destination
            .create_multipart_upload()
            .bucket(&item.dest_bucket)
            .key(&item.key)
            .customer_key(engine.customer_key.as_ref());
        Ok(metadata
            .onto_create(request)
            .customize()
            .config_override(crate::store::no_sdk_retries())
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?)
    };
    let created = match with_retries(&engine.budget, &what, create).await {
        Ok(created) => created,
        Err(CopyError::Store(e)) => {
            if let Err(settling) = abort_lost_uploads(engine, item.object_id, None).await {
                // The intent stays: the next attempt settles it.
                tracing::warn!(key = %item.key, error = %settling, "could not look for uploads whose answer was lost");
            }
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    abort_lost_uploads(engine, item.object_id, Some(&upload_id)).await?;
    let upload = UploadRecord {
        object_id: item.object_id,
        upload_id,
        dest_bucket: item.dest_bucket.clone(),
        key: item.key.clone(),
        source_etag: item.source_etag.clone(),
        part_size: layout.part_size(),
    };
    // Intent before action: the upload id is on disk before any part is sent.
    let recorded = {
        let upload = upload.clone();
        engine
            .writer
            .call(move |c| ledger::record_upload_started(c, &upload))
            .await
    };
    if let Err(e) = recorded {
        // The ledger cannot write (a full disk): abort as best we can.
        let _ = abort(engine, &upload).await;
        return Err(e.into());
    }
    Ok(upload)
}

/// Sends what is missing and completes. On a failure that retrying can fix
/// the upload stays (in the ledger and at the destination) for the next
/// attempt to resume; on any other it is aborted, so nothing is left behind.
async fn finish(
    engine: &Engine,
    item: &WorkItem,
    upload: &UploadRecord,
    layout: &Layout,
    kept: Vec<PartDone>,
    source: &Source<'_>,
) -> Result<CopyRecord, CopyError> {
    let proofs = source.proofs(item, layout);
    match send_parts_and_complete(engine, item, &upload.upload_id, layout, kept, proofs).await {
        Err(CopyError::Store(e)) if !e.kind.is_retryable() => {
            abort(engine, upload).await?;
            Err(e.into())
        }
        other => other,
    }
}

/// Whether the object is proved by the MD5 of its whole: a single-part
/// source (its ETag that MD5) sent in parts of ferry's own layout.
fn whole_md5(item: &WorkItem, head: &HeadObjectOutput, layout: &Layout) -> bool {
    layout.origin == Origin::Own && etag_is_md5(&item.source_etag, head.server_side_encryption())
}

/// HEAD of the source, If-Match the listed ETag; for a multipart source,
/// of its part 1, whose length starts the search for its boundaries.
async fn head_source(engine: &Engine, item: &WorkItem) -> Result<HeadObjectOutput, CopyError> {
    let head = head_source_once(engine, item).await;
    match head {
        // A HEAD refusal has no body to say why: a 1-byte GET asks, so that
        // an SSE-C object is skipped with its reason instead of failing.
        Err(CopyError::Store(e)) if e.kind == FailureKind::Refused => {
            let probe = engine
                .source
                .get_object()
                .bucket(&item.source_bucket)
                .key(&item.key)
                .range("bytes=0-0")
                .if_match(quoted(&item.source_etag))
                .send()
                .await;
            match probe {
                Err(p) => {
                    let p = StoreError::from_sdk(Side::Source, &e.action, p);
                    Err(if p.kind == FailureKind::CustomerKey {
                        p
                    } else {
                        e
                    }
                    .into())
                }
                Ok(_) => Err(e.into()),
            }
        }
        other => other,
    }
}

async fn head_source_once(engine: &Engine, item: &WorkItem) -> Result<HeadObjectOutput, CopyError> {
    if layout::source_part_count(&item.source_etag).is_some() {
        return layout::head_first_part(engine, item).await;
    }
    layout::head_whole(engine, item).await
}
