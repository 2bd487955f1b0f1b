//! Reading an AWS S3 Inventory instead of listing a bucket: the manifest, its
//! gzipped CSV files (each checked against the manifest's MD5 before a row is
//! used), and their rows into the ledger as listing pages. It must not list
//! the source bucket, and must not count a key missing (see `finish_inventory`).

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use md5::{Digest as _, Md5};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{decode_key, in_scope, ListError, Listed};
use crate::config::{BucketPair, InventoryLocation, Shard};
use crate::ledger::{self, ListedObject, Writer};
use crate::store::{FailureKind, Side, StoreError};

/// Rows recorded in one ledger transaction, as a listing page.
const PAGE: usize = 1000;

/// The parts of `manifest.json` that ferry reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub source_bucket: String,
    pub file_format: String,
    pub file_schema: String,
    pub files: Vec<ManifestFile>,
    /// Milliseconds since the epoch, as a string.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ManifestFile {
    pub key: String,
    #[serde(rename = "MD5checksum")]
    pub md5_checksum: String,
}

/// The manifest to read: the one named, or the newest under the prefix.
/// Returns its key and its contents.
pub async fn manifest(
    client: &Client,
    at: &InventoryLocation,
) -> Result<(String, Manifest), StoreError> {
    let key = if at.path.ends_with("manifest.json") {
        at.path.clone()
    } else {
        newest_manifest(client, at).await?
    };
    let what = format!("GetObject {}/{key} (inventory manifest)", at.bucket);
    let got = client
        .get_object()
        .bucket(&at.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    let bytes = got
        .body
        .collect()
        .await
        .map_err(|e| StoreError::new(Side::Source, FailureKind::Unreachable, &what, e.to_string()))?
        .into_bytes();
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            format!("not an S3 Inventory manifest: {e}"),
        )
    })?;
    if !manifest.file_format.eq_ignore_ascii_case("CSV") {
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            format!(
                "the inventory's files are {}: ferry reads CSV inventories only. Set the inventory configuration's output format to CSV, or remove `inventory` to list the bucket",
                manifest.file_format
            ),
        ));
    }
    Ok((key, manifest))
}

/// The newest `manifest.json` under the location's prefix, by LastModified.
async fn newest_manifest(client: &Client, at: &InventoryLocation) -> Result<String, StoreError> {
    let what = format!(
        "ListObjectsV2 {}/{} (inventory manifests)",
        at.bucket, at.path
    );
    let mut pages = client
        .list_objects_v2()
        .bucket(&at.bucket)
        .prefix(&at.path)
        .into_paginator()
        .send();
    let mut newest: Option<(aws_sdk_s3::primitives::DateTime, String)> = None;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
        for o in page.contents() {
            let (Some(key), Some(at)) = (o.key(), o.last_modified()) else {
                continue;
            };
            if key.ends_with("/manifest.json")
                && newest.as_ref().is_none_or(|(t, _)| at.secs() > t.secs())
            {
                newest = Some((*at, key.to_owned()));
            }
        }
    }
    newest.map(|(_, k)| k).ok_or_else(|| {
        StoreError::new(
            Side::Source,
            FailureKind::NoSuchKey,
            &what,
            "holds no manifest.json: check the inventory's path, or point at a manifest itself",
        )
    })
}

/// Where each column is in the CSV rows, from `fileSchema`.
#[derive(Clone)]
struct Columns {
    key: usize,
    size: Option<usize>,
    etag: Option<usize>,
    storage_class: Option<usize>,
    last_modified: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

impl Columns {
    fn of(schema: &str) -> Option<Columns> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let at = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        Some(Columns {
            key: at("Key")?,
            size: at("Size"),
            etag: at("ETag"),
            storage_class: at("StorageClass"),
            last_modified: at("LastModifiedDate"),
            is_latest: at("IsLatest"),
            is_delete_marker: at("IsDeleteMarker"),
        })
    }

