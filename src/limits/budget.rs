//! The budget: how many requests run at once, and how many object bytes may be
//! held in memory. It must not grow with object size or object count.
//!
//! The bounded pool: how many requests run at once, and how many object
//! bytes may be held in memory at once. Neither grows with object size or
//! object count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Byte permits are counted in KiB so a 5 GiB part fits in one `u32` request.
const UNIT: u64 = 1024;
/// After a cut, wait this long before cutting again: one burst of 503s is one signal.
const CUT_SPACING: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Budget {
    slots: Arc<Slots>,
    bytes: Arc<Semaphore>,
    max_units: u32,
}

#[derive(Debug)]
/// Request slots whose number adapts: halved when a store says SlowDown,
/// raised by one after each full round of successes, up to `concurrency`.
struct Slots {
    semaphore: Arc<Semaphore>,
    max: usize,
    state: Mutex<Adapt>,
    /// Slots to take out of circulation as tickets come back.
    debt: AtomicUsize,
}

#[derive(Debug)]
struct Adapt {
    limit: usize,
    successes: usize,
    last_cut: Option<Instant>,
}

/// Held while a request streams; dropping it gives the room back.
pub struct Ticket {
    slot: Option<OwnedSemaphorePermit>,
    _bytes: OwnedSemaphorePermit,
    slots: Arc<Slots>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let owed = self
            .slots
            .debt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
        if owed.is_ok() {
            if let Some(slot) = self.slot.take() {
                slot.forget();
            }
        }
    }
}

impl Budget {
    pub fn new(concurrency: usize, max_bytes_in_flight: u64) -> Budget {
        let max_units = (max_bytes_in_flight / UNIT).clamp(1, u32::MAX as u64) as u32;
        crate::metrics::concurrency(concurrency);
        Budget {
            slots: Arc::new(Slots {
                semaphore: Arc::new(Semaphore::new(concurrency)),
                max: concurrency,
                state: Mutex::new(Adapt {
                    limit: concurrency,
                    successes: 0,
                    last_cut: None,
                }),
                debt: AtomicUsize::new(0),
            }),
            bytes: Arc::new(Semaphore::new(max_units as usize)),
            max_units,
        }
    }

    /// Waits for a free slot and room for `bytes`. A request larger than the
    /// whole budget takes all of it and so runs alone.
    pub async fn admit(&self, bytes: u64) -> Ticket {
        let units = bytes.div_ceil(UNIT).min(self.max_units as u64) as u32;
        // Semaphores are only closed on drop, and the budget outlives its users.
        let bytes = self
            .bytes
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("budget open");
        let slot = self
            .slots
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("budget open");
        Ticket {
            slot: Some(slot),
            _bytes: bytes,
            slots: self.slots.clone(),
        }
    }

    /// How many requests may run at once now.
    pub fn limit(&self) -> usize {
        self.slots.state.lock().expect("budget lock").limit
    }

    /// The store said SlowDown (or 503): halve the requests in flight.
    pub fn throttled(&self) {
        let mut state = self.slots.state.lock().expect("budget lock");
        if state.limit <= 1 || state.last_cut.is_some_and(|t| t.elapsed() < CUT_SPACING) {
            return;
        }
        let before = state.limit;
        state.limit = before.div_ceil(2);
        state.successes = 0;
        state.last_cut = Some(Instant::now());
        let cut = before - state.limit;
        let freed_now = self.slots.semaphore.forget_permits(cut);
        self.slots.debt.fetch_add(cut - freed_now, Ordering::SeqCst);
        tracing::info!(
            from = before,
            to = state.limit,
            "the store is throttling: fewer requests in flight"
        );
        crate::metrics::concurrency(state.limit);
    }

    /// A request succeeded: after a full round of them, allow one more.
    pub fn succeeded(&self) {
        let mut state = self.slots.state.lock().expect("budget lock");
        if state.limit >= self.slots.max {
            return;
        }
        state.successes += 1;
        if state.successes < state.limit {
            return;
        }
        state.successes = 0;
        state.limit += 1;
        let owed = self
            .slots
            .debt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
        if owed.is_err() {
            self.slots.semaphore.add_permits(1);
        }
        tracing::info!(
            to = state.limit,
            "requests succeed again: one more in flight"
        );
        crate::metrics::concurrency(state.limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_in_flight_never_exceed_the_budget() {
        let budget = Budget::new(8, 10 * 1024);
        let a = budget.admit(6 * 1024).await;
        // 6 KiB + 6 KiB > 10 KiB: the second must wait for the first.
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.admit(6 * 1024)).await;
        assert!(waiting.is_err(), "second ticket was admitted over budget");
        drop(a);
        let b = tokio::time::timeout(Duration::from_millis(500), budget.admit(6 * 1024)).await;
        assert!(b.is_ok(), "room given back was not reused");
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_runs_alone() {
        let budget = Budget::new(8, 4 * 1024);
        let big = tokio::time::timeout(Duration::from_millis(500), budget.admit(1 << 30)).await;
        assert!(big.is_ok(), "an oversized request must not wait forever");
        let small = tokio::time::timeout(Duration::from_millis(50), budget.admit(1)).await;
        assert!(
            small.is_err(),
            "nothing else may run beside an oversized request"
        );
    }

    #[tokio::test]
    async fn throttling_halves_the_slots_and_successes_win_them_back() {
        let budget = Budget::new(8, 1 << 30);
        let held: Vec<Ticket> = futures::future::join_all((0..6).map(|_| budget.admit(0))).await;
        budget.throttled();
        assert_eq!(budget.limit(), 4);
        // 6 in flight, limit 4: nothing new until enough come back.
        drop(held);
        let now: Vec<Ticket> = futures::future::join_all((0..4).map(|_| budget.admit(0))).await;
        let fifth = tokio::time::timeout(Duration::from_millis(50), budget.admit(0)).await;
        assert!(fifth.is_err(), "a fifth request ran over the lowered limit");
        budget.throttled(); // too soon after the last cut: ignored
        assert_eq!(budget.limit(), 4);
        for _ in 0..4 {
            budget.succeeded();
        }
        assert_eq!(budget.limit(), 5);
        let fifth = tokio::time::timeout(Duration::from_millis(200), budget.admit(0)).await;
        assert!(fifth.is_ok(), "the raised limit was not given back");
        drop(now);
    }

    #[tokio::test]
    async fn slots_cap_requests_even_when_bytes_are_free() {
        let budget = Budget::new(1, 1 << 30);
        let _a = budget.admit(0).await;
        let b = tokio::time::timeout(Duration::from_millis(50), budget.admit(0)).await;
        assert!(b.is_err());
    }
}
