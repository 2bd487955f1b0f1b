//! Sending parts: ranged GETs streamed into UploadPart and hashed on the way,
//! then Complete. It must not decide the layout or resume; `layout.rs` and `resume.rs` do.
//!
//! Each part is a ranged GET (If-Match the listed ETag); a Complete that
//! answers vaguely (Ceph's empty ETag) is confirmed by HEAD.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::body::SdkBody;
use futures::stream::{FuturesUnordered, StreamExt};

use super::layout::{Layout, PartPlan};
use super::part::PartDone;
use crate::copy::abort::upload_gone;
use crate::copy::retry::with_retries;
use crate::copy::single::quoted;
use crate::copy::{check_etag, copy_record, CopyError, Engine};
use crate::hashing::stored::{Algorithm, Stored};
use crate::hashing::{
    bare_etag, multipart_etag, Digests, ExpectedPart, HashingBody, Md5Chain, OrderedHasher,
    PartCheck, Sha256Chain, Tapped,
};
use crate::ledger::{self, CopyRecord, PartRecord, WorkItem};
use crate::limits::budget::Ticket;
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};

/// The bytes of the budget a part that streams through takes: about what
/// the HTTP client buffers between the GET and the PUT.
const STREAM_WINDOW: u64 = 1 << 20;

/// The hasher a resumed upload carries on with: from the end of the longest
/// run of kept parts from part 1 on, without a gap, that wrote down the
/// whole object's states (the MD5's too when `whole_md5`). None when there
/// is no such run; else how many parts it holds, and the hasher after them.
fn hash_on_from(kept: &[PartDone], whole_md5: bool) -> Option<(usize, OrderedHasher)> {
    let run = kept
        .iter()
        .enumerate()
        .take_while(|(i, p)| {
            p.number as usize == i + 1
                && matches!(p.check, PartCheck::Chain(_))
                && (p.md5_state.is_some() || !whole_md5)
        })
        .count();
    let last = kept.get(run.checked_sub(1)?)?;
    let PartCheck::Chain(sha256) = &last.check else {
        return None;
    };
    let md5 = match (whole_md5, last.md5_state.as_deref()) {
        (true, Some(state)) => Some(Md5Chain::resume(state)?),
        _ => None,
    };
    let hasher = OrderedHasher::continuing(run as u32 + 1, Sha256Chain::resume(sha256)?, md5);
    Some((run, hasher))
}

