//! `ferry plan --count-tags`: asks the source for the tags of each listed
//! object never asked (GetObjectTagging, one request each) and records the count.
//!
//! A listing does not say which objects carry tags, and a HEAD's
//! `x-amz-tagging-count` is left out by AWS when the credentials may not read
//! tags, so only GetObjectTagging is taken as the answer. Counts go into the
//! ledger a batch at a time: a cut-off count resumes, and a second plan asks
//! only objects listed since.

use aws_sdk_s3::Client;
use futures::stream::{self, StreamExt};

use super::ListError;
use crate::config::BucketPair;
use crate::copy::tags::tags_at;
use crate::ledger::{self, Writer};
use crate::store::{FailureKind, Side, StoreError};

/// Objects asked per ledger batch, and requests in flight.
const BATCH: usize = 1_000;
const IN_FLIGHT: usize = 32;

/// What one count asked.
#[derive(Clone, Debug, Default)]
pub struct TagCounting {
    /// GetObjectTagging requests answered.
    pub asked: u64,
    /// Objects gone from the source since the listing (NoSuchKey): not counted.
    pub gone: u64,
    /// Source buckets whose store has no object tagging (NotImplemented):
    /// their objects are recorded with none.
    pub without_tagging: Vec<String>,
}

/// Asks and records the tags of every object of `pairs` that has no count yet.
pub async fn count_tags(
    writer: &Writer,
    source: &Client,
    pairs: &[BucketPair],
) -> Result<TagCounting, ListError> {
    let mut counting = TagCounting::default();
    for pair in pairs {
        let key = (
            pair.source.clone(),
            pair.destination.clone(),
            pair.prefix.clone(),
        );
        let mut after = 0i64;
        loop {
            let batch_key = key.clone();
            let batch = writer
                .call(move |c| {
                    ledger::tags_unasked(
                        c,
                        (&batch_key.0, &batch_key.1, &batch_key.2),
                        after,
                        BATCH,
                    )
                })
                .await?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            after = last;
            let answers: Vec<(i64, String, _)> = stream::iter(batch)
                .map(|(id, object_key)| async move {
                    let answer = tags_at(source, &pair.source, &object_key).await;
                    (id, object_key, answer)
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            let mut counts = Vec::with_capacity(answers.len());
            let mut unsupported = false;
            for (id, object_key, answer) in answers {
                match answer {
                    Ok(Some(tags)) => {
                        counting.asked += 1;
                        counts.push((id, tags.len() as u32));
                    }
                    Ok(None) => unsupported = true,
                    Err(e) => {
                        let what = format!("GetObjectTagging {}/{}", pair.source, object_key);
                        let mut e = StoreError::from_sdk(Side::Source, what, e);
                        match e.kind {
                            FailureKind::NoSuchKey => counting.gone += 1,
                            FailureKind::AccessDenied => {
                                e.message = format!(
                                    "{}: counting tags needs s3:GetObjectTagging on the source bucket, as copying them does",
                                    e.message
                                );
                                return Err(e.into());
                            }
                            _ => return Err(e.into()),
                        }
                    }
                }
            }
            writer
                .call(move |c| ledger::record_tag_counts(c, &counts))
                .await?;
            if unsupported {
                // The store has no tagging: none of its objects can carry tags.
                let all_key = key.clone();
                writer
                    .call(move |c| ledger::record_no_tags(c, (&all_key.0, &all_key.1, &all_key.2)))
                    .await?;
                counting.without_tagging.push(pair.source.clone());
                break;
            }
        }
    }
    Ok(counting)
}
