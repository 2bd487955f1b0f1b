//! Whether ferry may write or delete a destination key: only over its own last copy, or nothing.
//! It asks the destination (HEAD, If-None-Match on the write, a read under SSE-C) and reads the ledger; it changes neither.

use std::sync::atomic::{AtomicU8, Ordering};

use aws_sdk_s3::Client;

use super::{CopyError, Engine};
use crate::config::{CustomerKey, OnConflict};
use crate::hashing::{bare_etag, Hasher};
use crate::ledger::{self, WorkItem};
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};

/// What the destination holds under a key, compared with ferry's last copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing there: writing loses nothing (deleting has nothing to do).
    Absent,
    /// ferry's last recorded copy.
    Ours,
    /// Not ferry's last recorded copy, but bytes it may take as its own:
    /// identical to the source version at hand, or a write of ferry's whose
    /// answer was lost (the `also` of [`inspect`]).
    Known,
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
    if copied_etag == Some(etag) {
        return Ok(Verdict::Ours);
    }
    if also.iter().any(known) {
        return Ok(Verdict::Known);
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

/// Whether `bucket/key`, read with ferry's SSE-C key, holds the bytes of a
/// PUT ferry meant, one of `intended` (MD5, size). Under SSE-C the ETag is
/// not an MD5, so the bytes themselves prove it; an object the key does not
/// open, or of a size ferry never meant, is not read.
pub async fn md5_with_key(
    destination: &Client,
    customer_key: Option<&CustomerKey>,
    (bucket, key): (&str, &str),
    intended: &[(String, u64)],
) -> Result<bool, StoreError> {
    let what = format!("GetObject {bucket}/{key} (before writing)");
    let got = destination
        .get_object()
        .bucket(bucket)
        .key(key)
        .customer_key(customer_key)
        .send()
        .await;
    let mut got = match got {
        Ok(got) => got,
        Err(e) => {
            let e = StoreError::from_sdk(Side::Destination, &what, e);
            return if e.kind.is_retryable() {
                Err(e)
            } else {
                Ok(false)
            };
        }
    };
    let size = got.content_length().unwrap_or(-1);
    if !intended.iter().any(|(_, s)| *s as i64 == size) {
        return Ok(false);
    }
    let mut hasher = Hasher::new(true, false);
    while let Some(chunk) = got.body.next().await {
        let chunk = chunk.map_err(|e| StoreError::cut_off(Side::Destination, &what, e))?;
        hasher.update(&chunk);
    }
    let md5 = hasher.finish().md5_hex();
    Ok(intended.iter().any(|(m, s)| *m == md5 && *s as i64 == size))
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

/// Whether a key may be written, as [`Engine::may_write`] found it.
#[derive(Debug, PartialEq, Eq)]
pub enum MayWrite {
    /// Nothing there, ferry's own last copy, or `on_conflict = "overwrite"`.
    Yes,
    /// Something the ledger records no copy of, which ferry may write over
    /// (bytes with the source's ETag, a write of ferry's whose answer was
    /// lost); if it proves to be the source's bytes, it need not be sent.
    YesUnlessAdoptable,
    /// Not ferry's: left alone, for this reason (unless it proves to be
    /// the source's bytes).
    No(String),
}

impl Verdict {
    /// ferry's to write over or remove: its last copy, or bytes it knows.
    pub fn is_ferrys(&self) -> bool {
        matches!(self, Verdict::Ours | Verdict::Known)
    }
}

impl Engine {
    /// Whether the copy may be written. ferry may overwrite only its own
    /// copy (or an upload of its own that completed before a crash, or
    /// bytes identical to the source's, or bytes it meant to PUT whose
    /// answer it never heard), and nothing at all is checked with
    /// `on_conflict = "overwrite"`.
    pub(crate) async fn may_write(&self, item: &WorkItem) -> Result<MayWrite, CopyError> {
        if self.on_conflict == OnConflict::Overwrite || item.recopy_approved {
            return Ok(MayWrite::Yes);
        }
        let id = item.object_id;
        let (upload_etag, intents) = self
            .writer
            .call(move |c| {
                Ok((
                    ledger::etag_of_upload(c, id)?,
                    ledger::write_intents_of(c, id)?,
                ))
            })
            .await?;
        // Bytes identical to the source version at hand, an upload of
        // ferry's own that completed before a crash, and every PUT ferry
        // meant (recorded before it was sent) are ferry's to write over.
        let mut also = vec![Known {
            etag: &item.source_etag,
            size: Some(item.size),
        }];
        if let Some(etag) = &upload_etag {
            also.push(Known {
                etag,
                size: Some(item.size),
            });
        }
        also.extend(intents.iter().map(|(md5, size)| Known {
            etag: md5,
            size: Some(*size),
        }));
        let verdict = inspect(
            &self.destination,
            self.customer_key.as_ref(),
            (&item.dest_bucket, &item.key),
            item.copied_etag.as_deref(),
            &also,
        )
        .await?;
        Ok(match verdict {
            // With SSE-C the ETag is not an MD5: the bytes themselves,
            // read with ferry's key, say whether they are a PUT ferry meant.
            Verdict::Foreign(why) if self.customer_key.is_some() && !intents.is_empty() => {
                let (bucket, key) = (&item.dest_bucket, &item.key);
                let read = md5_with_key(
                    &self.destination,
                    self.customer_key.as_ref(),
                    (bucket, key),
                    &intents,
                );
                if read.await? {
                    MayWrite::YesUnlessAdoptable
                } else {
                    MayWrite::No(why)
                }
            }
            Verdict::Foreign(why) => MayWrite::No(why),
            Verdict::Known => MayWrite::YesUnlessAdoptable,
            Verdict::Absent | Verdict::Ours => MayWrite::Yes,
        })
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