pub(super) async fn send_parts_and_complete(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    layout: &Layout,
    kept: Vec<PartDone>,
    (whole_md5, stored): (bool, Option<&Stored>),
) -> Result<CopyRecord, CopyError> {
    let plan = &layout.parts;
    // `whole_md5`: a single-part source sent in parts, whose ETag is the MD5
    // of the whole. It is proved before Complete makes the object visible.
    // The whole-object digests are computed as the parts pass, in part
    // order, holding each part's bytes until the parts before it are
    // hashed: so only when several of the object's largest part fit the
    // byte budget. Its parts need not be equal (a source's own layout), so
    // the largest decides, not part 1: one part that cannot be held breaks
    // the chain for all. Then every part streams through, taking a small
    // window of the budget, and is never held whole; such an object is read
    // back once completed for its whole-object digests. The exception is
    // `whole_md5`: its parts are always hashed in order, a part larger than
    // the budget then taking all of it, one at a time.
    // So are the parts of an object whose stored checksum is a SHA-256 of
    // the whole: only the whole object's SHA-256 can prove it.
    let in_order =
        whole_md5 || stored.is_some_and(|s| super::prove::whole_sha256_proves(s, plan.len()));
    let largest = plan.iter().map(|p| p.length).max().unwrap_or(0);
    let holdable = in_order || largest <= engine.transfer.max_bytes_in_flight / 4;
    let mut kept = kept;
    if stored.is_some() {
        // A part kept without its own checksum in the source's algorithm
        // (an older ferry's, or of a version stored with another) cannot
        // help prove the object against the source's: it is sent again.
        kept.retain(|p| p.checksum_in(stored.map(|s| s.algorithm)).is_some());
    }
    let hasher = if !holdable {
        None
    } else if kept.is_empty() {
        Some(OrderedHasher::new(whole_md5))
    } else {
        match hash_on_from(&kept, whole_md5) {
            Some((run, hasher)) => {
                // Parts acknowledged after a gap were still waiting to be
                // hashed: at most the parts that were in flight. They are sent again.
                kept.truncate(run);
                Some(hasher)
            }
            // Parts kept without their states (a ledger of an older ferry)
            // cannot give the whole MD5: every part is sent again.
            None if in_order => {
                kept.clear();
                Some(OrderedHasher::new(whole_md5))
            }
            // Else they are proved by reading the copy back.
            None => None,
        }
    }
    .map(Arc::new);
    let hash_in_flight = hasher.is_some();
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
            (hasher.clone(), stored.map(|s| s.algorithm)),
        ));
    }
    while let Some(finished) = running.next().await {
        let finished = finished?;
        bar.part_done(length_of(finished.number));
        done.push(finished);
    }
    drop(running);
    done.sort_by_key(|p| p.number);

    let md5s: Vec<[u8; 16]> = done.iter().map(|p| p.md5).collect();
    let sent_etag = multipart_etag(&md5s);
    let whole = hasher.map(|h| {
        Arc::try_unwrap(h)
            .ok()
            .expect("all parts finished")
            .finish()
    });
    let proved = super::prove::at_source(item, layout, &done, whole.as_ref(), (whole_md5, stored))?;

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
        .customer_key(engine.customer_key.as_ref())
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
        Some(_) => check_etag(engine, &what, &sent_etag, answered.as_deref())?,
        // Ceph RGW answers Complete with an empty ETag: ask the object itself.
        None => confirm_completed(engine, item, &sent_etag, &what).await?,
    };
    // Bytes no source ETag could prove are proved by reading the copy back,
    // even when the read-back after each copy is switched off.
    let proved_at_source = proved.etag || proved.checksum.is_some();
    let whole = match whole {
        Some(whole) if proved_at_source || engine.transfer.verify_after_copy => whole,
        _ => read_back(engine, item, plan, &done, false).await?,
    };
    if let Some(why) = layout.etag_note() {
        tracing::info!(key = %item.key, source_etag = %item.source_etag, dest_etag = %etag, why = %why,
            "the destination ETag differs from the source's");
    }
    Ok(copy_record(item, etag, &whole, Some(layout), &proved))
}

