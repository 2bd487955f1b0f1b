//! Prometheus metrics for monitoring a long run (`--metrics-addr`). Every
//! metric's name lives here; the rest of ferry must not name one itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often a running pass reads its backlog from the ledger.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(10);

/// Whether `serve` runs: without it a pass reads nothing for the gauges.
static SERVING: AtomicBool = AtomicBool::new(false);

/// The page a person opens at `/`, rendered afresh for each request.
pub type Page = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics` on `addr` (any path but `/` answers with them), and at
/// `/` the HTML that `page` renders, on the current runtime until the
/// process ends. Every series is there from the start, at zero, so that the
/// dashboard and the alert rules in `deploy/` see it before its first
/// event; failures have one series per kind in `failure_kinds` (the
/// store's, and ferry's own).
pub async fn serve(
    addr: SocketAddr,
    failure_kinds: &[&'static str],
    page: Page,
) -> Result<(), String> {
    let cannot = |e: &dyn std::fmt::Display| {
        format!("cannot serve metrics on {addr}: {e}. Pick a free address with --metrics-addr")
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| cannot(&e))?;
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| cannot(&e))?;
    tokio::spawn(answer(listener, prometheus, page));
    for name in [
        "ferry_objects_copied_total",
        "ferry_bytes_copied_total",
        "ferry_objects_verified_total",
        "ferry_bytes_verified_total",
        "ferry_objects_adopted_total",
        "ferry_bytes_adopted_total",
        "ferry_retries_total",
    ] {
        counter!(name).absolute(0);
    }
    for &kind in failure_kinds.iter().chain(&["mismatch", "conflict"]) {
        counter!("ferry_failures_total", "kind" => kind).absolute(0);
    }
    for name in [
        "ferry_objects_in_flight",
        "ferry_parts_in_flight",
        "ferry_pass",
        "ferry_last_pass_seconds",
        "ferry_backlog_objects",
        "ferry_backlog_bytes",
        "ferry_pass_interval_seconds",
        "ferry_ledger_snapshot_every_seconds",
        "ferry_ledger_snapshot_timestamp_seconds",
        "ferry_ledger_snapshot_bytes",
        "ferry_pass_running",
        "ferry_pass_started_timestamp_seconds",
    ] {
        gauge!(name).set(0.0);
    }
    for outcome in ["applied", "stale", "unreadable", "damaged"] {
        counter!("ferry_events_total", "outcome" => outcome).absolute(0);
    }
    counter!("ferry_feed_missed_keys_total").absolute(0);
    // Per followed bucket once it follows; this one, without a bucket,
    // stays 0 so that a daemon without events serves the name too.
    gauge!("ferry_feed_lag_now_seconds").set(0.0);
    for tier in ["Bulk", "Standard", "Expedited"] {
        gauge!("ferry_restores_waiting", "tier" => tier).set(0.0);
        gauge!("ferry_restore_oldest_wait_seconds", "tier" => tier).set(0.0);
    }
    // Until a pass ends, "the last pass ended" counts from the start.
    gauge!("ferry_last_pass_end_timestamp_seconds").set(unix_now());
    SERVING.store(true, Ordering::Relaxed);
    Ok(())
}

/// Answers every connection: `/` with the page, anything else with the metrics.
async fn answer(listener: tokio::net::TcpListener, prometheus: PrometheusHandle, page: Page) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Request, Response};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (prometheus, page) = (prometheus.clone(), page.clone());
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (prometheus, page) = (prometheus.clone(), page.clone());
            async move {
                let (kind, body) = if request.uri().path() == "/" {
                    // The page reads the ledger: not on the runtime's threads.
                    let html = tokio::task::spawn_blocking(move || page())
                        .await
                        .unwrap_or_else(|_| "the page could not be made".to_owned());
                    ("text/html; charset=utf-8", html)
                } else {
                    ("text/plain; version=0.0.4", prometheus.render())
                };
                Response::builder()
                    .header("content-type", kind)
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from(body)))
            }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Archived objects waiting for their restore at the source, per tier, and
/// how long the oldest ask has waited (0 when none was asked yet).
pub fn restores_waiting(tier: &str, objects: u64, oldest_secs: u64) {
    let tier = match tier {
        "Standard" => "Standard",
        "Expedited" => "Expedited",
        _ => "Bulk",
    };
    gauge!("ferry_restores_waiting", "tier" => tier).set(objects as f64);
    gauge!("ferry_restore_oldest_wait_seconds", "tier" => tier).set(oldest_secs as f64);
}

/// Events read from the queues: recorded, or older than what the ledger held.
pub fn events(applied: u64, stale: u64) {
    counter!("ferry_events_total", "outcome" => "applied").increment(applied);
    counter!("ferry_events_total", "outcome" => "stale").increment(stale);
}

/// A message ferry could not read, left on its queue for the redrive policy.
pub fn event_unreadable() {
    counter!("ferry_events_total", "outcome" => "unreadable").increment(1);
}

/// A message whose body was not the one SQS sent, left on its queue.
pub fn event_damaged() {
    counter!("ferry_events_total", "outcome" => "damaged").increment(1);
}

/// Keys a full listing found changed that the feed never told.
pub fn feed_missed(keys: u64) {
    counter!("ferry_feed_missed_keys_total").increment(keys);
}

/// One event's lag, from its time to its copy read back.
pub fn event_lag(seconds: f64) {
    metrics::histogram!("ferry_event_lag_seconds").record(seconds);
}

/// Each followed bucket's lag now, in seconds (the ledger's feed status).
pub fn feed_lags<'a>(feeds: impl Iterator<Item = (&'a str, f64)>) {
    for (bucket, seconds) in feeds {
        gauge!("ferry_feed_lag_now_seconds", "bucket" => bucket.to_owned()).set(seconds);
    }
}

pub fn copied(bytes: u64) {
    counter!("ferry_objects_copied_total").increment(1);
    counter!("ferry_bytes_copied_total").increment(bytes);
}

/// A destination object found without a ledger record and proved to be
/// the source's bytes: recorded, not sent again.
pub fn adopted(bytes: u64) {
    counter!("ferry_objects_adopted_total").increment(1);
    counter!("ferry_bytes_adopted_total").increment(bytes);
}

/// With `[backup]`: how often a snapshot is due; until the first is taken,
/// the newest counts from now (ferry's start).
pub fn ledger_snapshots_every(every: Duration) {
    gauge!("ferry_ledger_snapshot_every_seconds").set(every.as_secs_f64());
    gauge!("ferry_ledger_snapshot_timestamp_seconds").set(unix_now());
}

/// A ledger snapshot written and confirmed at the destination.
pub fn ledger_snapshot(bytes: u64) {
    gauge!("ferry_ledger_snapshot_timestamp_seconds").set(unix_now());
    gauge!("ferry_ledger_snapshot_bytes").set(bytes as f64);
}

pub fn verified(bytes: u64) {
    counter!("ferry_objects_verified_total").increment(1);
    counter!("ferry_bytes_verified_total").increment(bytes);
}

/// An object that failed, by kind (access_denied, throttled, mismatch, …).
pub fn failed(kind: &'static str) {
    counter!("ferry_failures_total", "kind" => kind).increment(1);
}

pub fn retried() {
    counter!("ferry_retries_total").increment(1);
}

/// Counts one object or part in flight for as long as it lives, however it
/// ends (done, failed or dropped at shutdown).
pub struct InFlight(&'static str);

impl InFlight {
    pub fn object() -> InFlight {
        Self::start("ferry_objects_in_flight")
    }

    pub fn part() -> InFlight {
        Self::start("ferry_parts_in_flight")
    }

    fn start(name: &'static str) -> InFlight {
        gauge!(name).increment(1.0);
        InFlight(name)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// The daemon's time between passes; `FerryPassOverdue` alerts at three.
pub fn pass_interval(interval: Duration) {
    gauge!("ferry_pass_interval_seconds").set(interval.as_secs_f64());
}

/// A pass began: `ferry_pass_running` is 1 and
/// `ferry_pass_started_timestamp_seconds` now (`FerryPassOverdue` counts
/// from it), and until the returned guard is dropped the backlog gauges are
/// set from `read` (objects, bytes) every [`BACKLOG_EVERY`], so that
/// `FerryNoProgress` sees a first pass that stalls. `read` runs on a
/// blocking thread (the caller reads the ledger); `None` leaves the gauges.
pub fn pass_started<F>(mut read: F) -> PassWatch
where
    F: FnMut() -> Option<(u64, u64)> + Send + 'static,
{
    if !SERVING.load(Ordering::Relaxed) {
        return PassWatch(None);
    }
    gauge!("ferry_pass_running").set(1.0);
    gauge!("ferry_pass_started_timestamp_seconds").set(unix_now());
    let refresh = tokio::spawn(async move {
        let mut tick = tokio::time::interval(BACKLOG_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok((back, backlog)) = tokio::task::spawn_blocking(move || {
                let backlog = read();
                (read, backlog)
            })
            .await
            else {
                return;
            };
            read = back;
            if let Some((objects, bytes)) = backlog {
                gauge!("ferry_backlog_objects").set(objects as f64);
                gauge!("ferry_backlog_bytes").set(bytes as f64);
            }
        }
    });
    PassWatch(Some(refresh))
}

/// Ends the backlog's refresh, and `ferry_pass_running`, when the pass
/// ends however it ends.
pub struct PassWatch(Option<tokio::task::JoinHandle<()>>);

impl Drop for PassWatch {
    fn drop(&mut self) {
        if let Some(refresh) = self.0.take() {
            refresh.abort();
            gauge!("ferry_pass_running").set(0.0);
        }
    }
}

/// Objects waiting to be copied, and the bytes listed but not yet copied,
/// from each bucket's (objects pending, bytes listed, bytes copied).
pub fn backlog(buckets: impl Iterator<Item = (u64, u64, u64)>) -> (u64, u64) {
    buckets.fold((0, 0), |(objects, bytes), (pending, listed, copied)| {
        (objects + pending, bytes + listed - copied.min(listed))
    })
}

pub fn pass_finished(pass: i64, took: Duration, backlog_objects: u64, backlog_bytes: u64) {
    gauge!("ferry_last_pass_end_timestamp_seconds").set(unix_now());
    gauge!("ferry_pass").set(pass as f64);
    gauge!("ferry_last_pass_seconds").set(took.as_secs_f64());
    gauge!("ferry_backlog_objects").set(backlog_objects as f64);
    gauge!("ferry_backlog_bytes").set(backlog_bytes as f64);
    gauge!("ferry_pass_running").set(0.0);
}

/// Requests allowed in flight now (lowered when a store throttles).
pub fn concurrency(limit: usize) {
    gauge!("ferry_concurrency").set(limit as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_what_waits_and_the_bytes_not_yet_copied() {
        // The second bucket copied more than it lists now (a key gone
        // since): nothing of it waits.
        let buckets = [(3, 1_000, 400), (0, 10, 50)];
        assert_eq!(backlog(buckets.into_iter()), (3, 600));
    }

    #[tokio::test]
    async fn a_pass_shows_as_running_from_its_start_until_it_ends() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        SERVING.store(true, Ordering::Relaxed);
        let value = |text: &str, name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
            line.unwrap_or_else(|| panic!("{name} not in {text}"))
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap()
        };
        metrics::with_local_recorder(&recorder, || {
            let before = unix_now();
            let watch = pass_started(|| Some((1, 2)));
            let during = handle.render();
            assert_eq!(value(&during, "ferry_pass_running"), 1.0);
            let started = value(&during, "ferry_pass_started_timestamp_seconds");
            assert!(
                started >= before.floor() && started <= unix_now(),
                "{during}"
            );
            drop(watch);
            assert_eq!(value(&handle.render(), "ferry_pass_running"), 0.0);
        });
    }
}
