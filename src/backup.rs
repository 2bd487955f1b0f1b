//! The ledger's snapshots in a bucket at the destination: one after a pass when the newest is older than `every`, the oldest beyond `keep` deleted, and `ferry ledger restore` to bring one back on a new box.
//! It must not touch the live ledger but to read it, nor any key but its own snapshots; restore writes only where there is no ledger.
//!
//! A snapshot is `VACUUM INTO` a file beside the ledger, gzipped, and sent
//! as one object (in parts when large), confirmed by a HEAD of its size. What
//! happened after the newest snapshot is not lost for good: a restored
//! ledger re-lists, and copies made since are adopted (`copy/adopt.rs`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use crate::config::{BackupConfig, Config, CustomerKey, Shard};
use crate::ledger::{self, LedgerError};
use crate::store::{Side, StoreError, WithCustomerKey};

/// Snapshots up to this size go in one PUT; larger ones in parts of it.
const PART: u64 = 256 << 20;
const NAME_START: &str = "ferry-ledger-";
const NAME_END: &str = ".sqlite.gz";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("ledger snapshot: {what} {path}: {source}. Check the disk beside the ledger (space, permissions)")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the destination answered {found} bytes (or another ETag) for the snapshot {key} just sent ({sent} bytes); it was deleted, not counted as a snapshot")]
    Unconfirmed { key: String, sent: u64, found: i64 },
    #[error("no ledger snapshot under s3://{bucket}/{prefix} at the destination: nothing to restore. Check [backup] in the config (bucket, prefix, and the shard: each shard's snapshots are under shard-I-of-N/)")]
    NoSnapshot { bucket: String, prefix: String },
    #[error("a ledger already exists at {path}; restore writes only where there is none (nor its -wal and -shm files), so as never to overwrite one. Move it aside (or point `ledger` at a new path) and run restore again")]
    LedgerExists { path: PathBuf },
    #[error("the snapshot {key} is not a usable ledger: {source}. Restore an older one with --from (ferry ledger snapshots lists them)")]
    Unusable { key: String, source: LedgerError },
}

/// One snapshot at the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub key: String,
    pub size: u64,
    pub taken: SystemTime,
}

/// Where this ferry's snapshots go: the configured prefix, and a shard's own
/// folder in it, so that shards never prune or restore each other's.
pub fn prefix_of(backup: &BackupConfig, shard: Option<Shard>) -> String {
    match shard {
        Some(s) => format!("{}shard-{}-of-{}/", backup.prefix, s.index, s.count),
        None => backup.prefix.clone(),
    }
}

fn name_at(taken: SystemTime) -> String {
    // RFC 3339 to the second, without separators: keys sort by time.
    let stamp = humantime::format_rfc3339_seconds(taken)
        .to_string()
        .replace(['-', ':'], "");
    format!("{NAME_START}{stamp}{NAME_END}")
}

