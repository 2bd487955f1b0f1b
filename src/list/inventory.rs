//! Reading an AWS S3 Inventory instead of listing a bucket: the manifest, its
//! gzipped CSV files (each checked against the manifest's MD5 before a row is
//! used), and their rows into the ledger as listing pages. It must not list
//! the source bucket, must not count a key missing (see `finish_inventory`),
//! and must not read a manifest older than what the ledger knows.

use std::io::Seek as _;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use md5::{Digest as _, Md5};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
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
    /// Milliseconds since the epoch, as a string: when AWS took the inventory.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
}

impl Manifest {
    /// When AWS took the inventory, in milliseconds since the epoch.
    fn created_ms(&self) -> Option<i64> {
        self.creation_timestamp.as_deref()?.trim().parse().ok()
    }
}

#[derive(Debug, Deserialize)]
pub struct ManifestFile {
    pub key: String,
    #[serde(rename = "MD5checksum")]
    pub md5_checksum: String,
}

/// The manifest to read: the one named, or the newest under the prefix.
/// Returns its key, its contents and its bytes (for `check_manifest`).
pub async fn manifest(
    client: &Client,
    at: &InventoryLocation,
) -> Result<(String, Manifest, Vec<u8>), StoreError> {
    let key = if at.path.ends_with("manifest.json") {
        at.path.clone()
    } else {
        newest_manifest(client, at).await?
    };
    let what = format!("GetObject {}/{key} (inventory manifest)", at.bucket);
    let bytes = whole_object(client, &at.bucket, &key, &what).await?;
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
    Ok((key, manifest, bytes.to_vec()))
}

/// A small object of the inventory's bucket, read whole (a manifest or
/// its checksum; the data files are streamed to disk instead).
async fn whole_object(
    client: &Client,
    bucket: &str,
    key: &str,
    what: &str,
) -> Result<bytes::Bytes, StoreError> {
    let got = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, what, e))?;
    Ok(got
        .body
        .collect()
        .await
        .map_err(|e| StoreError::new(Side::Source, FailureKind::Unreachable, what, e.to_string()))?
        .into_bytes())
}

