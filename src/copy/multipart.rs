//! Objects at or above the multipart threshold, and every object that was a
//! multipart upload at the source: CreateMultipartUpload, then each part is a
//! ranged GET (If-Match the listed ETag) streamed into UploadPart, then
//! CompleteMultipartUpload.
//!
//! A source multipart object is copied with the source's own part boundaries,
//! so the destination ETag equals the source ETag.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::body::SdkBody;
use futures::stream::{FuturesUnordered, StreamExt};

use super::abort::upload_gone;
use super::layout::{self, Layout, Origin, PartPlan};
use super::metadata::Metadata;
use super::retry::with_retries;
use super::single::quoted;
use super::{check_etag, check_source, copy_record, etag_is_md5, CopyError, Engine};
use crate::hashing::{
    bare_etag, multipart_etag, Digests, ExpectedPart, HashingBody, OrderedHasher,
};
use crate::ledger::{self, CopyRecord, PartRecord, UploadRecord, WorkItem};
use crate::limits::budget::Ticket;
use crate::store::{FailureKind, Side, StoreError};

/// The bytes of the budget a part that streams through takes: about what
/// the HTTP client buffers between the GET and the PUT.
const STREAM_WINDOW: u64 = 1 << 20;

pub(super) async fn copy(engine: &Engine, item: &WorkItem) -> Result<CopyRecord, CopyError> {
    // If-Match: a source that changed since it was listed fails here, before
    // any upload is started or resumed.
    let head = head_source(engine, item).await?;
    if let Some(previous) = previous_upload(engine, item).await? {
        let layout = layout::plan(engine, item, &head, previous.part_size, false).await?;
        match reconcile(engine, item, &previous, &layout).await? {
            Reconciled::Completed(record) => return Ok(record),
            Reconciled::Resume(kept) => {
                return finish_or_relayout(engine, item, &previous, layout, kept, &head).await
            }
            Reconciled::Gone => {}
        }
    }
    let layout = layout::plan(engine, item, &head, engine.transfer.part_size, false).await?;
    let upload = start_upload(engine, item, &head, &layout).await?;
    finish_or_relayout(engine, item, &upload, layout, Vec::new(), &head).await
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
    head: &HeadObjectOutput,
) -> Result<CopyRecord, CopyError> {
    match finish(engine, item, upload, &layout, kept, head).await {
        Err(CopyError::Store(e))
            if e.kind == FailureKind::SourceCorrupt && layout.origin == Origin::SourceGuessed =>
        {
            let exact = layout::plan(engine, item, head, layout.part_size(), true).await?;
            if exact.parts == layout.parts {
                return Err(e.into());
            }
            // `finish` aborted the upload: SourceCorrupt is not retryable.
            tracing::info!(key = %item.key, parts = exact.parts.len(),
                "the source's parts are not equal; copying again with its exact boundaries");
            let upload = start_upload(engine, item, head, &exact).await?;
            finish(engine, item, &upload, &exact, Vec::new(), head).await
        }
        other => other,
    }
}

/// The upload an earlier attempt left for this very source version, if any.
/// Uploads of an older version are aborted: parts of two versions are never
/// stitched together.
async fn previous_upload(
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
            if item.was_copying {
                abort_unrecorded_uploads(engine, item).await?;
            }
            Ok(None)
        }
    }
}

enum Reconciled {
    /// CompleteMultipartUpload had succeeded; only the ledger had not heard.
    Completed(CopyRecord),
    /// The upload is alive: these parts arrived and need not be sent again.
    Resume(Vec<PartDone>),
    /// The upload is gone; start again.
    Gone,
}

