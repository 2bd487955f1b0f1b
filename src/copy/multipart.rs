//! Objects at or above the multipart threshold, and every object that was a
//! multipart upload at the source: CreateMultipartUpload, then each part is a
//! ranged GET (If-Match the listed ETag) streamed into UploadPart, then
//! CompleteMultipartUpload.
//!
//! A source multipart object is copied with the source's own part boundaries,
//! so the destination ETag equals the source ETag.

use std::sync::Arc;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::body::SdkBody;
use futures::stream::{FuturesUnordered, StreamExt};

use super::hashing::{multipart_etag, HashingBody, OrderedHasher};
use super::metadata::Metadata;
use super::scheduler::Ticket;
use super::single::quoted;
use super::{check_etag, copy_record, with_retries, CopyError, Engine};
use crate::config::{MAX_PARTS, MAX_PART_SIZE};
use crate::ledger::{self, CopyRecord, PartRecord, UploadRecord, WorkItem};
use crate::store::{FailureKind, Side, StoreError};

/// One part of the destination upload: which source bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    pub number: u32,
    pub offset: u64,
    pub length: u64,
}

/// Splits `size` bytes into parts of `part_size`, the last one shorter.
pub fn even_layout(size: u64, part_size: u64) -> Vec<PartPlan> {
    if size == 0 {
        return vec![PartPlan {
            number: 1,
            offset: 0,
            length: 0,
        }];
    }
    (0..size.div_ceil(part_size))
        .map(|i| {
            let offset = i * part_size;
            PartPlan {
                number: i as u32 + 1,
                offset,
                length: part_size.min(size - offset),
            }
        })
        .collect()
}

/// The part size for an object ferry splits itself: the configured size,
/// raised in whole MiB when the object would need more than 10,000 parts.
pub fn part_size_for(size: u64, configured: u64) -> u64 {
    if size.div_ceil(configured) <= MAX_PARTS {
        configured
    } else {
        size.div_ceil(MAX_PARTS).div_ceil(1 << 20) * (1 << 20)
    }
}

/// The part count a source ETag says the object was uploaded with.
pub fn source_part_count(etag: &str) -> Option<u32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

pub(super) async fn copy(engine: &Engine, item: &WorkItem) -> Result<CopyRecord, CopyError> {
    abandon_previous_upload(engine, item).await?;
    let source_parts = source_part_count(&item.source_etag);
    let head = head_source(engine, item, source_parts.map(|_| 1)).await?;
    let metadata = Metadata::from_head(&head);
    let layout = match source_parts {
        Some(count) => source_layout(engine, item, &head, count).await?,
        None => even_layout(
            item.size,
            part_size_for(item.size, engine.transfer.part_size),
        ),
    };
    let part_size = layout[0].length;

    let what = format!("CreateMultipartUpload {}/{}", item.dest_bucket, item.key);
    let request = engine
        .destination
        .create_multipart_upload()
        .bucket(&item.dest_bucket)
        .key(&item.key);
    let created = metadata
        .onto_create(request)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let upload = UploadRecord {
        object_id: item.object_id,
        upload_id: upload_id.clone(),
        dest_bucket: item.dest_bucket.clone(),
        key: item.key.clone(),
        source_etag: item.source_etag.clone(),
        part_size,
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
        abort(engine, &upload).await;
        return Err(e.into());
    }

    match send_parts_and_complete(engine, item, &upload_id, &layout).await {
        Ok(record) => Ok(record),
        Err(e) => {
            // Never leave an upload behind: its parts are billed and invisible.
            abort(engine, &upload).await;
            let id = item.object_id;
            engine
                .writer
                .call(move |c| ledger::forget_upload(c, id))
                .await?;
            Err(e)
        }
    }
}

struct PartDone {
    number: u32,
    etag: String,
    md5: [u8; 16],
}

