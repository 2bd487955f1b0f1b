//! After a 412 (the source changed since it was listed): whether the destination holds ferry's copy of the new version already.
//! It reads the ledger and HEADs the destination; it must not write to either store.

use super::{guard, Engine};
use crate::ledger::{self, LedgerError, WorkItem};

impl Engine {
    /// `newer` is the source's current version, read by a HEAD after a 412.
    /// When the ledger recorded ferry's copy of exactly that version (ETag
    /// and size) and the destination's HEAD shows that copy (its ETag and
    /// size), the object is recorded copied and not copied twice: an older
    /// inventory sent it back to a version the source no longer has. Both
    /// readings must agree; anything else (no such copy, another object
    /// there, a HEAD that fails) and the object is copied as before.
    pub(super) async fn holds_copy_of(&self, newer: &WorkItem) -> Result<bool, LedgerError> {
        if newer.recopy_approved {
            return Ok(false);
        }
        let (id, etag, size) = (newer.object_id, newer.source_etag.clone(), newer.size);
        let Some(copied) = self
            .writer
            .call(move |c| ledger::copy_of_version(c, id, &etag, size))
            .await?
        else {
            return Ok(false);
        };
        let at_destination = guard::inspect(
            &self.destination,
            self.customer_key.as_ref(),
            (&newer.dest_bucket, &newer.key),
            None,
            &[guard::Known {
                etag: &copied,
                size: Some(size),
            }],
        )
        .await;
        if !at_destination.is_ok_and(|v| v.is_ferrys()) {
            return Ok(false);
        }
        let etag = newer.source_etag.clone();
        let held = self
            .writer
            .call(move |c| ledger::record_copy_held(c, id, &etag))
            .await?;
        if held {
            tracing::info!(bucket = %newer.dest_bucket, key = %newer.key, etag = %newer.source_etag,
                "the destination holds ferry's copy of the source's current version already; not copied again");
        }
        Ok(held)
    }
}
