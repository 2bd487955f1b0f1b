//! Listing a source bucket into the ledger, page by page, resumable by cursor.
//! It must not hold more than one page per range in memory, nor write to a store.
//!
//! Each page is committed with the key it ended on, so a listing that is cut
//! off resumes after the last committed page. A big bucket's key space can be
//! split into ranges listed side by side, each with its own cursor; or its
//! keys can come from an S3 Inventory instead (`inventory.rs`).

pub mod inventory;
pub mod ranges;
pub mod tag_count;

use std::sync::Arc;

use aws_sdk_s3::types::{EncodingType, OptionalObjectAttributes};
use aws_sdk_s3::Client;
use futures::stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::{BucketPair, Shard};
use crate::filter::Filter;
use crate::hashing::bare_etag;
use crate::ledger::{self, ListedObject, ListedRestore, Writer};
use crate::store::{FailureKind, Side, StoreError};
pub use ranges::RangePlan;

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
    /// Ranges split while the listing ran.
    pub splits: usize,
    /// Ranges listed, and the most keys one of them held: how even the split was.
    pub ranges: usize,
    pub largest_range: u64,
}

/// One page of a listing, in key order, before any shard filter.
pub struct Page {
    pub objects: Vec<ListedObject>,
    pub truncated: bool,
    /// The restores the store reported (ListObjectsV2's `RestoreStatus`,
    /// which AWS gives for objects with a restore under way or done).
    pub restores: Vec<ListedRestore>,
}

/// Where listing pages come from: the source store in ferry; a generator in
/// the ledger benchmark, which measures this path at millions of keys.
pub trait PageSource: Send {
    /// What is listed, for the logs.
    fn name(&self) -> &str;

    /// The page of keys after `after` (from the start when `None`).
    fn page(
        &mut self,
        after: Option<&str>,
    ) -> impl std::future::Future<Output = Result<Page, StoreError>> + Send;

    /// The first key after `after` (from the start when `None`), asked on its
    /// own: how the range splitter probes where keys lie. A store asks for
    /// one key; a source with nothing cheaper reads the page.
    fn first_key_after(
        &mut self,
        after: Option<&str>,
    ) -> impl std::future::Future<Output = Result<Option<String>, StoreError>> + Send {
        async move {
            let page = self.page(after).await?;
            Ok(page.objects.into_iter().next().map(|o| o.key))
        }
    }
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
        let mut request = self.listing(1000);
        match (&self.token, after) {
            (Some(token), _) => request = request.continuation_token(token),
            (None, Some(after)) => request = request.start_after(after),
            (None, None) => {}
        }
        let what = format!("ListObjectsV2 {}", self.bucket);
        let page = match request.clone().send().await {
            // Credentials that may list but not read restore states: the
            // listing goes on without them (awaited restores are HEADed).
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403)
                && request.get_optional_object_attributes().is_some() =>
            {
                let without = request.set_optional_object_attributes(None).send().await;
                // Only a listing that then succeeds says the attribute was
                // what was refused (bucket by bucket: policies differ).
                if without.is_ok() {
                    restore_status_refused(self.side, self.bucket);
                    tracing::warn!(bucket = %self.bucket, "ListObjectsV2 with OptionalObjectAttributes=RestoreStatus was refused (403): listing without it; restores are asked about with HEADs");
                }
                without
            }
            other => other,
        }
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
        Ok(Page {
            objects: listed_objects(&page),
            truncated,
            restores: listed_restores(&page),
        })
    }

    async fn first_key_after(&mut self, after: Option<&str>) -> Result<Option<String>, StoreError> {
        let what = format!("ListObjectsV2 {} (one key)", self.bucket);
        let mut token = None;
        // An empty answer that says the listing goes on is no answer: S3
        // may give those; the token asks again from where it stopped.
        for _ in 0..EMPTY_PAGES_FOLLOWED {
            let page = self
                .listing(1)
                .set_start_after(after.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| StoreError::from_sdk(self.side, &what, e))?;
            if let Some(first) = listed_objects(&page).into_iter().next() {
                return Ok(Some(first.key));
            }
            token = page.next_continuation_token().map(str::to_owned);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                return Ok(None);
            }
        }
        Err(StoreError::new(
            self.side,
            FailureKind::Other,
            what,
            "the store answered empty pages that it said go on, again and again",
        ))
    }
}

