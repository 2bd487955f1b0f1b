//! The commands besides a pass: `verify` over the ledger's copies, and `plan` (the listing it needs, tags counted, a sample asked, its tables).
//! It must not copy; `verify` reads back, `plan` only lists and asks.

use std::time::Instant;

use crate::ledger::{self, ReadBack, State};
use crate::list::{self, ListError};

use super::*;
use crate::report::plan::{self, Assumptions};
use crate::report::quality::{self, Quality};
use crate::report::render::Table;

impl Runner {
    /// Lists every bucket whose listing the ledger does not hold complete
    /// (for `plan`, which needs a listing but copies nothing).
    pub async fn list_unlisted(&self) -> Result<(), RunError> {
        let writer = &self.engine.writer;
        for (pair, &bucket_id) in self.config.buckets.iter().zip(&self.bucket_ids) {
            let pairs = [pair.clone()];
            let db = writer.clone();
            let listed = db
                .call(move |c| crate::report::plan::all_listed(c, &pairs))
                .await?;
            if listed {
                continue;
            }
            tracing::info!(bucket = %pair.source, "listing for the plan");
            // Pass 0: a listing made by `plan`, before any pass ran.
            list::list_bucket(
                &self.engine.source,
                writer,
                (bucket_id, 0),
                pair,
                (self.config.shard, self.config.transfer.list_ranges),
                &self.stop,
            )
            .await
            .map_err(|e| match e {
                ListError::Ledger(e) => RunError::Ledger(e),
                ListError::Store(e) => RunError::Buckets(vec![e]),
            })?;
        }
        Ok(())
    }

    /// `ferry verify`: read copies back and record what they hold.
    pub async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport, RunError> {
        let started = Instant::now();
        let writer = &self.engine.writer;
        let audit = match options.scope {
            VerifyScope::Audit => Some(writer.call(|c| ledger::begin_or_resume_audit(c)).await?),
            _ => None,
        };
        let (read_back, sample) = match (&audit, options.scope) {
            (Some(audit), _) => (ReadBack::NotSince(audit.started_at.clone()), 1.0),
            (None, VerifyScope::Sample(share)) => (ReadBack::Arrived, share),
            (None, _) => (ReadBack::Unread, 1.0),
        };
        let summary = crate::verify::read_back(
            &self.engine,
            self.bucket_ids.clone(),
            read_back,
            sample,
            &self.stop,
            self.config.shutdown_grace,
        )
        .await?;
        let cut_off = self.stop.is_cancelled();
        if let Some(audit) = audit.as_ref().filter(|_| !cut_off) {
            let id = audit.id;
            writer.call(move |c| ledger::finish_audit(c, id)).await?;
        }
        let mismatched = writer
            .call(|c| ledger::objects_in_state(c, State::Mismatched, FAILED_SHOWN))
            .await?;
        let ids = self.bucket_ids.clone();
        let proofs = writer.call(move |c| ledger::proof_totals(c, &ids)).await?;
        let requeued = if options.recopy {
            writer.call(|c| ledger::requeue_mismatched(c)).await?
        } else {
            0
        };
        Ok(VerifyReport {
            summary,
            mismatched,
            requeued,
            took: started.elapsed(),
            audit,
            cut_off,
            proofs,
        })
    }
}

/// `ferry plan`: lists what the ledger does not hold complete, counts every
/// object's tags (`count_tags`), HEADs a sample per bucket for the
/// data-quality checks (`deep`), and makes the plan's tables.
pub async fn plan(
    config: &Config,
    assumptions: &Assumptions,
    deep: Option<usize>,
    count_tags: bool,
) -> Result<Vec<Table>, RunError> {
    let listed = ledger::open_reader(&config.ledger)
        .and_then(|c| Ok(plan::all_listed(&c, &config.buckets)?))
        .unwrap_or(false);
    if !listed {
        let runner = Runner::start_read_only(config.clone(), crate::shutdown::listen()).await?;
        runner.list_unlisted().await?;
    }
    let source = store::client(Side::Source, &config.source, &config.transfer).await;
    if count_tags {
        let writer = Writer::open(&config.ledger)?;
        let counted = crate::list::tag_count::count_tags(&writer, &source, &config.buckets)
            .await
            .map_err(|e| match e {
                ListError::Ledger(e) => RunError::Ledger(e),
                ListError::Store(e) => RunError::Buckets(vec![e]),
            })?;
        tracing::info!(
            asked = counted.asked,
            gone_since_listing = counted.gone,
            without_tagging = ?counted.without_tagging,
            "tags counted"
        );
    }
    let mut quality = Quality::default();
    if let Some(n) = deep {
        let conn = ledger::open_reader(&config.ledger)?;
        let mut samples = Vec::new();
        for pair in &config.buckets {
            let (keys, of) =
                quality::content_type_sample(&conn, pair, n).map_err(LedgerError::from)?;
            samples.push((pair.clone(), keys, of));
        }
        quality::check_content_types(&source, samples, &mut quality).await;
    }
    let conn = ledger::open_reader(&config.ledger)?;
    Ok(
        plan::plan_tables(&conn, &config.buckets, assumptions, quality)
            .map_err(LedgerError::from)?,
    )
}
