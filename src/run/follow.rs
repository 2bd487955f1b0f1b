//! Between full listings: the queues of S3's events followed, and each key they
//! name copied, read back and (with `delete = true`) removed within seconds.
//! It must not speak SQL or stream bytes; `events` and `copy` do.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use crate::events::{EventsError, Feed, LONGEST_WAIT};
use crate::ledger::{self, PassSummary};

use super::*;

/// Receives side by side per queue: one receive holds at most ten messages,
/// and a HEAD per key; two keep a busy queue moving while one waits.
const RECEIVERS_PER_QUEUE: usize = 2;

/// How often the feeds' lags are read when nothing arrives.
const LAG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What following the feeds did, until the next full listing or a stop.
#[derive(Debug, Default)]
pub struct FollowReport {
    pub messages: u64,
    pub events: u64,
    pub stale: u64,
    pub gone: u64,
    pub removed: u64,
    pub copy: PassSummary,
    pub queue_errors: Vec<String>,
}

impl FollowReport {
    /// What a person reads when the daemon turns to its next full listing.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "followed the event queues: {} messages, {} events recorded ({} older than the ledger's, ignored), {} keys confirmed gone; copied {} objects ({}), {} read back, {} failed, {} removed\n",
            self.messages,
            self.events,
            self.stale,
            self.gone,
            self.copy.objects_copied,
            bytesize::ByteSize(self.copy.bytes_copied),
            self.copy.objects_verified,
            self.copy.objects_failed,
            self.removed,
        );
        for e in &self.queue_errors {
            text.push_str(&format!("  queue error: {e}\n"));
        }
        text
    }
}

impl Runner {
    /// Whether any bucket pair follows a queue.
    pub fn follows_events(&self) -> bool {
        self.config.buckets.iter().any(|b| b.events.is_some())
    }

    /// Asks each configured queue once: a wrong URL or a missing permission
    /// is named before the first pass, not after it.
    pub async fn check_queues(&self) -> Result<(), RunError> {
        match self.feeds(true).await {
            Err(RunError::Events(e)) if e.contains(crate::events::UNREACHABLE) => {
                // Not a wrong URL or permission: the receives retry it.
                tracing::warn!(error = %e, "the event queue does not answer now; ferry goes on and asks it again");
                Ok(())
            }
            checked => checked.map(|_| ()),
        }
    }

    /// The feeds of the configured queues, recorded as followed from now in
    /// the ledger; with `check`, each asked once first.
    pub(crate) async fn feeds(&self, check: bool) -> Result<Vec<Arc<Feed>>, RunError> {
        let mut by_queue: Vec<(
            crate::config::EventQueue,
            Vec<(i64, crate::config::BucketPair)>,
        )> = Vec::new();
        for (pair, &id) in self.config.buckets.iter().zip(&self.bucket_ids) {
            let Some(queue) = &pair.events else { continue };
            match by_queue.iter_mut().find(|(q, _)| q == queue) {
                Some((_, pairs)) => pairs.push((id, pair.clone())),
                None => by_queue.push((queue.clone(), vec![(id, pair.clone())])),
            }
        }
        let mut feeds = Vec::new();
        for (queue, pairs) in by_queue {
            let client = crate::store::queue_client(
                &self.config.source,
                &self.config.transfer,
                &queue.endpoint,
                LONGEST_WAIT,
            )
            .await;
            let feed = Feed::new(queue.clone(), client, pairs, self.config.shard);
            if check {
                feed.check().await.map_err(|e| self.events_error(e))?;
            }
            for id in feed.bucket_ids() {
                let url = queue.url.clone();
                self.engine
                    .writer
                    .call(move |c| ledger::start_following(c, id, &url))
                    .await?;
            }
            feeds.push(Arc::new(feed));
        }
        Ok(feeds)
    }

    pub(crate) fn events_error(&self, e: EventsError) -> RunError {
        match e {
            EventsError::Ledger(e) => RunError::Ledger(e),
            e => RunError::Events(e.to_string()),
        }
    }

    /// Follows every queue until `until` or a stop: each receive is recorded
    /// in the ledger, and the keys it names are copied at once, beside the
    /// next receive. Failed copies are tried again every `interval`.
    pub async fn follow_events(&self, until: Instant) -> Result<FollowReport, RunError> {
        // A queue that fails now is named by each receive and asked again:
        // the full listings go on whatever the feed does.
        let feeds = self.feeds(false).await?;
        // Every bucket's copies, not only the followed ones: the others'
        // failed copies and restores are tried again here too.
        let bucket_ids = self.bucket_ids.clone();
        let received = Arc::new(Notify::new());
        let receiving = CancellationToken::new();
        let report = Arc::new(std::sync::Mutex::new(FollowReport::default()));
        let receivers = feeds.iter().flat_map(|feed| {
            (0..RECEIVERS_PER_QUEUE).map(|_| {
                let (feed, received, report) = (feed.clone(), received.clone(), report.clone());
                let receiving = receiving.clone();
                async move {
                    self.receive_until(&feed, until, &receiving, &received, &report)
                        .await
                }
            })
        });
        let receiving_all = async {
            let results = futures::future::join_all(receivers).await;
            // The copier's last round runs once every receive is in.
            receiving.cancel();
            received.notify_one();
            results.into_iter().collect::<Result<Vec<()>, RunError>>()
        };
        let copying = async {
            let copied = self
                .copy_what_events_name(&bucket_ids, &receiving, &received, &report)
                .await;
            // A copier that stops (a ledger error) stops the receivers: no
            // message is taken that nothing would copy.
            receiving.cancel();
            copied
        };
        let (receiving_all, copying) = tokio::join!(receiving_all, copying);
        receiving_all?;
        copying?;
        let report = std::mem::take(&mut *report.lock().unwrap());
        Ok(report)
    }