/// The buckets (of either store) whose listing with
/// `OptionalObjectAttributes=RestoreStatus` was refused (403) while one
/// without it was not: their later listings leave it out.
static RESTORE_STATUS_REFUSED: std::sync::Mutex<std::collections::BTreeSet<(bool, String)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn restore_status_refused(side: Side, bucket: &str) {
    let mut refused = RESTORE_STATUS_REFUSED
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    refused.insert((side == Side::Source, bucket.to_owned()));
}

fn restore_status_allowed(side: Side, bucket: &str) -> bool {
    let refused = RESTORE_STATUS_REFUSED
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    !refused.contains(&(side == Side::Source, bucket.to_owned()))
}

/// Empty pages that say the listing goes on that a probe follows.
const EMPTY_PAGES_FOLLOWED: usize = 10;

impl BucketPages<'_> {
    /// A ListObjectsV2 of the bucket under the prefix, `max_keys` a page.
    fn listing(
        &self,
        max_keys: i32,
    ) -> aws_sdk_s3::operation::list_objects_v2::builders::ListObjectsV2FluentBuilder {
        let request = self
            .client
            .list_objects_v2()
            .bucket(self.bucket)
            // Keys may hold characters XML cannot carry; ask for them encoded.
            .encoding_type(EncodingType::Url)
            .max_keys(max_keys)
            .set_prefix(Some(self.prefix.to_owned()).filter(|p| !p.is_empty()));
        // How archived objects' restores go, with no HEAD each (AWS; Garage
        // and Ceph RGW accept it and answer none, moto ignores it). Not for
        // a probe of one key.
        if max_keys > 1 && restore_status_allowed(self.side, self.bucket) {
            request.optional_object_attributes(OptionalObjectAttributes::RestoreStatus)
        } else {
            request
        }
    }
}

/// The restores a ListObjectsV2 answer reports, keys decoded as
/// [`listed_objects`] does.
fn listed_restores(
    page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
) -> Vec<ListedRestore> {
    let encoded = page.encoding_type() == Some(&EncodingType::Url);
    page.contents()
        .iter()
        .filter_map(|o| {
            let status = o.restore_status()?;
            let key = o.key().unwrap_or_default();
            Some(ListedRestore {
                key: if encoded {
                    decode_key(key)
                } else {
                    key.to_owned()
                },
                in_progress: status.is_restore_in_progress().unwrap_or(false),
                expires_at: status.restore_expiry_date().map(|t| t.to_string()),
            })
        })
        .collect()
}

/// The objects of a ListObjectsV2 answer, keys decoded when the answer says
/// they are encoded.
fn listed_objects(
    page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
) -> Vec<ListedObject> {
    let encoded = page.encoding_type() == Some(&EncodingType::Url);
    page.contents()
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
        .collect()
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
    let plan = if ranges > 1 && !under_way {
        plan_ranges(writer, bucket_id, pages, &pair.prefix, ranges).await?
    } else {
        RangePlan::default()
    };
    let scope = (shard, &pair.filter);
    let plan = (plan, ranges);
    list_into_ledger(pages, writer, (bucket_id, pass_id), scope, plan, stop).await
}

