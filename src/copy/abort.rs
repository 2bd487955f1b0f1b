//! Ending multipart uploads that will not be completed, so none is left billed.
//! It must not abort an upload that ferry cannot prove it started.
//!
//! Every upload ferry starts ends completed or aborted. An abort that fails
//! is kept in the ledger and tried again every pass. An upload whose create
//! request's answer was lost is found through the intent recorded before the
//! request (`ledger/intents.rs`, `cleanup::lost_uploads`).

use aws_sdk_s3::Client;

use super::{CopyError, Engine};
use crate::cleanup::{incomplete_uploads_under, lost_uploads};
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
    let (failure, gone) = match result {
        Ok(_) => (None, false),
        Err(e) => {
            let e = StoreError::from_sdk(
                Side::Destination,
                format!("AbortMultipartUpload {bucket}/{key}"),
                e,
            );
            let gone = upload_gone(&e);
            ((!gone).then_some(e), gone)
        }
    };
    let (b, k, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
    match failure {
        None => {
            writer
                .call(move |c| ledger::forget_aborted(c, &id, gone))
                .await?;
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
/// was cut off, in conflict, skipped), and settles their create requests
/// whose answers were lost (a kill between the request and its record).
/// Returns how many are gone.
pub async fn abort_unwanted_uploads(engine: &Engine) -> Result<usize, LedgerError> {
    let intents = engine
        .writer
        .call(|c| ledger::unwanted_upload_intents(c))
        .await?;
    for object_id in intents {
        match abort_lost_uploads(engine, object_id, None).await {
            Ok(()) => {}
            Err(CopyError::Ledger(e)) => return Err(e),
            // Tried again next pass.
            Err(CopyError::Store(e)) => {
                tracing::warn!(error = %e, "could not settle an upload whose answer was lost")
            }
        }
    }
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

/// Settles an object's upload intent: aborts the uploads its create requests
/// made although their answers were lost, and leaves (and names) those it
/// cannot prove are ferry's. `started` is the upload whose answer came, if
/// any (its intent is then cleared as it is recorded). Lists the key's
/// uploads only when a request's answer may have been lost.
pub(crate) async fn abort_lost_uploads(
    engine: &Engine,
    id: i64,
    started: Option<&str>,
) -> Result<(), CopyError> {
    let Some(intent) = engine
        .writer
        .call(move |c| ledger::upload_intent_of(c, id))
        .await?
    else {
        return Ok(());
    };
    if intent.attempts as usize > usize::from(started.is_some()) {
        let listed =
            incomplete_uploads_under(&engine.destination, &intent.dest_bucket, &intent.key).await?;
        match lost_uploads(&intent, &listed, started) {
            Some(lost) => {
                for u in lost {
                    tracing::info!(key = %u.key, upload_id = %u.upload_id,
                        "aborting an upload ferry started whose answer was lost");
                    abort_upload(
                        &engine.destination,
                        &engine.writer,
                        &u.bucket,
                        &u.key,
                        &u.upload_id,
                    )
                    .await?;
                }
            }
            None => {
                let ids: Vec<&str> = listed
                    .iter()
                    .filter(|u| u.key == intent.key && Some(u.upload_id.as_str()) != started)
                    .map(|u| u.upload_id.as_str())
                    .collect();
                tracing::warn!(bucket = %intent.dest_bucket, key = %intent.key, uploads = ?ids,
                    "uploads of this key that ferry cannot prove are its own are left alone; `ferry cleanup --all` aborts them");
            }
        }
    }
    if started.is_none() {
        engine
            .writer
            .call(move |c| ledger::forget_upload_intent(c, id))
            .await?;
    }
    Ok(())
}
