//! Shared by the end-to-end tests: the two local S3 servers (started by the
//! project's own `scripts/s3-local.sh`), a fixture per test with its own
//! buckets and ledger, and the real `ferry` binary as a child process.
#![allow(dead_code)]

pub mod faults;
pub mod inventory;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use aws_sdk_s3::Client;
use ferry::config::Config;
use ferry::store::{self, Side};

pub struct Servers {
    pub env: Vec<(String, String)>,
}

impl Servers {
    pub fn get(&self, name: &str) -> &str {
        &self
            .env
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{name} not set"))
            .1
    }
}

/// Starts the servers once per test binary (a no-op when they run already)
/// and reads the env they print; FERRY_* already in the env wins. A server
/// found dead since (a CI run once lost its source Garage between two test
/// binaries) is started again, and its log's tail kept in
/// `.s3-local/restarts.log`, which `scripts/test.sh` prints: the suite tests
/// ferry, and a lost server is named rather than failing every test after it.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    let servers = SERVERS.get_or_init(|| Servers { env: s3_local_up() });
    restart_if_dead(servers);
    servers
}

fn s3_local_up() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/s3-local.sh"))
        .arg("up")
        .output()
        .expect("run scripts/s3-local.sh");
    assert!(
        out.status.success(),
        "scripts/s3-local.sh up failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                std::env::var(k).unwrap_or_else(|_| v.to_owned()),
            )
        })
        .collect()
}

