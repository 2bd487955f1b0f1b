//! `ferry cleanup`: abort incomplete multipart uploads that would be billed
//! forever. It must not abort an upload ferry did not start, unless `--all`.
//!
//! By default only uploads ferry can prove it started are aborted: those the
//! ledger records, and those a create request whose answer was lost made
//! ([`lost_uploads`]). Another writer's upload of a key ferry copies is left
//! alone. `--all` aborts every incomplete upload in the configured
//! destination buckets. It takes the ledger's writer lock, so it never runs
//! beside `ferry run`.

use std::collections::HashSet;

use crate::config::Config;
use crate::ledger::{self, LedgerError, UploadIntent, Writer};
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
    let intents = writer.call(|c| ledger::upload_intents(c)).await?;
    let mut report = CleanupReport::default();
    for bucket in buckets {
        let listed = incomplete_uploads(&client, bucket).await?;
        let mut lost = HashSet::new();
        let mut settled = Vec::new();
        for intent in intents.iter().filter(|i| i.dest_bucket == bucket) {
            let of_key: Vec<Incomplete> = listed
                .iter()
                .filter(|u| u.key == intent.key)
                .cloned()
                .collect();
            if let Some(made) = lost_uploads(intent, &of_key, None) {
                lost.extend(made.into_iter().map(|u| u.upload_id.clone()));
                settled.push(intent.object_id);
            }
        }
        for upload in listed {
            let id = upload.upload_id.clone();
            let ours = all
                || lost.contains(&id)
                || writer
                    .call(move |c| ledger::is_ferrys_upload(c, &id))
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
            writer
                .call(move |c| ledger::forget_aborted(c, &id, false))
                .await?;
            tracing::info!(bucket = %upload.bucket, key = %upload.key, upload_id = %upload.upload_id, "aborted");
            report.aborted.push(upload);
        }
        for object_id in settled {
            writer
                .call(move |c| ledger::forget_upload_intent(c, object_id))
                .await?;
        }
    }
    Ok(report)
}

/// The uploads of an intent's key that ferry's own create requests made
/// although their answers were lost: those the destination did not list
/// before the first request, other than `started` (the one whose answer
/// came). `listed` holds the key's incomplete uploads now. None when there
/// are more such uploads than requests whose answer was lost: another
/// writer's may be among them, so none of them is provably ferry's.
pub fn lost_uploads<'a>(
    intent: &UploadIntent,
    listed: &'a [Incomplete],
    started: Option<&str>,
) -> Option<Vec<&'a Incomplete>> {
    let unanswered = (intent.attempts as usize).saturating_sub(usize::from(started.is_some()));
    let new: Vec<&Incomplete> = listed
        .iter()
        .filter(|u| u.key == intent.key)
        .filter(|u| Some(u.upload_id.as_str()) != started)
        .filter(|u| !intent.known_before.contains(&u.upload_id))
        .collect();
    // An upload begun outside the requests' window is not one of them; if
    // there is one, another writer is at work on the key: touch none.
    if new.iter().any(|u| !begun_within(u, &intent.window)) {
        return None;
    }
    (new.len() <= unanswered).then_some(new)
}

/// How far the store's clock, and a request's way to it, may put an
/// upload's start from the ledger's times.
const CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the store began `u` between the intent's first moment and its
/// last request (give or take [`CLOCK_MARGIN`]). An upload without a
/// readable start time is not.
fn begun_within(u: &Incomplete, (since, last): &(String, Option<String>)) -> bool {
    let time = |t: &str| humantime::parse_rfc3339_weak(t).ok();
    let (Some(begun), Some(first), Some(last)) = (
        u.initiated.as_deref().and_then(time),
        time(since),
        last.as_deref().and_then(time),
    ) else {
        return false;
    };
    begun + CLOCK_MARGIN >= first && begun <= last + CLOCK_MARGIN
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

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(key: &str, id: &str) -> Incomplete {
        Incomplete {
            bucket: "b".into(),
            key: key.into(),
            upload_id: id.into(),
            initiated: Some("2026-12-06T10:00:05Z".into()),
        }
    }

    #[test]
    fn only_as_many_new_uploads_as_unanswered_creates_are_ferrys() {
        let intent = UploadIntent {
            object_id: 1,
            dest_bucket: "b".into(),
            key: "k".into(),
            known_before: vec!["theirs".into()],
            attempts: 2,
            window: (
                "2026-12-06T10:00:00.000Z".into(),
                Some("2026-12-06T10:00:04.000Z".into()),
            ),
        };
        let listed = [
            upload("k", "theirs"),
            upload("k", "lost"),
            upload("k", "answered"),
            upload("k2", "other-key"),
        ];
        let ids = |l: Option<Vec<&Incomplete>>| {
            l.map(|l| l.iter().map(|u| u.upload_id.clone()).collect::<Vec<_>>())
        };
        // Two requests, one answered: the one new upload left is the lost one.
        assert_eq!(
            ids(lost_uploads(&intent, &listed, Some("answered"))),
            Some(vec!["lost".to_owned()])
        );
        // Two requests, none answered: both new uploads may be ferry's.
        assert_eq!(
            ids(lost_uploads(&intent, &listed, None)),
            Some(vec!["lost".to_owned(), "answered".to_owned()])
        );
        // One request, unanswered, and two new uploads: one is someone
        // else's, and nothing tells which.
        let once = UploadIntent {
            attempts: 1,
            ..intent.clone()
        };
        assert_eq!(ids(lost_uploads(&once, &listed, None)), None);
        // An upload begun well after the last request (ferry killed before
        // it sent it, say) is another writer's: none is touched.
        let late = Incomplete {
            initiated: Some("2026-12-06T10:05:00Z".into()),
            ..upload("k", "late")
        };
        let later = [upload("k", "lost"), late];
        assert_eq!(ids(lost_uploads(&intent, &later, None)), None);
        let unsent = UploadIntent {
            window: (intent.window.0.clone(), None),
            ..intent.clone()
        };
        assert_eq!(ids(lost_uploads(&unsent, &listed, None)), None);
    }
}
