//! The operations kit in `deploy/`, tried as a new user would: the systemd
//! unit's install steps end in ferry copying as an unprivileged user, the
//! unit passes `systemd-analyze`, the Nomad job's values agree with ferry's
//! command line, every metric the dashboard and the alerts name is served,
//! and the alert rules fire when they should (`promtool test rules`).

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tools::demo::DemoObject;
use support::{scrape, servers, sigterm, Fixture};

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
    let out = Command::new("promtool")
        .args(["check", "rules", "deploy/prometheus/alerts.yml"])
        .output()
        .expect("promtool is not installed: apt-get install prometheus (scripts/test.sh does)");
    assert!(out.status.success(), "{}", said(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 6 rules found"));
}

/// `deploy/prometheus/alerts.test.yml` plays each rule on recorded series: a
/// healthy first pass of three hours, a first pass that adopts what a lost
/// ledger left at the destination, and a healthy daemon (nothing fires); a
/// first pass that stalls (FerryNoProgress); a pass far longer than the last
/// and a loop that starts none (FerryPassOverdue); rising failures.
#[test]
fn the_alerts_fire_when_they_should_and_not_otherwise() {
    let out = Command::new("promtool")
        .args(["test", "rules", "deploy/prometheus/alerts.test.yml"])
        .output()
        .expect("promtool is not installed: apt-get install prometheus (scripts/test.sh does)");
    assert!(out.status.success(), "{}", said(&out));
    let test = std::fs::read_to_string("deploy/prometheus/alerts.test.yml").unwrap();
    for alert in [
        "FerryNoProgress",
        "FerryPassOverdue",
        "FerryFailuresRising",
        "FerryRestoreOverdue",
        "FerryEventLagHigh",
    ] {
        let fires = regex::Regex::new(&format!(
            r"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels"
        ))
        .unwrap();
        assert!(fires.is_match(&test), "no scenario in which {alert} fires");
    }
}

/// What a command printed, both streams.
fn said(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of a gauge or counter without labels in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A free port on loopback, for --metrics-addr.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The backlog is read from the ledger during a pass, so that
/// FerryNoProgress can see a first pass that stalls; the pass shows as
/// running from its start. The pass is slowed by `max_bandwidth` to last
/// several refreshes of the backlog (`metrics::BACKLOG_EVERY`, 10 s).
#[tokio::test(flavor = "multi_thread")]
async fn the_backlog_and_the_running_pass_show_during_the_first_pass() {
    let fx = Fixture::with_destination(
        "deploy-backlog",
        "concurrency = 2\nmax_bandwidth = \"256KB/s\"",
        "interval = \"1h\"",
        None,
    )
    .await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..16)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("feeds/{i}.xml"),
                512 * 1024,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    let addr = free_addr();
    let daemon = fx.spawn_ferry(&["--metrics-addr", &addr, "run"]);
    let started = Instant::now();
    let mut seen_during_pass: Option<String> = None;
    let after = loop {
        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
            drop(c);
            let text = scrape(&addr).await;
            let running = sample(&text, "ferry_pass_running");
            let backlog = sample(&text, "ferry_backlog_objects").unwrap_or(0.0);
            if sample(&text, "ferry_pass") == Some(0.0) && running == Some(1.0) && backlog > 0.0 {
                seen_during_pass.get_or_insert(text.clone());
            }
            if sample(&text, "ferry_pass").is_some_and(|p| p >= 1.0) {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the first pass did not end"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    sigterm(&daemon);
    let out = daemon.wait_with_output().await.unwrap();
    let during = seen_during_pass.unwrap_or_else(|| {
        panic!(
            "no scrape showed a backlog while the first pass ran; after it:\n{after}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let pass_began = sample(&during, "ferry_pass_started_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        pass_began > now - 600.0 && pass_began <= now,
        "the pass's start is not a recent time: {pass_began}\n{during}"
    );
    assert_eq!(sample(&after, "ferry_pass_running"), Some(0.0), "{after}");
    assert_eq!(
        sample(&after, "ferry_backlog_objects"),
        Some(0.0),
        "{after}"
    );
}

// ---- systemd: deploy/ferry.service ----

const UNIT: &str = "deploy/ferry.service";

/// The values of `Key=` in the unit, comments aside, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn unit_value(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "{key}= in {UNIT}: {values:?}");
    values[0].clone()
}

/// One `install` line of the unit's header: `install [-d] -m MODE [SRC] DEST`.
#[derive(Debug)]
struct Install {
    dir: bool,
    mode: u32,
    src: Option<String>,
    dest: String,
}

fn install_steps(unit: &str) -> Vec<Install> {
    unit.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(str::trim)
        .filter(|l| l.starts_with("install "))
        .map(|l| {
            let words: Vec<&str> = l
                .split_whitespace()
                .skip(1)
                .take_while(|w| !w.starts_with('(') && *w != "<<<")
                .collect();
            let dir = words.contains(&"-d");
            let at = words.iter().position(|w| *w == "-m").expect("-m MODE");
            let mode = u32::from_str_radix(words[at + 1], 8).unwrap();
            let paths: Vec<&str> = words[at + 2..].to_vec();
            match (dir, paths.as_slice()) {
                (true, [dest]) => Install {
                    dir,
                    mode,
                    src: None,
                    dest: dest.to_string(),
                },
                (false, [src, dest]) => Install {
                    dir,
                    mode,
                    src: Some(src.to_string()),
                    dest: dest.to_string(),
                },
                _ => panic!("cannot read the install step {l:?}"),
            }
        })
        .collect()
}

/// `nobody`'s uid and `nogroup`'s gid, the user the tests run ferry as.
fn nobody() -> (u32, u32) {
    let field = |file: &str, name: &str| -> u32 {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|rest| rest.split(':').nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in {file}"))
    };
    (
        field("/etc/passwd", "nobody"),
        field("/etc/group", "nogroup"),
    )
}

/// `root` + an absolute path of the unit.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `argv` as `nobody` (setpriv, as the dynamic user would be), with
/// `umask` and only `env`, in `dir`.
fn as_nobody(argv: &[String], umask: &str, env: &[(String, String)], dir: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
        ])
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir);
    cmd
}

/// The header's install steps into a temporary root (the binary, the config
/// with the ledger under /var/lib/ferry, the keys, the unit), then the start
/// systemd makes of it: the credentials directory with the config (0400,
/// the service user's, as systemd 252 lays it out on ramfs), the keys
/// from the EnvironmentFile, the state directory, the UMask, and ExecStart
/// run as an unprivileged user. ferry copies, verifies, warns of nothing,
/// and stops with 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn the_units_install_steps_end_in_ferry_copying_as_an_unprivileged_user() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let mut fx = Fixture::with_destination("deploy-unit", "concurrency = 4", "", None).await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..3)
        .map(|i| DemoObject::new(&onix, format!("feeds/{i}.xml"), 20_000, "application/xml"))
        .collect();
    fx.fill(&set).await;
    let (uid, gid) = nobody();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    set_mode(tmp.path(), 0o755);
    set_mode(&root, 0o755);

    // The install steps, as root, into the temporary root.
    let ledger = "/var/lib/ferry/ferry.sqlite";
    let config_text = std::fs::read_to_string(&fx.config_path).unwrap().replace(
        "ledger = \"state/ferry.sqlite\"",
        &format!("ledger = {:?}", under(&root, ledger)),
    );
    assert!(config_text.contains(&under(&root, ledger).display().to_string()));
    let keys_text: String = servers()
        .env
        .iter()
        .filter(|(k, _)| k.ends_with("_ACCESS_KEY_ID") || k.ends_with("_SECRET_ACCESS_KEY"))
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let steps = install_steps(&unit);
    for step in &steps {
        let dest = under(&root, &step.dest);
        std::fs::create_dir_all(if step.dir {
            &dest
        } else {
            dest.parent().unwrap()
        })
        .unwrap();
        match step.src.as_deref() {
            None => {}
            Some("target/release/ferry") => {
                if std::fs::hard_link(env!("CARGO_BIN_EXE_ferry"), &dest).is_err() {
                    std::fs::copy(env!("CARGO_BIN_EXE_ferry"), &dest).unwrap();
                }
            }
            Some("config/hetzner.example.toml") => {
                assert!(Path::new("config/hetzner.example.toml").exists());
                std::fs::write(&dest, &config_text).unwrap();
            }
            Some("/dev/stdin") => std::fs::write(&dest, &keys_text).unwrap(),
            Some(src) => {
                std::fs::copy(src, &dest).unwrap();
            }
        }
        set_mode(&dest, step.mode);
    }
    let installed = |p: &str| steps.iter().find(|s| s.dest == p);
    for p in ["/etc/ferry", "/etc/ferry/ferry.toml", "/etc/ferry/keys.env"] {
        assert!(installed(p).is_some(), "no install step for {p}: {steps:?}");
    }

    // What systemd does at start, as PID 1 (root).
    let state = under(
        &root,
        &format!("/var/lib/{}", unit_value(&unit, "StateDirectory")),
    );
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    set_mode(
        &state,
        u32::from_str_radix(&unit_value(&unit, "StateDirectoryMode"), 8).unwrap(),
    );
    assert_eq!(unit_value(&unit, "WorkingDirectory"), "/var/lib/ferry");
    let credentials = under(&root, "/run/credentials/ferry.service");
    std::fs::create_dir_all(&credentials).unwrap();
    for load in unit_values(&unit, "LoadCredential") {
        let (id, from) = load.split_once(':').expect("LoadCredential=ID:PATH");
        let to = credentials.join(id);
        std::fs::copy(under(&root, from), &to).unwrap();
        set_mode(&to, 0o400);
        std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::chown(&credentials, Some(uid), Some(gid)).unwrap();
    set_mode(&credentials, 0o500);
    let mut env: Vec<(String, String)> = Vec::new();
    for file in unit_values(&unit, "EnvironmentFile") {
        let text = std::fs::read_to_string(under(&root, &file)).unwrap();
        env.extend(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
    }
    env.push((
        "CREDENTIALS_DIRECTORY".into(),
        credentials.display().to_string(),
    ));
    let addr = free_addr();
    let mut argv: Vec<String> = unit_value(&unit, "ExecStart")
        .replace(
            "${CREDENTIALS_DIRECTORY}",
            &credentials.display().to_string(),
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    argv[0] = under(&root, &argv[0]).display().to_string();
    let at = argv.iter().position(|a| a == "--metrics-addr").unwrap();
    argv[at + 1] = addr.clone();
    let umask = unit_value(&unit, "UMask");

    let mut daemon = tokio::process::Command::from(as_nobody(&argv, &umask, &env, &state))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
            drop(c);
            if sample(&scrape(&addr).await, "ferry_pass").is_some_and(|p| p >= 1.0) {
                break;
            }
        }
        let exited = daemon.try_wait().unwrap().is_some();
        if exited || started.elapsed() > Duration::from_secs(90) {
            if !exited {
                sigterm(&daemon);
            }
            let out = daemon.wait_with_output().await.unwrap();
            panic!("no pass ended as the unit runs it:\n{}", said(&out));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sigterm(&daemon);
    let out = daemon.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        !stderr.contains("can be read by other users"),
        "a permission warning under the unit's own layout:\n{stderr}"
    );
    assert!(stderr.contains("pass finished"), "{stderr}");
    // The ledger is the service user's alone.
    let meta = std::fs::metadata(under(&root, ledger)).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o600));
    fx.config.ledger = under(&root, ledger);
    support::assert_all_copied_byte_equal(&fx, &set).await;
}