async fn send_parts_and_complete(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    layout: &[PartPlan],
) -> Result<CopyRecord, CopyError> {
    let hasher = Arc::new(OrderedHasher::new(1));
    let mut running = FuturesUnordered::new();
    let mut done = Vec::with_capacity(layout.len());
    for &part in layout {
        // Parts are admitted in order, so an earlier part is always running
        // before a later one waits on it to feed the whole-object hash.
        let ticket = loop {
            tokio::select! {
                biased;
                Some(finished) = running.next() => done.push(finished?),
                ticket = engine.budget.admit(part.length) => break ticket,
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
        done.push(finished?);
    }
    drop(running);
    done.sort_by_key(|p| p.number);

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
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
    let md5s: Vec<[u8; 16]> = done.iter().map(|p| p.md5).collect();
    let etag = check_etag(&what, &multipart_etag(&md5s), completed.e_tag())?;
    let whole = Arc::try_unwrap(hasher)
        .ok()
        .expect("all parts finished")
        .finish();
    Ok(copy_record(
        item,
        etag,
        &whole,
        Some(layout[0].length),
        layout.len() as u32,
    ))
}

async fn send_part(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    part: PartPlan,
    ticket: Ticket,
    hasher: Arc<OrderedHasher>,
) -> Result<PartDone, CopyError> {
    let what = format!(
        "part {} of {}/{}",
        part.number, item.source_bucket, item.key
    );
    let (digests, chunks, etag) =
        with_retries(&what, || send_part_once(engine, item, upload_id, part)).await?;
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
    hasher.feed(part.number, chunks).await;
    drop(ticket);
    Ok(PartDone {
        number: part.number,
        etag,
        md5: digests.md5,
    })
}

async fn send_part_once(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    part: PartPlan,
) -> Result<(super::hashing::Digests, Vec<bytes::Bytes>, String), CopyError> {
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
    let (body, tap) = HashingBody::new(source_body, part.length, true);
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

async fn head_source(
    engine: &Engine,
    item: &WorkItem,
    part_number: Option<i32>,
) -> Result<HeadObjectOutput, CopyError> {
    let what = format!("HeadObject {}/{}", item.source_bucket, item.key);
    let head = engine
        .source
        .head_object()
        .bucket(&item.source_bucket)
        .key(&item.key)
        .if_match(quoted(&item.source_etag))
        .set_part_number(part_number)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    Ok(head)
}

/// The source's own part boundaries. Part 1's length (from HEAD ?partNumber=1)
/// gives them all when parts are equal but the last, as every common tool
/// uploads; otherwise each part is asked for its length.
async fn source_layout(
    engine: &Engine,
    item: &WorkItem,
    head1: &HeadObjectOutput,
    count: u32,
) -> Result<Vec<PartPlan>, CopyError> {
    let first = head1.content_length().unwrap_or(0).max(0) as u64;
    let count_at_source = head1.parts_count().map(|n| n as u32).unwrap_or(count);
    let uniform = first > 0
        && count_at_source == count
        && (count as u64 - 1) * first < item.size.max(1)
        && item.size <= count as u64 * first;
    if uniform && first <= MAX_PART_SIZE {
        return Ok(even_layout(item.size, first));
    }
    let mut layout = Vec::with_capacity(count as usize);
    let mut offset = 0;
    for number in 1..=count {
        let head = head_source(engine, item, Some(number as i32)).await?;
        let length = head.content_length().unwrap_or(0).max(0) as u64;
        layout.push(PartPlan {
            number,
            offset,
            length,
        });
        offset += length;
    }
    if offset != item.size {
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Other,
            format!("HeadObject {}/{}", item.source_bucket, item.key),
            format!(
                "its {count} parts add up to {offset} bytes, not the listed {}",
                item.size
            ),
        )
        .into());
    }
    Ok(layout)
}

/// An upload left by an earlier attempt is aborted before a new one starts.
async fn abandon_previous_upload(engine: &Engine, item: &WorkItem) -> Result<(), CopyError> {
    let id = item.object_id;
    if let Some(previous) = engine
        .writer
        .call(move |c| ledger::upload_of(c, id))
        .await?
    {
        tracing::info!(key = %item.key, upload_id = %previous.upload_id, "aborting the upload of an earlier attempt");
        abort(engine, &previous).await;
        engine
            .writer
            .call(move |c| ledger::forget_upload(c, id))
            .await?;
    }
    Ok(())
}

/// Best effort: an upload that is already gone is fine; any other failure is
/// logged, and `ferry cleanup` finds what is left.
async fn abort(engine: &Engine, upload: &UploadRecord) {
    let result = engine
        .destination
        .abort_multipart_upload()
        .bucket(&upload.dest_bucket)
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .send()
        .await;
    if let Err(e) = result {
        let e = StoreError::from_sdk(Side::Destination, "AbortMultipartUpload", e);
        if e.kind != FailureKind::NoSuchKey && !e.message.contains("NoSuchUpload") {
            tracing::warn!(key = %upload.key, upload_id = %upload.upload_id, error = %e, "could not abort an upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_layout_covers_every_byte_once() {
        let parts = even_layout(20, 8);
        assert_eq!(
            parts,
            vec![
                PartPlan {
                    number: 1,
                    offset: 0,
                    length: 8
                },
                PartPlan {
                    number: 2,
                    offset: 8,
                    length: 8
                },
                PartPlan {
                    number: 3,
                    offset: 16,
                    length: 4
                },
            ]
        );
        assert_eq!(even_layout(16, 8).len(), 2);
        assert_eq!(
            even_layout(0, 8),
            vec![PartPlan {
                number: 1,
                offset: 0,
                length: 0
            }]
        );
    }

    #[test]
    fn part_size_grows_past_ten_thousand_parts() {
        assert_eq!(part_size_for(100 << 20, 16 << 20), 16 << 20);
        let five_tb = 5u64 << 40;
        let size = part_size_for(five_tb, 16 << 20);
        assert!(five_tb.div_ceil(size) <= MAX_PARTS);
        assert_eq!(size % (1 << 20), 0);
    }

    #[test]
    fn source_part_count_reads_the_etag_suffix() {
        assert_eq!(
            source_part_count("9b2cf535f27731c974343645a3985328-13"),
            Some(13)
        );
        assert_eq!(source_part_count("9b2cf535f27731c974343645a3985328"), None);
    }
}