fn taken_of(name: &str) -> Option<SystemTime> {
    let stamp = name.strip_prefix(NAME_START)?.strip_suffix(NAME_END)?;
    // 20261206T155600Z
    if stamp.len() != 16 {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    humantime::parse_rfc3339(&text).ok()
}

/// The snapshots under the prefix, oldest first. Keys not named as ferry
/// names its snapshots are not ferry's, and not listed.
pub async fn list(
    destination: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<Snapshot>, StoreError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = destination
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                StoreError::from_sdk(
                    Side::Destination,
                    format!("ListObjectsV2 {bucket}/{prefix} (ledger snapshots)"),
                    e,
                )
            })?;
        for o in page.contents() {
            let key = o.key().unwrap_or_default();
            if let Some(taken) = taken_of(&key[prefix.len().min(key.len())..]) {
                found.push(Snapshot {
                    key: key.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    taken,
                });
            }
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// After a pass: a snapshot when the newest is older than `every` (or
/// `force`), then the oldest beyond `keep` deleted. The key written, if any.
pub async fn snapshot_if_due(
    config: &Config,
    destination: &Client,
    force: bool,
) -> Result<Option<String>, BackupError> {
    let Some(backup) = &config.backup else {
        return Ok(None);
    };
    let prefix = prefix_of(backup, config.shard);
    let existing = list(destination, &backup.bucket, &prefix).await?;
    let now = SystemTime::now();
    // One named later than now (a clock ahead, elsewhere) says nothing of a
    // recent snapshot: taken as fresh, it would stop them all.
    let fresh = existing
        .iter()
        .rev()
        .find_map(|s| now.duration_since(s.taken).ok())
        .is_some_and(|age| age < backup.every);
    if fresh && !force {
        return Ok(None);
    }
    let key = format!("{prefix}{}", name_at(now));
    remove_stale_temp_files(&config.ledger);
    abort_cut_off_uploads(destination, &backup.bucket, &prefix).await?;
    let file = compressed_snapshot(&config.ledger).await?;
    let sse_c = config.destination.customer_key.as_ref();
    let (sent, etag) = put_file(
        destination,
        (&backup.bucket, &key),
        file.path(),
        (PART, sse_c),
    )
    .await?;
    // Confirmed by a second request before it counts (and before an older
    // one is deleted to make room for it); one that does not confirm is
    // deleted, so that no restore picks it.
    let head = destination
        .head_object()
        .bucket(&backup.bucket)
        .key(&key)
        .customer_key(sse_c)
        .send()
        .await
        .map_err(|e| {
            StoreError::from_sdk(
                Side::Destination,
                format!("HeadObject {}/{key} (ledger snapshot)", backup.bucket),
                e,
            )
        })?;
    let found = head.content_length().unwrap_or(-1);
    let found_etag = crate::hashing::bare_etag(head.e_tag().unwrap_or_default());
    if found != sent as i64 || (sse_c.is_none() && found_etag != etag) {
        let _ = destination
            .delete_object()
            .bucket(&backup.bucket)
            .key(&key)
            .send()
            .await;
        return Err(BackupError::Unconfirmed { key, sent, found });
    }
    tracing::info!(bucket = %backup.bucket, key = %key, bytes = sent, "ledger snapshot written");
    crate::metrics::ledger_snapshot(sent);
    let mut all = existing;
    all.push(Snapshot {
        key: key.clone(),
        size: sent,
        taken: now,
    });
    let surplus = all.len().saturating_sub(backup.keep);
    for old in &all[..surplus] {
        destination
            .delete_object()
            .bucket(&backup.bucket)
            .key(&old.key)
            .send()
            .await
            .map_err(|e| {
                StoreError::from_sdk(
                    Side::Destination,
                    format!(
                        "DeleteObject {}/{} (an old ledger snapshot)",
                        backup.bucket, old.key
                    ),
                    e,
                )
            })?;
        tracing::info!(key = %old.key, "old ledger snapshot deleted");
    }
    Ok(Some(key))
}

/// The ledger, snapshotted and gzipped into a temporary file beside it (same
/// disk, owner-only, removed when dropped or after a kill at the next boot's
/// cleanup of the folder's temp files).
async fn compressed_snapshot(ledger_path: &Path) -> Result<tempfile::NamedTempFile, BackupError> {
    let dir = ledger_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let ledger_path = ledger_path.to_owned();
    tokio::task::spawn_blocking(move || {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| BackupError::File { what, path, source }
        };
        let raw_dir = tempfile::Builder::new()
            .prefix(".ferry-snapshot-")
            .tempdir_in(&dir)
            .map_err(io("cannot make a folder for the snapshot in", &dir))?;
        let raw = raw_dir.path().join("ledger.sqlite");
        ledger::write_snapshot(&ledger_path, &raw)?;
        let gz = tempfile::Builder::new()
            .prefix(".ferry-snapshot-")
            .suffix(NAME_END)
            .tempfile_in(&dir)
            .map_err(io("cannot create", &dir))?;
        let mut input = std::fs::File::open(&raw).map_err(io("cannot read", &raw))?;
        let mut encoder = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(gz.as_file()),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut input, &mut encoder).map_err(io("cannot write", gz.path()))?;
        encoder
            .finish()
            .and_then(|mut w| w.flush())
            .map_err(io("cannot write", gz.path()))?;
        gz.as_file()
            .sync_all()
            .map_err(io("cannot write", gz.path()))?;
        Ok(gz)
    })
    .await
    .expect("the snapshot task does not panic")
}