/// The guide's install steps are the unit header's, word for word (the
/// test above follows the header).
#[test]
fn the_readme_gives_the_units_install_steps() {
    let words = |l: &str| -> String {
        l.split_whitespace()
            .take_while(|w| !w.starts_with('(') && !w.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let header: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(str::trim)
        .filter(|l| l.starts_with("install ") || l.starts_with("systemctl daemon-reload"))
        .map(words)
        .collect();
    let readme = std::fs::read_to_string("docs/src/running-for-days.md").unwrap();
    let section = &readme[readme
        .find("**One box: systemd.**")
        .expect("the systemd part")..];
    let readme_steps: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(words)
        .collect();
    assert!(header.len() >= 5, "{header:?}");
    assert_eq!(readme_steps, header);
}

/// The layout the README once gave (root's 0640 config in a 0750 directory)
/// stops the unprivileged user with exit 2 and a sentence that names the
/// fix: LoadCredential=, or the file given to that user with mode 600.
#[test]
fn a_root_only_config_names_the_fix_to_the_unprivileged_user() {
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o755);
    let etc = tmp.path().join("etc/ferry");
    std::fs::create_dir_all(&etc).unwrap();
    set_mode(&etc.parent().unwrap(), 0o755);
    let config = etc.join("ferry.toml");
    std::fs::copy("deploy/compose-ferry.toml", &config).unwrap();
    set_mode(&config, 0o640);
    let argv = |c: &Path| {
        vec![
            env!("CARGO_BIN_EXE_ferry").to_owned(),
            "--config".into(),
            c.display().to_string(),
            "status".into(),
        ]
    };
    for (dir_mode, stands_in_the_way) in [
        (
            0o750,
            format!("the directory {} is owned by uid 0", etc.display()),
        ),
        (
            0o755,
            format!("{} is owned by uid 0 gid 0, mode 640", config.display()),
        ),
    ] {
        set_mode(&etc, dir_mode);
        let out = as_nobody(&argv(&config), "0077", &[], tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}", said(&out));
        for part in [
            "Permission denied",
            &stands_in_the_way,
            "LoadCredential=ferry.toml:",
            "--config ${CREDENTIALS_DIRECTORY}/ferry.toml",
            "chmod 600",
        ] {
            assert!(stderr.contains(part), "{part:?} not in: {stderr}");
        }
        assert!(!stderr.contains("Pass the right file"), "{stderr}");
    }
}

/// ferry's "others can read it" check: systemd's credentials directory is
/// private to the service, so its copy (0400 the user's, or 0440 as an ACL
/// shows) draws no warning; a world-readable one, or a group-readable config
/// anywhere else, still does.
#[test]
fn the_permission_warning_trusts_systemds_credentials_and_nothing_else() {
    let (uid, gid) = nobody();
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o755);
    let credentials = tmp.path().join("credentials");
    let elsewhere = tmp.path().join("etc");
    for dir in [&credentials, &elsewhere] {
        std::fs::create_dir(dir).unwrap();
        set_mode(dir, 0o755);
    }
    let keys: Vec<(String, String)> = servers().env.clone();
    let warns = |dir: &Path, owner: u32, mode: u32| -> bool {
        let config = dir.join("ferry.toml");
        let _ = std::fs::remove_file(&config);
        std::fs::copy("deploy/compose-ferry.toml", &config).unwrap();
        std::os::unix::fs::chown(&config, Some(owner), Some(gid)).unwrap();
        set_mode(&config, mode);
        let mut env = keys.clone();
        env.push((
            "CREDENTIALS_DIRECTORY".into(),
            credentials.display().to_string(),
        ));
        let argv = vec![
            env!("CARGO_BIN_EXE_ferry").to_owned(),
            "--config".into(),
            config.display().to_string(),
            "status".into(),
        ];
        let out = as_nobody(&argv, "0077", &env, tmp.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("cannot read config"), "{stderr}");
        stderr.contains("can be read by other users: chmod 600 it")
    };
    assert!(!warns(&credentials, uid, 0o400), "systemd 252's credential");
    assert!(!warns(&credentials, 0, 0o440), "a credential with an ACL");
    assert!(warns(&credentials, 0, 0o444), "a world-readable credential");
    assert!(warns(&elsewhere, 0, 0o640), "a group-readable config");
    assert!(warns(&elsewhere, uid, 0o644), "a world-readable config");
    assert!(!warns(&elsewhere, uid, 0o600), "the user's own config");
}

