//! The torture harness (issue 24): seeded random schedules against the real
//! servers; the invariants are in `support/torture/check.rs`.
//!
//!   cargo test --test torture                            CI: the fixed seeds
//!   FERRY_TORTURE_SEED=123 cargo test --test torture     one seed, replayed
//!   FERRY_TORTURE_LONG=2h cargo test --test torture      random seeds for 2 hours
//!   cargo test --test torture -- --ignored long          the same, 1 hour

mod support;
#[path = "support/torture/mod.rs"]
mod torture;

use std::time::{Duration, Instant};

/// CI's schedules: about 10 s each, so about 7 minutes per destination
/// store on a 2-core machine. Green on the code as it is with the faults in
/// `torture::known` switched off.
const CI_SEEDS: std::ops::RangeInclusive<u64> = 1..=36;

/// Runs schedules one after another, printing each and the totals.
async fn run_schedules(seeds: impl Iterator<Item = u64>) {
    let started = Instant::now();
    let (mut schedules, mut steps) = (0, 0);
    for seed in seeds {
        let outcome = torture::schedule(seed).await;
        eprintln!(
            "torture: seed {} passed: {} steps in {:.1} s",
            outcome.seed,
            outcome.steps,
            outcome.elapsed.as_secs_f64()
        );
        schedules += 1;
        steps += outcome.steps;
    }
    eprintln!(
        "torture: {schedules} schedules, {steps} steps in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Random seeds until `budget` is spent (a schedule started goes to its end).
async fn run_for(budget: Duration) {
    let until = Instant::now() + budget;
    let seeds = std::iter::from_fn(|| (Instant::now() < until).then(|| fastrand::u64(..)));
    run_schedules(seeds).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_schedules_keep_every_invariant() {
    if let Ok(seed) = std::env::var("FERRY_TORTURE_SEED") {
        let seed = seed
            .parse()
            .expect("FERRY_TORTURE_SEED is a seed, as a failing schedule printed it");
        return run_schedules(std::iter::once(seed)).await;
    }
    if let Ok(long) = std::env::var("FERRY_TORTURE_LONG") {
        let budget = humantime::parse_duration(&long)
            .expect("FERRY_TORTURE_LONG is a duration, e.g. 90m or 8h");
        return run_for(budget).await;
    }
    run_schedules(CI_SEEDS).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the long mode: random schedules for an hour (FERRY_TORTURE_LONG sets another time)"]
async fn long() {
    let long = std::env::var("FERRY_TORTURE_LONG").unwrap_or_else(|_| "1h".into());
    let budget =
        humantime::parse_duration(&long).expect("FERRY_TORTURE_LONG is a duration, e.g. 90m or 8h");
    run_for(budget).await;
}