/// Where a fresh listing of a bucket starts its `n` ranges. A bucket the
/// ledger knows is cut where its known keys fall in equal counts; a new
/// one is probed (`ranges.rs`). A bucket of one page is listed in one
/// range, as the ledger knows it or as its first page says.
pub async fn plan_ranges<P: PageSource>(
    writer: &Writer,
    bucket_id: i64,
    pages: impl Fn() -> P,
    prefix: &str,
    n: usize,
) -> Result<RangePlan, ListError> {
    const PAGE: u64 = 1000;
    let known = writer
        .call(move |c| ledger::keys_known(c, bucket_id, PAGE + 1))
        .await?;
    if known > PAGE {
        let (bounds, upper) = writer
            .call(move |c| ledger::key_quantiles(c, bucket_id, n))
            .await?;
        return Ok(RangePlan { bounds, upper });
    }
    if known > 0 || !pages().page(None).await?.truncated {
        return Ok(RangePlan::default());
    }
    Ok(ranges::probe_plan(pages, prefix, n).await?)
}

/// Records every page of a listing in the ledger, one transaction per page
/// with the cursor after it, so an interrupted listing resumes after its
/// last committed page and memory holds one page per range. Keys of other
/// shards are not recorded; keys that `filter` leaves out are, as
/// `filtered`. A fresh listing starts with the plan's ranges; an
/// interrupted one with the ranges it had. At most `parallel` ranges are
/// listed at once; a lister whose range ends takes half of what is left of
/// the busiest one (the split is in the ledger before either lists past
/// it). `pages` makes one page source per range.
pub async fn list_into_ledger<P: PageSource>(
    pages: impl Fn() -> P,
    writer: &Writer,
    (bucket_id, pass_id): (i64, i64),
    scope: (Option<Shard>, &Filter),
    (plan, parallel): (RangePlan, usize),
    stop: &CancellationToken,
) -> Result<Listed, ListError> {
    let pass_id = writer
        .call(move |c| ledger::listing_pass(c, bucket_id, pass_id))
        .await?;
    let bounds = plan.bounds;
    let ranges = writer
        .call(move |c| ledger::list_ranges(c, bucket_id, &bounds))
        .await?;
    let name = pages().name().to_owned();
    if ranges.iter().any(|r| r.cursor.is_some()) {
        tracing::info!(bucket = %name, ranges = ranges.len(), "resuming an interrupted listing");
    }
    let mut waiting: std::collections::VecDeque<Shared> = ranges
        .into_iter()
        .filter(|r| !r.done)
        .map(Live::shared)
        .collect();
    let progress = tokio::sync::Notify::new();
    let mut running: Vec<Shared> = Vec::new();
    let mut listings = futures::stream::FuturesUnordered::new();
    let (mut seen, mut complete, mut splits) = (0, true, 0);
    let (mut listed_ranges, mut largest_range) = (0, 0);
    let ids = (bucket_id, pass_id);
    loop {
        while listings.len() < parallel.max(1) {
            let next = match waiting.pop_front() {
                Some(range) => range,
                None if complete && !stop.is_cancelled() => {
                    // A lister keeps about as many pages as there are
                    // listers: by then the rest has been split again.
                    let keep = (
                        plan.upper.as_deref(),
                        parallel.saturating_sub(1).max(1) as f64,
                    );
                    let Some((range, recorded)) = split_busiest(&running, keep, writer, bucket_id)
                    else {
                        break;
                    };
                    recorded.await?;
                    splits += 1;
                    range
                }
                None => break,
            };
            running.push(Arc::clone(&next));
            listed_ranges += 1;
            listings.push(list_range(
                pages(),
                writer,
                ids,
                next,
                scope,
                stop,
                &progress,
            ));
        }
        if listings.is_empty() {
            break;
        }
        tokio::select! {
            ended = listings.next() => {
                let (range_seen, range_complete) = ended.expect("a listing is running")?;
                seen += range_seen;
                largest_range = largest_range.max(range_seen);
                complete &= range_complete;
                running.retain(|r| !r.lock().expect("range lock").finished);
            }
            // A page listed: a range may now be worth splitting.
            _ = progress.notified(), if listings.len() < parallel => {}
        }
    }
    if splits > 0 {
        tracing::debug!(bucket = %name, splits, "ranges split while listing");
    }
    if !complete {
        // The cursors stay: the next run resumes every range.
        return Ok(Listed {
            seen,
            newly_missing: 0,
            complete: false,
            splits,
            ranges: listed_ranges,
            largest_range,
        });
    }
    let newly_missing = writer
        .call(move |c| ledger::finish_listing(c, bucket_id, pass_id))
        .await?;
    Ok(Listed {
        seen,
        newly_missing,
        complete: true,
        splits,
        ranges: listed_ranges,
        largest_range,
    })
}