    /// The current version of a key under `prefix`, or None for a row to skip.
    fn object(&self, row: &csv::StringRecord, prefix: &str) -> Option<ListedObject> {
        let field = |i: Option<usize>| i.and_then(|i| row.get(i)).filter(|v| !v.is_empty());
        if field(self.is_latest).is_some_and(|v| v.eq_ignore_ascii_case("false"))
            || field(self.is_delete_marker).is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return None;
        }
        // Inventory keys are URL-encoded, as listings with EncodingType=url.
        let key = decode_key(row.get(self.key)?);
        if !key.starts_with(prefix) {
            return None;
        }
        Some(ListedObject {
            key,
            size: field(self.size).and_then(|s| s.parse().ok()).unwrap_or(0),
            etag: field(self.etag)
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            last_modified: field(self.last_modified).map(str::to_owned),
            storage_class: field(self.storage_class).map(str::to_owned),
            filtered: None,
        })
    }
}

/// Reads the inventory at `at` into the ledger as this pass's listing of
/// the pair's bucket, when its newest manifest is one the bucket was not
/// listed from yet. None when there is no newer manifest: list the bucket.
pub async fn list_from_inventory(
    client: &Client,
    writer: &Writer,
    (bucket_id, pass_id): (i64, i64),
    (pair, at): (&BucketPair, &InventoryLocation),
    shard: Option<Shard>,
    stop: &CancellationToken,
) -> Result<Option<Listed>, ListError> {
    let (manifest_key, manifest) = manifest(client, at).await?;
    let used = writer
        .call(move |c| ledger::inventory_manifest(c, bucket_id))
        .await?;
    if used.as_deref() == Some(manifest_key.as_str()) {
        return Ok(None);
    }
    let what = format!("inventory {}/{manifest_key}", at.bucket);
    if manifest.source_bucket != pair.source {
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            format!(
                "is an inventory of bucket {}, not of {}: point `inventory` at this bucket's",
                manifest.source_bucket, pair.source
            ),
        )
        .into());
    }
    let columns = Columns::of(&manifest.file_schema).ok_or_else(|| {
        StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            format!(
                "its fileSchema {:?} has no Key column",
                manifest.file_schema
            ),
        )
    })?;
    tracing::info!(bucket = %pair.source, manifest = %manifest_key, files = manifest.files.len(),
        "reading the S3 Inventory instead of listing");
    let pass_id = writer
        .call(move |c| ledger::listing_pass(c, bucket_id, pass_id))
        .await?;
    // The cursor names the manifest and the file being read: a read that
    // was cut off takes this manifest up again at that file. The files
    // before it are in the ledger, and an inventory never counts a key missing.
    let cursor_prefix = format!("inventory:{manifest_key}#");
    let cursor_of = |file: usize| format!("{cursor_prefix}{file}");
    let first_file = writer
        .call(move |c| ledger::list_cursor(c, bucket_id))
        .await?
        .and_then(|c| c.strip_prefix(&cursor_prefix)?.parse::<usize>().ok())
        .unwrap_or(0);
    if first_file > 0 {
        tracing::info!(bucket = %pair.source, manifest = %manifest_key, file = first_file + 1,
            files = manifest.files.len(), "resuming the inventory read at the file it stopped in");
    }
    let mut seen = 0u64;
    for (index, file) in manifest.files.iter().enumerate().skip(first_file) {
        if stop.is_cancelled() {
            return Ok(Some(Listed {
                seen,
                newly_missing: 0,
                complete: false,
            }));
        }
        let local = download_checked(client, &at.bucket, file, &writer_dir(writer)).await?;
        // The file is read on a blocking thread, a page at a time.
        let (pages, mut page) = tokio::sync::mpsc::channel(2);
        let reading = {
            let (local, columns, prefix) = (local.clone(), columns.clone(), pair.prefix.clone());
            tokio::task::spawn_blocking(move || read_pages(&local, &columns, &prefix, &pages))
        };
        while let Some(rows) = page.recv().await {
            let objects = in_scope(rows, (shard, &pair.filter));
            seen += objects.len() as u64;
            let cursor = cursor_of(index);
            writer
                .call(move |c| {
                    ledger::record_listing_page(c, bucket_id, pass_id, &objects, &cursor)
                })
                .await?;
        }
        let read = reading.await.unwrap_or_else(|e| Err(e.to_string()));
        let _ = std::fs::remove_file(&local);
        read.map_err(|e| {
            StoreError::new(
                Side::Source,
                FailureKind::Other,
                format!("inventory file {}", file.key),
                e,
            )
        })?;
        let cursor = cursor_of(index + 1);
        writer
            .call(move |c| ledger::record_listing_page(c, bucket_id, pass_id, &[], &cursor))
            .await?;
    }
    // `plan` lists as pass 0, before any pass: it does not use the inventory
    // up, so the first pass reads it too instead of listing the bucket.
    let used = (pass_id != 0).then(|| manifest_key.clone());
    writer
        .call(move |c| ledger::finish_inventory(c, bucket_id, pass_id, used.as_deref()))
        .await?;
    Ok(Some(Listed {
        seen,
        newly_missing: 0,
        complete: true,
    }))
}