/// Sends a file as `bucket/key`: one PUT up to `part` bytes, else in parts
/// of `part` ([`PART`] for snapshots), each with its Content-MD5, and the
/// store's ETag checked against the MD5s (unless under SSE-C, where the
/// ETag is no MD5). Its size, and the ETag it must have.
pub async fn put_file(
    destination: &Client,
    (bucket, key): (&str, &str),
    path: &Path,
    (part, sse_c): (u64, Option<&CustomerKey>),
) -> Result<(u64, String), BackupError> {
    let size = std::fs::metadata(path)
        .map_err(|source| BackupError::File {
            what: "cannot read",
            path: path.to_owned(),
            source,
        })?
        .len();
    let what = |action: &str| format!("{action} {bucket}/{key} (ledger snapshot)");
    let body = |offset: u64, length: u64| async move {
        let md5 = md5_of(path, offset, length).await?;
        let stream = ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(length))
            .build()
            .await
            .map_err(|e| BackupError::File {
                what: "cannot read",
                path: path.to_owned(),
                source: std::io::Error::other(e),
            })?;
        Ok::<_, BackupError>((stream, md5))
    };
    let unconfirmed = |got: Option<&str>, expected: String| -> Result<(), BackupError> {
        let got = crate::hashing::bare_etag(got.unwrap_or_default());
        // Some stores (Ceph) leave the ETag out of Complete's answer: the
        // HEAD that confirms a snapshot checks it then.
        if sse_c.is_some() || got.is_empty() || got == expected {
            return Ok(());
        }
        Err(StoreError::new(
            Side::Destination,
            crate::store::FailureKind::Corrupt,
            what("PutObject"),
            format!("the destination answered ETag {got:?}, the snapshot's bytes make {expected}"),
        )
        .into())
    };
    if size <= part {
        let (stream, md5) = body(0, size).await?;
        let put = destination
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_md5(base64_of(&md5))
            .customer_key(sse_c)
            .body(stream)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Destination, what("PutObject"), e))?;
        unconfirmed(put.e_tag(), hex::encode(md5))?;
        return Ok((size, hex::encode(md5)));
    }
    let created = destination
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .customer_key(sse_c)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, what("CreateMultipartUpload"), e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let sent = async {
        let (mut parts, mut md5s) = (Vec::new(), Vec::new());
        for (i, offset) in (0..size).step_by(part as usize).enumerate() {
            let number = i as i32 + 1;
            let (stream, md5) = body(offset, part.min(size - offset)).await?;
            let answer = destination
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .content_md5(base64_of(&md5))
                .customer_key(sse_c)
                .body(stream)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk(Side::Destination, what("UploadPart"), e))?;
            md5s.push(md5);
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(answer.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        let done = destination
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .customer_key(sse_c)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                StoreError::from_sdk(Side::Destination, what("CompleteMultipartUpload"), e)
            })?;
        let etag = crate::hashing::multipart_etag(&md5s);
        unconfirmed(done.e_tag(), etag.clone())?;
        Ok(etag)
    }
    .await;
    match sent {
        Ok(etag) => Ok((size, etag)),
        Err(e) => {
            // Its own upload, under its own key: abort it rather than leave parts behind.
            let _ = destination
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// The MD5 of `length` bytes of the file at `offset`.
async fn md5_of(path: &Path, offset: u64, length: u64) -> Result<[u8; 16], BackupError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Seek;
        let mut file = std::fs::File::open(&owned)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let mut hasher = crate::hashing::Hasher::new(true, false);
        let mut left = length;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = file.read(&mut buf[..left.min(1 << 20) as usize])?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(hasher.finish().md5.expect("MD5 asked for"))
    })
    .await
    .expect("the MD5 task does not panic")
    .map_err(|source| BackupError::File {
        what: "cannot read",
        path: path.to_owned(),
        source,
    })
}

fn base64_of(md5: &[u8; 16]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(md5)
}

/// Snapshot and restore files that a kill left beside the ledger (not
/// touched for an hour: a snapshot being written is touched all the time).
fn remove_stale_temp_files(ledger_path: &Path) {
    let dir = ledger_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".ferry-snapshot-") || name.starts_with(".ferry-restore-")) {
            continue;
        }
        let idle = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if idle {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if removed.is_ok() {
                tracing::info!(path = %path.display(), "removed a snapshot file a kill left behind");
            }
        }
    }
}

