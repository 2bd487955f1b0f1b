//! `ferry cutover`, run once the source is frozen: the queues drained, every
//! bucket listed and copied once more, both stores reconciled, and a sign-off.
//! It must not sign off on anything but a reconciliation with no problem.

use std::time::Duration;

use crate::report::reconcile::{self, Reconciliation};
use crate::report::table::{Cell, Table};

use super::*;

/// How long each receive of the drain waits for a message: short, as the
/// source is frozen; two empty receives in a row end it.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// How long the drain waits for messages the queue counts but will not
/// give yet: SQS's default visibility timeout is 30 s.
const DRAIN_PATIENCE: Duration = Duration::from_secs(45);

/// The longest a queue is drained: a source still written to never drains.
/// A larger backlog (a daemon stopped for long) is covered by the full
/// listing that follows; what is left then makes the late check refuse to
/// sign off, and a second `cutover` drains the rest.
const DRAIN_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// What `cutover` found.
#[derive(Debug)]
pub struct Cutover {
    pub drained_messages: u64,
    /// Events that came after the listing: the source is not frozen.
    pub late_events: u64,
    /// Messages ferry could not read, left on their queues.
    pub unreadable: u64,
    /// Messages of the late check whose body was not the one SQS sent:
    /// whether they tell of a change cannot be known.
    pub damaged: u64,
    pub last_event_at: Option<String>,
    pub pass: PassReport,
    pub reconciliation: Reconciliation,
    /// When the last copy was made or read back.
    pub equal_since: Option<String>,
    pub checked_at: String,
}

impl Cutover {
    /// Every key byte-equal (as copied and read back), nothing failed.
    pub fn signed_off(&self) -> bool {
        self.reconciliation.is_clean()
            && self.pass.succeeded()
            && self.late_events == 0
            && self.damaged == 0
    }

    /// The sign-off, then the reconciliation's tables.
    pub fn tables(&self) -> Vec<Table> {
        let mut sign_off = Table::new("sign-off", vec!["what", "value"]);
        let mut row = |what: &str, value: String| {
            sign_off.push(vec![Cell::Text(what.into()), Cell::Text(value)])
        };
        row(
            "queues drained",
            format!("{} messages read", self.drained_messages),
        );
        if self.unreadable > 0 {
            row(
                "messages left",
                format!(
                    "{} left on their queues, unread or unasked (the listing covered their keys)",
                    self.unreadable
                ),
            );
        }
        row(
            "last event",
            self.last_event_at
                .clone()
                .unwrap_or_else(|| "none received".into()),
        );
        row("keys listed again", self.pass.listed.to_string());
        row(
            "copied in this cut-over",
            self.pass.copy.objects_copied.to_string(),
        );
        row("checked at", self.checked_at.clone());
        if self.signed_off() {
            row(
                "destination equal since",
                self.equal_since
                    .clone()
                    .unwrap_or_else(|| self.checked_at.clone()),
            );
            row(
                "verdict",
                "every key is at the destination as the source holds it: safe to switch".into(),
            );
        } else if self.late_events > 0 {
            row(
                "verdict",
                format!(
                    "NOT FROZEN: {} changes at the source came in during the cut-over; freeze writes at the source, then run cutover again",
                    self.late_events
                ),
            );
        } else if self.damaged > 0 {
            row(
                "verdict",
                format!(
                    "CANNOT TELL: {} event messages arrived damaged (their MD5 is not the one SQS sent), so whether the source is frozen is not known; the log names them. Run cutover again",
                    self.damaged
                ),
            );
        } else {
            let problems = self.reconciliation.problems.len();
            row(
                "verdict",
                format!(
                    "NOT EQUAL: {problems} keys differ (listed under problems), {} failed in the last pass; fix them and run cutover again",
                    self.pass.copy.objects_failed
                ),
            );
        }
        let mut tables = vec![sign_off];
        tables.extend(self.reconciliation.tables());
        tables
    }
}

impl Runner {
    /// One receive that waits a moment for the queue: the source is frozen.
    async fn receive_briefly(
        &self,
        feed: &crate::events::Feed,
    ) -> Result<crate::events::Received, RunError> {
        feed.receive(
            &self.engine.source,
            &self.engine.writer,
            DRAIN_WAIT,
            DELETE_AFTER_PASSES,
        )
        .await
        .map_err(|e| self.events_error(e))
    }

