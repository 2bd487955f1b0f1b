//! What to do with a destination key that holds something when ferry comes to write it (write over, adopt, or leave it as a conflict), and adopting a copy the ledger has no record of (a lost or restored ledger) when its bytes prove to be the source's.
//! It must not write to a store, nor take an ETag's word for bytes: the copy is read whole and hashed on the source's own part boundaries.
//!
//! A ledger lost with its disk would otherwise send every object again (a
//! second egress bill) and call ferry's own re-cut copies conflicts. The
//! destination copy is read back instead (ingress at Hetzner is free) and
//! its ETag computed as the source store would compute it: on the source's
//! part boundaries, learned with HEADs. Equal to the source's ETag, the copy
//! holds the source's bytes, and the read that proved it is its verification.

use super::guard::MayWrite;
use super::{CopyError, Engine};
use crate::hashing::{bare_etag, EtagOnParts};
use crate::ledger::{self, CopyRecord, LedgerError, PassSummary, Verification, WorkItem};
use crate::store::{FailureKind, Side, StoreError, WithCustomerKey};

/// Why an adopted copy's ETag may differ from the source's.
pub const ADOPTED_NOTE: &str = "adopted: found at the destination without a ledger record, read back whole and proved to hash to the source's ETag on the source's part boundaries";

/// What the destination copy proved to be, recorded as copied and verified.
pub struct Adopted {
    pub copy: CopyRecord,
    pub verification: Verification,
}

impl Engine {
    /// The proof that the destination object at `item`'s key, listed with
    /// `dest_etag`, holds the source version's bytes in a form ferry's own
    /// copy could have (Err: why not, for the log and the ledger). Its
    /// bytes are read once, If-Match the ETag seen, and hashed on the
    /// source's part boundaries (its ETag must be the source's) and on
    /// ferry's own (the copy's ETag must be one ferry could have made: the
    /// source's, the MD5, or ferry's even parts), so that another tool's
    /// copy of the same bytes is not taken as ferry's, to remove or overwrite.
    pub(crate) async fn prove_adoptable(
        &self,
        item: &WorkItem,
        dest_etag: &str,
    ) -> Result<Result<Adopted, String>, CopyError> {
        use super::multipart::layout;
        let Some(lengths) = layout::source_boundaries(self, item).await? else {
            return Ok(Err(
                "the source's part boundaries cannot be learned, or its ETag is not an MD5 of its bytes".into(),
            ));
        };
        let what = format!("GetObject {}/{} (adoption)", item.dest_bucket, item.key);
        let _ticket = self.budget.admit(0).await;
        let got = self
            .destination
            .get_object()
            .bucket(&item.dest_bucket)
            .key(&item.key)
            .if_match(super::single::quoted(dest_etag))
            .customer_key(self.customer_key.as_ref())
            .send()
            .await;
        let mut got = match got {
            Ok(got) => got,
            Err(e) => {
                let e = StoreError::from_sdk(Side::Destination, &what, e);
                return match e.kind {
                    FailureKind::NoSuchKey => Ok(Err("gone from the destination".into())),
                    // 412 to If-Match, at the destination.
                    FailureKind::Occupied => {
                        Ok(Err("changed at the destination while ferry looked".into()))
                    }
                    _ if e.kind.is_retryable() => Err(e.into()),
                    _ => Ok(Err(format!("not readable: {e}"))),
                };
            }
        };
        let size = got.content_length().unwrap_or(-1);
        if size != item.size as i64 {
            return Ok(Err(format!(
                "{size} bytes at the destination, {} at the source",
                item.size
            )));
        }
        let multipart = layout::source_part_count(&item.source_etag).is_some();
        let mut on_source_parts = EtagOnParts::new(lengths, multipart);
        let own = layout::even_layout(
            item.size,
            layout::part_size_for(item.size, self.transfer.part_size),
        );
        let mut on_own_parts = EtagOnParts::new(own.iter().map(|p| p.length).collect(), true);
        while let Some(chunk) = got.body.next().await {
            let chunk = chunk.map_err(|e| StoreError::cut_off(Side::Destination, &what, e))?;
            on_source_parts.update(&chunk);
            on_own_parts.update(&chunk);
        }
        let (whole, etag) = on_source_parts.finish();
        if etag.as_deref() != Some(item.source_etag.as_str()) {
            return Ok(Err(format!(
                "its bytes hash to ETag {} on the source's part boundaries, the source's is {}",
                etag.unwrap_or_else(|| "(none: the length does not fill the parts)".into()),
                item.source_etag
            )));
        }
        let md5 = whole.md5_hex();
        // ferry cuts its own parts only for an object it sends in parts.
        let own_parts = on_own_parts
            .finish()
            .1
            .filter(|_| self.sends_in_parts(item));
        let ferry_could_have = self.customer_key.is_some()
            || dest_etag == item.source_etag
            || dest_etag == md5
            || Some(dest_etag) == own_parts.as_deref();
        if !ferry_could_have {
            return Ok(Err(format!(
                "its bytes are the source's, but its ETag {dest_etag} is none a copy of ferry's would have \
                 (the source's, the MD5, or ferry's {} parts): another tool wrote it, so ferry does not take it as its own",
                bytesize::ByteSize(self.transfer.part_size).display().iec()
            )));
        }
        let sha256 = whole.sha256_hex();
        let copy = CopyRecord {
            object_id: item.object_id,
            source_etag: item.source_etag.clone(),
            dest_etag: dest_etag.to_owned(),
            size: item.size,
            sha256: sha256.clone(),
            md5: md5.clone(),
            part_size: None,
            part_count: 0,
            etag_note: Some(ADOPTED_NOTE.to_owned()),
            // Its bytes made the source's ETag on the source's boundaries.
            proved_by_etag: true,
            source_checksum: None,
        };
        let verification = Verification {
            object_id: item.object_id,
            ok: true,
            reason: None,
            size: Some(whole.len),
            sha256: Some(sha256),
            md5: Some(md5),
        };
        Ok(Ok(Adopted { copy, verification }))
    }