/// A range as its lister and the splitter see it.
struct Live {
    range: ledger::ListRange,
    /// The first and the last key this run's lister has seen, the first
    /// of its last page, and its pages.
    first_seen: Option<String>,
    page_first: Option<String>,
    last_seen: Option<String>,
    pages: u32,
    /// The lister has reached the range's end: it is split no more.
    finished: bool,
}

type Shared = Arc<std::sync::Mutex<Live>>;

impl Live {
    fn shared(range: ledger::ListRange) -> Shared {
        Arc::new(std::sync::Mutex::new(Live {
            range,
            first_seen: None,
            page_first: None,
            last_seen: None,
            pages: 0,
            finished: false,
        }))
    }

    /// Pages still to list, guessed from the last page's keys (on their own
    /// scale, `ranges::Scale`), or, when the range's end is far off that
    /// scale, from how far all its pages have come towards the end.
    fn pages_left(&self, upper: Option<&str>) -> Option<f64> {
        if self.finished || self.pages == 0 {
            return None;
        }
        let end = self.range.last.as_deref().or(upper)?;
        let (page_first, last) = (self.page_first.as_deref()?, self.last_seen.as_deref()?);
        if let Some(pages) = ranges::pages_to(page_first, last, end) {
            return Some(pages);
        }
        let done = ranges::progress(self.first_seen.as_deref()?, last, end)?;
        Some(f64::from(self.pages) * (1.0 - done) / done.max(1e-9))
    }
}

/// A range worth splitting has this many pages left, or more.
const PAGES_LEFT_TO_SPLIT: f64 = 2.0;