    /// Drains the queues, runs one more full pass, then reconciles both
    /// stores with the ledger.
    pub async fn cutover(&self) -> Result<Cutover, RunError> {
        let (mut drained, mut unreadable) = (0, 0);
        for feed in self.feeds(true).await? {
            let (mut empty_in_a_row, started) = (0, std::time::Instant::now());
            while !self.stop.is_cancelled() {
                // A source that keeps writing never drains: stop, and let
                // the late check below say the source is not frozen.
                if started.elapsed() >= DRAIN_AT_MOST {
                    break;
                }
                let got = self.receive_briefly(&feed).await?;
                drained += got.messages - got.left;
                // Only messages ferry leaves (or none) came.
                empty_in_a_row = if got.messages == got.left {
                    empty_in_a_row + 1
                } else {
                    0
                };
                if empty_in_a_row < 2 {
                    continue;
                }
                // Two empty receives are one answer; the queue's own count
                // is the second. What it still holds after a few more
                // tries is what ferry leaves (unreadable, or unconfirmed).
                // A message in flight to a receive that is gone (the daemon
                // just stopped) is invisible until its visibility timeout:
                // waited for, up to DRAIN_PATIENCE, not found late.
                let waiting = feed.backlog().await.map_err(|e| self.events_error(e))?;
                if waiting == 0 || started.elapsed() >= DRAIN_PATIENCE {
                    unreadable += waiting;
                    break;
                }
                empty_in_a_row = 0;
            }
        }
        self.list_always
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut pass = self.pass().await?;
        // Byte-equal means read back: copies no run read back (made with
        // verify_after_copy = false) are read now. (With it on, the pass
        // read back what an earlier run left.)
        if !self.config.transfer.verify_after_copy && !self.stop.is_cancelled() {
            let read = crate::verify::read_back(
                &self.engine,
                self.bucket_ids.clone(),
                ledger::ReadBack::Unread,
                1.0,
                &self.stop,
                self.config.shutdown_grace,
            )
            .await?;
            pass.copy.add(&read);
        }
        self.record_lags().await?;
        if self.stop.is_cancelled() {
            return Err(RunError::Stopped);
        }
        let reconciliation = reconcile::reconcile(
            &self.config,
            std::slice::from_ref(&self.config.ledger),
            false,
        )
        .await
        .map_err(|e| match e {
            reconcile::ReportError::Ledger(e) => RunError::Ledger(e),
            reconcile::ReportError::Store(e) => RunError::Buckets(vec![e]),
        })?;
        // A frozen source sends no more events: one now is a write made
        // during the cut-over, which nothing above may have seen.
        let (mut late_events, mut damaged) = (0, 0);
        for feed in self.feeds(false).await? {
            let got = self.receive_briefly(&feed).await?;
            // Recorded, or naming a key the source could not confirm now:
            // either is a change ferry has not copied. A damaged message
            // may be one; it is not known which.
            late_events += got.applied + (got.left - got.unreadable - got.damaged);
            damaged += got.damaged;
        }
        let writer = &self.engine.writer;
        let equal_since = writer.call(|c| ledger::last_change_at(c)).await?;
        let last_event_at = writer
            .call(|c| ledger::feed_status(c))
            .await?
            .into_iter()
            .filter_map(|f| f.last_event_at)
            .max();
        Ok(Cutover {
            late_events,
            drained_messages: drained,
            unreadable,
            damaged,
            last_event_at,
            pass,
            reconciliation,
            equal_since,
            checked_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cutover(late_events: u64, damaged: u64) -> Cutover {
        Cutover {
            drained_messages: 3,
            late_events,
            unreadable: 0,
            damaged,
            last_event_at: None,
            pass: PassReport::default(),
            reconciliation: Reconciliation::default(),
            equal_since: None,
            checked_at: "2026-12-07T11:00:00Z".into(),
        }
    }

    fn verdict(cut: &Cutover) -> String {
        let sign_off = &cut.tables()[0];
        let row = sign_off
            .rows
            .iter()
            .find(|r| matches!(&r[0], Cell::Text(w) if w == "verdict"))
            .expect("a verdict row");
        match &row[1] {
            Cell::Text(v) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_message_at_the_late_check_is_no_sign_off_and_says_why() {
        let clean = cutover(0, 0);
        assert!(clean.signed_off());
        assert!(verdict(&clean).contains("safe to switch"));
        let damaged = cutover(0, 2);
        assert!(!damaged.signed_off());
        assert!(verdict(&damaged).starts_with("CANNOT TELL: 2 event messages"));
        // A late event says more than a damaged message: the source is written to.
        assert!(verdict(&cutover(1, 2)).starts_with("NOT FROZEN"));
    }
}