    /// Whether the destination object at the key, which the ledger records
    /// no copy of (or one from before the ledger was restored), proved to
    /// hold the source version's bytes and was recorded as ferry's copy.
    /// Not tried while ferry has an upload of the key in progress (it is
    /// resumed), nor again for the same pair of ETags once it failed.
    pub(super) async fn adopt_if_proved(&self, item: &WorkItem) -> Result<bool, CopyError> {
        let id = item.object_id;
        let (may, uploading) = self
            .writer
            .call(move |c| {
                Ok((
                    ledger::may_adopt(c, id)?,
                    ledger::upload_of(c, id)?.is_some(),
                ))
            })
            .await?;
        if !may || uploading {
            return Ok(false);
        }
        let what = format!("HeadObject {}/{} (adoption)", item.dest_bucket, item.key);
        let head = self
            .destination
            .head_object()
            .bucket(&item.dest_bucket)
            .key(&item.key)
            .customer_key(self.customer_key.as_ref())
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(e) => {
                let e = StoreError::from_sdk(Side::Destination, &what, e);
                return if e.kind.is_retryable() {
                    Err(e.into())
                } else {
                    Ok(false)
                };
            }
        };
        let dest_etag = bare_etag(head.e_tag().unwrap_or_default()).to_owned();
        if head.content_length() != Some(item.size as i64) {
            return Ok(false);
        }
        let etags = (dest_etag.clone(), item.source_etag.clone());
        let refused = self
            .writer
            .call(move |c| ledger::adoption_refused(c, id, (&etags.0, &etags.1)))
            .await?;
        if refused {
            return Ok(false);
        }
        match self.prove_adoptable(item, &dest_etag).await? {
            Ok(adopted) => {
                self.record_adopted(item, adopted).await?;
                Ok(true)
            }
            Err(why) => {
                tracing::info!(bucket = %item.dest_bucket, key = %item.key, why = %why, "not adopted");
                let source_etag = item.source_etag.clone();
                self.writer
                    .call(move |c| {
                        ledger::record_adoption_refused(c, id, (&dest_etag, &source_etag), &why)
                    })
                    .await?;
                Ok(false)
            }
        }
    }

    /// None when the key may be written; else what was recorded instead (a
    /// conflict, or the failure of the HEAD that asked).
    pub(super) async fn unless_writable(
        &self,
        item: &WorkItem,
    ) -> Result<Option<PassSummary>, LedgerError> {
        let id = item.object_id;
        let may = match self.may_write(item).await {
            Ok(MayWrite::Yes) => return Ok(None),
            Ok(may) => may,
            Err(CopyError::Ledger(e)) => return Err(e),
            Err(CopyError::Store(e)) => return self.record_failure(item, e).await.map(Some),
        };
        match self.adopt_if_proved(item).await {
            Ok(true) => {
                return Ok(Some(PassSummary {
                    objects_adopted: 1,
                    objects_verified: 1,
                    bytes_verified: item.size,
                    ..PassSummary::default()
                }))
            }
            Ok(false) => {}
            Err(CopyError::Ledger(e)) => return Err(e),
            Err(CopyError::Store(e)) => return self.record_failure(item, e).await.map(Some),
        }
        // The proof read took a while; what the HEAD saw before it may have
        // changed since (another writer): ask again before writing.
        let may = match may {
            MayWrite::YesUnlessAdoptable => match self.may_write(item).await {
                Ok(may) => may,
                Err(CopyError::Ledger(e)) => return Err(e),
                Err(CopyError::Store(e)) => return self.record_failure(item, e).await.map(Some),
            },
            may => may,
        };
        match may {
            MayWrite::Yes | MayWrite::YesUnlessAdoptable => Ok(None),
            MayWrite::No(reason) => {
                tracing::warn!(bucket = %item.dest_bucket, key = %item.key, reason = %reason, "conflict: not copied");
                crate::metrics::failed("conflict");
                self.writer
                    .call(move |c| ledger::record_conflict(c, id, &reason))
                    .await?;
                Ok(Some(PassSummary {
                    objects_conflict: 1,
                    ..PassSummary::default()
                }))
            }
        }
    }

    /// Records what [`Engine::prove_adoptable`] proved: copied and verified,
    /// marked as adopted.
    pub(crate) async fn record_adopted(
        &self,
        item: &WorkItem,
        adopted: Adopted,
    ) -> Result<(), ledger::LedgerError> {
        tracing::info!(bucket = %item.dest_bucket, key = %item.key, bytes = item.size,
            "adopted: the destination already holds the source's bytes (read back and proved); not sent again");
        crate::metrics::adopted(item.size);
        self.adopting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.writer
            .call(move |c| ledger::record_adopted(c, &adopted.copy, &adopted.verification))
            .await
    }
}
