//! Whether ferry may write or delete a destination key: only over its own last copy, or nothing.
//! It asks the destination (HEAD, or If-None-Match on the write) and reads the ledger; it changes neither.

use std::sync::atomic::{AtomicU8, Ordering};

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

/// How a write of a key is guarded against another writer's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteGuard {
    /// HEAD first ([`inspect`]), then write.
    Inspect,
    /// No HEAD: the write carries `If-None-Match: *`, so the store itself
    /// refuses it if the key holds anything, at the moment of writing.
    IfAbsent,
    /// As `Inspect`, then the same write is sent again with
    /// `If-None-Match: *`: a store that honours it refuses, one that ignores
    /// it writes the same bytes over ferry's own object.
    Probe,
}

/// Whether the destination honours `If-None-Match: *` on PutObject, learned
/// from one write sent twice. Garage ignores it; AWS and Ceph honour it.
#[derive(Default)]
pub struct ConditionalWrites(AtomicU8);

const UNKNOWN: u8 = 0;
const PROBING: u8 = 1;
const HONOURED: u8 = 2;
const IGNORED: u8 = 3;

impl ConditionalWrites {
    /// The guard for a write; `new_key`: ferry has no copy of the key, and
    /// the object goes in one PUT. One such write at a time is the probe.
    pub fn guard_for(&self, new_key: bool) -> WriteGuard {
        if !new_key {
            return WriteGuard::Inspect;
        }
        match self
            .0
            .compare_exchange(UNKNOWN, PROBING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => WriteGuard::Probe,
            Err(HONOURED) => WriteGuard::IfAbsent,
            Err(_) => WriteGuard::Inspect,
        }
    }

    /// What the probe's second write got: refused (`honoured`) or written.
    pub fn learned(&self, honoured: bool) {
        let state = if honoured { HONOURED } else { IGNORED };
        let settled = self
            .0
            .compare_exchange(PROBING, state, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if settled && honoured {
            tracing::info!("the destination honours If-None-Match: new keys are written with it, without a HEAD first");
        } else if settled {
            tracing::info!(
                "the destination ignores If-None-Match: every write is preceded by a HEAD"
            );
        }
    }
}

/// Held by the one write that probes: dropped unanswered (a conflict, a
/// failure), it lets the next new key probe instead.
pub struct Probing<'a>(pub &'a ConditionalWrites);

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        let _ = (self.0)
            .0
            .compare_exchange(PROBING, UNKNOWN, Ordering::SeqCst, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_new_key_probes_at_a_time_until_the_store_has_answered() {
        let writes = ConditionalWrites::default();
        assert_eq!(
            writes.guard_for(false),
            WriteGuard::Inspect,
            "a key ferry wrote: HEAD"
        );
        let first = writes.guard_for(true);
        assert_eq!(first, WriteGuard::Probe);
        assert_eq!(
            writes.guard_for(true),
            WriteGuard::Inspect,
            "one probe at a time"
        );
        // The probing write ended in a conflict: the next new key probes.
        drop(Probing(&writes));
        assert_eq!(writes.guard_for(true), WriteGuard::Probe);
        let held = Probing(&writes);
        writes.learned(true);
        drop(held);
        assert_eq!(writes.guard_for(true), WriteGuard::IfAbsent);
        assert_eq!(writes.guard_for(false), WriteGuard::Inspect);
    }

    #[test]
    fn a_store_that_ignores_if_none_match_is_asked_by_head_from_then_on() {
        let writes = ConditionalWrites::default();
        assert_eq!(writes.guard_for(true), WriteGuard::Probe);
        writes.learned(false);
        assert_eq!(writes.guard_for(true), WriteGuard::Inspect);
        // A late answer changes nothing once one is known.
        writes.learned(true);
        assert_eq!(writes.guard_for(true), WriteGuard::Inspect);
    }
}