    /// One receiver: receives until `until` or a stop. A queue that fails
    /// is named and asked again after a pause; the full listings go on.
    async fn receive_until(
        &self,
        feed: &Feed,
        until: Instant,
        receiving: &CancellationToken,
        received: &Notify,
        report: &std::sync::Mutex<FollowReport>,
    ) -> Result<(), RunError> {
        while !self.stop.is_cancelled() && !receiving.is_cancelled() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let receive = feed.receive(
                &self.engine.source,
                &self.engine.writer,
                left.min(LONGEST_WAIT),
                DELETE_AFTER_PASSES,
            );
            let got = tokio::select! {
                got = receive => got,
                _ = self.stop.cancelled() => return Ok(()),
            };
            match got {
                Ok(got) => {
                    let mut r = report.lock().unwrap();
                    r.messages += got.messages;
                    r.events += got.applied;
                    r.stale += got.stale;
                    r.gone += got.gone;
                    drop(r);
                    if got.applied > 0 {
                        received.notify_one();
                    }
                }
                Err(EventsError::Ledger(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::error!(queue = %feed.queue.url, error = %e, "cannot read the event queue; asked again in 10 s, and the full listings go on");
                    {
                        let mut r = report.lock().unwrap();
                        if r.queue_errors.len() < 10 {
                            r.queue_errors.push(e.to_string());
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                        _ = self.stop.cancelled() => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies what the events put in the queue, a round each time a receive
    /// records something (and failed copies again every `interval`), until
    /// the receivers are done; then measures each copied event's lag.
    async fn copy_what_events_name(
        &self,
        bucket_ids: &[i64],
        receiving: &CancellationToken,
        received: &Notify,
        report: &std::sync::Mutex<FollowReport>,
    ) -> Result<(), RunError> {
        let mut retry_at = Instant::now() + self.config.interval;
        // Keys confirmed gone so far whose removal was asked.
        let mut removals_asked = 0;
        loop {
            let last_round = receiving.is_cancelled() || self.stop.is_cancelled();
            // Every `interval`, what a pass would do beside the copy: failed
            // copies and removals tried again, archived objects' restores
            // asked and checked, and the ledger's snapshot when due.
            let periodic = Instant::now() >= retry_at;
            if periodic && !self.stop.is_cancelled() {
                self.engine
                    .writer
                    .call(|c| ledger::requeue_failed(c))
                    .await?;
                if self.config.backup.is_some() {
                    if let Err(e) = crate::backup::snapshot_if_due(
                        &self.config,
                        &self.engine.destination,
                        false,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "ledger snapshot failed; tried again when the next is due");
                        crate::metrics::failed("ledger_snapshot");
                    }
                }
                retry_at = Instant::now() + self.config.interval;
            }
            if !self.stop.is_cancelled() {
                // Restores beside the copy, as a pass has them: a long
                // step must not hold back the events' copies.
                let restoring = async {
                    if !periodic {
                        return Ok(0);
                    }
                    crate::copy::restore::step(&self.engine, &self.restorer, bucket_ids, &self.stop)
                        .await
                        .map(|r| r.ready)
                };
                let (copied, restored) = tokio::join!(
                    self.engine.copy_pending(
                        bucket_ids.to_vec(),
                        &self.stop,
                        self.config.shutdown_grace
                    ),
                    restoring
                );
                let copied = copied?;
                if restored? > 0 {
                    // Restores found done: copied in the next round, now.
                    received.notify_one();
                }
                report.lock().unwrap().copy.add(&copied);
                self.record_lags().await?;
                let gone = report.lock().unwrap().gone;
                if self.config.delete
                    && (gone > removals_asked || periodic)
                    && !self.stop.is_cancelled()
                {
                    removals_asked = gone;
                    let removed = self.remove_deleted().await?;
                    report.lock().unwrap().removed += removed;
                }
            }
            if last_round {
                return Ok(());
            }
            // Between rounds the lags are read again now and then, so that
            // a lag that grows (a copy that keeps failing) shows.
            loop {
                tokio::select! {
                    _ = received.notified() => break,
                    _ = tokio::time::sleep_until(retry_at.into()) => break,
                    _ = tokio::time::sleep(LAG_EVERY) => self.record_lags().await?,
                }
            }
        }
    }

    /// Each copied event's lag into the metrics, and each feed's lag now.
    pub(crate) async fn record_lags(&self) -> Result<(), RunError> {
        let lags = self
            .engine
            .writer
            .call(|c| ledger::record_event_lags(c))
            .await?;
        for (_, ms) in &lags {
            crate::metrics::event_lag(*ms as f64 / 1000.0);
        }
        let feeds = self.engine.writer.call(|c| ledger::feed_status(c)).await?;
        crate::metrics::feed_lags(
            feeds
                .iter()
                .map(|f| (f.source.as_str(), f.lag_seconds.unwrap_or(0.0))),
        );
        Ok(())
    }
}