/// A snapshot's upload cut off by a kill is ferry's own: its key is one of
/// ferry's snapshot names, right under the snapshots' prefix. Such uploads
/// begun before this process first snapshotted are aborted before a new
/// snapshot starts, so none is left behind; a newer one may be another
/// ferry's in flight (`ferry ledger snapshot` beside the daemon).
async fn abort_cut_off_uploads(
    destination: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<(), StoreError> {
    static FIRST_SNAPSHOT: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    let before = *FIRST_SNAPSHOT.get_or_init(SystemTime::now);
    let what = format!("ListMultipartUploads {bucket}/{prefix} (ledger snapshots)");
    let (mut key_marker, mut id_marker) = (None, None);
    loop {
        let listed = destination
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker)
            .set_upload_id_marker(id_marker)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
        for upload in listed.uploads() {
            let (Some(k), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            let name = k.strip_prefix(prefix).unwrap_or(k);
            let begun_before = upload
                .initiated()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .is_some_and(|t| t < before);
            if name.contains('/') || taken_of(name).is_none() || !begun_before {
                continue;
            }
            destination
                .abort_multipart_upload()
                .bucket(bucket)
                .key(k)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| {
                    StoreError::from_sdk(
                        Side::Destination,
                        format!("AbortMultipartUpload {bucket}/{k} (a cut-off ledger snapshot)"),
                        e,
                    )
                })?;
            tracing::info!(key = %k, "aborted a ledger snapshot's upload cut off earlier");
        }
        if listed.is_truncated() != Some(true) {
            return Ok(());
        }
        key_marker = listed.next_key_marker().map(str::to_owned);
        id_marker = listed.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            return Ok(());
        }
    }
}

/// What `ferry ledger restore` brought back.
#[derive(Debug)]
pub struct Restored {
    pub key: String,
    pub taken: SystemTime,
    pub schema_version: i64,
}

/// Brings the newest snapshot (or `from`, a key or a snapshot's name) back
/// to the config's `ledger` path, which must hold no ledger. The snapshot is
/// checked whole before it takes the ledger's place.
pub async fn restore(
    config: &Config,
    destination: &Client,
    from: Option<&str>,
) -> Result<Restored, BackupError> {
    let backup = config
        .backup
        .as_ref()
        .expect("restore needs [backup]; main checks");
    // A -wal or -shm left beside would be replayed onto the restored file.
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", config.ledger.display()));
        if path.exists() {
            return Err(BackupError::LedgerExists { path });
        }
    }
    let prefix = prefix_of(backup, config.shard);
    let all = list(destination, &backup.bucket, &prefix).await?;
    let candidates: Vec<&Snapshot> = match from {
        Some(name) => all
            .iter()
            .filter(|s| s.key == name || s.key.ends_with(&format!("/{name}")))
            .collect(),
        None => all.iter().rev().collect(),
    };
    if candidates.is_empty() {
        return Err(BackupError::NoSnapshot {
            bucket: backup.bucket.clone(),
            prefix: match from {
                Some(name) => format!("{prefix}{name}"),
                None => prefix,
            },
        });
    }
    let mut unusable = None;
    for snapshot in candidates {
        match restore_one(config, destination, snapshot.clone()).await {
            // The newest is not whole: the one before it is.
            Err(e @ BackupError::Unusable { .. }) if from.is_none() => {
                tracing::warn!(error = %e, "trying the snapshot before it");
                unusable = Some(e);
            }
            done => return done,
        }
    }
    Err(unusable.expect("a candidate was tried"))
}

