//! The verify pass: which copies to read back (every copy in an audit, the
//! unread ones, or a sample), through the copy engine's pool and read-back. It must not copy.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::copy::{Engine, Totals};
use crate::ledger::{self, LedgerError, PassSummary, ReadBack, VerifyItem};

/// How many copied objects are read from the ledger at a time.
const BATCH: usize = 512;

/// Reads back the copies of `bucket_ids` that `read_back` names, or a random
/// `sample` share of them, and records what it found.
pub async fn read_back(
    engine: &Arc<Engine>,
    bucket_ids: Vec<i64>,
    read_back: ReadBack,
    sample: f64,
    stop: &CancellationToken,
    grace: Duration,
) -> Result<PassSummary, LedgerError> {
    let (ids, which) = (bucket_ids.clone(), read_back.clone());
    let (objects, bytes) = engine
        .writer
        .call(move |c| ledger::read_back_totals(c, &ids, &which))
        .await?;
    let totals = (
        (objects as f64 * sample.min(1.0)) as u64,
        (bytes as f64 * sample.min(1.0)) as u64,
    );
    let writer = engine.writer.clone();
    let fetch = move |after_id| {
        let (writer, ids, which) = (writer.clone(), bucket_ids.clone(), read_back.clone());
        async move {
            let mut batch = writer
                .call(move |c| ledger::verify_batch(c, &ids, &which, after_id, BATCH))
                .await?;
            let last = batch.last().map(|i| i.object_id);
            batch.retain(|_| sample >= 1.0 || fastrand::f64() < sample);
            Ok(last.map(|last| (last, batch)))
        }
    };
    let work = |engine: Arc<Engine>, item: VerifyItem| async move {
        engine.verify_and_record(&item).await
    };
    engine
        .drive(
            fetch,
            work,
            ("verify", Totals::Known(totals.0, totals.1)),
            stop,
            grace,
        )
        .await
}

/// Parses `--sample`: "5%" or "0.05".
pub fn parse_sample(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!(
            "--sample {text:?}: give a share like 5% or 0.05 (above 0, at most 100%)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sample;

    #[test]
    fn samples_parse_as_shares() {
        assert_eq!(parse_sample("5%"), Ok(0.05));
        assert_eq!(parse_sample("0.25"), Ok(0.25));
        assert_eq!(parse_sample("100%"), Ok(1.0));
        assert!(parse_sample("0").is_err());
        assert!(parse_sample("150%").is_err());
        assert!(parse_sample("lots").is_err());
    }
}
