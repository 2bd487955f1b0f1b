//! The bounded pool: takes work from the ledger in batches and runs at most
//! `concurrency` objects at once. It must not know what the work does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::ledger::{LedgerError, PassSummary, VerifyItem, WorkItem};

/// The size of the work a pass is about to do, for its progress bar.
pub(crate) enum Totals {
    /// Counted before the pass: (objects, bytes).
    Known(u64, u64),
    /// Unknown while a listing still feeds the queue: grows with each batch.
    Growing,
}

/// What one item's work came to: done, or a second step that runs outside
/// the pool's slots (a copy's read-back), whose summary is the item's. A
/// read-back then does not hold up the next copy: over a WAN the copies stay
/// at full concurrency while the read-backs run against the near store.
pub(crate) enum Outcome {
    Done(PassSummary),
    Then(SecondStep),
}

/// The bytes an item moves, for a growing progress bar.
pub(crate) trait Job {
    fn bytes(&self) -> u64;
}

impl Job for WorkItem {
    fn bytes(&self) -> u64 {
        self.size
    }
}

impl Job for VerifyItem {
    fn bytes(&self) -> u64 {
        self.size
    }
}

impl Engine {
    /// The bounded pool: takes batches from `fetch` (the last id seen and the
    /// items, or None when done; an empty batch lets the pool look at `stop`
    /// while `fetch` waits for more) and runs `work` on each item, at most
    /// `concurrency` at a time. Second steps ([`Outcome::Then`]) run beside
    /// them, at most `concurrency` too; when they fall behind, no new item
    /// starts until one ends.
    ///
    /// When `stop` is cancelled no new item starts; items in flight get
    /// `grace` to finish and are then dropped. A dropped copy keeps its
    /// upload and acknowledged parts in the ledger and resumes next run; a
    /// dropped read-back leaves the copy to be read back by the next pass.
    pub(crate) async fn drive<I, Fetch, FetchFut, Work, WorkFut>(
        self: &Arc<Self>,
        mut fetch: Fetch,
        work: Work,
        (label, totals): (&str, Totals),
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError>
    where
        I: Job,
        Fetch: FnMut(i64) -> FetchFut,
        FetchFut: Future<Output = Result<Option<(i64, Vec<I>)>, LedgerError>>,
        Work: Fn(Arc<Engine>, I) -> WorkFut,
        WorkFut: Future<Output = Result<Outcome, LedgerError>> + Send + 'static,
    {
        let mut summary = PassSummary::default();
        let mut workers = JoinSet::new();
        let mut second_steps = JoinSet::new();
        let mut after_id = 0;
        let (growing, (mut objects, bytes)) = match totals {
            Totals::Known(objects, bytes) => (false, (objects, bytes)),
            Totals::Growing => (true, (0, 0)),
        };
        crate::progress::pass_started(label, objects, bytes);
        let mut finished = 0;
        let concurrency = self.transfer.concurrency;
        'batches: while !stop.is_cancelled() {
            let Some((last, batch)) = fetch(after_id).await? else {
                break;
            };
            after_id = last;
            if growing && !batch.is_empty() {
                objects += batch.len() as u64;
                crate::progress::more_work(batch.iter().map(Job::bytes).sum());
                crate::progress::objects_done(finished, objects);
            }
            for item in batch {
                while workers.len() >= concurrency || second_steps.len() >= concurrency {
                    tokio::select! {
                        done = workers.join_next(), if !workers.is_empty() => {
                            if let Some(then) = settle(&mut summary, done)? {
                                second_steps.spawn(then);
                            } else {
                                finished += 1;
                                crate::progress::objects_done(finished, objects);
                            }
                        }
                        done = second_steps.join_next(), if !second_steps.is_empty() => {
                            tally(&mut summary, done)?;
                            finished += 1;
                            crate::progress::objects_done(finished, objects);
                        }
                        _ = stop.cancelled() => break 'batches,
                    }
                }
                let in_flight = crate::metrics::InFlight::object();
                let job = work(self.clone(), item);
                workers.spawn(async move {
                    let _in_flight = in_flight;
                    job.await
                });
            }
        }
        let mut deadline = None;
        while !workers.is_empty() || !second_steps.is_empty() {
            let wait_for_both = async {
                tokio::select! {
                    done = workers.join_next(), if !workers.is_empty() => (Some(done), None),
                    done = second_steps.join_next(), if !second_steps.is_empty() => (None, Some(done)),
                }
            };
            let next = if stop.is_cancelled() {
                let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                match tokio::time::timeout_at(deadline, wait_for_both).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::warn!(
                            objects = workers.len() + second_steps.len(),
                            "shutdown grace is over: dropping work in flight; it resumes on the next run"
                        );
                        workers.shutdown().await;
                        second_steps.shutdown().await;
                        break;
                    }
                }
            } else {
                tokio::select! {
                    next = wait_for_both => next,
                    // A signal while the last objects run starts the grace period.
                    _ = stop.cancelled() => continue,
                }
            };
            match next {
                (Some(done), _) => {
                    if let Some(then) = settle(&mut summary, done)? {
                        second_steps.spawn(then);
                        continue;
                    }
                }
                (_, Some(done)) => tally(&mut summary, done)?,
                (None, None) => unreachable!("one of the two sets answered"),
            }
            finished += 1;
            crate::progress::objects_done(finished, objects);
        }
        crate::progress::pass_finished();
        Ok(summary)
    }
}

type SecondStep = Pin<Box<dyn Future<Output = Result<PassSummary, LedgerError>> + Send>>;

/// A first step that ended: its summary is tallied, or its second step returned.
fn settle(
    summary: &mut PassSummary,
    done: Option<Result<Result<Outcome, LedgerError>, tokio::task::JoinError>>,
) -> Result<Option<SecondStep>, LedgerError> {
    match done {
        Some(Ok(Ok(Outcome::Then(then)))) => Ok(Some(then)),
        Some(Ok(Ok(Outcome::Done(one)))) => {
            summary.add(&one);
            Ok(None)
        }
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => {
            tally(summary, Some(Err(e)))?;
            Ok(None)
        }
        None => Ok(None),
    }
}

fn tally(
    summary: &mut PassSummary,
    done: Option<Result<Result<PassSummary, LedgerError>, tokio::task::JoinError>>,
) -> Result<(), LedgerError> {
    match done {
        None => {}
        Some(Ok(Ok(one))) => summary.add(&one),
        Some(Ok(Err(e))) => return Err(e),
        // A worker panicked: a bug, but the object stays pending in the ledger.
        Some(Err(e)) => {
            tracing::error!(error = %e, "a worker stopped unexpectedly");
            summary.objects_failed += 1;
        }
    }
    Ok(())
}
