//! Objects below the multipart threshold: one GET, one PUT with Content-MD5.
//! It must not hold more than the budget admitted; the object is below the threshold.
//!
//! The body is held in memory, which is bounded: the object is smaller than
//! the threshold, and its bytes are admitted against the budget first.

use aws_sdk_s3::primitives::ByteStream;

use super::guard::{self, WriteGuard};
use super::metadata::Metadata;
use super::retry::with_retries;
use super::{check_etag, copy_record, CopyError, Engine};
use crate::hashing::Digests;
use crate::ledger::{CopyRecord, WorkItem};
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};

/// `guard` says whether the PUT carries If-None-Match (see `guard::WriteGuard`).
pub(super) async fn copy(
    engine: &Engine,
    item: &WorkItem,
    guard: WriteGuard,
) -> Result<CopyRecord, CopyError> {
    let _ticket = engine.budget.admit(item.size).await;
    let copied = with_retries(&engine.budget, &item.key, || attempt(engine, item, guard)).await?;
    crate::progress::bytes_done(item.size);
    Ok(copied)
}

async fn attempt(
    engine: &Engine,
    item: &WorkItem,
    guard: WriteGuard,
) -> Result<CopyRecord, CopyError> {
    let what = format!("GetObject {}/{}", item.source_bucket, item.key);
    let got = engine
        .source
        .get_object()
        .bucket(&item.source_bucket)
        .key(&item.key)
        .if_match(quoted(&item.source_etag))
        .customize()
        .config_override(crate::store::no_sdk_retries())
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    let mut metadata = Metadata::from_get(&got);
    // GetObject counts the tags (x-amz-tagging-count) whenever there are any.
    metadata.tags =
        super::tags::of_source(engine, item, Some(got.tag_count().unwrap_or(0))).await?;
    let got_sse = got.server_side_encryption().cloned();
    let body = got
        .body
        .collect()
        .await
        .map_err(|e| {
            StoreError::new(
                Side::Source,
                FailureKind::Unreachable,
                &what,
                format!("body cut off: {e}"),
            )
        })?
        .into_bytes();
    if body.len() as u64 != item.size {
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Corrupt,
            &what,
            format!("read {} bytes, the listing said {}", body.len(), item.size),
        )
        .into());
    }
    let digests = Digests::of(&body);
    let md5 = digests.md5_hex();
    if super::etag_is_md5(&item.source_etag, got_sse.as_ref()) {
        super::check_source(item, &md5)?;
    }
    let what = format!("PutObject {}/{}", item.dest_bucket, item.key);
    let send = |if_none_match: bool| {
        let request = engine
            .destination
            .put_object()
            .bucket(&item.dest_bucket)
            .key(&item.key)
            .content_length(body.len() as i64)
            .content_md5(digests.md5_base64())
            .set_if_none_match(if_none_match.then(|| "*".to_owned()))
            .customer_key(engine.customer_key.as_ref())
            .body(ByteStream::from(body.clone()));
        // The SDK would hash an in-memory body with SHA-256 again to sign it;
        // Content-MD5 already has the store check every byte (and UploadPart's
        // streamed bodies are never signed either).
        metadata
            .onto_put(request)
            .customize()
            .config_override(crate::store::no_sdk_retries())
            .disable_payload_signing()
            .send()
    };
    let put = match send(guard != WriteGuard::Inspect).await {
        Ok(put) => put,
        Err(e) => {
            let e = StoreError::from_sdk(Side::Destination, &what, e);
            if e.kind != FailureKind::Occupied || !holds_these_bytes(engine, item, &md5).await? {
                // Whose the key is, `copy_and_record` asks.
                return Err(e.into());
            }
            send(false)
                .await
                .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?
        }
    };
    let mut etag = check_etag(engine, &what, &md5, put.e_tag())?;
    if guard == WriteGuard::Probe {
        // The key now holds ferry's object: a store that honours
        // If-None-Match refuses the same write; one that ignores it writes
        // the same bytes again.
        match send(true).await {
            Ok(again) => {
                engine.conditional.learned(false);
                etag = check_etag(engine, &what, &md5, again.e_tag())?;
            }
            Err(e) => match StoreError::from_sdk(Side::Destination, &what, e) {
                e if e.kind == FailureKind::Occupied => engine.conditional.learned(true),
                e => tracing::debug!(error = %e, "the If-None-Match probe got no answer"),
            },
        }
    }
    if let Some(sent) = &metadata.tags {
        super::tags::confirm(engine, item, sent).await?;
    }
    Ok(copy_record(item, etag, &digests, None))
}

/// A conditional PUT whose answer was lost lands, and its retry hears 412:
/// the key then holds these very bytes (their MD5 and size), which a plain
/// PUT may write again.
async fn holds_these_bytes(engine: &Engine, item: &WorkItem, md5: &str) -> Result<bool, CopyError> {
    let these_bytes = guard::Known {
        etag: md5,
        size: Some(item.size),
    };
    let verdict = guard::inspect(
        &engine.destination,
        engine.customer_key.as_ref(),
        (&item.dest_bucket, &item.key),
        None,
        &[these_bytes],
    )
    .await?;
    Ok(verdict == guard::Verdict::Ours)
}

/// If-Match takes the ETag in quotes, as S3 sends it.
pub(super) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}