/// Each local server's endpoint answers a TCP connect, or is started again.
fn restart_if_dead(servers: &Servers) {
    static RESTARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dead: Vec<String> = servers
        .env
        .iter()
        .filter(|(k, _)| k.ends_with("_ENDPOINT"))
        .filter(|(_, v)| v.starts_with("http://127.0.0.1:"))
        .filter(|(_, v)| {
            let addr = v.trim_start_matches("http://");
            std::net::TcpStream::connect_timeout(
                &addr.parse().expect("endpoint address"),
                std::time::Duration::from_secs(2),
            )
            .is_err()
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if dead.is_empty() {
        return;
    }
    let _one_at_a_time = RESTARTING.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = std::env::var("FERRY_S3_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".s3-local"));
    let mut note = format!(
        "{}: the test binary {} found {} not answering; restarting with scripts/s3-local.sh up\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::env::args().next().unwrap_or_default(),
        dead.join(", ")
    );
    for log in ["source/garage.log", "destination/garage.log"] {
        let text = std::fs::read_to_string(state.join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        note += &format!("--- tail of {log}:\n");
        for line in tail.into_iter().rev() {
            note += line;
            note += "\n";
        }
    }
    eprintln!("{note}");
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("restarts.log"))
    {
        let _ = f.write_all(note.as_bytes());
    }
    s3_local_up();
}

/// Tests of what only Ceph does cannot pass without it: they fail, and
/// say so, instead of returning as if they had passed.
fn require_ceph() {
    assert!(
        servers()
            .env
            .iter()
            .any(|(k, _)| k == "FERRY_CEPH_ENDPOINT"),
        "this test needs the local Ceph RGW, which is not running (FERRY_CEPH=0?): \
         start it with `scripts/s3-local.sh up` without FERRY_CEPH=0"
    );
}

/// One test's world: unique bucket names at both ends, a temp dir with the
/// config and the ledger.
pub struct Fixture {
    pub name: String,
    pub suffix: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
    pub source: Client,
    pub destination: Client,
}

impl Fixture {
    /// `transfer` is the body of the config's [transfer] table.
    pub async fn new(name: &str, transfer: &str) -> Fixture {
        Self::with_destination(name, transfer, "", None).await
    }

    /// As `new`, with `top` added at the top level of the config and the
    /// destination endpoint replaced (by a proxy's, say).
    pub async fn with_destination(
        name: &str,
        transfer: &str,
        top: &str,
        destination: Option<String>,
    ) -> Fixture {
        Self::with_stores(
            name,
            transfer,
            top,
            ("FERRY_SOURCE", "FERRY_DEST"),
            destination,
        )
        .await
    }

    /// Ceph RGW as the destination, whichever destination the suite runs
    /// against: for what only Ceph does (SSE-C, tagging).
    pub async fn with_ceph_destination(name: &str, transfer: &str, top: &str) -> Fixture {
        require_ceph();
        Self::with_stores(name, transfer, top, ("FERRY_SOURCE", "FERRY_CEPH"), None).await
    }

    /// Ceph RGW on both sides (other buckets): for what only Ceph does on
    /// both ends (tagging).
    pub async fn with_ceph_both(name: &str, transfer: &str) -> Fixture {
        Self::with_ceph_and(name, transfer, "FERRY_CEPH").await
    }

    /// Ceph RGW as the source and the Garage that is the other tests'
    /// source as the destination: a destination without tagging.
    pub async fn with_ceph_to_garage(name: &str, transfer: &str) -> Fixture {
        Self::with_ceph_and(name, transfer, "FERRY_SOURCE").await
    }

    /// Ceph RGW as the source: a store that ignores `?partNumber=` and so
    /// cannot tell its multipart objects' part boundaries.
    pub async fn with_ceph_source(name: &str, transfer: &str) -> Fixture {
        Self::with_ceph_and(name, transfer, "FERRY_DEST").await
    }

    async fn with_ceph_and(name: &str, transfer: &str, dest: &str) -> Fixture {
        require_ceph();
        Self::with_stores(name, transfer, "", ("FERRY_CEPH", dest), None).await
    }

    /// Ceph RGW as the destination with SSE-C under a fresh random key,
    /// named in the config as `sse_c_key_env`.
    pub async fn with_sse_c_destination(name: &str, transfer: &str) -> (Fixture, SseC) {
        use base64::Engine as _;
        use md5::Digest as _;
        let fx = Self::with_ceph_destination(name, transfer, "").await;
        let raw: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
        let key = SseC {
            var: "FERRY_TEST_SSE_C_KEY".into(),
            base64: base64::engine::general_purpose::STANDARD.encode(&raw),
            md5_base64: base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&raw)),
            raw,
        };
        let text = std::fs::read_to_string(&fx.config_path).unwrap();
        let line = format!("[destination]\nsse_c_key_env = \"{}\"\n", key.var);
        std::fs::write(&fx.config_path, text.replacen("[destination]\n", &line, 1)).unwrap();
        (fx, key)
    }

    /// `source` and `dest` are the prefixes of the env vars that hold each
    /// store's endpoint and keys (`{source}_ENDPOINT`, `{source}_ACCESS_KEY_ID`, ...);
    /// `destination` replaces the destination's endpoint (by a proxy's, say).
    async fn with_stores(
        name: &str,
        transfer: &str,
        top: &str,
        (source, dest): (&str, &str),
        destination: Option<String>,
    ) -> Fixture {
        let servers = servers();
        let suffix = format!("-{name}-{:06x}", fastrand::u32(..0xffffff));
        let buckets = ferry_tools::demo::bucket_names(&suffix)
            .iter()
            .map(|b| format!("[[buckets]]\nsource = \"{b}\"\ndestination = \"hub-{b}\"\n"))
            .collect::<String>();
        let text = format!(
            r#"
ledger = "state/ferry.sqlite"
{top}
[source]
region = "eu-central-1"
endpoint = "{src}"
access_key_id_env = "{source}_ACCESS_KEY_ID"
secret_access_key_env = "{source}_SECRET_ACCESS_KEY"
path_style = true
[destination]
endpoint = "{dst}"
region = "{dst_region}"
access_key_id_env = "{dest}_ACCESS_KEY_ID"
secret_access_key_env = "{dest}_SECRET_ACCESS_KEY"
path_style = true
[transfer]
{transfer}
{buckets}"#,
            src = servers.get(&format!("{source}_ENDPOINT")),
            dst =
                destination.unwrap_or_else(|| servers.get(&format!("{dest}_ENDPOINT")).to_owned()),
            // The source Garage signs for its own region, whichever side it plays.
            dst_region = if dest == "FERRY_SOURCE" {
                "eu-central-1"
            } else {
                "fsn1"
            },
        );
        Self::with_config_text(name, &suffix, &text).await
    }

    pub async fn with_config_text(name: &str, suffix: &str, text: &str) -> Fixture {
        let servers = servers();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("ferry.toml");
        std::fs::write(&config_path, text).unwrap();
        let lookup = |k: &str| {
            servers
                .env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let mut config = Config::parse(&config_path, text, &lookup).expect("test config is valid");
        config.ledger = dir.path().join(&config.ledger);
        let source = store::client(Side::Source, &config.source, &config.transfer).await;
        let destination =
            store::client(Side::Destination, &config.destination, &config.transfer).await;
        Fixture {
            name: name.into(),
            suffix: suffix.into(),
            dir,
            config_path,
            config,
            source,
            destination,
        }
    }

    pub fn pairs(&self) -> Vec<(String, String)> {
        self.config
            .buckets
            .iter()
            .map(|b| (b.source.clone(), b.destination.clone()))
            .collect()
    }

    /// Points ferry's config at `url` (a proxy's) for the source, from now on.
    pub fn source_through(&self, url: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let text = text.replacen(servers().get("FERRY_SOURCE_ENDPOINT"), url, 1);
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Creates the buckets at both ends and puts `set` at the source.
    pub async fn fill(&self, set: &[ferry_tools::demo::DemoObject]) {
        ferry_tools::demo::fill(&self.source, &self.destination, &self.pairs(), set, 8)
            .await
            .expect("fill the source");
    }

    /// Deletes `o` at the source, as the platform's own services would.
    pub async fn delete_at_source(&self, o: &ferry_tools::demo::DemoObject) {
        self.source
            .delete_object()
            .bucket(&o.bucket)
            .key(&o.key)
            .send()
            .await
            .expect("delete at the source");
    }

    /// Runs the real binary in the fixture's folder, with the servers' keys in its env.
    pub fn ferry(&self, args: &[&str]) -> Run {
        ferry_in(self.dir.path(), &self.config_path, args, &servers().env)
    }

    /// Starts the real binary without waiting for it.
    pub fn spawn_ferry(&self, args: &[&str]) -> tokio::process::Child {
        self.spawn_ferry_in_env(args, &servers().env)
    }

    /// As `spawn_ferry`, with `env` (say, `SseC::env`) instead of the servers' env.
    pub fn spawn_ferry_in_env(
        &self,
        args: &[&str],
        env: &[(String, String)],
    ) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FERRY_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start ferry")
    }

    /// A column of the `total` row of `status --format csv`.
    pub fn status_total(&self, name: &str) -> u64 {
        let status = self.ferry(&["status", "--format", "csv"]);
        assert_eq!(status.code, 0, "{status:?}");
        let (header, rows) = csv_table(&status.stdout, "status");
        let column = header.iter().position(|h| h == name).unwrap();
        let total = rows.iter().find(|r| &r[0] == "total").expect("a total row");
        total[column].parse().unwrap()
    }

    /// A number from the ledger, or 0 while there is no ledger yet.
    pub fn count(&self, sql: &str) -> i64 {
        if !self.config.ledger.exists() {
            return 0;
        }
        self.ledger().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    }

    pub fn ledger(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.config.ledger).expect("open ledger")
    }
}

/// An SSE-C key of a test: raw, in base64 (the env var's value), and the
/// base64 of its MD5 (a header of every request that carries it).
pub struct SseC {
    pub var: String,
    pub raw: Vec<u8>,
    pub base64: String,
    pub md5_base64: String,
}

impl SseC {
    /// The servers' env with the key in it, for `ferry_in`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = servers().env.clone();
        env.push((self.var.clone(), self.base64.clone()));
        env
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn ferry_in(dir: &Path, config: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("FERRY_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run ferry");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every key in a bucket, with size and bare ETag.
pub async fn list_all(client: &Client, bucket: &str) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for o in page.expect("list").contents() {
            out.push((
                o.key().unwrap().to_owned(),
                o.size().unwrap() as u64,
                o.e_tag().unwrap().trim_matches('"').to_owned(),
            ));
        }
    }
    out.sort();
    out
}

/// Every object of `set` is at the destination with its exact bytes, verified
/// in the ledger with the right SHA-256, and no upload is left open.
pub async fn assert_all_copied_byte_equal(fx: &Fixture, set: &[ferry_tools::demo::DemoObject]) {
    let pairs: std::collections::HashMap<String, String> = fx.pairs().into_iter().collect();
    for o in set {
        let got = ferry_tools::demo::observe(
            &fx.destination,
            Side::Destination,
            &pairs[&o.bucket],
            &o.key,
        )
        .await
        .unwrap_or_else(|e| panic!("{} missing: {e}", o.key));
        assert_eq!(
            got.sha256,
            o.expected_digests().sha256_hex(),
            "{} differs",
            o.key
        );
    }
    let db = fx.ledger();
    let (objects, copied): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'verified') FROM objects",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((objects, copied), (set.len() as i64, set.len() as i64));
    let wrong_hashes: i64 = db
        .query_row("SELECT COUNT(*) FROM copies c JOIN objects o ON o.id = c.object_id WHERE c.size != o.size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(wrong_hashes, 0);
    for o in set {
        let sha: String = db
            .query_row("SELECT c.sha256 FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.key = ?1", [&o.key], |r| r.get(0))
            .unwrap();
        assert_eq!(
            sha,
            o.expected_digests().sha256_hex(),
            "ledger SHA-256 of {}",
            o.key
        );
    }
    for (_, dst) in fx.pairs() {
        let open = ferry::cleanup::incomplete_uploads(&fx.destination, &dst)
            .await
            .unwrap();
        assert!(open.is_empty(), "uploads left behind in {dst}: {open:?}");
    }
    let uploads: i64 = db
        .query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(uploads, 0);
}

/// The `# title` block of a `--format csv` output: its header and its rows.
pub fn csv_table(text: &str, title: &str) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let block = text
        .split("\n\n")
        .find(|b| b.starts_with(&format!("# {title}\n")))
        .unwrap_or_else(|| panic!("no {title} block in\n{text}"));
    let body = block.split_once('\n').unwrap().1;
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().unwrap().clone();
    (header, reader.records().map(Result::unwrap).collect())
}

