//! Prometheus metrics for monitoring a long run (`--metrics-addr`). Every
//! metric's name lives here; the rest of ferry must not name one itself.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves `/metrics` on `addr` (any path answers) until the process ends.
/// Every series is there from the start, at zero, so that the dashboard and
/// the alert rules in `deploy/` see it before its first event; failures
/// have one series per kind in `failure_kinds` (the store's, and ferry's own).
pub fn serve(addr: SocketAddr, failure_kinds: &[&'static str]) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| {
            format!("cannot serve metrics on {addr}: {e}. Pick a free address with --metrics-addr")
        })?;
    for name in [
        "ferry_objects_copied_total",
        "ferry_bytes_copied_total",
        "ferry_objects_verified_total",
        "ferry_bytes_verified_total",
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
    ] {
        gauge!(name).set(0.0);
    }
    // Until a pass ends, "the last pass ended" counts from the start.
    gauge!("ferry_last_pass_end_timestamp_seconds").set(unix_now());
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn copied(bytes: u64) {
    counter!("ferry_objects_copied_total").increment(1);
    counter!("ferry_bytes_copied_total").increment(bytes);
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

pub fn pass_finished(pass: i64, took: Duration, backlog_objects: u64, backlog_bytes: u64) {
    gauge!("ferry_last_pass_end_timestamp_seconds").set(unix_now());
    gauge!("ferry_pass").set(pass as f64);
    gauge!("ferry_last_pass_seconds").set(took.as_secs_f64());
    gauge!("ferry_backlog_objects").set(backlog_objects as f64);
    gauge!("ferry_backlog_bytes").set(backlog_bytes as f64);
}

/// Requests allowed in flight now (lowered when a store throttles).
pub fn concurrency(limit: usize) {
    gauge!("ferry_concurrency").set(limit as f64);
}