/// `systemd-analyze verify` reads the unit as systemd would. It needs the
/// ExecStart binary to exist, so it reads a copy whose ExecStart names the
/// built ferry, the only line changed. It warns (exit 0) on unknown keys and
/// bad values, so any output is a failure; a broken copy shows it would be.
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let exec = unit_value(&unit, "ExecStart");
    let binary = exec.split_whitespace().next().unwrap();
    let copy = unit.replacen(
        &format!("ExecStart={binary}"),
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_ferry")),
        1,
    );
    assert_ne!(copy, unit);
    let verify = |text: &str| {
        let path = tmp.path().join("ferry.service");
        std::fs::write(&path, text).unwrap();
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect(
                "systemd-analyze is not installed: apt-get install systemd (scripts/test.sh does)",
            )
    };
    let out = verify(&copy);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {UNIT}:\n{}",
        said(&out)
    );
    let broken =
        verify(&copy.replacen("[Service]\n", "[Service]\nRestartPreventExitStatuss=2\n", 1));
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("RestartPreventExitStatuss"),
        "a broken unit went unnoticed:\n{}",
        said(&broken)
    );
}

/// The hardening `systemd-analyze security` asks for is in place, and a
/// config error (exit 2) is not restarted while a crash loop reaches the
/// start limit.
#[test]
fn the_unit_is_hardened_and_stops_restarting_a_config_error() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ferry.service");
    std::fs::write(&path, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze is not installed: apt-get install systemd (scripts/test.sh does)");
    let report = String::from_utf8_lossy(&out.stdout);
    for wanted in [
        "ProtectProc=",
        "ProcSubset=",
        "SystemCallFilter=~@privileged",
        "SystemCallFilter=~@resources",
        "PrivateMounts=",
        "UMask=",
    ] {
        let line = report
            .lines()
            .find(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("{wanted} not rated:\n{}", said(&out)));
        assert!(line.contains('✓'), "{wanted} is not set as asked:\n{line}");
    }

    // A bad config exits 2, and 2 is not restarted.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "ledger = 3\n").unwrap();
    let code = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&bad)
        .arg("run")
        .output()
        .unwrap()
        .status
        .code()
        .unwrap();
    assert_eq!(code, 2);
    let prevent = unit_value(&unit, "RestartPreventExitStatus");
    assert!(
        prevent.split_whitespace().any(|c| c == code.to_string()),
        "RestartPreventExitStatus={prevent} lets a config error restart"
    );
    // Restart= every RestartSec= must reach the start limit within its window.
    let in_unit_section = unit.split("[Service]").next().unwrap();
    let burst: u64 = unit_value(in_unit_section, "StartLimitBurst")
        .parse()
        .unwrap();
    let window = humantime(&unit_value(in_unit_section, "StartLimitIntervalSec"));
    let every = humantime(&unit_value(&unit, "RestartSec"));
    assert!(
        every * burst as u32 <= window,
        "restarting every {every:?}, {burst} starts never fit in {window:?}"
    );
}

