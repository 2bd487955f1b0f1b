//! The bounded pool: takes work from the ledger in batches and runs at most
//! `concurrency` objects at once. It must not know what the work does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::ledger::{LedgerError, PassSummary};

impl Engine {
    /// The bounded pool: takes batches from `fetch` (the last id seen and the
    /// items, or None when done) and runs `work` on each item, at most
    /// `concurrency` at a time.
    ///
    /// When `stop` is cancelled no new item starts; items in flight get
    /// `grace` to finish and are then dropped. A dropped copy keeps its
    /// upload and acknowledged parts in the ledger and resumes next run.
    pub(crate) async fn drive<I, Fetch, FetchFut, Work, WorkFut>(
        self: &Arc<Self>,
        mut fetch: Fetch,
        work: Work,
        (label, (objects, bytes)): (&str, (u64, u64)),
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<PassSummary, LedgerError>
    where
        Fetch: FnMut(i64) -> FetchFut,
        FetchFut: Future<Output = Result<Option<(i64, Vec<I>)>, LedgerError>>,
        Work: Fn(Arc<Engine>, I) -> WorkFut,
        WorkFut: Future<Output = Result<PassSummary, LedgerError>> + Send + 'static,
    {
        let mut summary = PassSummary::default();
        let mut workers = JoinSet::new();
        let mut after_id = 0;
        crate::progress::pass_started(label, objects, bytes);
        let mut finished = 0;
        let mut settle = |summary: &mut PassSummary, done| {
            tally(summary, done)?;
            finished += 1;
            crate::progress::objects_done(finished, objects);
            Ok::<(), LedgerError>(())
        };
        'batches: while !stop.is_cancelled() {
            let Some((last, batch)) = fetch(after_id).await? else {
                break;
            };
            after_id = last;
            for item in batch {
                while workers.len() >= self.transfer.concurrency {
                    tokio::select! {
                        done = workers.join_next() => settle(&mut summary, done)?,
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
                Some(done) => settle(&mut summary, Some(done))?,
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
