//! Ending multipart uploads that will not be completed, so none is left billed.
//! It must not abort an upload that the ledger does not say ferry started.
//!
//! Every upload ferry starts ends completed or aborted. An abort that fails
//! is kept in the ledger and tried again every pass.

use aws_sdk_s3::Client;

use super::Engine;
use crate::ledger::{self, LedgerError, Writer};
use crate::store::{FailureKind, Side, StoreError};

/// The store says the upload is no longer there (completed or aborted).
/// Ceph RGW answers ListParts of such an upload with NoSuchKey, AWS and
/// Garage with NoSuchUpload (tests/conformance.rs).
pub(super) fn upload_gone(e: &StoreError) -> bool {
    matches!(e.kind, FailureKind::NoSuchUpload | FailureKind::NoSuchKey)
}

/// Aborts one upload. Gone (aborted now, or already) is forgotten; a failure
/// moves it to `abandoned_uploads`, to be tried again. Returns whether it is
/// gone.
pub async fn abort_upload(
    destination: &Client,
    writer: &Writer,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<bool, LedgerError> {
    let result = destination
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    let failure = match result {
        Ok(_) => None,
        Err(e) => {
            let e = StoreError::from_sdk(
                Side::Destination,
                format!("AbortMultipartUpload {bucket}/{key}"),
                e,
            );
            (!upload_gone(&e)).then_some(e)
        }
    };
    let (b, k, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
    match failure {
        None => {
            writer.call(move |c| ledger::forget_aborted(c, &id)).await?;
            Ok(true)
        }
        Some(e) => {
            tracing::warn!(bucket, key, upload_id, error = %e, "could not abort an upload; it is kept and tried again next pass");
            let text = e.to_string();
            writer
                .call(move |c| ledger::record_abandoned(c, &id, &b, &k, &text))
                .await?;
            Ok(false)
        }
    }
}

/// Each pass: aborts the uploads ferry could not abort before, and those of
/// objects that no longer want them (deleted at the source while their copy
/// was cut off, in conflict, skipped). Returns how many are gone.
pub async fn abort_unwanted_uploads(engine: &Engine) -> Result<usize, LedgerError> {
    let unwanted = engine.writer.call(|c| ledger::uploads_to_abort(c)).await?;
    let mut gone = 0;
    for (upload_id, bucket, key) in unwanted {
        tracing::info!(bucket = %bucket, key = %key, upload_id = %upload_id, "aborting an upload that will not be completed");
        if abort_upload(
            &engine.destination,
            &engine.writer,
            &bucket,
            &key,
            &upload_id,
        )
        .await?
        {
            gone += 1;
        }
    }
    Ok(gone)
}
