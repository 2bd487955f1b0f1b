//! Secrets stay secret: the keys appear nowhere ferry writes, at any log
//! level, with the SDK's own logging on.

mod support;

use ferry_tools::demo::DemoObject;
use support::{servers, Fixture};

fn secrets() -> Vec<String> {
    servers()
        .env
        .iter()
        .filter(|(k, _)| k.contains("SECRET"))
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_keys_appear_in_no_log_ledger_report_or_error() {
    let fx = Fixture::new(
        "secrets",
        "concurrency = 4\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"",
    )
    .await;
    let onix = format!("onix{}", fx.suffix);
    let mut set: Vec<DemoObject> = (0..5)
        .map(|i| DemoObject::new(&onix, format!("f-{i}.xml"), 1000, "application/xml"))
        .collect();
    let mut big = DemoObject::new(
        &onix,
        "big.bin".into(),
        11 << 20,
        "application/octet-stream",
    );
    big.multipart = true;
    set.push(big);
    fx.fill(&set).await;

    let mut env = servers().env.clone();
    // Everything, the SDK's signing and HTTP layers included.
    env.push(("FERRY_LOG".into(), "trace".into()));
    let mut outputs = Vec::new();
    for args in [
        &["run", "--once"][..],
        &["status", "--format", "json"],
        &["verify", "--all"],
        &["report", "--format", "csv"],
        &["plan", "--format", "json"],
        &["cleanup"],
    ] {
        let run = support::ferry_in(fx.dir.path(), &fx.config_path, args, &env);
        assert!(run.code == 0, "{args:?}: {}", run.stdout);
        outputs.push((format!("{args:?}"), run.stdout + &run.stderr));
    }
    assert!(outputs[0].1.contains("TRACE"), "trace logging was not on");
    // An error with wrong keys.
    let mut wrong = servers().env.clone();
    for (k, v) in wrong.iter_mut() {
        if k == "FERRY_DEST_SECRET_ACCESS_KEY" {
            *v = "wrong-secret-0123456789abcdef0123456789abcdef0123456789abcdef".into();
        }
    }
    wrong.push(("FERRY_LOG".into(), "trace".into()));
    let failed = support::ferry_in(fx.dir.path(), &fx.config_path, &["run", "--once"], &wrong);
    outputs.push(("wrong keys".into(), failed.stdout + &failed.stderr));

    let mut files = Vec::new();
    for entry in std::fs::read_dir(fx.dir.path().join("state")).unwrap() {
        let path = entry.unwrap().path();
        files.push((
            path.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
        ));
    }
    let mut secrets = secrets();
    secrets.push("wrong-secret-0123456789abcdef0123456789abcdef0123456789abcdef".into());
    for secret in &secrets {
        assert!(secret.len() >= 32);
        for (what, text) in outputs.iter().chain(&files) {
            assert!(
                !text.contains(secret.as_str()),
                "a secret key appears in {what}"
            );
        }
    }
}

#[test]
fn a_config_others_can_read_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "ledger = \"l.sqlite\"\n[destination]\nendpoint = \"http://127.0.0.1:9\"\nregion = \"x\"\n[source]\n[[buckets]]\nsource = \"abc\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = support::ferry_in(dir.path(), &path, &["status"], &[]);
    assert!(
        run.stderr.contains("can be read by other users: chmod 600"),
        "{run:?}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = support::ferry_in(dir.path(), &path, &["status"], &[]);
    assert!(!run.stderr.contains("other users"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sse_c_key_appears_in_no_log_ledger_or_error() {
    use base64::Engine as _;
    let transfer = "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"";
    let (fx, sse_c) = Fixture::with_sse_c_destination("ssecsecret", transfer).await;
    let (key, raw) = (sse_c.base64.clone(), sse_c.raw.clone());
    let audio = format!("audio{}", fx.suffix);
    let mut big = DemoObject::new(&audio, "big.mp3".into(), 11 << 20, "audio/mpeg");
    big.multipart = true;
    fx.fill(&[
        DemoObject::new(&audio, "small.mp3".into(), 5_000, "audio/mpeg"),
        big,
    ])
    .await;

    let mut env = sse_c.env();
    env.push(("FERRY_LOG".into(), "trace".into()));
    let mut outputs = Vec::new();
    for args in [
        &["run", "--once"][..],
        &["verify", "--all"],
        &["run", "--dry-run", "--format", "json"],
    ] {
        let run = support::ferry_in(fx.dir.path(), &fx.config_path, args, &env);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        outputs.push((format!("{args:?}"), run.stdout + &run.stderr));
    }
    assert!(outputs[0].1.contains("TRACE"), "trace logging was not on");
    // A key of the wrong length: refused, and not shown.
    let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| *k != sse_c.var);
    wrong.push((sse_c.var.clone(), short.clone()));
    let refused = support::ferry_in(fx.dir.path(), &fx.config_path, &["run", "--once"], &wrong);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("destination.sse_c_key_env"),
        "{refused:?}"
    );
    outputs.push(("a short key".into(), refused.stdout + &refused.stderr));

    let mut files = Vec::new();
    for entry in std::fs::read_dir(fx.dir.path().join("state")).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    let hex_key = raw.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for secret in [&key, &short, &hex_key] {
        for (what, text) in &outputs {
            // The line, with the key masked, names the logger that leaked it.
            let line = text.lines().find(|l| l.contains(secret.as_str())).map(|l| {
                l.replace(secret.as_str(), "<KEY>")
                    .chars()
                    .take(300)
                    .collect::<String>()
            });
            assert!(line.is_none(), "the SSE-C key appears in {what}: {line:?}");
        }
        for (what, bytes) in &files {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the SSE-C key appears in {what}");
        }
    }
    for (what, bytes) in &files {
        assert!(
            !bytes.windows(32).any(|w| w == raw.as_slice()),
            "the raw SSE-C key appears in {what}"
        );
    }
}