/// The system calls a set of `SystemCallFilter=` entries names: groups
/// (`@system-service`) expanded by `systemd-analyze syscall-filter`.
fn syscalls(entries: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in entries {
        if !entry.starts_with('@') {
            out.insert(entry.to_string());
            continue;
        }
        let listed = Command::new("systemd-analyze")
            .args(["syscall-filter", entry])
            .output()
            .expect("systemd-analyze is not installed (scripts/test.sh installs it)");
        assert!(listed.status.success(), "{}", said(&listed));
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(!names.is_empty(), "{entry} names nothing:\n{text}");
        out.extend(syscalls(&names));
    }
    out
}

/// Every system call ferry makes in a pass, traced with strace (listing,
/// copying, verifying, SQLite, the metrics listener, SIGTERM), is one the
/// unit's `SystemCallFilter=` allows: a call outside it would fail with EPERM
/// in production and nowhere here.
#[tokio::test(flavor = "multi_thread")]
async fn every_system_call_ferry_makes_is_one_the_unit_allows() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for line in unit_values(&unit, "SystemCallFilter") {
        match line.strip_prefix('~') {
            Some(deny) => denied.extend(syscalls(&deny.split_whitespace().collect::<Vec<_>>())),
            None => allowed.extend(syscalls(&line.split_whitespace().collect::<Vec<_>>())),
        }
    }
    assert!(
        allowed.contains("openat") && denied.contains("setuid"),
        "{allowed:?}"
    );
    // systemd lets these through whatever the filter says.
    let always = [
        "execve",
        "exit",
        "exit_group",
        "getrlimit",
        "rt_sigreturn",
        "sigreturn",
    ];
    let allowed: BTreeSet<String> = allowed
        .difference(&denied)
        .cloned()
        .chain(always.map(str::to_owned))
        .collect();

    let fx = Fixture::with_destination(
        "deploy-syscalls",
        "concurrency = 4",
        "interval = \"1h\"",
        None,
    )
    .await;
    let onix = format!("onix{}", fx.suffix);
    let mut set: Vec<DemoObject> = (0..3)
        .map(|i| DemoObject::new(&onix, format!("feeds/{i}.xml"), 20_000, "application/xml"))
        .collect();
    let mut big = DemoObject::new(&onix, "audio/big.mp3".into(), 12 << 20, "audio/mpeg");
    big.multipart = true;
    set.push(big);
    fx.fill(&set).await;
    // As the unit's user, not root: SQLite, for one, chowns its files to the
    // database's owner only when it runs as root.
    let (uid, gid) = nobody();
    std::os::unix::fs::chown(fx.dir.path(), Some(uid), Some(gid)).unwrap();
    let trace = fx.dir.path().join("strace.txt");
    let addr = free_addr();
    let daemon = tokio::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(["strace", "-f", "-qq", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&fx.config_path)
        .args([
            "--log-format",
            "json",
            "--no-progress",
            "--metrics-addr",
            &addr,
            "run",
        ])
        .current_dir(fx.dir.path())
        .envs(servers().env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("strace is not installed: apt-get install strace (scripts/test.sh does)");
    let started = Instant::now();
    loop {
        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
            drop(c);
            if sample(&scrape(&addr).await, "ferry_pass").is_some_and(|p| p >= 1.0) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pass ended under strace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // strace's pid is ferry's: it runs ferry as its child, so signal ferry.
    let pid = std::fs::read_to_string(&trace)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = daemon.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    support::assert_all_copied_byte_equal(&fx, &set).await;

    let call = regex::Regex::new(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]").unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    let made: BTreeSet<String> = text
        .lines()
        .filter_map(|l| call.captures(l).map(|c| c[1].to_owned()))
        .collect();
    assert!(
        made.len() > 30 && made.contains("openat") && made.contains("connect"),
        "the trace missed ferry's work: {made:?}"
    );
    let outside: Vec<&String> = made.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "ferry made system calls the unit's filter refuses: {outside:?}"
    );
}

/// "30s", "10min", "1h" as systemd writes them.
fn humantime(text: &str) -> Duration {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().unwrap();
    match &text[digits.len()..] {
        "" | "s" => Duration::from_secs(n),
        "min" | "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => panic!("unit {other:?} in {text:?}"),
    }
}

// ---- Nomad: deploy/ferry.nomad.hcl ----

/// The job file as python-hcl2 reads it (scripts/test.sh installs it), as
/// JSON. That parser keeps a string's quotes; `unquoted` takes them off.
fn nomad_job() -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hcl2, json, sys; json.dump(hcl2.load(open(sys.argv[1])), sys.stdout)",
            "deploy/ferry.nomad.hcl",
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "deploy/ferry.nomad.hcl is not HCL python-hcl2 reads (pip install python-hcl2; scripts/test.sh does):\n{}",
        said(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn unquoted(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .to_owned(),
        other => other.to_string(),
    }
}

/// A block's body: `name` is a list of blocks, each `{"\"label\"": body}` or the body.
fn block<'a>(parent: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let first = &parent[name][0];
    match first.as_object() {
        Some(o) if o.len() == 1 && o.keys().all(|k| k.starts_with('"')) => {
            o.values().next().unwrap()
        }
        _ => first,
    }
}

