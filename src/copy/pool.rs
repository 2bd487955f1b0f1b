//! The bounded pool: takes work from the ledger in batches and runs at most
//! `concurrency` objects at once. It must not know what the work does.

use std::future::Future;
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
    /// `concurrency` at a time.
    ///
    /// When `stop` is cancelled no new item starts; items in flight get
    /// `grace` to finish and are then dropped. A dropped copy keeps its
    /// upload and acknowledged parts in the ledger and resumes next run.
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
        WorkFut: Future<Output = Result<PassSummary, LedgerError>> + Send + 'static,
    {
        let mut summary = PassSummary::default();
        let mut workers = JoinSet::new();
        let mut after_id = 0;
        let (growing, (mut objects, bytes)) = match totals {
            Totals::Known(objects, bytes) => (false, (objects, bytes)),
            Totals::Growing => (true, (0, 0)),
        };
        crate::progress::pass_started(label, objects, bytes);
        let mut finished = 0;
        let settle = |summary: &mut PassSummary, finished: &mut u64, objects, done| {
            tally(summary, done)?;
            *finished += 1;
            crate::progress::objects_done(*finished, objects);
            Ok::<(), LedgerError>(())
        };
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
                while workers.len() >= self.transfer.concurrency {
                    tokio::select! {
                        done = workers.join_next() => settle(&mut summary, &mut finished, objects, done)?,
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
        loop {
            let next = if stop.is_cancelled() {
                let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                match tokio::time::timeout_at(deadline, workers.join_next()).await {
                    Ok(done) => done,
                    Err(_) => {
                        tracing::warn!(
                            objects = workers.len(),
                            "shutdown grace is over: dropping work in flight; it resumes on the next run"
                        );
                        workers.shutdown().await;
                        break;
                    }
                }
            } else {
                tokio::select! {
                    done = workers.join_next() => done,
                    // A signal while the last objects run starts the grace period.
                    _ = stop.cancelled() => continue,
                }
            };
            match next {
                Some(done) => settle(&mut summary, &mut finished, objects, Some(done))?,
                None => break,
            }
        }
        crate::progress::pass_finished();
        Ok(summary)
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