/// Where inventory files are kept while they are read: beside the ledger.
fn writer_dir(writer: &Writer) -> PathBuf {
    writer
        .path()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Downloads one inventory file to disk, checking its MD5 against the
/// manifest's on the way: a row is read only from a file that is whole.
async fn download_checked(
    client: &Client,
    bucket: &str,
    file: &ManifestFile,
    dir: &Path,
) -> Result<PathBuf, StoreError> {
    let what = format!("GetObject {bucket}/{} (inventory file)", file.key);
    let got = client
        .get_object()
        .bucket(bucket)
        .key(&file.key)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    let local = dir.join(format!(".inventory-{}.csv.gz", std::process::id()));
    let io = |e: std::io::Error| {
        StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            format!("cannot write {}: {e}", local.display()),
        )
    };
    let mut out = tokio::fs::File::create(&local).await.map_err(io)?;
    let mut md5 = Md5::new();
    let mut body = got.body;
    while let Some(chunk) = body.try_next().await.map_err(|e| {
        StoreError::new(Side::Source, FailureKind::Unreachable, &what, e.to_string())
    })? {
        md5.update(&chunk);
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    let got_md5 = hex::encode(md5.finalize());
    if !got_md5.eq_ignore_ascii_case(&file.md5_checksum) {
        let _ = std::fs::remove_file(&local);
        return Err(StoreError::new(
            Side::Source,
            FailureKind::Corrupt,
            &what,
            format!(
                "its MD5 is {got_md5}, the manifest says {}: the file is damaged or was replaced; nothing of it was used",
                file.md5_checksum
            ),
        ));
    }
    Ok(local)
}

/// Sends the rows of a gzipped CSV inventory file, as objects under
/// `prefix`, a page at a time: memory holds one page, whatever the file.
fn read_pages(
    path: &Path,
    columns: &Columns,
    prefix: &str,
    pages: &tokio::sync::mpsc::Sender<Vec<ListedObject>>,
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(flate2::read::GzDecoder::new(file));
    let mut page = Vec::with_capacity(PAGE);
    for record in reader.records() {
        let record = record.map_err(|e| format!("not a gzipped CSV file: {e}"))?;
        page.extend(columns.object(&record, prefix));
        if page.len() == PAGE {
            // A closed channel: the listing stopped; nothing more to read.
            if pages.blocking_send(std::mem::take(&mut page)).is_err() {
                return Ok(());
            }
        }
    }
    if !page.is_empty() {
        let _ = pages.blocking_send(page);
    }
    Ok(())
}
