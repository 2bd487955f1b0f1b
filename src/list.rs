//! Listing a source bucket into the ledger, page by page, resumable by cursor.
//! It must not hold more than one page in memory, nor write to a store.
//!
//! Each page is committed with the key it ended on, so a listing that is cut
//! off resumes after the last committed page and memory never holds more than
//! one page.

use aws_sdk_s3::types::EncodingType;
use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use crate::config::{BucketPair, Shard};
use crate::filter::Filter;
use crate::hashing::bare_etag;
use crate::ledger::{self, ListedObject, Writer};
use crate::store::{FailureKind, Side, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
}

/// What a listing found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listed {
    pub seen: u64,
    /// Keys this listing found gone from the source for the first time.
    pub newly_missing: usize,
    /// False when a stop signal cut it short.
    pub complete: bool,
}

/// One page of a listing, in key order, before any shard filter.
pub struct Page {
    pub objects: Vec<ListedObject>,
    pub truncated: bool,
}

/// Where listing pages come from: the source store in ferry; a generator in
/// the ledger benchmark, which measures this path at millions of keys.
pub trait PageSource {
    /// What is listed, for the logs.
    fn name(&self) -> &str;

    /// The page of keys after `after` (from the start when `None`).
    fn page(
        &mut self,
        after: Option<&str>,
    ) -> impl std::future::Future<Output = Result<Page, StoreError>> + Send;
}

/// A source bucket under a prefix, 1,000 keys a page. Pages follow the
/// store's continuation tokens; only the first one of a listing (or of one
/// resumed after a stop) starts after a key.
pub struct BucketPages<'a> {
    pub client: &'a Client,
    pub bucket: &'a str,
    pub prefix: &'a str,
    /// The token the last page gave for the next one.
    pub token: Option<String>,
}

impl PageSource for BucketPages<'_> {
    fn name(&self) -> &str {
        self.bucket
    }

    async fn page(&mut self, after: Option<&str>) -> Result<Page, StoreError> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(self.bucket)
            // Keys may hold characters XML cannot carry; ask for them encoded.
            .encoding_type(EncodingType::Url)
            .max_keys(1000);
        if !self.prefix.is_empty() {
            request = request.prefix(self.prefix);
        }
        match (&self.token, after) {
            (Some(token), _) => request = request.continuation_token(token),
            (None, Some(after)) => request = request.start_after(after),
            (None, None) => {}
        }
        let what = format!("ListObjectsV2 {}", self.bucket);
        let page = request
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
        let truncated = page.is_truncated().unwrap_or(false);
        self.token = page.next_continuation_token().map(str::to_owned);
        if truncated && self.token.is_none() {
            // Nothing to ask for the rest with: the listing cannot be finished.
            return Err(StoreError::new(
                Side::Source,
                FailureKind::Other,
                what,
                "the store said the listing goes on (IsTruncated) but gave no NextContinuationToken",
            ));
        }
        // Keys are encoded only when the answer says so.
        let encoded = page.encoding_type() == Some(&EncodingType::Url);
        Ok(Page {
            objects: page
                .contents()
                .iter()
                .map(|o| ListedObject {
                    key: match o.key().unwrap_or_default() {
                        k if encoded => decode_key(k),
                        k => k.to_owned(),
                    },
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: bare_etag(o.e_tag().unwrap_or_default()).to_owned(),
                    last_modified: o.last_modified().map(|t| t.to_string()),
                    storage_class: o.storage_class().map(|s| s.as_str().to_owned()),
                    filtered: None,
                })
                .collect(),
            truncated,
        })
    }
}

/// Lists `bucket` under `prefix` into the ledger. Returns how many keys were
/// seen. Stops after the current page when `stop` is cancelled.
pub async fn list_bucket(
    client: &Client,
    writer: &Writer,
    bucket_id: i64,
    pass_id: i64,
    pair: &BucketPair,
    shard: Option<Shard>,
    stop: &CancellationToken,
) -> Result<Listed, ListError> {
    let pages = BucketPages {
        client,
        bucket: &pair.source,
        prefix: &pair.prefix,
        token: None,
    };
    list_into_ledger(
        pages,
        writer,
        bucket_id,
        pass_id,
        (shard, &pair.filter),
        stop,
    )
    .await
}

/// Records every page of `pages` in the ledger, one transaction per page with
/// the cursor after it, so an interrupted listing resumes after its last
/// committed page and memory never holds more than one page. Keys of other
/// shards are not recorded; keys that `filter` leaves out are, as `filtered`.
pub async fn list_into_ledger(
    mut pages: impl PageSource,
    writer: &Writer,
    bucket_id: i64,
    pass_id: i64,
    (shard, filter): (Option<Shard>, &Filter),
    stop: &CancellationToken,
) -> Result<Listed, ListError> {
    let pass_id = writer
        .call(move |c| ledger::listing_pass(c, bucket_id, pass_id))
        .await?;
    let mut cursor = writer
        .call(move |c| ledger::list_cursor(c, bucket_id))
        .await?;
    if let Some(after) = &cursor {
        tracing::info!(bucket = pages.name(), after = %after, "resuming an interrupted listing");
    }
    let mut seen = 0u64;
    // The previous page's write runs while the next page is fetched.
    let mut writing = None;
    loop {
        if stop.is_cancelled() {
            if let Some(write) = writing.take() {
                write.await?;
            }
            // The cursor stays: the next run resumes after the last page.
            return Ok(Listed {
                seen,
                newly_missing: 0,
                complete: false,
            });
        }
        let page = pages.page(cursor.as_deref()).await;
        if let Some(write) = writing.take() {
            write.await?;
        }
        let page = page?;
        // The cursor moves past every key of the page, ours or another shard's.
        let Some(last) = page.objects.last().map(|o| o.key.clone()) else {
            // An empty page ends the listing only when the store says it is
            // the last: S3 may answer empty pages that are not.
            if page.truncated {
                continue;
            }
            break;
        };
        let objects: Vec<ListedObject> = page
            .objects
            .into_iter()
            .filter(|o| shard.is_none_or(|s| s.owns(&o.key)))
            .map(|o| ListedObject {
                filtered: filter.leaves_out(&o.key, o.size, o.last_modified.as_deref()),
                ..o
            })
            .collect();
        seen += objects.len() as u64;
        let page_cursor = last.clone();
        writing = Some(writer.call(move |c| {
            ledger::record_listing_page(c, bucket_id, pass_id, &objects, &page_cursor)
        }));
        tracing::debug!(bucket = pages.name(), seen, "listing page queued");
        cursor = Some(last);
        if !page.truncated {
            break;
        }
    }
    if let Some(write) = writing.take() {
        write.await?;
    }
    let newly_missing = writer
        .call(move |c| ledger::finish_listing(c, bucket_id, pass_id))
        .await?;
    Ok(Listed {
        seen,
        newly_missing,
        complete: true,
    })
}

/// Decodes a key listed with `EncodingType=url`. AWS writes a space as `+`
/// and a literal `+` as `%2B`, as HTML forms do.
pub fn decode_key(encoded: &str) -> String {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode_key;

    #[test]
    fn keys_listed_url_encoded_decode_to_the_original() {
        assert_eq!(decode_key("a+b%2Bc%25d"), "a b+c%d");
        assert_eq!(decode_key("h%C3%B6rbuch%2F1.mp3"), "hörbuch/1.mp3");
        assert_eq!(decode_key("plain/key.xml"), "plain/key.xml");
    }
}
