//! Whether ferry may write or delete a destination key: only over its own last copy, or nothing.
//! It asks the destination (HEAD) and reads the ledger; it must not change either.

use aws_sdk_s3::Client;

use crate::config::CustomerKey;
use crate::hashing::bare_etag;
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};

/// What the destination holds under a key, compared with ferry's last copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing there: writing loses nothing (deleting has nothing to do).
    Absent,
    /// ferry's own copy, or bytes identical to the source version at hand.
    Ours,
    /// Something ferry did not write: leave it, for this reason.
    Foreign(String),
}

/// An object ferry may write over: its ETag, and its size when the ETag
/// alone does not say the bytes are the ones at hand.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub etag: &'a str,
    pub size: Option<u64>,
}

/// HEADs `bucket/key` at the destination. `copied_etag` is the ETag of
/// ferry's last copy of the key (None: ferry never wrote it); `also` lists
/// other objects that are ferry's or identical to the source's bytes. With
/// SSE-C (`customer_key`), an object that the key does not open is foreign.
pub async fn inspect(
    destination: &Client,
    customer_key: Option<&CustomerKey>,
    (bucket, key): (&str, &str),
    copied_etag: Option<&str>,
    also: &[Known<'_>],
) -> Result<Verdict, StoreError> {
    let what = format!("HeadObject {bucket}/{key} (before writing)");
    let head = |customer_key| {
        destination
            .head_object()
            .bucket(bucket)
            .key(key)
            .customer_key(customer_key)
            .send()
    };
    let head = match head(customer_key).await {
        Ok(head) => head,
        Err(e) => {
            let e = StoreError::from_sdk(Side::Destination, what, e);
            if e.kind == FailureKind::NoSuchKey {
                return Ok(Verdict::Absent);
            }
            if customer_key.is_none() || e.kind.is_retryable() {
                return Err(e);
            }
            // Refused with ferry's key: not encrypted with it. Whatever it
            // is, ferry did not write it.
            let why = match head(None).await {
                Ok(_) => "is not encrypted with ferry's SSE-C key",
                Err(_) => "is encrypted with an SSE-C key other than ferry's",
            };
            return Ok(Verdict::Foreign(format!(
                "the destination object {why}, so ferry did not write it; ferry leaves it alone (on_conflict = \"keep\")"
            )));
        }
    };
    let etag = bare_etag(head.e_tag().unwrap_or_default());
    let size = head.content_length().unwrap_or(-1);
    let known = |k: &Known| k.etag == etag && k.size.is_none_or(|s| s as i64 == size);
    if copied_etag == Some(etag) || also.iter().any(known) {
        return Ok(Verdict::Ours);
    }
    Ok(Verdict::Foreign(match copied_etag {
        Some(ours) => format!(
            "the destination holds ETag {etag} ({size} bytes), written by someone else since ferry's copy (ETag {ours}); \
             ferry leaves it alone (on_conflict = \"keep\")"
        ),
        None => format!(
            "the destination holds ETag {etag} ({size} bytes), which ferry did not write; \
             ferry leaves it alone (on_conflict = \"keep\")"
        ),
    }))
}
