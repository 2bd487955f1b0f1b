//! `ferry cleanup`: abort incomplete multipart uploads that would be billed
//! forever. It must not abort an upload of a key ferry does not copy, unless `--all`.
//!
//! By default only uploads of keys ferry copies are aborted (the ledger names
//! them); `--all` aborts every incomplete upload in the configured
//! destination buckets. It takes the ledger's writer lock, so it never runs
//! beside `ferry run`.

use crate::config::Config;
use crate::ledger::{self, LedgerError, Writer};
use crate::store::{self, Side, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An incomplete upload at the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incomplete {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<String>,
}

#[derive(Debug, Default)]
pub struct CleanupReport {
    pub aborted: Vec<Incomplete>,
    /// Uploads ferry did not start, left alone without `--all`.
    pub left: Vec<Incomplete>,
}

impl CleanupReport {
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for u in &self.aborted {
            out.push_str(&format!(
                "aborted  {}/{}  upload {}\n",
                u.bucket, u.key, u.upload_id
            ));
        }
        for u in &self.left {
            out.push_str(&format!(
                "left     {}/{}  upload {} (not ferry's; --all aborts it)\n",
                u.bucket, u.key, u.upload_id
            ));
        }
        out.push_str(&format!(
            "{} incomplete uploads aborted, {} left\n",
            self.aborted.len(),
            self.left.len()
        ));
        out
    }
}

pub async fn cleanup(config: &Config, all: bool) -> Result<CleanupReport, CleanupError> {
    let writer = Writer::open(&config.ledger)?;
    let client = store::client(Side::Destination, &config.destination, &config.transfer).await;
    let mut buckets: Vec<&str> = config
        .buckets
        .iter()
        .map(|b| b.destination.as_str())
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    let mut report = CleanupReport::default();
    for bucket in buckets {
        for upload in incomplete_uploads(&client, bucket).await? {
            let (b, k) = (upload.bucket.clone(), upload.key.clone());
            let ours = all
                || writer
                    .call(move |c| ledger::knows_destination_key(c, &b, &k))
                    .await?;
            if !ours {
                report.left.push(upload);
                continue;
            }
            client
                .abort_multipart_upload()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(&upload.upload_id)
                .send()
                .await
                .map_err(|e| {
                    StoreError::from_sdk(
                        Side::Destination,
                        format!("AbortMultipartUpload {}/{}", upload.bucket, upload.key),
                        e,
                    )
                })?;
            let id = upload.upload_id.clone();
            writer.call(move |c| ledger::forget_aborted(c, &id)).await?;
            tracing::info!(bucket = %upload.bucket, key = %upload.key, upload_id = %upload.upload_id, "aborted");
            report.aborted.push(upload);
        }
    }
    Ok(report)
}

/// Every incomplete multipart upload in a bucket, page by page.
pub async fn incomplete_uploads(
    client: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Vec<Incomplete>, StoreError> {
    incomplete_uploads_under(client, bucket, "").await
}

/// Every incomplete multipart upload of keys under `prefix`, page by page.
pub async fn incomplete_uploads_under(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<Incomplete>, StoreError> {
    let mut out = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .map_err(|e| {
                StoreError::from_sdk(
                    Side::Destination,
                    format!("ListMultipartUploads {bucket}"),
                    e,
                )
            })?;
        for u in page.uploads() {
            out.push(Incomplete {
                bucket: bucket.to_owned(),
                key: u.key().unwrap_or_default().to_owned(),
                upload_id: u.upload_id().unwrap_or_default().to_owned(),
                initiated: u.initiated().map(|t| t.to_string()),
            });
        }
        if !page.is_truncated().unwrap_or(false) {
            return Ok(out);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && id_marker.is_none() {
            return Ok(out);
        }
    }
}