/// What the destination holds under the item's key: its size and bare ETag.
pub(super) async fn head_destination(
    engine: &Engine,
    item: &WorkItem,
    what: &str,
) -> Result<(i64, String), StoreError> {
    let head = engine
        .destination
        .head_object()
        .bucket(&item.dest_bucket)
        .key(&item.key)
        .customer_key(engine.customer_key.as_ref())
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
pub(super) async fn confirm_completed(
    engine: &Engine,
    item: &WorkItem,
    sent_etag: &str,
    what: &str,
) -> Result<String, CopyError> {
    let (size, etag) = head_destination(engine, item, &format!("HeadObject after {what}")).await?;
    if engine.etag_agrees(sent_etag, &etag) && size == item.size as i64 {
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

pub(super) async fn send_part(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    part: PartPlan,
    ticket: Ticket,
    (hasher, checksum): (Option<Arc<OrderedHasher>>, Option<Algorithm>),
) -> Result<PartDone, CopyError> {
    let what = format!(
        "part {} of {}/{}",
        part.number, item.source_bucket, item.key
    );
    let in_order = hasher.is_some();
    let _in_flight = crate::metrics::InFlight::part();
    let (tapped, etag) = with_retries(&engine.budget, &what, || {
        send_part_once(engine, item, upload_id, part, (in_order, checksum))
    })
    .await?;
    let Tapped {
        digests,
        chunks,
        checksum: value,
    } = tapped;
    // Kept with its algorithm: a source re-uploaded with the same bytes and
    // another algorithm keeps its ETag, and a resumed upload must not mix them.
    let checksum = value.zip(checksum).map(|(value, algorithm)| Stored {
        algorithm,
        value,
        parts: None,
    });
    // A part hashed in order is proved by the object's SHA-256 state at its
    // end; one that streamed alone, by its own SHA-256.
    let states = match &hasher {
        Some(hasher) => Some(hasher.feed(part.number, chunks).await),
        None => None,
    };
    let (sha256_state, md5_state) = match states {
        Some(s) => (Some(s.sha256), s.md5),
        None => (None, None),
    };
    let check = match &sha256_state {
        Some(state) => PartCheck::Chain(state.clone()),
        None => PartCheck::Sha256(digests.sha256_hex()),
    };
    let md5 = digests.md5.expect("a part's MD5 is always computed");
    let record = PartRecord {
        object_id: item.object_id,
        upload_id: upload_id.to_owned(),
        part_number: part.number,
        offset: part.offset,
        length: part.length,
        etag: etag.clone(),
        md5: hex::encode(md5),
        sha256: digests.sha256_hex(),
        sha256_state,
        md5_state: md5_state.clone(),
        checksum: checksum.as_ref().map(Stored::to_text),
    };
    // Completion after acknowledgement: recorded only once the store took it.
    engine
        .writer
        .call(move |c| ledger::record_part(c, &record))
        .await?;
    drop(ticket);
    Ok(PartDone {
        number: part.number,
        etag,
        md5,
        check,
        md5_state,
        checksum,
    })
}

/// Streams the completed object back from the destination: its whole-object
/// digests (MD5 too when `md5`), and each part checked against what was
/// recorded when it was sent.
pub(super) async fn read_back(
    engine: &Engine,
    item: &WorkItem,
    layout: &[PartPlan],
    parts: &[PartDone],
    md5: bool,
) -> Result<Digests, CopyError> {
    let what = format!("GetObject {}/{} (read back)", item.dest_bucket, item.key);
    let (whole, parts_ok) = read_back_verdict(engine, item, layout, parts, md5).await?;
    parts_ok.map_err(|m| StoreError::new(Side::Destination, FailureKind::Corrupt, &what, m))?;
    Ok(whole)
}

/// As [`read_back`], with the parts' verdict apart: why a part differs from
/// what was recorded, if one does. Only a read that cannot be done is an error.
pub(super) async fn read_back_verdict(
    engine: &Engine,
    item: &WorkItem,
    layout: &[PartPlan],
    parts: &[PartDone],
    md5: bool,
) -> Result<(Digests, Result<(), String>), CopyError> {
    let what = format!("GetObject {}/{} (read back)", item.dest_bucket, item.key);
    let check_of: HashMap<u32, &PartCheck> = parts.iter().map(|p| (p.number, &p.check)).collect();
    let expected: Vec<ExpectedPart> = layout
        .iter()
        .map(|p| ExpectedPart {
            number: p.number,
            length: p.length,
            check: check_of
                .get(&p.number)
                .map_or(PartCheck::Length, |c| (*c).clone()),
        })
        .collect();
    let (_, whole, parts_ok) = with_retries(&engine.budget, &what, || {
        crate::copy::readback::read_copy(
            engine,
            &item.dest_bucket,
            &item.key,
            expected.clone(),
            md5,
            &what,
        )
    })
    .await?;
    Ok((whole, parts_ok))
}

pub(super) async fn send_part_once(
    engine: &Engine,
    item: &WorkItem,
    upload_id: &str,
    part: PartPlan,
    (in_order, checksum): (bool, Option<Algorithm>),
) -> Result<(Tapped, String), CopyError> {
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
    let (body, tap) = HashingBody::new(source_body, part.length, (!in_order, in_order), checksum);
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
        .customer_key(engine.customer_key.as_ref())
        .body(ByteStream::new(SdkBody::from_body_1_x(body)))
        .customize()
        .config_override(crate::store::no_sdk_retries())
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
    let tapped = std::mem::take(&mut *tap.lock().expect("tap lock")).finish();
    let digests = &tapped.digests;
    if digests.len != part.length {
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Corrupt,
            &what,
            format!("sent {} bytes, expected {}", digests.len, part.length),
        )
        .into());
    }
    let etag = check_etag(engine, &what, &digests.md5_hex(), put.e_tag())?;
    Ok((tapped, etag))
}
