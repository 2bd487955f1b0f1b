//! The config's checks, on texts as users write them.
//! It must not read the real environment: each test hands its own.

use super::*;

const GOOD: &str = r#"
    ledger = "state/ferry.sqlite"
    [source]
    region = "eu-central-1"
    endpoint = "http://127.0.0.1:9000"
    access_key_id_env = "SRC_ID"
    secret_access_key_env = "SRC_SECRET"
    path_style = true
    [destination]
    endpoint = "http://127.0.0.1:9100/"
    region = "fsn1"
    access_key_id_env = "DST_ID"
    secret_access_key_env = "DST_SECRET"
    [transfer]
    concurrency = 8
    part_size = "8MiB"
    multipart_threshold = "32MiB"
    [[buckets]]
    source = "audio"
    destination = "hub-audio"
    prefix = "books/"
    [[buckets]]
    source = "onix"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SRC_ID" => Some("GKsource".into()),
        "SRC_SECRET" => Some("very-secret-source".into()),
        "DST_ID" => Some("GKdest".into()),
        "DST_SECRET" => Some("very-secret-dest".into()),
        "SSE_KEY" => Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
        "SHORT_KEY" => Some("c2hvcnQtc2VjcmV0LWtleQ==".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("ferry.toml"), text, &env)
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn a_full_config_is_read_with_its_values() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.ledger, PathBuf::from("state/ferry.sqlite"));
    assert_eq!(c.source.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(
        c.destination.endpoint.as_deref(),
        Some("http://127.0.0.1:9100")
    );
    assert_eq!(c.destination.region, "fsn1");
    assert!(c.source.path_style);
    assert_eq!(c.source.keys.as_ref().unwrap().access_key_id, "GKsource");
    assert_eq!(c.transfer.concurrency, 8);
    assert_eq!(c.transfer.part_size, 8 << 20);
    assert_eq!(c.transfer.multipart_threshold, 32 << 20);
    assert_eq!(c.transfer.max_bytes_in_flight, 64 << 20);
    assert_eq!(c.interval, Duration::from_secs(900));
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(
        c.buckets,
        vec![
            BucketPair {
                source: "audio".into(),
                destination: "hub-audio".into(),
                prefix: "books/".into(),
                ..Default::default()
            },
            BucketPair {
                source: "onix".into(),
                destination: "onix".into(),
                prefix: "".into(),
                ..Default::default()
            },
        ]
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = parse(GOOD).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(shown.contains("GKsource"));
}

#[test]
fn an_unknown_key_is_named_with_the_fix() {
    let e = error(&GOOD.replace("concurrency = 8", "concurency = 8"));
    assert!(e.contains("concurency"), "{e}");
    assert!(e.contains("Remove the key or fix its spelling"), "{e}");
}

#[test]
fn a_missing_env_var_is_named() {
    let e = error(&GOOD.replace("\"DST_SECRET\"", "\"NOT_SET_ANYWHERE\""));
    assert!(e.contains("destination.secret_access_key_env"), "{e}");
    assert!(e.contains("NOT_SET_ANYWHERE"), "{e}");
    assert!(!e.contains("very-secret"), "{e}");
}

#[test]
fn a_bad_size_is_named_with_an_example() {
    let e = error(&GOOD.replace("\"8MiB\"", "\"eight megs\""));
    assert!(e.contains("transfer.part_size"), "{e}");
    assert!(e.contains("16MiB"), "{e}");
    let e = error(&GOOD.replace("\"8MiB\"", "\"1MiB\""));
    assert!(e.contains("5MiB to 5GiB"), "{e}");
    let e = error(&GOOD.replace("concurrency = 8", "max_bandwidth = \"fast\""));
    assert!(
        e.contains("transfer.max_bandwidth") && e.contains("800Mbit/s"),
        "{e}"
    );
    let c = parse(&GOOD.replace("concurrency = 8", "max_bandwidth = \"800Mbit/s\"")).unwrap();
    assert_eq!(c.source.limits.bytes_per_second, Some(100_000_000));
}

#[test]
fn filters_are_read_and_a_bad_one_is_named_with_its_position() {
    let filtered = GOOD.replace(
        "prefix = \"books/\"\n",
        "prefix = \"books/\"\ninclude = [\"\\\\.mp3$\"]\nexclude = [\"^books/tmp/\", \"/cache/\"]\nmin_size = \"1KiB\"\nmodified_after = \"2024-01-31T00:00:00Z\"\n",
    );
    let c = parse(&filtered).unwrap();
    let f = &c.buckets[0].filter;
    assert_eq!(f.exclude.len(), 2);
    assert_eq!(f.min_size, Some(1024));
    assert_eq!(f.leaves_out("books/a.mp3", 2048, None), None);
    assert!(f.leaves_out("books/a.wav", 2048, None).is_some());
    assert!(c.buckets[1].filter.takes_everything());

    let e = error(&filtered.replace("\"/cache/\"", "\"(cache\""));
    assert!(e.contains("buckets[0].exclude[1]"), "{e}");
    // regex's own message shows where the pattern goes wrong.
    assert!(e.contains("^") && e.contains("unclosed group"), "{e}");
    let e = error(&filtered.replace("2024-01-31T00:00:00Z", "last week"));
    assert!(
        e.contains("buckets[0].modified_after") && e.contains("RFC 3339"),
        "{e}"
    );
    let e = error(&filtered.replace("\"1KiB\"", "\"1GiB\"\nmax_size = \"1MiB\""));
    assert!(e.contains("buckets[0].min_size"), "{e}");
}

#[test]
fn an_sse_c_key_is_read_checked_and_never_shown() {
    let with = |var: &str| {
        GOOD.replace(
            "[destination]\n",
            &format!("[destination]\nsse_c_key_env = \"{var}\"\n"),
        )
    };
    let c = parse(&with("SSE_KEY")).unwrap();
    let key = c.destination.customer_key.as_ref().unwrap();
    assert_eq!(
        key.headers().0,
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    );
    assert_eq!(format!("{key:?}"), "CustomerKey(***)");
    assert!(!format!("{c:?}").contains("MDEyMzQ1Njc4"));
    let e = error(&with("SHORT_KEY"));
    assert!(
        e.contains("destination.sse_c_key_env") && e.contains("256-bit"),
        "{e}"
    );
    assert!(!e.contains("c2hvcnQt"), "{e}");
    let e = error(&with("NO_SUCH_VAR"));
    assert!(e.contains("NO_SUCH_VAR") && e.contains("not set"), "{e}");
    let e = error(&with("SSE_KEY").replace("concurrency = 8", "verify_after_copy = false"));
    assert!(e.contains("transfer.verify_after_copy"), "{e}");
    let e = error(&GOOD.replace("[source]\n", "[source]\nsse_c_key_env = \"SSE_KEY\"\n"));
    assert!(
        e.contains("source.sse_c_key_env") && e.contains("destination only"),
        "{e}"
    );
}

#[test]
fn store_limits_are_read_and_zero_is_refused() {
    let limited = GOOD.replace("[destination]\n", "[destination]\nmax_connections = 200\n");
    let c = parse(&limited).unwrap();
    assert_eq!(c.destination.limits.max_connections, Some(200));
    assert_eq!(c.source.limits.max_connections, None);
    let e = error(&limited.replace("= 200", "= 0"));
    assert!(
        e.contains("destination.max_connections") && e.contains("leave it out"),
        "{e}"
    );
}

#[test]
fn empty_buckets_are_refused() {
    let text = GOOD.split("[[buckets]]").next().unwrap();
    let e = error(text);
    assert!(e.contains("`buckets` is empty"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = error(&GOOD.replace("concurrency = 8", "concurrency = 0"));
    assert!(e.contains("transfer.concurrency"), "{e}");
    let e = error(&GOOD.replace("source = \"onix\"", "source = \"Onix Feeds\""));
    assert!(e.contains("buckets[1].source"), "{e}");
    let e = error(&GOOD.replace("http://127.0.0.1:9100/", "127.0.0.1:9100"));
    assert!(e.contains("destination.endpoint"), "{e}");
    let e = error(&GOOD.replace("ledger = \"state/ferry.sqlite\"", ""));
    assert!(e.contains("`ledger` is missing"), "{e}");
    let e = error(&GOOD.replace("access_key_id_env = \"DST_ID\"", ""));
    assert!(e.contains("destination.access_key_id_env"), "{e}");
}

#[test]
fn restores_default_to_bulk_for_a_week_and_bad_ones_are_named() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.buckets[0].restore, RestoreTier::Bulk);
    assert_eq!(c.buckets[0].restore_days, 7);
    assert_eq!(c.restore_requests_per_second, 100);
    let c = parse(&GOOD.replace(
        "source = \"onix\"",
        "source = \"onix\"\nrestore = \"off\"\nrestore_days = 2",
    ))
    .unwrap();
    assert_eq!(
        (c.buckets[1].restore, c.buckets[1].restore_days),
        (RestoreTier::Off, 2)
    );
    let e = error(&GOOD.replace("source = \"onix\"", "source = \"onix\"\nrestore = \"fast\""));
    assert!(
        e.contains("buckets[1].restore") && e.contains("\"bulk\""),
        "{e}"
    );
    let e = error(&GOOD.replace("source = \"onix\"", "source = \"onix\"\nrestore_days = 0"));
    assert!(e.contains("buckets[1].restore_days"), "{e}");
    let e = error(&format!("restore_requests_per_second = 5000\n{GOOD}"));
    assert!(
        e.contains("restore_requests_per_second") && e.contains("1,000"),
        "{e}"
    );
}

#[test]
fn shards_split_keys_stably_and_completely() {
    let shards: Vec<Shard> = (0..3)
        .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
        .collect();
    for k in 0..300 {
        let key = format!("feeds/onix-{k}.xml");
        assert_eq!(shards.iter().filter(|s| s.owns(&key)).count(), 1, "{key}");
    }
    let counts: Vec<usize> = shards
        .iter()
        .map(|s| (0..300).filter(|k| s.owns(&format!("k{k}"))).count())
        .collect();
    assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
    // Stable: a known key lands where the first 8 bytes of its SHA-256,
    // read big-endian, say (worked out with Python's hashlib).
    for (key, n, index) in [
        ("audio/book.mp3", 2, 0),
        ("audio/book.mp3", 3, 2),
        ("feeds/onix-1.xml", 4, 2),
    ] {
        let shard = Shard { index, count: n };
        assert!(shard.owns(key), "{key} in {index}/{n}");
    }
    for bad in ["3/3", "1", "a/b", "0/0"] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
    let e = error(&GOOD.replace("ledger = ", "shard = \"5/2\"\nledger = "));
    assert!(e.contains("`shard`"), "{e}");
}

#[test]
fn on_conflict_keeps_by_default_and_names_its_choices() {
    assert_eq!(parse(GOOD).unwrap().on_conflict, OnConflict::Keep);
    let c = parse(&GOOD.replace("ledger = ", "on_conflict = \"overwrite\"\nledger = ")).unwrap();
    assert_eq!(c.on_conflict, OnConflict::Overwrite);
    let e = error(&GOOD.replace("ledger = ", "on_conflict = \"replace\"\nledger = "));
    assert!(e.contains("`on_conflict`") && e.contains("\"keep\""), "{e}");
}

#[test]
fn the_shipped_configs_are_valid() {
    let any = |_: &str| Some("set".to_owned());
    for (name, text) in [
        ("config/ferry.toml", include_str!("../../config/ferry.toml")),
        (
            "config/hetzner.example.toml",
            include_str!("../../config/hetzner.example.toml"),
        ),
        (
            "deploy/compose-ferry.toml",
            include_str!("../../deploy/compose-ferry.toml"),
        ),
    ] {
        let c = Config::parse(Path::new(name), text, &any).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.buckets.len(), 4, "{name}");
    }
}

