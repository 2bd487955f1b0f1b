//! Objects below the multipart threshold: one GET, one PUT with Content-MD5; the bytes proved against the source's ETag and stored checksum first.
//! It must not hold more than the budget admitted; the object is below the threshold.
//!
//! The body is held in memory, which is bounded: the object is smaller than
//! the threshold, and its bytes are admitted against the budget first.

use aws_sdk_s3::primitives::ByteStream;

use super::guard::WriteGuard;
use super::metadata::Metadata;
use super::proof::stored_of_get;
use super::retry::with_retries;
use super::{check_etag, check_source, check_stored, copy_record, etag_is_md5};
use super::{CopyError, Engine, Proved};
use crate::hashing::stored::{Algorithm, ChecksumHasher};
use crate::hashing::Digests;
use crate::ledger::{self, CopyRecord, WorkItem};
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
        .mutate_request(crate::store::ask_stored_checksum)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    let stored = stored_of_get(&got);
    let mut metadata = Metadata::from_get(&got);
    // GetObject counts the tags (x-amz-tagging-count) whenever there are any.
    metadata.tags =
        super::tags::of_source(engine, item, Some(got.tag_count().unwrap_or(0))).await?;
    let got_sse = got.server_side_encryption().cloned();
    let body = got
        .body
        .collect()
        .await
        .map_err(|e| StoreError::cut_off(Side::Source, &what, e))?
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
    let mut proved = Proved::default();
    if etag_is_md5(&item.source_etag, got_sse.as_ref()) {
        check_source(item, &md5)?;
        proved.etag = true;
    }
    if let Some(stored) = stored {
        // Each byte once per algorithm: a stored SHA-256 is ferry's own.
        let computed = match (stored.algorithm, digests.sha256) {
            (Algorithm::Sha256, Some(sha256)) => sha256.to_vec(),
            _ => {
                let mut hasher = ChecksumHasher::new(stored.algorithm);
                hasher.update(&body);
                hasher.finish()
            }
        };
        let of_bytes = stored.of_parts(&[(computed, item.size)]);
        if check_stored(item, &stored, of_bytes)? {
            proved.checksum = Some(stored);
        }
    }
    // Intent before action: a PUT whose answer is lost lands all the same,
    // and these bytes at the key are then known as ferry's (`may_write`).
    let (id, intended, size) = (item.object_id, md5.clone(), item.size);
    engine
        .writer
        .call(move |c| ledger::record_write_intent(c, id, &intended, size))
        .await?;
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
    // A 412: the key is taken. Whose it is (ferry's own PUT whose answer
    // was lost, a copy a lost ledger did not know, another writer's),
    // `copy_and_record` asks, and adopts what proves to be the source's.
    let put = send(guard != WriteGuard::Inspect)
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
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
    Ok(copy_record(item, etag, &digests, None, &proved))
}

/// If-Match takes the ETag in quotes, as S3 sends it.
pub(super) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}
