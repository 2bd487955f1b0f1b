//! The operations kit in `deploy/`: every metric that the Grafana dashboard
//! and the Prometheus alert rules name is one that ferry serves, and the
//! rules pass `promtool check rules`.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry_tools::demo::DemoObject;
use support::{scrape, Fixture};

/// Every `ferry_…` name in a file.
fn metric_names(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let re = regex::Regex::new(r"\bferry_[a-z_]+\b").unwrap();
    re.find_iter(&text).map(|m| m.as_str().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_the_alerts_name_is_served() {
    let dashboard = metric_names("deploy/grafana/ferry-dashboard.json");
    let alerts = metric_names("deploy/prometheus/alerts.yml");
    assert!(dashboard.len() >= 8, "{dashboard:?}");
    assert!(alerts.len() >= 4, "{alerts:?}");

    let fx =
        Fixture::with_destination("deploy", "concurrency = 8", "interval = \"1h\"", None).await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..3)
        .map(|i| DemoObject::new(&onix, format!("feeds/{i}.xml"), 2_000, "application/xml"))
        .collect();
    fx.fill(&set).await;
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let _daemon = fx.spawn_ferry(&["--metrics-addr", &addr, "run"]);
    let started = Instant::now();
    let text = loop {
        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
            drop(c);
            let text = scrape(&addr).await;
            if text
                .lines()
                .any(|l| l.starts_with("ferry_pass ") && !l.ends_with(" 0"))
            {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no pass finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let served: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("ferry_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = dashboard
        .union(&alerts)
        .filter(|m| !served.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not served: {missing:?}\n{text}"
    );
    // The daemon's interval is there for FerryPassOverdue.
    assert!(text.contains("ferry_pass_interval_seconds 3600"), "{text}");
    // Failures by kind have a series from the start.
    assert!(
        text.contains("ferry_failures_total{kind=\"throttled\"} 0"),
        "{text}"
    );
}

#[test]
fn the_alert_rules_pass_promtool() {
    // scripts/test.sh installs promtool (Debian's prometheus package).
    let out = std::process::Command::new("promtool")
        .args(["check", "rules", "deploy/prometheus/alerts.yml"])
        .output()
        .expect("promtool is not installed: apt-get install prometheus (scripts/test.sh does)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 3 rules found"));
}
