//! Key-ordered streams, a page at a time: a store's listing and the ledgers'
//! rows, so `report` merges them in bounded memory. It must not hold more
//! than a page of each, and refuses a listing that is not in key order.

use std::collections::VecDeque;

use aws_sdk_s3::Client;
use rusqlite::Connection;

use crate::ledger::{self, KeyRecord, LedgerError};
use crate::list::{BucketPages, PageSource};
use crate::store::{FailureKind, Side, StoreError};

/// How many ledger rows are read at a time.
const LEDGER_PAGE: usize = 1000;

/// A store's keys under a prefix with (size, bare ETag), in the order S3
/// lists them: by the bytes of their UTF-8. Pages come from a
/// [`PageSource`]: the listing's own [`BucketPages`], so keys are decoded and
/// pages followed alike; or a generator in the ledger benchmark.
pub struct StoreKeys<P> {
    pages: P,
    /// Which store and bucket, for errors.
    side: Side,
    bucket: String,
    done: bool,
    page: VecDeque<(String, (u64, String))>,
    last: Option<String>,
}

impl<'a> StoreKeys<BucketPages<'a>> {
    pub fn new(client: &'a Client, side: Side, bucket: &'a str, prefix: &'a str) -> Self {
        Self::from_pages(
            BucketPages {
                client,
                side,
                bucket,
                prefix,
                token: None,
            },
            side,
        )
    }
}

impl<P: PageSource> StoreKeys<P> {
    pub fn from_pages(pages: P, side: Side) -> Self {
        StoreKeys {
            bucket: pages.name().to_owned(),
            pages,
            side,
            done: false,
            page: VecDeque::new(),
            last: None,
        }
    }

    /// The next key, fetching a page when the last one is used up.
    pub async fn peek(&mut self) -> Result<Option<&str>, StoreError> {
        while self.page.is_empty() && !self.done {
            self.fetch().await?;
        }
        Ok(self.page.front().map(|(k, _)| k.as_str()))
    }

    /// The entry for `key` if it is next.
    pub fn take(&mut self, key: &str) -> Option<(u64, String)> {
        match self.page.front() {
            Some((k, _)) if k == key => self.page.pop_front().map(|(_, v)| v),
            _ => None,
        }
    }

    async fn fetch(&mut self) -> Result<(), StoreError> {
        // BucketPages follows its continuation token; `last` is for a
        // source that has none.
        let page = self.pages.page(self.last.as_deref()).await?;
        for o in page.objects {
            // A merge in bounded memory needs the store's order; a store
            // that breaks it would make keys look missing.
            if self
                .last
                .as_ref()
                .is_some_and(|last| o.key.as_bytes() <= last.as_bytes())
            {
                return Err(StoreError::new(
                    self.side,
                    FailureKind::Other,
                    format!("ListObjectsV2 {}", self.bucket),
                    format!(
                        "the store listed {:?} after {:?}: not in key order, so ferry cannot reconcile it",
                        o.key,
                        self.last.as_deref().unwrap_or_default()
                    ),
                ));
            }
            self.last = Some(o.key.clone());
            self.page.push_back((o.key, (o.size, o.etag)));
        }
        self.done = !page.truncated;
        Ok(())
    }
}

/// The ledgers' rows for one bucket pair, in key order. Several ledgers
/// (one per shard) hold different keys; each is read a page at a time and
/// the smallest key goes first.
pub struct LedgerKeys<'a> {
    pair: (&'a str, &'a str, &'a str),
    ledgers: Vec<OneLedger<'a>>,
}

/// One ledger's page of rows, the key it ends on, and whether it is the last.
struct OneLedger<'a> {
    conn: &'a Connection,
    page: VecDeque<(String, KeyRecord)>,
    last: Option<String>,
    done: bool,
}

impl<'a> LedgerKeys<'a> {
    pub fn new(conns: &'a [Connection], pair: (&'a str, &'a str, &'a str)) -> Self {
        LedgerKeys {
            pair,
            ledgers: conns
                .iter()
                .map(|conn| OneLedger {
                    conn,
                    page: VecDeque::new(),
                    last: None,
                    done: false,
                })
                .collect(),
        }
    }

    pub fn peek(&mut self) -> Result<Option<String>, LedgerError> {
        let mut smallest: Option<&str> = None;
        for l in &mut self.ledgers {
            if l.page.is_empty() && !l.done {
                let rows = ledger::key_records(l.conn, self.pair, l.last.as_deref(), LEDGER_PAGE)?;
                l.done = rows.len() < LEDGER_PAGE;
                l.last = rows.last().map(|(k, _)| k.clone());
                l.page.extend(rows);
            }
        }
        for l in &self.ledgers {
            if let Some((k, _)) = l.page.front() {
                if smallest.is_none_or(|s| k.as_bytes() < s.as_bytes()) {
                    smallest = Some(k);
                }
            }
        }
        Ok(smallest.map(str::to_owned))
    }

    pub fn take(&mut self, key: &str) -> Option<KeyRecord> {
        self.ledgers.iter_mut().find_map(|l| match l.page.front() {
            Some((k, _)) if k == key => l.page.pop_front().map(|(_, r)| r),
            _ => None,
        })
    }
}

/// The smallest of some keys, bytewise.
pub fn first_key<'k>(keys: impl IntoIterator<Item = Option<&'k str>>) -> Option<&'k str> {
    keys.into_iter()
        .flatten()
        .min_by(|a, b| a.as_bytes().cmp(b.as_bytes()))
}
