//! Listing a source bucket into the ledger, page by page, resumable by cursor.
//! It must not hold more than one page per range in memory, nor write to a store.
//!
//! Each page is committed with the key it ended on, so a listing that is cut
//! off resumes after the last committed page. A big bucket's key space can be
//! split into ranges listed side by side, each with its own cursor; or its
//! keys can come from an S3 Inventory instead (`inventory.rs`).

pub mod inventory;
pub mod tag_count;

use aws_sdk_s3::types::EncodingType;
use aws_sdk_s3::Client;
use futures::stream::{self, StreamExt};
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

/// A bucket under a prefix, 1,000 keys a page. Pages follow the store's
/// continuation tokens; only the first one of a listing (or of one resumed
/// after a stop) starts after a key.
pub struct BucketPages<'a> {
    pub client: &'a Client,
    /// Which store the bucket is in, for errors: `report` lists both.
    pub side: Side,
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
            .map_err(|e| StoreError::from_sdk(self.side, &what, e))?;
        let truncated = page.is_truncated().unwrap_or(false);
        self.token = page.next_continuation_token().map(str::to_owned);
        if truncated && self.token.is_none() {
            // Nothing to ask for the rest with: the listing cannot be finished.
            return Err(StoreError::new(
                self.side,
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
/// seen. Stops after the current page when `stop` is cancelled. With
/// `ranges` above 1, a fresh listing is split into that many key ranges,
/// listed side by side. A pair with an `inventory` is read from its newest
/// manifest instead, once per manifest; passes in between list the bucket.
pub async fn list_bucket(
    client: &Client,
    writer: &Writer,
    (bucket_id, pass_id): (i64, i64),
    pair: &BucketPair,
    (shard, ranges): (Option<Shard>, usize),
    stop: &CancellationToken,
) -> Result<Listed, ListError> {
    if let Some(at) = &pair.inventory {
        let read = inventory::list_from_inventory(
            client,
            writer,
            (bucket_id, pass_id),
            (pair, at),
            shard,
            stop,
        )
        .await?;
        if let Some(listed) = read {
            return Ok(listed);
        }
        // No newer inventory: list, to catch what was written since.
    }
    let under_way = writer
        .call(move |c| ledger::listing_under_way(c, bucket_id))
        .await?;
    let pages = || BucketPages {
        client,
        side: Side::Source,
        bucket: &pair.source,
        prefix: &pair.prefix,
        token: None,
    };
    let bounds = if ranges > 1 && !under_way && more_than_a_page(writer, bucket_id, pages()).await?
    {
        split_points(client, &pair.source, &pair.prefix, ranges).await?
    } else {
        Vec::new()
    };
    let scope = (shard, &pair.filter);
    list_into_ledger(pages, writer, (bucket_id, pass_id), scope, bounds, stop).await
}

/// Whether a bucket holds more than one page of keys, and so is worth
/// listing in ranges: as the ledger knows it, or, when the ledger knows none
/// of its keys, as its first page says (one request). A small bucket is
/// listed in one range and costs no delimiter listings.
async fn more_than_a_page(
    writer: &Writer,
    bucket_id: i64,
    mut first: impl PageSource,
) -> Result<bool, ListError> {
    const PAGE: u64 = 1000;
    let known = writer
        .call(move |c| ledger::keys_known(c, bucket_id, PAGE + 1))
        .await?;
    if known > 0 {
        return Ok(known > PAGE);
    }
    Ok(first.page(None).await?.truncated)
}

/// Records every page of a listing in the ledger, one transaction per page
/// with the cursor after it, so an interrupted listing resumes after its
/// last committed page and memory holds one page per range. Keys of other
/// shards are not recorded; keys that `filter` leaves out are, as
/// `filtered`. `bounds` splits a fresh listing into ranges (the last key of
/// each but the last range); `pages` makes one page source per range.
pub async fn list_into_ledger<P: PageSource>(
    pages: impl Fn() -> P,
    writer: &Writer,
    (bucket_id, pass_id): (i64, i64),
    scope: (Option<Shard>, &Filter),
    bounds: Vec<String>,
    stop: &CancellationToken,
) -> Result<Listed, ListError> {
    let pass_id = writer
        .call(move |c| ledger::listing_pass(c, bucket_id, pass_id))
        .await?;
    let ranges = writer
        .call(move |c| ledger::list_ranges(c, bucket_id, &bounds))
        .await?;
    let name = pages().name().to_owned();
    if ranges.iter().any(|r| r.cursor.is_some()) {
        tracing::info!(bucket = %name, ranges = ranges.len(), "resuming an interrupted listing");
    }
    let at_once = ranges.len().max(1);
    let mut listings = stream::iter(ranges.into_iter().filter(|r| !r.done))
        .map(|range| list_range(pages(), writer, (bucket_id, pass_id), range, scope, stop))
        .buffer_unordered(at_once);
    let (mut seen, mut complete) = (0, true);
    while let Some(range) = listings.next().await {
        let (range_seen, range_complete) = range?;
        seen += range_seen;
        complete &= range_complete;
    }
    if !complete {
        // The cursors stay: the next run resumes every range.
        return Ok(Listed {
            seen,
            newly_missing: 0,
            complete: false,
        });
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

/// The keys of this ferry's shard, each marked with the filter rule that
/// leaves it out, if one does: what a listing page records.
pub(crate) fn in_scope(
    objects: Vec<ListedObject>,
    (shard, filter): (Option<Shard>, &Filter),
) -> Vec<ListedObject> {
    objects
        .into_iter()
        .filter(|o| shard.is_none_or(|s| s.owns(&o.key)))
        .map(|o| ListedObject {
            filtered: filter.leaves_out(&o.key, o.size, o.last_modified.as_deref()),
            ..o
        })
        .collect()
}

/// Lists one key range to its end (or to a stop): (keys seen, whether the
/// range is done).
async fn list_range(
    mut pages: impl PageSource,
    writer: &Writer,
    (bucket_id, pass_id): (i64, i64),
    range: ledger::ListRange,
    (shard, filter): (Option<Shard>, &Filter),
    stop: &CancellationToken,
) -> Result<(u64, bool), ListError> {
    let mut after = range.resume_after().map(str::to_owned);
    let mut seen = 0u64;
    // The previous page's write runs while the next page is fetched.
    let mut writing = None;
    let done = loop {
        if stop.is_cancelled() {
            break false;
        }
        let page = pages.page(after.as_deref()).await;
        if let Some(write) = writing.take() {
            write.await?;
        }
        let page = page?;
        let Some(last) = page.objects.last().map(|o| o.key.clone()) else {
            // An empty page ends the listing only when the store says it is
            // the last: S3 may answer empty pages that are not.
            if page.truncated {
                continue;
            }
            break true;
        };
        let past_end = range.last.as_deref().is_some_and(|end| last.as_str() > end);
        // Keys past the range's end belong to the next range, which lists
        // them itself; the cursor moves past every key of ours, any shard's.
        let ours: Vec<ListedObject> = page
            .objects
            .into_iter()
            .filter(|o| range.holds(&o.key))
            .collect();
        if let Some(cursor) = ours.last().map(|o| o.key.clone()) {
            let objects = in_scope(ours, (shard, filter));
            seen += objects.len() as u64;
            let first_after = range.first_after.clone();
            writing = Some(writer.call(move |c| {
                ledger::record_range_page(c, (bucket_id, &first_after), pass_id, &objects, &cursor)
            }));
            tracing::debug!(bucket = pages.name(), seen, "listing page queued");
        }
        after = Some(last);
        if !page.truncated || past_end {
            break true;
        }
    };
    if let Some(write) = writing.take() {
        write.await?;
    }
    if done {
        let first_after = range.first_after.clone();
        writer
            .call(move |c| ledger::finish_range(c, bucket_id, &first_after))
            .await?;
    }
    Ok((seen, done))
}

/// Where to split a bucket's listing into `n` ranges: boundaries taken from
/// its "folders" (delimiter listings of the first two levels under
/// `prefix`, or under the one folder that holds every key), spread evenly
/// over them; for a flat bucket, first characters.
/// Each boundary is the last key of a range, inclusive.
pub async fn split_points(
    client: &Client,
    bucket: &str,
    prefix: &str,
    n: usize,
) -> Result<Vec<String>, StoreError> {
    let folders = |under: String| async move {
        let what = format!("ListObjectsV2 {bucket} (delimiter)");
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&under)
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
        let encoded = page.encoding_type() == Some(&EncodingType::Url);
        Ok::<_, StoreError>(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix())
                .map(|p| if encoded { decode_key(p) } else { p.to_owned() })
                .collect::<Vec<_>>(),
        )
    };
    // Keys that all sit under one folder (`feeds/…`) are split below it.
    let mut base = prefix.to_owned();
    let mut top = folders(base.clone()).await?;
    for _ in 0..3 {
        match top.as_slice() {
            [only] => {
                base = only.clone();
                top = folders(base.clone()).await?;
            }
            _ => break,
        }
    }
    let mut candidates = top.clone();
    if top.len() < n * 4 && top.len() <= 16 {
        let below = futures::future::try_join_all(top.into_iter().map(folders)).await?;
        candidates.extend(below.into_iter().flatten());
    }
    if candidates.len() < n {
        candidates = ('0'..='9')
            .chain('A'..='Z')
            .chain('a'..='z')
            .map(|c| format!("{base}{c}"))
            .collect();
    }
    candidates.sort();
    candidates.dedup();
    let mut bounds: Vec<String> = (1..n)
        .map(|i| candidates[i * candidates.len() / n].clone())
        .collect();
    bounds.dedup();
    Ok(bounds)
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