async fn restore_one(
    config: &Config,
    destination: &Client,
    snapshot: Snapshot,
) -> Result<Restored, BackupError> {
    let backup = config.backup.as_ref().expect("restore checked [backup]");
    let ledger_path = &config.ledger;
    let dir = ledger_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    std::fs::create_dir_all(&dir).map_err(|source| BackupError::File {
        what: "cannot create the ledger's folder",
        path: dir.clone(),
        source,
    })?;
    let what = format!(
        "GetObject {}/{} (ledger snapshot)",
        backup.bucket, snapshot.key
    );
    let mut got = destination
        .get_object()
        .bucket(&backup.bucket)
        .key(&snapshot.key)
        .customer_key(config.destination.customer_key.as_ref())
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &what, e))?;
    let gz = tempfile::Builder::new()
        .prefix(".ferry-restore-")
        .tempfile_in(&dir)
        .map_err(|source| BackupError::File {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
    {
        let mut out = std::io::BufWriter::new(gz.as_file());
        while let Some(chunk) = got.body.next().await {
            let chunk = chunk.map_err(|e| StoreError::cut_off(Side::Destination, &what, e))?;
            out.write_all(&chunk).map_err(|source| BackupError::File {
                what: "cannot write",
                path: gz.path().to_owned(),
                source,
            })?;
        }
        out.flush().map_err(|source| BackupError::File {
            what: "cannot write",
            path: gz.path().to_owned(),
            source,
        })?;
    }
    let key = snapshot.key.clone();
    let target = ledger_path.clone();
    let schema_version = tokio::task::spawn_blocking(move || -> Result<i64, BackupError> {
        let file_err = |what, path: &Path| {
            let path = path.to_owned();
            move |source| BackupError::File { what, path, source }
        };
        let unpacked = tempfile::Builder::new()
            .prefix(".ferry-restore-")
            .tempfile_in(&dir)
            .map_err(file_err("cannot create", &dir))?;
        let input = std::fs::File::open(gz.path()).map_err(file_err("cannot read", gz.path()))?;
        let mut decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(input));
        let mut out = std::io::BufWriter::new(unpacked.as_file());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = decoder.read(&mut buf).map_err(|e| BackupError::Unusable {
                key: key.clone(),
                source: LedgerError::Open {
                    path: gz.path().to_owned(),
                    message: format!("it does not unpack as gzip ({e})"),
                },
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(file_err("cannot write", unpacked.path()))?;
        }
        out.flush()
            .map_err(file_err("cannot write", unpacked.path()))?;
        drop(out);
        unpacked
            .as_file()
            .sync_all()
            .map_err(file_err("cannot write", unpacked.path()))?;
        let version =
            ledger::check_snapshot(unpacked.path()).map_err(|source| BackupError::Unusable {
                key: key.clone(),
                source,
            })?;
        ledger::mark_restored(unpacked.path(), &key).map_err(|source| BackupError::Unusable {
            key: key.clone(),
            source,
        })?;
        // Owner-only, as every ledger; then it takes the ledger's place,
        // unless one appeared meanwhile.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(unpacked.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(file_err("cannot set the mode of", unpacked.path()))?;
        unpacked.persist_noclobber(&target).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::LedgerExists {
                    path: target.clone(),
                }
            } else {
                BackupError::File {
                    what: "cannot move the restored ledger to",
                    path: target.clone(),
                    source: e.error,
                }
            }
        })?;
        Ok(version)
    })
    .await
    .expect("the restore task does not panic")?;
    Ok(Restored {
        key: snapshot.key,
        taken: snapshot.taken,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_name_carries_its_time_and_sorts_by_it() {
        let t = humantime::parse_rfc3339("2026-12-06T15:56:00Z").unwrap();
        let name = name_at(t);
        assert_eq!(name, "ferry-ledger-20261206T155600Z.sqlite.gz");
        assert_eq!(taken_of(&name), Some(t));
        let later = name_at(t + Duration::from_secs(61));
        assert!(later > name);
        assert_eq!(taken_of("ferry-ledger-notatime.sqlite.gz"), None);
        assert_eq!(taken_of("someone-elses.sqlite.gz"), None);
    }

    #[test]
    fn each_shard_keeps_its_snapshots_apart() {
        let b = BackupConfig {
            bucket: "ferry-ledger".into(),
            prefix: "ferry-ledger/".into(),
            every: Duration::from_secs(3600),
            keep: 5,
        };
        assert_eq!(prefix_of(&b, None), "ferry-ledger/");
        let shard = Shard::parse("1/4").unwrap();
        assert_eq!(prefix_of(&b, Some(shard)), "ferry-ledger/shard-1-of-4/");
    }
}
