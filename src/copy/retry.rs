//! Retries: how often a request is tried again, and how long to wait between
//! tries. It must not decide what a failure means; `store` classifies them.

use std::time::Duration;

use super::CopyError;
use crate::limits::budget::Budget;
use crate::store::ATTEMPTS;

/// Runs `attempt` until it succeeds, fails in a way retrying cannot fix, or
/// has been tried [`ATTEMPTS`] times. Backoff is exponential with jitter.
/// Successes raise the requests in flight again after a store throttled
/// (the clients' throttle watch lowers them).
pub(crate) async fn with_retries<T, F, Fut>(
    budget: &Budget,
    what: &str,
    mut attempt: F,
) -> Result<T, CopyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CopyError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let result = attempt().await;
        if result.is_ok() {
            budget.succeeded();
        }
        match result {
            Err(CopyError::Store(e)) if e.kind.is_retryable() && tries < ATTEMPTS => {
                let backoff = Duration::from_millis(200 * 2u64.pow(tries - 1));
                let jitter =
                    Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                tracing::debug!(what, tries, error = %e, "retrying");
                crate::metrics::retried();
                tokio::time::sleep(backoff + jitter).await;
            }
            other => return other,
        }
    }
}
