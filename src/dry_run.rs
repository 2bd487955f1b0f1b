//! `ferry run --dry-run`: list, decide, and say what a run would do, per
//! bucket and per key. It must not write to the destination: no PUT, no
//! Create, no Delete, no Abort; it asks with HEAD only. The ledger records
//! the listing, as any pass does.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use crate::copy::guard::{MayWrite, Verdict};
use crate::ledger::{self, WorkItem};
use crate::report::render::{Cell, Table};
use crate::run::{RunError, Runner, DELETE_AFTER_PASSES};

/// What the next run would do with one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Not at the destination yet: copy it.
    Copy,
    /// Copied before, and changed at the source since: copy it again.
    Recopy,
    /// Gone from the source, and the destination holds ferry's copy.
    Delete,
    /// The destination holds what ferry did not write: leave it alone.
    Conflict,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Copy => "copy",
            Action::Recopy => "recopy",
            Action::Delete => "delete",
            Action::Conflict => "conflict",
        }
    }
}

/// One key's decision.
#[derive(Clone, Debug)]
pub struct Decision {
    pub bucket: String,
    pub key: String,
    pub action: Action,
    pub bytes: u64,
    pub reason: String,
}

/// Per bucket: (objects, bytes) for each action.
#[derive(Clone, Debug, Default)]
pub struct BucketPlan {
    pub source: String,
    pub destination: String,
    pub actions: BTreeMap<Action, (u64, u64)>,
}

#[derive(Debug, Default)]
pub struct DryRun {
    pub buckets: Vec<BucketPlan>,
    /// Every key's decision, when asked for (`--format csv|json`).
    pub decisions: Vec<Decision>,
    /// Listings that failed or stopped: nothing is decided about deletions then.
    pub list_failures: Vec<String>,
}

impl DryRun {
    /// The summary: one row per bucket.
    pub fn summary(&self) -> Table {
        let mut t = Table::new(
            "dry run",
            vec![
                "source",
                "destination",
                "copy",
                "copy_bytes",
                "recopy",
                "recopy_bytes",
                "delete",
                "conflict",
            ],
        );
        for b in &self.buckets {
            let get = |a| b.actions.get(&a).copied().unwrap_or((0, 0));
            let (copy, recopy) = (get(Action::Copy), get(Action::Recopy));
            t.push(vec![
                b.source.as_str().into(),
                b.destination.as_str().into(),
                Cell::Count(copy.0),
                Cell::Bytes(copy.1),
                Cell::Count(recopy.0),
                Cell::Bytes(recopy.1),
                Cell::Count(get(Action::Delete).0),
                Cell::Count(get(Action::Conflict).0),
            ]);
        }
        t
    }

    /// One row per key.
    pub fn keys(&self) -> Table {
        let mut t = Table::new(
            "actions",
            vec!["bucket", "key", "action", "bytes", "reason"],
        );
        for d in &self.decisions {
            t.push(vec![
                d.bucket.as_str().into(),
                d.key.as_str().into(),
                d.action.name().into(),
                Cell::Bytes(d.bytes),
                d.reason.as_str().into(),
            ]);
        }
        t
    }
}

/// How many pending objects are read from the ledger at a time.
const BATCH: usize = 512;

impl Runner {
    /// Lists every bucket and decides, as the next `run` would, what to copy,
    /// copy again, delete, and leave alone. With `per_key`, every key's
    /// decision is kept (memory grows with the number of keys to act on).
    pub async fn dry_run(&self, per_key: bool) -> Result<DryRun, RunError> {
        let listing = self.list_all().await?;
        let mut out = DryRun {
            list_failures: listing.failures.clone(),
            ..DryRun::default()
        };
        let writer = &self.engine.writer;
        for (pair, &bucket_id) in self.config.buckets.iter().zip(&self.bucket_ids) {
            let mut plan = BucketPlan {
                source: pair.source.clone(),
                destination: pair.destination.clone(),
                ..BucketPlan::default()
            };
            let mut decide = |d: Decision| {
                let entry = plan.actions.entry(d.action).or_default();
                entry.0 += 1;
                entry.1 += d.bytes;
                if per_key {
                    out.decisions.push(d);
                }
            };
            if listing.listed.contains(&bucket_id) {
                let mut after_id = 0;
                loop {
                    let batch = writer
                        .call(move |c| ledger::pending_batch(c, &[bucket_id], after_id, BATCH))
                        .await?;
                    let Some(last) = batch.last() else { break };
                    after_id = last.object_id;
                    let decided: Vec<Decision> = stream::iter(batch)
                        .map(|item| self.copy_decision(item))
                        .buffered(self.config.transfer.concurrency)
                        .collect()
                        .await;
                    decided.into_iter().for_each(&mut decide);
                }
            }
            // A run deletes only after complete listings; the next run's
            // listing will be one more pass on top of this one's.
            if self.config.delete && listing.complete {
                let mut after_id = 0;
                loop {
                    let batch = writer
                        .call(move |c| {
                            ledger::deletable(
                                c,
                                &[bucket_id],
                                DELETE_AFTER_PASSES - 1,
                                after_id,
                                BATCH,
                            )
                        })
                        .await?;
                    let Some(last) = batch.last() else { break };
                    after_id = last.object_id;
                    for gone in batch {
                        let decision = match self.removal(&gone).await? {
                            Verdict::Absent => continue,
                            Verdict::Ours | Verdict::Known => {
                                (Action::Delete, "deleted at the source".to_owned())
                            }
                            Verdict::Foreign(why) => {
                                (Action::Conflict, format!("deleted at the source; {why}"))
                            }
                        };
                        decide(Decision {
                            bucket: pair.source.clone(),
                            key: gone.key,
                            action: decision.0,
                            bytes: 0,
                            reason: decision.1,
                        });
                    }
                }
            }
            out.buckets.push(plan);
        }
        let pass_id = listing.pass_id;
        writer
            .call(move |c| ledger::finish_pass(c, pass_id, &ledger::PassSummary::default()))
            .await?;
        Ok(out)
    }

    async fn copy_decision(&self, item: WorkItem) -> Decision {
        // A dry run reads no object: what a run would adopt (`copy/adopt.rs`)
        // after reading it back is named, not proved.
        const ADOPTABLE: &str = "; a run reads it back first, and adopts it without sending it if its bytes prove to be the source's";
        let (action, reason) = match self.engine.may_write(&item).await {
            Ok(MayWrite::No(why)) => (Action::Conflict, format!("{why}{ADOPTABLE}")),
            Ok(MayWrite::YesUnlessAdoptable) => (
                Action::Copy,
                format!("the destination holds an object the ledger has no copy of{ADOPTABLE}"),
            ),
            Ok(MayWrite::Yes) if item.copied_etag.is_some() => (
                Action::Recopy,
                "changed at the source since it was copied".to_owned(),
            ),
            Ok(MayWrite::Yes) => (Action::Copy, String::new()),
            // The run would try; say why the dry run could not tell more.
            Err(e) => (
                Action::Copy,
                format!("could not look at the destination: {e}"),
            ),
        };
        Decision {
            bucket: item.source_bucket,
            key: item.key,
            action,
            bytes: item.size,
            reason,
        }
    }
}