/// Splits the running range with the most pages left, ahead of its
/// lister's last key: the range ends there, and a new one holds the rest.
/// The lister keeps `keep` pages (read from its last page's keys), so
/// that the rest can be split again while it lists them; a range thought
/// to hold fewer is cut in half. Its lister sees the new end from its next
/// page on; the ledger's write of the split is queued before any later
/// write of that lister.
fn split_busiest<'w>(
    running: &[Shared],
    (upper, keep): (Option<&str>, f64),
    writer: &'w Writer,
    bucket_id: i64,
) -> Option<(
    Shared,
    impl std::future::Future<Output = Result<(), ledger::LedgerError>> + 'w,
)> {
    let (left, busiest) = running
        .iter()
        .filter_map(|r| Some((r.lock().ok()?.pages_left(upper)?, r)))
        .filter(|(left, _)| *left >= PAGES_LEFT_TO_SPLIT)
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    let mut live = busiest.lock().ok()?;
    let end = live.range.last.clone().or(upper.map(str::to_owned))?;
    let (page_first, last_seen) = (live.page_first.as_deref()?, live.last_seen.as_deref()?);
    let at = ranges::key_beyond(page_first, last_seen, keep.min(left / 2.0))
        .filter(|k| k.as_str() < end.as_str())
        .or_else(|| ranges::key_between(last_seen, &end, 0.5))?;
    let last = live.range.last.replace(at.clone());
    let (first_after, split_at) = (live.range.first_after.clone(), at.clone());
    let recorded = writer.call(move |c| ledger::split_range(c, bucket_id, &first_after, &split_at));
    let rest = ledger::ListRange {
        first_after: at,
        last,
        cursor: None,
        done: false,
    };
    Some((Live::shared(rest), recorded))
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
/// range is done). Each page is cut to the range's end as it stands when
/// the page comes back, under the range's lock: a split moves the end.
async fn list_range(
    mut pages: impl PageSource,
    writer: &Writer,
    (bucket_id, pass_id): (i64, i64),
    live: Shared,
    (shard, filter): (Option<Shard>, &Filter),
    stop: &CancellationToken,
    progress: &tokio::sync::Notify,
) -> Result<(u64, bool), ListError> {
    let lock = || live.lock().expect("range lock");
    let (first_after, mut after) = {
        let live = lock();
        let range = &live.range;
        (
            range.first_after.clone(),
            range.resume_after().map(str::to_owned),
        )
    };
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
        let first = page.objects.first().map(|o| o.key.clone());
        let Some(last) = page.objects.last().map(|o| o.key.clone()) else {
            // An empty page ends the listing only when the store says it is
            // the last: S3 may answer empty pages that are not.
            if page.truncated {
                continue;
            }
            lock().finished = true;
            break true;
        };
        let mut live = lock();
        let past_end = live
            .range
            .last
            .as_deref()
            .is_some_and(|end| last.as_str() > end);
        // Keys past the range's end belong to the next range, which lists
        // them itself; the cursor moves past every key of ours, any shard's.
        let ours: Vec<ListedObject> = page
            .objects
            .into_iter()
            .filter(|o| live.range.holds(&o.key))
            .collect();
        let restores: Vec<ListedRestore> = page
            .restores
            .into_iter()
            .filter(|r| live.range.holds(&r.key))
            .collect();
        if let Some(cursor) = ours.last().map(|o| o.key.clone()) {
            let objects = in_scope(ours, (shard, filter));
            seen += objects.len() as u64;
            let first_after = first_after.clone();
            let source_bucket = pages.name().to_owned();
            writing = Some(writer.call(move |c| {
                // A followed feed should have told every change since it
                // began: one it did not is a gap (a purged queue,
                // notifications switched off), named here and copied anyway.
                let missed = ledger::missed_by_feed(c, bucket_id, &objects)?;
                if let Some(first) = missed.first() {
                    tracing::warn!(bucket = %source_bucket, keys = missed.len(), first = %first,
                        "the listing found keys changed while ferry followed the bucket's event queue, that no event told: a gap in the feed (was the queue purged, or the notification configuration changed?). They are copied now");
                    crate::metrics::feed_missed(missed.len() as u64);
                }
                ledger::record_range_page(
                    c,
                    (bucket_id, &first_after),
                    pass_id,
                    &objects,
                    &cursor,
                )?;
                ledger::record_listed_restores(c, bucket_id, &restores)
            }));
        }
        // The density is read from keys, not from the range's start: a
        // range may begin with a stretch that holds none.
        if live.first_seen.is_none() {
            live.first_seen.clone_from(&first);
        }
        live.page_first = first;
        live.last_seen = Some(last.clone());
        live.pages += 1;
        live.finished = !page.truncated || past_end;
        let finished = live.finished;
        drop(live);
        progress.notify_one();
        tracing::debug!(bucket = pages.name(), seen, "listing page queued");
        after = Some(last);
        if finished {
            break true;
        }
    };
    if let Some(write) = writing.take() {
        write.await?;
    }
    if done {
        // Finished ranges are split no more: their end stays as it is.
        let last = lock().range.last.clone();
        writer
            .call(move |c| ledger::finish_range(c, bucket_id, (&first_after, last.as_deref())))
            .await?;
    }
    Ok((seen, done))
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
mod tests;

#[cfg(test)]
mod decoding {
    use super::decode_key;

    #[test]
    fn keys_listed_url_encoded_decode_to_the_original() {
        assert_eq!(decode_key("a+b%2Bc%25d"), "a b+c%d");
        assert_eq!(decode_key("h%C3%B6rbuch%2F1.mp3"), "hörbuch/1.mp3");
        assert_eq!(decode_key("plain/key.xml"), "plain/key.xml");
    }
}
