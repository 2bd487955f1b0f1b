//! The bounded pool: how many requests run at once, and how many object
//! bytes may be held in memory at once. Neither grows with object size or
//! object count.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Byte permits are counted in KiB so a 5 GiB part fits in one `u32` request.
const UNIT: u64 = 1024;

pub struct Budget {
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_units: u32,
}

/// Held while a request streams; dropping it gives the room back.
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Budget {
    pub fn new(concurrency: usize, max_bytes_in_flight: u64) -> Budget {
        let max_units = (max_bytes_in_flight / UNIT).clamp(1, u32::MAX as u64) as u32;
        Budget {
            slots: Arc::new(Semaphore::new(concurrency)),
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
            .clone()
            .acquire_owned()
            .await
            .expect("budget open");
        Ticket {
            _slot: slot,
            _bytes: bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    async fn slots_cap_requests_even_when_bytes_are_free() {
        let budget = Budget::new(1, 1 << 30);
        let _a = budget.admit(0).await;
        let b = tokio::time::timeout(Duration::from_millis(50), budget.admit(0)).await;
        assert!(b.is_err());
    }
}