/// The rows of a `# title` block of a `--format csv` output.
pub fn csv_block(text: &str, title: &str) -> Vec<csv::StringRecord> {
    csv_table(text, title).1
}

/// The text of ferry's `/metrics` at `addr`, status line and headers included.
pub async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: ferry\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

/// Sends SIGTERM to a running ferry, as systemd or Ctrl-C would.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("ferry is running").to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.expect("run kill").success(), "SIGTERM to {pid}");
}

/// A config whose source is moto at `moto` (itself or a proxy in front of
/// it), as AWS for what only AWS does, and whose destination is the round's
/// destination; `bucket` holds the pair's keys after its names.
pub fn moto_source_config(
    top: &str,
    moto: &str,
    (source, dest): (&str, &str),
    bucket: &str,
) -> String {
    format!(
        r#"
ledger = "state/ferry.sqlite"
{top}
[source]
region = "us-east-1"
endpoint = "{moto}"
access_key_id_env = "FERRY_MOTO_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_MOTO_SECRET_ACCESS_KEY"
path_style = true
[destination]
endpoint = "{dst}"
region = "fsn1"
access_key_id_env = "FERRY_DEST_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_DEST_SECRET_ACCESS_KEY"
path_style = true
[transfer]
concurrency = 4
[[buckets]]
source = "{source}"
destination = "{dest}"
{bucket}
"#,
        dst = servers().get("FERRY_DEST_ENDPOINT"),
    )
}

/// A fixture over [`moto_source_config`], with its two buckets created.
pub async fn moto_fixture(
    name: &str,
    suffix: &str,
    text: &str,
    (source, dest): (&str, &str),
) -> Fixture {
    let fx = Fixture::with_config_text(name, suffix, text).await;
    fx.source
        .create_bucket()
        .bucket(source)
        .send()
        .await
        .expect("bucket at moto");
    fx.destination
        .create_bucket()
        .bucket(dest)
        .send()
        .await
        .expect("bucket at the destination");
    fx
}
