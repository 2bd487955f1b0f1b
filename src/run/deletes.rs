//! `delete = true`: keys gone from the source for two complete listings (or, under an event feed, found gone by a HEAD after an event) removed at the destination, when what is there is ferry's own copy.
//! It must not delete on one listing's word, nor a key ferry did not write last.

use crate::config::OnConflict;
use crate::copy::guard;
use crate::ledger::{self};
use crate::store::{self, Side, StoreError};

use super::*;

impl Runner {
    /// `delete = true`: keys missing at the source for two complete listings
    /// in a row are removed at the destination. Never in the pass that first
    /// saw them gone: a listing glitch must not delete anything. Only ferry's
    /// own copy is removed: a key that holds anything else is a conflict.
    pub(super) async fn remove_deleted(&self) -> Result<u64, RunError> {
        let writer = &self.engine.writer;
        let mut removed = 0;
        let mut after_id = 0;
        loop {
            let ids = self.bucket_ids.clone();
            let batch = writer
                .call(move |c| ledger::deletable(c, &ids, DELETE_AFTER_PASSES, after_id, 500))
                .await?;
            let Some(last) = batch.last() else {
                return Ok(removed);
            };
            after_id = last.object_id;
            for gone in batch {
                match self.remove_one(&gone).await {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    // Tried again next pass.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not remove a key deleted at the source")
                    }
                }
            }
        }
    }

    /// What removing a key deleted at the source finds at the destination:
    /// ferry's own copy (to delete), nothing, or another writer's object.
    /// With `on_conflict = "overwrite"` whatever is there is taken as ferry's.
    pub(crate) async fn removal(
        &self,
        gone: &ledger::Deletable,
    ) -> Result<guard::Verdict, RunError> {
        if self.config.on_conflict == OnConflict::Overwrite {
            return Ok(guard::Verdict::Ours);
        }
        // A PUT ferry meant but never heard back from is its own copy too,
        // and so is an upload of ferry's that completed unheard (a kill, a
        // lost answer): the same two that a write may go over (`may_write`).
        let id = gone.object_id;
        let (upload_etag, intents) = self
            .engine
            .writer
            .call(move |c| {
                Ok((
                    ledger::etag_of_upload(c, id)?,
                    ledger::write_intents_of(c, id)?,
                ))
            })
            .await?;
        let mut also: Vec<guard::Known> = intents
            .iter()
            .map(|(md5, size)| guard::Known {
                etag: md5,
                size: Some(*size),
            })
            .collect();
        if let Some(etag) = &upload_etag {
            // Its ETag names its parts' MD5s and their count.
            also.push(guard::Known { etag, size: None });
        }
        guard::inspect(
            &self.engine.destination,
            self.engine.customer_key.as_ref(),
            (&gone.dest_bucket, &gone.key),
            gone.copied_etag.as_deref(),
            &also,
        )
        .await
        .map_err(|e| RunError::Buckets(vec![e]))
    }

    /// Whether a HEAD finds the key at the source. Only "no such key" says it
    /// is gone; any other failure keeps it (tried again next pass).
    async fn still_at_source(&self, gone: &ledger::Deletable) -> Result<bool, RunError> {
        let what = format!(
            "HeadObject {}/{} (before removing it)",
            gone.source_bucket, gone.key
        );
        match self
            .engine
            .source
            .head_object()
            .bucket(&gone.source_bucket)
            .key(&gone.key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match StoreError::from_sdk(Side::Source, what, e) {
                e if e.kind == store::FailureKind::NoSuchKey => Ok(false),
                e => Err(RunError::Buckets(vec![e])),
            },
        }
    }

    /// Removes one key deleted at the source, if what the destination holds
    /// is ferry's copy. Returns whether it removed it.
    async fn remove_one(&self, gone: &ledger::Deletable) -> Result<bool, RunError> {
        let (writer, id) = (&self.engine.writer, gone.object_id);
        let (bucket, key) = (&gone.dest_bucket, &gone.key);
        // Two listings said it is gone; the source itself must say so too
        // before anything is deleted (an inventory or a listing can miss a key).
        if self.still_at_source(gone).await? {
            tracing::warn!(bucket = %gone.source_bucket, key = %key,
                "listed as gone, but the source still answers for it: not removed");
            writer
                .call(move |c| ledger::record_still_at_source(c, id))
                .await?;
            return Ok(false);
        }
        match self.removal(gone).await? {
            guard::Verdict::Absent => {
                writer.call(move |c| ledger::record_removed(c, id)).await?;
                return Ok(false);
            }
            guard::Verdict::Foreign(why) => {
                let reason = format!("deleted at the source; {why}");
                tracing::warn!(bucket = %bucket, key = %key, reason = %reason, "conflict: not removed");
                writer
                    .call(move |c| ledger::record_conflict(c, id, &reason))
                    .await?;
                return Ok(false);
            }
            guard::Verdict::Ours | guard::Verdict::Known => {}
        }
        self.engine
            .destination
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                RunError::Buckets(vec![StoreError::from_sdk(
                    Side::Destination,
                    format!("DeleteObject {bucket}/{key}"),
                    e,
                )])
            })?;
        tracing::info!(bucket = %bucket, key = %key, "removed at the destination: gone at the source (missing from two listings, or found gone by a HEAD after an event)");
        writer.call(move |c| ledger::record_removed(c, id)).await?;
        Ok(true)
    }
}
