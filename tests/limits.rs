//! Rate and bandwidth limits, measured between ferry and the source.

mod support;

use ferry_tools::demo::DemoObject;
use support::faults::{FaultProxy, Rates};
use support::proxy::Proxy;
use support::{servers, Fixture};

/// A fixture whose config reaches the source through `proxy_url`, with
/// `source_limits` added to its [source] table.
async fn through(
    name: &str,
    transfer: &str,
    source_limits: &str,
    proxy_url: &str,
) -> (Fixture, std::path::PathBuf) {
    let fx = Fixture::new(name, transfer).await;
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace(servers().get("FERRY_SOURCE_ENDPOINT"), proxy_url)
        .replace("[source]\n", &format!("[source]\n{source_limits}\n"));
    let path = fx.dir.path().join("limited.toml");
    std::fs::write(&path, text).unwrap();
    (fx, path)
}

/// Runs a copy; returns its wall time.
fn run(fx: &Fixture, config: &std::path::Path) -> std::time::Duration {
    let started = std::time::Instant::now();
    let run = support::ferry_in(fx.dir.path(), config, &["run", "--once"], &servers().env);
    assert_eq!(run.code, 0, "{run:?}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_per_second_stay_within_ten_percent_of_the_limit() {
    let proxy = FaultProxy::start(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Rates::default(),
        Default::default(),
    )
    .await;
    let (fx, config) = through(
        "rps",
        "concurrency = 16",
        "max_requests_per_second = 25",
        &proxy.url(),
    )
    .await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..90)
        .map(|i| DemoObject::new(&onix, format!("f-{i}.xml"), 500, "application/xml"))
        .collect();
    fx.fill(&set).await;
    run(&fx, &config);
    let rate = proxy.injected.request_rate();
    eprintln!(
        "limits: {} source requests at {rate:.1}/s (limit 25/s)",
        proxy.injected.requests()
    );
    assert!(proxy.injected.requests() >= 90);
    assert!(
        rate <= 25.0 * 1.1,
        "{rate:.1} requests/s over a limit of 25"
    );
    assert!(
        rate >= 25.0 * 0.9,
        "{rate:.1} requests/s: more than 10 % under the limit of 25"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bandwidth_never_exceeds_the_limit_by_more_than_ten_percent() {
    let transfer = "concurrency = 8\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\nmax_bandwidth = \"64Mbit/s\"";
    let (fx, config) = through(
        "bandwidth",
        transfer,
        "",
        servers().get("FERRY_SOURCE_ENDPOINT"),
    )
    .await;
    let audio = format!("audio{}", fx.suffix);
    let mut book = DemoObject::new(&audio, "book.mp3".into(), 40 << 20, "audio/mpeg");
    book.multipart = true;
    fx.fill(&[book]).await;
    // Kernel buffers on loopback hold megabytes, so a proxy would see bursts;
    // the copy's own duration is the honest measure (it bounds the rate from above).
    let took = run(&fx, &config);
    let limit = 64e6 / 8.0;
    let rate = (40u64 << 20) as f64 / took.as_secs_f64();
    eprintln!(
        "limits: {:.1} MB/s from the source (limit {:.1} MB/s)",
        rate / 1e6,
        limit / 1e6
    );
    assert!(
        rate <= limit * 1.1,
        "{rate:.0} B/s over a limit of {limit:.0}"
    );
    // The run's wall time also holds start-up, listing and the read-back, so
    // it bounds the rate from below only loosely: it says the limit is not
    // far too strict, not that it is within 10 % from below.
    assert!(
        rate >= limit * 0.5,
        "{rate:.0} B/s: far under the limit of {limit:.0}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_connections_never_exceed_max_connections() {
    // A TCP proxy sees every socket ferry opens to the source.
    let proxy = Proxy::start(servers().get("FERRY_SOURCE_ENDPOINT"), None).await;
    let transfer =
        "concurrency = 16\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\nmax_bytes_in_flight = \"64MiB\"";
    let (fx, config) = through("connections", transfer, "max_connections = 4", &proxy.url()).await;
    let onix = format!("onix{}", fx.suffix);
    let audio = format!("audio{}", fx.suffix);
    let mut set: Vec<DemoObject> = (0..120)
        .map(|i| DemoObject::new(&onix, format!("f-{i}.xml"), 2_000 + i, "application/xml"))
        .collect();
    let mut book = DemoObject::new(&audio, "book.mp3".into(), 31 << 20, "audio/mpeg");
    book.multipart = true;
    set.push(book);
    fx.fill(&set).await;
    run(&fx, &config);
    let most = proxy
        .stats
        .most_open
        .load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("limits: at most {most} connections open to the source (limit 4)");
    assert!(
        most <= 4,
        "{most} connections open at once, over a limit of 4"
    );
    assert!(
        most >= 2,
        "only {most} connection: the cap serialises more than asked"
    );
    support::assert_all_copied_byte_equal(&fx, &set).await;
}