/// AWS writes `manifest.checksum`, the MD5 of `manifest.json`, beside it:
/// a manifest is read only when the two agree. One damaged on the way, or
/// read while it was being replaced, would name other files or another
/// time. Returns why not, when they do not agree or there is no checksum.
async fn check_manifest(
    client: &Client,
    bucket: &str,
    key: &str,
    manifest: &[u8],
) -> Result<Option<String>, StoreError> {
    let checksum_key = format!(
        "{}manifest.checksum",
        key.strip_suffix("manifest.json").unwrap_or(key)
    );
    let what = format!("GetObject {bucket}/{checksum_key} (the inventory manifest's MD5)");
    let text = match whole_object(client, bucket, &checksum_key, &what).await {
        Ok(text) => text,
        Err(e) if e.kind == FailureKind::NoSuchKey => {
            return Ok(Some(format!(
                "{checksum_key} is not there (AWS writes it just after the manifest; an inventory written by another tool needs it too: the MD5 of manifest.json, in hex)"
            )));
        }
        Err(e) => return Err(e),
    };
    let said = String::from_utf8_lossy(&text);
    let said = said.split_whitespace().next().unwrap_or_default();
    let is = hex::encode(Md5::digest(manifest));
    if !is.eq_ignore_ascii_case(said) {
        return Ok(Some(format!(
            "{checksum_key} says {said:?}, but the manifest's MD5 is {is}: it is damaged or was replaced while read"
        )));
    }
    Ok(None)
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

/// The inventory's optional fields that ferry needs, as AWS spells them in
/// `OptionalFields` and `fileSchema`: what a listing gives of each object.
/// Without Size and ETag every key would look changed and be copied again;
/// without StorageClass an archived object would fail instead of being
/// skipped; without LastModifiedDate a time filter could not decide.
const NEEDED: [&str; 4] = ["Size", "LastModifiedDate", "ETag", "StorageClass"];

/// Where each column is in the CSV rows, from `fileSchema`.
#[derive(Clone)]
struct Columns {
    key: usize,
    /// Size, LastModifiedDate, ETag, StorageClass: as [`NEEDED`].
    needed: [usize; 4],
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

/// A row ferry cannot record: one of [`NEEDED`] is empty, or Size is not a number.
struct BadRow {
    key: String,
    field: &'static str,
}

impl Columns {
    /// The columns of `schema`, or the fields ferry needs that it lacks.
    fn of(schema: &str) -> Result<Columns, Vec<&'static str>> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let at = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        let missing: Vec<&'static str> = ["Key"]
            .into_iter()
            .chain(NEEDED)
            .filter(|n| at(n).is_none())
            .collect();
        match (at("Key"), NEEDED.map(at)) {
            (Some(key), [Some(size), Some(modified), Some(etag), Some(class)]) => Ok(Columns {
                key,
                needed: [size, modified, etag, class],
                is_latest: at("IsLatest"),
                is_delete_marker: at("IsDeleteMarker"),
            }),
            _ => Err(missing),
        }
    }

    /// The current version of a key under `prefix`; None for a row to pass
    /// over (an older version, a delete marker, another prefix).
    fn object(
        &self,
        row: &csv::StringRecord,
        prefix: &str,
    ) -> Option<Result<ListedObject, BadRow>> {
        let field = |i: Option<usize>| i.and_then(|i| row.get(i)).filter(|v| !v.is_empty());
        if field(self.is_latest).is_some_and(|v| v.eq_ignore_ascii_case("false"))
            || field(self.is_delete_marker).is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return None;
        }
        // Inventory keys are URL-encoded, as listings with EncodingType=url.
        let key = decode_key(field(Some(self.key))?);
        if !key.starts_with(prefix) {
            return None;
        }
        let values = self.needed.map(|i| field(Some(i)));
        let [Some(size), Some(modified), Some(etag), Some(class)] = values else {
            let empty = values.iter().position(Option::is_none).unwrap_or(0);
            return Some(Err(BadRow {
                key,
                field: NEEDED[empty],
            }));
        };
        let Ok(size) = size.parse() else {
            return Some(Err(BadRow { key, field: "Size" }));
        };
        Some(Ok(ListedObject {
            key,
            size,
            etag: etag.trim_matches('"').to_owned(),
            last_modified: Some(modified.to_owned()),
            storage_class: Some(class.to_owned()),
            filtered: None,
        }))
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
    let (manifest_key, manifest, manifest_bytes) = manifest(client, at).await?;
    let used = writer
        .call(move |c| ledger::inventory_manifest(c, bucket_id))
        .await?;
    if used.as_deref() == Some(manifest_key.as_str()) {
        return Ok(None);
    }
    let what = format!("inventory {}/{manifest_key}", at.bucket);
    let refused = |why: String| {
        ListError::from(StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            why,
        ))
    };
    if manifest.source_bucket != pair.source {
        return Err(refused(format!(
            "is an inventory of bucket {}, not of {}: point `inventory` at this bucket's",
            manifest.source_bucket, pair.source
        )));
    }
    // Refused before a row is recorded: an inventory without them would
    // send every key back to be copied again.
    let columns = Columns::of(&manifest.file_schema).map_err(|missing| {
        refused(format!(
            "its fileSchema {:?} lacks {}, which ferry needs to tell a changed object from an unchanged one. \
             Add them to the inventory configuration's OptionalFields ([\"Size\", \"LastModifiedDate\", \"ETag\", \"StorageClass\"]); \
             AWS writes them from the next report on. Until then, remove `inventory` to list the bucket",
            manifest.file_schema,
            missing.join(", ")
        ))
    })?;
    let created_ms = manifest.created_ms().ok_or_else(|| {
        refused(format!(
            "its creationTimestamp {:?} is not milliseconds since 1970: ferry cannot tell whether it is older than what the ledger knows",
            manifest.creation_timestamp
        ))
    })?;
    // A manifest older than the bucket's last complete listing would bring
    // back keys deleted since and versions replaced since: list instead.
    if let Some(known) = writer
        .call(move |c| ledger::listed_after(c, bucket_id, created_ms))
        .await?
    {
        tracing::info!(bucket = %pair.source, manifest = %manifest_key, listed_as_of = %known,
            "the inventory is older than the bucket's last complete listing; listing instead");
        return Ok(None);
    }
    // Checked only for a manifest whose rows are to be read: one that
    // cannot be is not read, and a listing (always right) stands in.
    if let Some(why) = check_manifest(client, &at.bucket, &manifest_key, &manifest_bytes).await? {
        tracing::warn!(bucket = %pair.source, manifest = %manifest_key, reason = %why,
            "the inventory's manifest is not read: it does not agree with its manifest.checksum; listing instead");
        return Ok(None);
    }
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
                splits: 0,
                ranges: 0,
                largest_range: 0,
            }));
        }
        let local = download_checked(client, &at.bucket, file, &writer_dir(writer)).await?;
        // The file is read on a blocking thread, a page at a time.
        let (pages, mut page) = tokio::sync::mpsc::channel(2);
        let reading = {
            let (columns, prefix) = (columns.clone(), pair.prefix.clone());
            tokio::task::spawn_blocking(move || read_pages(local, &columns, &prefix, &pages))
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
        let bad = reading
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
            .map_err(|e| {
                StoreError::new(
                    Side::Source,
                    FailureKind::Other,
                    format!("inventory file {}", file.key),
                    e,
                )
            })?;
        if let Some((count, first)) = bad {
            tracing::warn!(bucket = %pair.source, file = %file.key, rows = count, first_key = %first.key,
                empty = first.field, "inventory rows without a value ferry needs were not recorded; the next listing records those keys");
        }
        let cursor = cursor_of(index + 1);
        writer
            .call(move |c| ledger::record_listing_page(c, bucket_id, pass_id, &[], &cursor))
            .await?;
    }
    // `plan` lists as pass 0, before any pass: it does not use the inventory
    // up, so the first pass reads it too instead of listing the bucket.
    let used = (pass_id != 0).then(|| manifest_key.clone());
    writer
        .call(move |c| {
            ledger::finish_inventory(c, (bucket_id, pass_id), used.as_deref(), created_ms)
        })
        .await?;
    Ok(Some(Listed {
        seen,
        newly_missing: 0,
        complete: true,
        splits: 0,
        ranges: 0,
        largest_range: 0,
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

/// Downloads one inventory file into a file of its own in `dir`: unnamed
/// (owner-only, and gone when closed, even after a kill -9), so two buckets
/// read at once never share one. Then the MD5 of what is read back from it
/// is checked against the manifest's: rows come only from a file that is whole.
async fn download_checked(
    client: &Client,
    bucket: &str,
    file: &ManifestFile,
    dir: &Path,
) -> Result<std::fs::File, StoreError> {
    let what = format!("GetObject {bucket}/{} (inventory file)", file.key);
    let got = client
        .get_object()
        .bucket(bucket)
        .key(&file.key)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    let io = |e: std::io::Error| {
        StoreError::new(
            Side::Source,
            FailureKind::Other,
            &what,
            format!(
                "cannot keep the inventory file in {} while it is read: {e}",
                dir.display()
            ),
        )
    };
    let mut out = tokio::fs::File::from_std(tempfile::tempfile_in(dir).map_err(io)?);
    let mut body = got.body;
    while let Some(chunk) = body.try_next().await.map_err(|e| {
        StoreError::new(Side::Source, FailureKind::Unreachable, &what, e.to_string())
    })? {
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    let mut local = out.into_std().await;
    let (local, got_md5) = tokio::task::spawn_blocking(move || {
        local.rewind()?;
        let mut md5 = Md5::new();
        std::io::copy(&mut local, &mut md5)?;
        local.rewind()?;
        Ok((local, hex::encode(md5.finalize())))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|read| read)
    .map_err(io)?;
    if !got_md5.eq_ignore_ascii_case(&file.md5_checksum) {
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
/// Returns how many rows lacked a value ferry needs, and the first of them.
fn read_pages(
    file: std::fs::File,
    columns: &Columns,
    prefix: &str,
    pages: &tokio::sync::mpsc::Sender<Vec<ListedObject>>,
) -> Result<Option<(u64, BadRow)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(flate2::read::GzDecoder::new(file));
    let mut page = Vec::with_capacity(PAGE);
    let mut bad: Option<(u64, BadRow)> = None;
    for record in reader.records() {
        let record = record.map_err(|e| format!("not a gzipped CSV file: {e}"))?;
        match columns.object(&record, prefix) {
            Some(Ok(object)) => page.push(object),
            Some(Err(row)) => match &mut bad {
                Some((count, _)) => *count += 1,
                None => bad = Some((1, row)),
            },
            None => {}
        }
        if page.len() == PAGE {
            // A closed channel: the listing stopped; nothing more to read.
            if pages.blocking_send(std::mem::take(&mut page)).is_err() {
                return Ok(bad);
            }
        }
    }
    if !page.is_empty() {
        let _ = pages.blocking_send(page);
    }
    Ok(bad)
}
