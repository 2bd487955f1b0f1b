//! What restoring archived objects costs and how long it takes, per storage class and tier, for `plan`.
//! It must not ask a store: the prices are AWS's list prices, written down here with their date.

use crate::config::RestoreTier;

/// AWS list prices (us-east-1) and times for restores, as of 2026-12-07:
/// <https://aws.amazon.com/s3/pricing/> (Requests & data retrievals) and
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects-retrieval-options.html>.
/// AWS documents Bulk retrievals from Glacier Flexible Retrieval as free.
/// Expedited does not exist for Deep Archive: ferry asks Standard there.
pub struct RestorePrice {
    pub tier: &'static str,
    pub usd_per_gb: f64,
    pub usd_per_1000_requests: f64,
    /// What AWS promises, in words, and in hours (the alert's threshold).
    pub time: &'static str,
    pub promise_hours: f64,
}

/// S3 Standard storage, per GB-month: the restored copy is billed at it
/// for `restore_days`, beside the archived object.
pub const STANDARD_USD_PER_GB_MONTH: f64 = 0.023;

pub fn price(storage_class: &str, tier: RestoreTier) -> Option<RestorePrice> {
    let p = |tier, usd_per_gb, usd_per_1000_requests, time, promise_hours| {
        Some(RestorePrice {
            tier,
            usd_per_gb,
            usd_per_1000_requests,
            time,
            promise_hours,
        })
    };
    match (storage_class, tier) {
        (_, RestoreTier::Off) => None,
        ("GLACIER", RestoreTier::Bulk) => p("Bulk", 0.0, 0.0, "5–12 hours", 12.0),
        ("GLACIER", RestoreTier::Standard) => p("Standard", 0.01, 0.05, "3–5 hours", 5.0),
        ("GLACIER", RestoreTier::Expedited) => {
            p("Expedited", 0.03, 10.0, "1–5 minutes", 5.0 / 60.0)
        }
        ("DEEP_ARCHIVE", RestoreTier::Bulk) => p("Bulk", 0.0025, 0.025, "up to 48 hours", 48.0),
        ("DEEP_ARCHIVE", RestoreTier::Standard | RestoreTier::Expedited) => {
            p("Standard", 0.02, 0.10, "up to 12 hours", 12.0)
        }
        _ => None,
    }
}

/// (requests, retrieval, restored copy) in USD for `objects` and `bytes`.
pub fn cost(p: &RestorePrice, objects: u64, bytes: u64, days: u32) -> (f64, f64, f64) {
    let gb = bytes as f64 / 1e9;
    (
        objects as f64 / 1000.0 * p.usd_per_1000_requests,
        gb * p.usd_per_gb,
        gb * STANDARD_USD_PER_GB_MONTH * f64::from(days) / 30.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_archive_bulk_costs_a_quarter_cent_a_gb_and_expedited_falls_back() {
        let p = price("DEEP_ARCHIVE", RestoreTier::Bulk).unwrap();
        let (requests, retrieval, _) = cost(&p, 1_000_000, 1_000_000_000_000, 7);
        assert!((requests - 25.0).abs() < 1e-9);
        assert!((retrieval - 2.5).abs() < 1e-9);
        assert_eq!(
            price("DEEP_ARCHIVE", RestoreTier::Expedited).unwrap().tier,
            "Standard"
        );
        assert!(price("GLACIER", RestoreTier::Off).is_none());
    }
}