/// Every `--flag` a help text lists.
fn flags_in(help: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z-]*)").unwrap();
    re.captures_iter(help).map(|c| c[1].to_owned()).collect()
}

fn ferry_help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The job's values against ferry's command line: every flag is one ferry
/// takes where it stands, the shard count is one variable used by `count`
/// and `--shard`, metrics bind the address Nomad gives the port (never
/// 0.0.0.0), a config error fails the allocation instead of restarting it
/// forever, the ledger lives on the sticky, migrating disk, and the config
/// the job writes is one ferry accepts.
#[test]
fn the_nomad_job_agrees_with_ferrys_command_line() {
    let job = nomad_job();
    let shards = block(&job, "variable");
    assert_eq!(
        job["variable"][0]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap(),
        "\"shards\""
    );
    let default = shards["default"]
        .as_u64()
        .expect("shards has a number default");
    let group = block(block(&job, "job"), "group");
    assert_eq!(unquoted(&group["count"]), "${var.shards}");

    let task = block(group, "task");
    let args: Vec<String> = block(task, "config")["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(unquoted)
        .collect();
    let at = args
        .iter()
        .position(|a| a == "run")
        .expect("the run command");
    let (global, run) = (
        flags_in(&ferry_help(&["--help"])),
        flags_in(&ferry_help(&["run", "--help"])),
    );
    assert!(
        global.contains("--shard") && run.contains("--once"),
        "{global:?} {run:?}"
    );
    for (i, arg) in args.iter().enumerate().filter(|(_, a)| a.starts_with("--")) {
        let known = if i < at { &global } else { &run };
        assert!(
            known.contains(arg.as_str()),
            "ferry does not take {arg} there: {args:?}"
        );
    }
    let value = |flag: &str| {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("no {flag}"));
        args[i + 1].clone()
    };
    assert_eq!(value("--shard"), "${NOMAD_ALLOC_INDEX}/${var.shards}");
    let metrics = value("--metrics-addr");
    assert!(
        !metrics.starts_with("0.0.0.0") && !metrics.starts_with("[::]"),
        "{metrics}"
    );
    assert_eq!(metrics, "${NOMAD_IP_metrics}:${NOMAD_PORT_metrics}");
    assert!(block(group, "network")["port"][0]
        .as_object()
        .unwrap()
        .contains_key("\"metrics\""));

    let restart = block(group, "restart");
    assert_eq!(unquoted(&restart["mode"]), "fail", "{restart}");
    assert!(restart["attempts"].as_u64().unwrap() <= 5, "{restart}");
    let disk = block(group, "ephemeral_disk");
    assert_eq!(
        (&disk["sticky"], &disk["migrate"]),
        (&true.into(), &true.into())
    );

    // The config the job writes, rendered as Nomad would for allocation 1.
    let template = task["template"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| unquoted(&t["destination"]) == "local/ferry.toml")
        .expect("a template for local/ferry.toml");
    let data = unquoted(&template["data"]);
    let body = data
        .strip_prefix("<<EOT\n")
        .and_then(|d| d.strip_suffix("EOT"))
        .expect("a heredoc");
    let rendered = body
        .replace("{{ env \"NOMAD_ALLOC_DIR\" }}", "/alloc")
        .replace("{{ env \"NOMAD_ALLOC_INDEX\" }}", "1")
        .replace("${var.shards}", &default.to_string());
    assert!(
        !rendered.contains("{{") && !rendered.contains("${"),
        "{rendered}"
    );
    let path = Path::new("local/ferry.toml");
    let config = ferry::config::Config::parse(path, &rendered, &|_| Some("a-key".into()))
        .unwrap_or_else(|e| panic!("the job's config: {e}\n{rendered}"));
    assert_eq!(
        config.ledger,
        PathBuf::from(format!("/alloc/data/shard-1-of-{default}.sqlite")),
        "the ledger is not on the allocation's sticky disk"
    );
    // An allocation that comes up on a new client without its disk starts
    // from the shard's newest snapshot.
    assert!(
        args.iter()
            .skip(at)
            .any(|a| a == "--restore-missing-ledger"),
        "{args:?}"
    );
    assert!(config.backup.is_some(), "the job's config has no [backup]");
}