#[test]
fn toml_syntax_errors_say_where() {
    let e = error("ledger = \n");
    assert!(e.contains("ferry.toml"), "{e}");
}

#[test]
fn a_bucket_follows_its_queue_and_a_bad_queue_url_is_named() {
    let c = parse(&GOOD.replace(
        "source = \"onix\"",
        "source = \"onix\"\nevents = \"https://sqs.eu-central-1.amazonaws.com/123456789012/ferry-events\"",
    ))
    .unwrap();
    assert_eq!(c.buckets[0].events, None);
    let queue = c.buckets[1].events.as_ref().unwrap();
    assert_eq!(queue.endpoint, "https://sqs.eu-central-1.amazonaws.com");
    assert_eq!(
        queue.url,
        "https://sqs.eu-central-1.amazonaws.com/123456789012/ferry-events"
    );
    assert_eq!(c.full_listing_interval, Duration::from_secs(24 * 3600));
    let c = parse(&GOOD.replace("ledger = ", "full_listing_interval = \"6h\"\nledger = ")).unwrap();
    assert_eq!(c.full_listing_interval, Duration::from_secs(6 * 3600));
    for bad in [
        "arn:aws:sqs:eu-central-1:123456789012:q",
        "https://sqs.example.com/q",
        "ftp://h/1/q",
    ] {
        let e = error(&GOOD.replace(
            "source = \"onix\"",
            &format!("source = \"onix\"\nevents = \"{bad}\""),
        ));
        assert!(
            e.contains("buckets[1].events") && e.contains("queue URL"),
            "{e}"
        );
    }
}

