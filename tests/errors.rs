//! Bad input gets a clear error that names the thing and the fix, exits with
//! the documented code, and loses nothing.

mod support;

use support::{ferry_in, servers, Fixture};

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const VALID: &str = r#"
ledger = "state/ferry.sqlite"
[source]
endpoint = "http://127.0.0.1:9000"
access_key_id_env = "FERRY_SOURCE_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_SOURCE_SECRET_ACCESS_KEY"
[destination]
endpoint = "http://127.0.0.1:9100"
region = "fsn1"
access_key_id_env = "FERRY_DEST_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_DEST_SECRET_ACCESS_KEY"
[transfer]
part_size = "16MiB"
[[buckets]]
source = "audio"
destination = "hub-audio"
"#;

fn keys() -> Vec<(String, String)> {
    [
        "FERRY_SOURCE_ACCESS_KEY_ID",
        "FERRY_SOURCE_SECRET_ACCESS_KEY",
        "FERRY_DEST_ACCESS_KEY_ID",
        "FERRY_DEST_SECRET_ACCESS_KEY",
    ]
    .iter()
    .map(|k| (k.to_string(), "test-value".to_string()))
    .collect()
}

#[test]
fn bad_configs_exit_2_and_name_the_key() {
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown key",
            VALID.replace("part_size", "partsize"),
            "partsize",
        ),
        (
            "bad size",
            VALID.replace("\"16MiB\"", "\"sixteen\""),
            "transfer.part_size",
        ),
        (
            "empty buckets",
            VALID.split("[[buckets]]").next().unwrap().to_owned(),
            "buckets",
        ),
        (
            "missing env var",
            VALID.replace(
                "\"FERRY_DEST_SECRET_ACCESS_KEY\"",
                "\"FERRY_NOT_SET_ANYWHERE\"",
            ),
            "FERRY_NOT_SET_ANYWHERE",
        ),
        (
            "bad endpoint",
            VALID.replace("http://127.0.0.1:9100", "127.0.0.1:9100"),
            "destination.endpoint",
        ),
        ("not toml", "ledger = [".to_owned(), "ferry.toml"),
    ];
    for (what, text, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), text);
        let run = ferry_in(dir.path(), &config, &["run", "--once"], &keys());
        assert_eq!(run.code, 2, "{what}: {run:?}");
        assert!(
            run.stderr.contains(named),
            "{what}: message should name {named}: {run:?}"
        );
        assert!(
            !run.stderr.contains("test-value"),
            "{what}: a secret leaked: {run:?}"
        );
        assert!(
            !dir.path().join("state").exists(),
            "{what}: a bad config must not create a ledger"
        );
    }
}

#[test]
fn a_missing_config_file_says_how_to_pass_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = ferry_in(
        dir.path(),
        &dir.path().join("nope.toml"),
        &["status"],
        &keys(),
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("nope.toml") && run.stderr.contains("--config"),
        "{run:?}"
    );
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = ferry_in(
        dir.path(),
        &dir.path().join("ferry.toml"),
        &["teleport"],
        &keys(),
    );
    assert_eq!(run.code, 2, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_named_before_anything_is_written() {
    let fx = Fixture::new("nobucket", "").await;
    // No fill: none of the fixture's buckets exist on either server.
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 1, "{run:?}");
    let audio = format!("audio{}", fx.suffix);
    assert!(
        run.stderr.contains(&audio) && run.stderr.contains("does not exist"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!("hub-{audio}")),
        "every missing bucket is named: {run:?}"
    );
    assert!(
        !fx.config.ledger.exists(),
        "no ledger is written for a run that cannot start"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_named_and_the_secret_is_not_shown() {
    let s = servers();
    let fx = Fixture::new("badkeys", "").await;
    fx.fill(&[]).await;
    let wrong_secret = "0000000000000000000000000000000000000000000000000000000000000bad";
    let mut env = s.env.clone();
    for (k, v) in env.iter_mut() {
        if k == "FERRY_DEST_SECRET_ACCESS_KEY" {
            *v = wrong_secret.to_owned();
        }
    }
    let run = ferry_in(fx.dir.path(), &fx.config_path, &["run", "--once"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("destination") && run.stderr.contains("credentials"),
        "{run:?}"
    );
    for (_, secret) in s.env.iter().filter(|(k, _)| k.contains("SECRET")) {
        assert!(
            !run.stderr.contains(secret.as_str()) && !run.stdout.contains(secret.as_str()),
            "a secret leaked: {run:?}"
        );
    }
    assert!(!run.stderr.contains(wrong_secret), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) is closed on loopback.
    let text = VALID.replace("http://127.0.0.1:9100", "http://127.0.0.1:9");
    let config = write_config(dir.path(), &text);
    let run = ferry_in(dir.path(), &config, &["run", "--once"], &servers().env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("could not reach the destination endpoint"),
        "{run:?}"
    );
}