/// The destination is the truth about what arrived, the ledger about what
/// was meant: a part counts as sent only when both agree on it.
async fn reconcile(
    engine: &Engine,
    item: &WorkItem,
    upload: &UploadRecord,
    layout: &Layout,
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
                if let Some(record) = completed_unrecorded(engine, item, layout, &recorded).await? {
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
async fn list_parts(
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
/// holds the object with the size and ETag those parts make, the earlier
/// CompleteMultipartUpload succeeded.
async fn completed_unrecorded(
    engine: &Engine,
    item: &WorkItem,
    layout: &Layout,
    recorded: &[PartRecord],
) -> Result<Option<CopyRecord>, CopyError> {
    let parts: Vec<PartDone> = recorded.iter().map(PartDone::from_record).collect();
    let expected = multipart_etag(&parts.iter().map(|p| p.md5).collect::<Vec<_>>());
    let Ok((size, etag)) = head_destination(engine, item, "HeadObject").await else {
        return Ok(None);
    };
    if size != item.size as i64 || etag != expected {
        return Ok(None);
    }
    tracing::info!(key = %item.key, "the upload had completed before the last stop; accepting the object");
    let whole = read_back(engine, item, &layout.parts, &parts).await?;
    Ok(Some(copy_record(item, expected, &whole, Some(layout))))
}

/// CreateMultipartUpload, with the id written to the ledger before any part.
async fn start_upload(
    engine: &Engine,
    item: &WorkItem,
    head: &HeadObjectOutput,
    layout: &Layout,
) -> Result<UploadRecord, CopyError> {
    let id = item.object_id;
    engine
        .writer
        .call(move |c| ledger::record_copying(c, id))
        .await?;
    let what = format!("CreateMultipartUpload {}/{}", item.dest_bucket, item.key);
    let request = engine
        .destination
        .create_multipart_upload()
        .bucket(&item.dest_bucket)
        .key(&item.key);
    let created = Metadata::from_head(head)
        .onto_create(request)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
    let upload = UploadRecord {
        object_id: item.object_id,
        upload_id: created.upload_id().unwrap_or_default().to_owned(),
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
    head: &HeadObjectOutput,
) -> Result<CopyRecord, CopyError> {
    let source_md5 = etag_is_md5(&item.source_etag, head.server_side_encryption());
    match send_parts_and_complete(engine, item, &upload.upload_id, layout, kept, source_md5).await {
        Err(CopyError::Store(e)) if !e.kind.is_retryable() => {
            abort(engine, upload).await?;
            Err(e.into())
        }
        other => other,
    }
}

struct PartDone {
    number: u32,
    etag: String,
    md5: [u8; 16],
    sha256: String,
}

impl PartDone {
    fn from_record(p: &PartRecord) -> PartDone {
        let mut md5 = [0u8; 16];
        // The ledger only ever holds MD5s ferry computed; a bad one makes the
        // Complete ETag check fail, which is a retry, never a success.
        let _ = hex::decode_to_slice(&p.md5, &mut md5);
        PartDone {
            number: p.part_number,
            etag: p.etag.clone(),
            md5,
            sha256: p.sha256.clone(),
        }
    }
}

async fn send_parts_and_complete(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    layout: &Layout,
    kept: Vec<PartDone>,
    source_md5: bool,
) -> Result<CopyRecord, CopyError> {
    let plan = &layout.parts;
    // A fresh upload hashes the whole object as the parts pass, holding each
    // part's bytes until the parts before it are hashed: so only when several
    // parts fit the byte budget. Larger parts stream through, taking a small
    // window of the budget, and are never held whole; such an object, and a
    // resumed one (the kept parts' bytes are gone), is read back once
    // completed for its whole-object digests.
    let hash_in_flight =
        kept.is_empty() && layout.part_size() <= engine.transfer.max_bytes_in_flight / 4;
    let hasher = hash_in_flight.then(|| Arc::new(OrderedHasher::new(1)));
    let admitted = |length: u64| {
        if hash_in_flight {
            length
        } else {
            length.min(STREAM_WINDOW)
        }
    };
    let kept_numbers: HashSet<u32> = kept.iter().map(|p| p.number).collect();
    let bar = crate::progress::ObjectBar::new(&item.key, plan.len() as u64);
    let length_of = |number: u32| plan.get(number as usize - 1).map_or(0, |p| p.length);
    kept.iter().for_each(|p| bar.part_done(length_of(p.number)));
    let mut done = kept;
    let mut running = FuturesUnordered::new();
    for &part in plan.iter().filter(|p| !kept_numbers.contains(&p.number)) {
        // Parts are admitted in order, so an earlier part is always running
        // before a later one waits on it to feed the whole-object hash.
        let ticket = loop {
            tokio::select! {
                biased;
                Some(finished) = running.next() => {
                    let finished: PartDone = finished?;
                    bar.part_done(length_of(finished.number));
                    done.push(finished);
                }
                ticket = engine.budget.admit(admitted(part.length)) => break ticket,
            }
        };
        running.push(send_part(
            engine,
            item,
            upload_id,
            part,
            ticket,
            hasher.clone(),
        ));
    }
    while let Some(finished) = running.next().await {
        let finished = finished?;
        bar.part_done(length_of(finished.number));
        done.push(finished);
    }
    drop(running);
    done.sort_by_key(|p| p.number);

    // Before anything becomes visible: do the bytes read hash to what the
    // source says they are? Its ETag is the MD5 of the parts' MD5s for a
    // multipart source copied with its own boundaries, the plain MD5 for an
    // unencrypted single-part one. Any other source ETag proves nothing.
    let md5s: Vec<[u8; 16]> = done.iter().map(|p| p.md5).collect();
    let sent_etag = multipart_etag(&md5s);
    let whole = hasher.map(|h| {
        Arc::try_unwrap(h)
            .ok()
            .expect("all parts finished")
            .finish()
    });
    let proved_at_source = if layout.keeps_source_etag() {
        check_source(item, &sent_etag)?;
        true
    } else if let (Origin::Own, true, Some(whole)) = (&layout.origin, source_md5, &whole) {
        check_source(item, &whole.md5_hex())?;
        true
    } else {
        false
    };

    let what = format!("CompleteMultipartUpload {}/{}", item.dest_bucket, item.key);
    let parts = done
        .iter()
        .map(|p| {
            CompletedPart::builder()
                .part_number(p.number as i32)
                .e_tag(quoted(&p.etag))
                .build()
        })
        .collect();
    let completed = engine
        .destination
        .complete_multipart_upload()
        .bucket(&item.dest_bucket)
        .key(&item.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map(|done| done.e_tag().map(str::to_owned))
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e));
    let answered = match completed {
        // A Complete that succeeded but whose answer was lost, then retried,
        // hears NoSuchUpload: the object itself says whether it is there.
        Err(e) if upload_gone(&e) => None,
        other => other?,
    };
    let etag = match answered.as_deref().map(bare_etag).filter(|e| !e.is_empty()) {
        Some(_) => check_etag(&what, &sent_etag, answered.as_deref())?,
        // Ceph RGW answers Complete with an empty ETag: ask the object itself.
        None => confirm_completed(engine, item, &sent_etag, &what).await?,
    };
    // Bytes no source ETag could prove are proved by reading the copy back,
    // even when the read-back after each copy is switched off.
    let whole = match whole {
        Some(whole) if proved_at_source || engine.transfer.verify_after_copy => whole,
        _ => read_back(engine, item, plan, &done).await?,
    };
    // A single-part source sent in parts too large to hash in flight: its
    // MD5 can be checked only now. A wrong one is copied again from the start.
    if !proved_at_source && layout.origin == Origin::Own && source_md5 {
        check_source(item, &whole.md5_hex())?;
    }
    if let Some(why) = layout.etag_note() {
        tracing::info!(key = %item.key, source_etag = %item.source_etag, dest_etag = %etag, why = %why,
            "the destination ETag differs from the source's");
    }
    Ok(copy_record(item, etag, &whole, Some(layout)))
}

/// What the destination holds under the item's key: its size and bare ETag.
async fn head_destination(
    engine: &Engine,
    item: &WorkItem,
    what: &str,
) -> Result<(i64, String), StoreError> {
    let head = engine
        .destination
        .head_object()
        .bucket(&item.dest_bucket)
        .key(&item.key)
        .send()
        .await
        .map_err(|e| {
            StoreError::from_sdk(
                Side::Destination,
                format!("{what} {}/{}", item.dest_bucket, item.key),
                e,
            )
        })?;
    let etag = bare_etag(head.e_tag().unwrap_or_default()).to_owned();
    Ok((head.content_length().unwrap_or(-1), etag))
}

/// A Complete that answered no ETag (or NoSuchUpload, after a retry) is
/// confirmed by HEAD: the object must have the size and the ETag that the
/// parts sent make.
async fn confirm_completed(
    engine: &Engine,
    item: &WorkItem,
    sent_etag: &str,
    what: &str,
) -> Result<String, CopyError> {
    let (size, etag) = head_destination(engine, item, &format!("HeadObject after {what}")).await?;
    if etag == sent_etag && size == item.size as i64 {
        return Ok(etag);
    }
    Err(StoreError::new(
        Side::Destination,
        FailureKind::Corrupt,
        what,
        format!(
            "CompleteMultipartUpload confirmed no ETag, and the destination holds {size} bytes with ETag {etag:?}; the parts sent make {} bytes with ETag {sent_etag}",
            item.size
        ),
    )
    .into())
}

async fn send_part(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    part: PartPlan,
    ticket: Ticket,
    hasher: Option<Arc<OrderedHasher>>,
) -> Result<PartDone, CopyError> {
    let what = format!(
        "part {} of {}/{}",
        part.number, item.source_bucket, item.key
    );
    let keep = hasher.is_some();
    let _in_flight = crate::metrics::InFlight::part();
    let (digests, chunks, etag) = with_retries(&engine.budget, &what, || {
        send_part_once(engine, item, upload_id, part, keep)
    })
    .await?;
    let record = PartRecord {
        object_id: item.object_id,
        upload_id: upload_id.to_owned(),
        part_number: part.number,
        offset: part.offset,
        length: part.length,
        etag: etag.clone(),
        md5: digests.md5_hex(),
        sha256: digests.sha256_hex(),
    };
    // Completion after acknowledgement: recorded only once the store took it.
    engine
        .writer
        .call(move |c| ledger::record_part(c, &record))
        .await?;
    if let Some(hasher) = hasher {
        hasher.feed(part.number, chunks).await;
    }
    drop(ticket);
    Ok(PartDone {
        number: part.number,
        etag,
        md5: digests.md5,
        sha256: digests.sha256_hex(),
    })
}

/// Streams the completed object back from the destination: its whole-object
/// digests, and each part's SHA-256 checked against the one recorded when
/// the part was sent.
async fn read_back(
    engine: &Engine,
    item: &WorkItem,
    layout: &[PartPlan],
    parts: &[PartDone],
) -> Result<Digests, CopyError> {
    let what = format!("GetObject {}/{} (read back)", item.dest_bucket, item.key);
    let sha_of: HashMap<u32, &str> = parts
        .iter()
        .map(|p| (p.number, p.sha256.as_str()))
        .collect();
    let expected: Vec<ExpectedPart> = layout
        .iter()
        .map(|p| ExpectedPart {
            number: p.number,
            length: p.length,
            sha256: sha_of.get(&p.number).map(|s| s.to_string()),
        })
        .collect();
    let (_, whole, parts_ok) = with_retries(&engine.budget, &what, || {
        super::readback::read_copy(
            engine,
            &item.dest_bucket,
            &item.key,
            expected.clone(),
            &what,
        )
    })
    .await?;
    parts_ok.map_err(|m| StoreError::new(Side::Destination, FailureKind::Corrupt, &what, m))?;
    Ok(whole)
}

async fn send_part_once(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    part: PartPlan,
    keep_chunks: bool,
) -> Result<(Digests, Vec<bytes::Bytes>, String), CopyError> {
    let source_body = if part.length == 0 {
        ByteStream::new(SdkBody::empty())
    } else {
        let what = format!(
            "GetObject {}/{} bytes {}+{}",
            item.source_bucket, item.key, part.offset, part.length
        );
        let got = engine
            .source
            .get_object()
            .bucket(&item.source_bucket)
            .key(&item.key)
            .range(format!(
                "bytes={}-{}",
                part.offset,
                part.offset + part.length - 1
            ))
            .if_match(quoted(&item.source_etag))
            .customize()
            .config_override(crate::store::no_sdk_retries())
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
        if got.content_length() != Some(part.length as i64) {
            return Err(StoreError::new(
                Side::Source,
                FailureKind::Corrupt,
                &what,
                format!("the source answered {:?} bytes", got.content_length()),
            )
            .into());
        }
        got.body
    };
    let (body, tap) = HashingBody::new(source_body, part.length, keep_chunks);
    let what = format!(
        "UploadPart {} of {}/{}",
        part.number, item.dest_bucket, item.key
    );
    let put = engine
        .destination
        .upload_part()
        .bucket(&item.dest_bucket)
        .key(&item.key)
        .upload_id(upload_id)
        .part_number(part.number as i32)
        .content_length(part.length as i64)
        .body(ByteStream::new(SdkBody::from_body_1_x(body)))
        .customize()
        .config_override(crate::store::no_sdk_retries())
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
    let (digests, chunks) = std::mem::take(&mut *tap.lock().expect("tap lock")).finish();
    if digests.len != part.length {
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Corrupt,
            &what,
            format!("sent {} bytes, expected {}", digests.len, part.length),
        )
        .into());
    }
    let etag = check_etag(&what, &digests.md5_hex(), put.e_tag())?;
    Ok((digests, chunks, etag))
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
        return layout::head_part(engine, item, 1).await;
    }
    let what = format!("HeadObject {}/{}", item.source_bucket, item.key);
    let head = engine
        .source
        .head_object()
        .bucket(&item.source_bucket)
        .key(&item.key)
        .if_match(quoted(&item.source_etag))
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    Ok(head)
}

/// An attempt that was cut off between CreateMultipartUpload and writing its
/// id may have left an upload the ledger never heard of: abort every upload
/// of this key at the destination (the key is ferry's to write).
async fn abort_unrecorded_uploads(engine: &Engine, item: &WorkItem) -> Result<(), CopyError> {
    let listed =
        crate::cleanup::incomplete_uploads_under(&engine.destination, &item.dest_bucket, &item.key)
            .await?;
    for u in listed.iter().filter(|u| u.key == item.key) {
        tracing::info!(key = %item.key, upload_id = %u.upload_id, "aborting an upload left by a cut-off attempt");
        super::abort::abort_upload(
            &engine.destination,
            &engine.writer,
            &u.bucket,
            &u.key,
            &u.upload_id,
        )
        .await?;
    }
    Ok(())
}

/// Aborts one of ferry's uploads; one the store would not abort is kept in
/// the ledger and tried again every pass.
async fn abort(engine: &Engine, upload: &UploadRecord) -> Result<bool, CopyError> {
    Ok(super::abort::abort_upload(
        &engine.destination,
        &engine.writer,
        &upload.dest_bucket,
        &upload.key,
        &upload.upload_id,
    )
    .await?)
}
