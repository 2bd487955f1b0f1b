//! Reading a copy back and comparing every byte with what the ledger recorded.
//! It must not write to a store; its verdict goes to the ledger.
//!
//! Every byte of the destination object is streamed and hashed, whole and part
//! by part. Hetzner does not check the checksums it is sent, so this is
//! ferry's proof that what arrived is still what was sent.

use super::retry::with_retries;
use super::{CopyError, Engine};
use crate::hashing::{bare_etag, read_and_check, Digests, ExpectedPart, PartCheck};
use crate::ledger::{self, LedgerError, PassSummary, Verification, VerifyItem};
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};

/// Reads one copy back. A copy that is missing or differs is a verdict
/// (`ok: false`, with the reason); only a read that cannot be done is an error.
/// A copy that reads back wrong is read once more before it is called
/// mismatched: a bit flipped on the way back, or a store that answered
/// before it caught up, is not a bad copy. The second reading decides.
pub async fn read_back(engine: &Engine, item: &VerifyItem) -> Result<Verification, CopyError> {
    let first = read_back_once(engine, item).await?;
    if first.ok {
        return Ok(first);
    }
    tracing::info!(bucket = %item.dest_bucket, key = %item.key, reason = ?first.reason,
        "the copy read back wrong; reading it once more before calling it mismatched");
    read_back_once(engine, item).await
}

async fn read_back_once(engine: &Engine, item: &VerifyItem) -> Result<Verification, CopyError> {
    let id = item.object_id;
    let recorded = engine
        .writer
        .call(move |c| ledger::copied_parts(c, id))
        .await?;
    // One PUT: the whole-object SHA-256 below is the check.
    let expected = if recorded.is_empty() {
        vec![ExpectedPart {
            number: 1,
            length: item.size,
            check: PartCheck::Length,
        }]
    } else {
        recorded
    };
    // A read holds no object in memory, only a request slot.
    let _ticket = engine.budget.admit(0).await;
    let what = format!("GetObject {}/{} (verify)", item.dest_bucket, item.key);
    let read = with_retries(&engine.budget, &what, || {
        read_copy(
            engine,
            &item.dest_bucket,
            &item.key,
            expected.clone(),
            false,
            &what,
        )
    })
    .await;
    let (etag, whole, parts) = match read {
        Ok(r) => r,
        Err(CopyError::Store(e)) if e.kind == FailureKind::NoSuchKey => {
            return Ok(Verification {
                object_id: id,
                ok: false,
                reason: Some("missing at the destination".into()),
                size: None,
                sha256: None,
                md5: None,
            })
        }
        Err(e) => return Err(e),
    };
    let sha256 = whole.sha256_hex();
    let reason = if whole.len != item.size {
        Some(format!(
            "size {} at the destination, {} copied",
            whole.len, item.size
        ))
    } else if sha256 != item.sha256 {
        Some(format!(
            "SHA-256 {sha256} at the destination, {} copied",
            item.sha256
        ))
    } else if etag != item.dest_etag {
        Some(format!(
            "ETag {etag} at the destination, {} when copied",
            item.dest_etag
        ))
    } else {
        parts.err()
    };
    Ok(Verification {
        object_id: id,
        ok: reason.is_none(),
        reason,
        size: Some(whole.len),
        sha256: Some(sha256),
        // SHA-256 proves the bytes; MD5 is not computed a second time.
        md5: None,
    })
}

/// Streams a copy from the destination once: its ETag, its whole-object
/// SHA-256 (and MD5 when `md5`), and whether each part reads back as recorded.
pub(crate) async fn read_copy(
    engine: &Engine,
    bucket: &str,
    key: &str,
    expected: Vec<ExpectedPart>,
    md5: bool,
    what: &str,
) -> Result<(String, Digests, Result<(), String>), CopyError> {
    let got = engine
        .destination
        .get_object()
        .bucket(bucket)
        .key(key)
        .customer_key(engine.customer_key.as_ref())
        // The callers retry the whole read.
        .customize()
        .config_override(crate::store::no_sdk_retries())
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, what, e))?;
    let etag = bare_etag(got.e_tag().unwrap_or_default()).to_owned();
    let (whole, parts) = read_and_check(got.body, expected, md5).await.map_err(|e| {
        StoreError::new(
            Side::Destination,
            FailureKind::Unreachable,
            what,
            e.to_string(),
        )
    })?;
    Ok((etag, whole, parts))
}

impl Engine {
    /// Reads one copy back and records the verdict.
    pub(crate) async fn verify_and_record(
        &self,
        item: &VerifyItem,
    ) -> Result<PassSummary, LedgerError> {
        let verdict = match read_back(self, item).await {
            Ok(v) => v,
            Err(CopyError::Ledger(e)) => return Err(e),
            // Could not read it (network, credentials): no verdict either way.
            Err(CopyError::Store(e)) => {
                tracing::warn!(bucket = %item.dest_bucket, key = %item.key, error = %e, "could not verify");
                return Ok(PassSummary {
                    objects_failed: 1,
                    ..PassSummary::default()
                });
            }
        };
        let ok = verdict.ok;
        if ok {
            crate::metrics::verified(item.size);
        } else {
            crate::metrics::failed("mismatch");
            tracing::warn!(bucket = %item.dest_bucket, key = %item.key, reason = ?verdict.reason, "mismatch");
        }
        self.writer
            .call(move |c| ledger::record_verification(c, &verdict))
            .await?;
        Ok(if ok {
            PassSummary {
                objects_verified: 1,
                bytes_verified: item.size,
                ..PassSummary::default()
            }
        } else {
            PassSummary {
                objects_mismatched: 1,
                ..PassSummary::default()
            }
        })
    }
}