#[test]
fn each_shard_follows_a_queue_of_its_own() {
    let with = |url: &str, shard: &str| {
        GOOD.replace("ledger = ", &format!("{shard}ledger = "))
            .replace(
                "source = \"onix\"",
                &format!("source = \"onix\"\nevents = \"{url}\""),
            )
    };
    let mut c = parse(&with(
        "https://sqs.eu-central-1.amazonaws.com/1/ferry-{shard}",
        "shard = \"2/4\"\n",
    ))
    .unwrap();
    c.name_shard_queues().unwrap();
    assert_eq!(
        c.buckets[1].events.as_ref().unwrap().url,
        "https://sqs.eu-central-1.amazonaws.com/1/ferry-2"
    );
    let mut c = parse(&with(
        "https://sqs.eu-central-1.amazonaws.com/1/ferry",
        "shard = \"2/4\"\n",
    ))
    .unwrap();
    let e = c.name_shard_queues().unwrap_err();
    assert!(
        e.contains("buckets[1].events") && e.contains("{shard}"),
        "{e}"
    );
    let mut c = parse(&with(
        "https://sqs.eu-central-1.amazonaws.com/1/ferry-{shard}",
        "",
    ))
    .unwrap();
    assert!(c.name_shard_queues().unwrap_err().contains("--shard"));
}
