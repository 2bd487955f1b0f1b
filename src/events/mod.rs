//! S3's event notifications, read from SQS into the ledger: each event names a
//! key, a HEAD at the source says what the key is now, and the message is
//! deleted only once the ledger holds it. It must not copy, nor delete a
//! message it could not read.
//!
//! `message.rs` reads a message's body; here the queue is received, each
//! named key asked at the source and recorded as a listing would.

pub mod message;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use futures::stream::{self, StreamExt};

use crate::config::{BucketPair, EventQueue, Shard};
use crate::hashing::bare_etag;
use crate::ledger::{self, AtSource, EventOutcome, LedgerError, ListedObject, Writer};
use crate::store::{FailureKind, Side, StoreError};
use message::{Change, Message};

/// The longest long poll SQS allows.
pub const LONGEST_WAIT: Duration = Duration::from_secs(20);

/// What a queue error says when the queue did not answer at all.
pub const UNREACHABLE: &str = "does not answer";

/// HEADs in flight while one batch of messages is read.
const HEADS_AT_ONCE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the event queue {queue}: {message}. Check the queue URL in `events`, and that the source's credentials may sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on it")]
    Queue { queue: String, message: String },
}

/// One queue and the bucket pairs whose events it carries.
pub struct Feed {
    pub queue: EventQueue,
    client: aws_sdk_sqs::Client,
    /// (ledger bucket id, the pair) for each pair that follows this queue.
    pairs: Vec<(i64, BucketPair)>,
    shard: Option<Shard>,
}

/// What one receive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub messages: u64,
    /// Events recorded in the ledger (new or unchanged versions, or gone).
    pub applied: u64,
    /// Events older than what the ledger held for their key.
    pub stale: u64,
    /// Keys confirmed gone at the source.
    pub gone: u64,
    /// Messages left on the queue: unreadable, or a key the source could
    /// not be asked about now.
    pub left: u64,
    /// Of those, the messages ferry could not read (the rest name a key
    /// the source could not confirm now, or arrived damaged).
    pub unreadable: u64,
    /// Of those, the messages whose body is not the one SQS sent (its
    /// MD5): read again when they come back.
    pub damaged: u64,
}

impl Feed {
    pub fn new(
        queue: EventQueue,
        client: aws_sdk_sqs::Client,
        pairs: Vec<(i64, BucketPair)>,
        shard: Option<Shard>,
    ) -> Feed {
        Feed {
            queue,
            client,
            pairs,
            shard,
        }
    }

    pub fn bucket_ids(&self) -> Vec<i64> {
        self.pairs.iter().map(|(id, _)| *id).collect()
    }

    /// Whether the queue answers: asked once before the daemon relies on it.
    pub async fn check(&self) -> Result<(), EventsError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.queue_error(e))
    }

    /// Messages waiting or in flight, as SQS estimates them.
    pub async fn backlog(&self) -> Result<u64, EventsError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| self.queue_error(e))?;
        let attributes = answer.attributes();
        Ok([
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|a| attributes.and_then(|m| m.get(a)))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum())
    }

    fn queue_error<E: std::fmt::Debug + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        e: aws_sdk_sqs::error::SdkError<E, R>,
    ) -> EventsError {
        use aws_sdk_sqs::error::SdkError;
        let mut message = crate::store::chain(&e).trim_end_matches('.').to_owned();
        // The queue said nothing (a timeout, a refused connection): not
        // the URL's or the permissions' fault, and worth asking again.
        let timed_out = match &e {
            SdkError::TimeoutError(_) => true,
            // Not any failure to send: a mistyped host fails DNS that way.
            SdkError::DispatchFailure(f) => f.is_timeout(),
            _ => false,
        };
        if timed_out {
            message = format!("{UNREACHABLE} ({message})");
        }
        EventsError::Queue {
            queue: self.queue.url.clone(),
            message,
        }
    }

    /// Receives up to ten messages (waiting up to `wait` for the first),
    /// records what their events name, and deletes the messages that are
    /// wholly in the ledger. An empty receive marks the feed drained.
    pub async fn receive(
        &self,
        source: &Client,
        writer: &Writer,
        wait: Duration,
        delete_after: u32,
    ) -> Result<Received, EventsError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.min(LONGEST_WAIT).as_secs() as i32)
            .send()
            .await
            .map_err(|e| self.queue_error(e))?;
        let messages = answer.messages();
        let (ids, drained) = (self.bucket_ids(), messages.is_empty());
        writer
            .call(move |c| ledger::record_received(c, &ids, drained))
            .await?;
        if drained {
            return Ok(Received::default());
        }
        let mut received = Received {
            messages: messages.len() as u64,
            ..Received::default()
        };
        // Each message's changes, as (bucket id, change); None: unreadable.
        let mut read: Vec<Option<Vec<(i64, Change)>>> = Vec::new();
        for m in messages {
            let id = m.message_id().unwrap_or("?");
            let body = m.body().unwrap_or_default();
            // SQS sends each body's MD5, which this SDK (unlike AWS's
            // others) does not check. A body damaged on the way could name
            // another bucket, key or event: it is not read, and comes back.
            if m.md5_of_body().is_some_and(|sent| !md5_is(body, sent)) {
                tracing::warn!(queue = %self.queue.url, message = id,
                    "an event message arrived damaged (its MD5 is not the one SQS sent); left on the queue, it comes back whole");
                crate::metrics::event_damaged();
                received.damaged += 1;
                read.push(None);
                continue;
            }
            match message::parse(body) {
                Ok(Message::Test) => {
                    tracing::info!(queue = %self.queue.url, message = id, "s3:TestEvent received: the notification reaches the queue");
                    read.push(Some(Vec::new()));
                }
                Ok(Message::Changes(changes)) => read.push(Some(
                    changes
                        .into_iter()
                        .flat_map(|c| self.pairs_of(&c).into_iter().map(move |id| (id, c.clone())))
                        .collect(),
                )),
                Err(why) => {
                    tracing::warn!(queue = %self.queue.url, message = id, reason = %why,
                        "an event message ferry cannot read is left on the queue (its redrive policy takes it after its last try)");
                    crate::metrics::event_unreadable();
                    received.unreadable += 1;
                    read.push(None);
                }
            }
        }
        // The newest event of each key in this batch; the rest are stale.
        let mut newest: HashMap<(i64, String), Change> = HashMap::new();
        let mut stale: HashMap<i64, u64> = HashMap::new();
        for (bucket_id, change) in read.iter().flatten().flatten() {
            let slot = newest.entry((*bucket_id, change.key.clone()));
            match slot {
                std::collections::hash_map::Entry::Occupied(mut held) => {
                    if is_newer(change, held.get()) {
                        held.insert(change.clone());
                    }
                    *stale.entry(*bucket_id).or_default() += 1;
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(change.clone());
                }
            }
        }
        let (outcomes, unasked) = self.ask_source(source, writer, newest, &mut stale).await?;
        for (bucket_id, n) in stale {
            received.stale += n;
            writer
                .call(move |c| ledger::count_stale_events(c, bucket_id, n))
                .await?;
        }
        let mut keys_unasked = HashSet::new();
        for (bucket_id, key) in unasked {
            keys_unasked.insert((bucket_id, key));
        }
        let mut by_bucket: HashMap<i64, Vec<EventOutcome>> = HashMap::new();
        for (bucket_id, outcome) in outcomes {
            by_bucket.entry(bucket_id).or_default().push(outcome);
        }
        for (bucket_id, outcomes) in by_bucket {
            let applied = writer
                .call(move |c| ledger::record_events(c, bucket_id, &outcomes, delete_after))
                .await?;
            received.applied += applied.applied;
            received.stale += applied.stale;
            received.gone += applied.gone;
        }
        // Only now, with every readable change in the ledger, are the
        // messages deleted: a crash before this loses nothing, and the
        // same messages delivered again change nothing.
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .zip(&read)
            .enumerate()
            .filter(|(_, (_, changes))| {
                changes.as_ref().is_some_and(|changes| {
                    changes
                        .iter()
                        .all(|(b, c)| !keys_unasked.contains(&(*b, c.key.clone())))
                })
            })
            .filter_map(|(i, (m, _))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        received.left = received.messages - done.len() as u64;
        if !done.is_empty() {
            let answer = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(done))
                .send()
                .await;
            // What the messages said is in the ledger: a message not deleted
            // comes back and changes nothing, so the copy goes on.
            match answer {
                Ok(answer) => {
                    for failed in answer.failed() {
                        tracing::warn!(queue = %self.queue.url, code = failed.code(), "a message was not deleted; it comes back and changes nothing");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %self.queue_error(e), "the messages read were not deleted; they come back and change nothing (sqs:DeleteMessage)");
                }
            }
        }
        crate::metrics::events(received.applied, received.stale);
        Ok(received)
    }

    /// The ledger ids of the pairs a change belongs to: its bucket, under
    /// the pair's prefix, and of this ferry's shard.
    fn pairs_of(&self, change: &Change) -> Vec<i64> {
        if self.shard.is_some_and(|s| !s.owns(&change.key)) {
            return Vec::new();
        }
        self.pairs
            .iter()
            .filter(|(_, p)| p.source == change.bucket && change.key.starts_with(&p.prefix))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Drops the events older than what the ledger holds, and HEADs the
    /// source for the rest. Returns the outcomes, and the keys that could
    /// not be asked now (their messages stay on the queue).
    async fn ask_source(
        &self,
        source: &Client,
        writer: &Writer,
        newest: HashMap<(i64, String), Change>,
        stale_by_bucket: &mut HashMap<i64, u64>,
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<(i64, String)>), EventsError> {
        let mut changes: Vec<(i64, Change)> =
            newest.into_iter().map(|((b, _), c)| (b, c)).collect();
        let sequenced: Vec<(i64, String, String)> = changes
            .iter()
            .filter_map(|(b, c)| c.sequencer.clone().map(|s| (*b, c.key.clone(), s)))
            .collect();
        let stale: HashSet<(i64, String)> = writer
            .call(move |c| {
                let mut stale = HashSet::new();
                for (bucket_id, key, sequencer) in sequenced {
                    if ledger::stale_events(c, bucket_id, &[(key.clone(), sequencer)])?[0] {
                        stale.insert((bucket_id, key));
                    }
                }
                Ok::<_, rusqlite::Error>(stale)
            })
            .await?;
        for (bucket_id, _) in &stale {
            *stale_by_bucket.entry(*bucket_id).or_default() += 1;
        }
        changes.retain(|(b, c)| !stale.contains(&(*b, c.key.clone())));
        let pairs: HashMap<i64, &BucketPair> = self.pairs.iter().map(|(id, p)| (*id, p)).collect();
        let asked: Vec<(i64, Change, Result<AtSource, StoreError>)> = stream::iter(changes)
            .map(|(bucket_id, change)| {
                let pair = pairs[&bucket_id];
                async move {
                    let at = head(source, pair, &change.key).await;
                    (bucket_id, change, at)
                }
            })
            .buffer_unordered(HEADS_AT_ONCE)
            .collect()
            .await;
        let (mut outcomes, mut unasked) = (Vec::new(), Vec::new());
        for (bucket_id, change, at) in asked {
            let at_source = match (at, &change) {
                (Ok(at), _) => at,
                // The source cannot be asked now (throttled, a key it will
                // not HEAD such as SSE-C, a permission): a created object is
                // recorded as its event says, and the copy's If-Match checks
                // that. The ledger holds the retry, not the queue, whose
                // redrive policy would drop the event after a few tries.
                (
                    Err(e),
                    Change {
                        removed: false,
                        size: Some(size),
                        etag: Some(etag),
                        ..
                    },
                ) => {
                    tracing::warn!(bucket = %change.bucket, key = %change.key, error = %e,
                        "the source could not say what an event's key is; recorded as the event says, the copy checks it");
                    AtSource::Present(ListedObject {
                        key: change.key.clone(),
                        size: *size,
                        etag: bare_etag(etag).to_owned(),
                        // The event's time stands in for Last-Modified: the
                        // filter's dates apply, and no NULL is recorded.
                        filtered: pairs[&bucket_id].filter.leaves_out(
                            &change.key,
                            *size,
                            Some(&change.event_at),
                        ),
                        last_modified: Some(change.event_at.clone()),
                        storage_class: None,
                    })
                }
                // A delete is never taken on the event's word: the message
                // stays, and comes back (the next full listing also sees it).
                (Err(e), _) => {
                    tracing::warn!(bucket = %change.bucket, key = %change.key, error = %e,
                        "the source could not confirm an event's key; the message stays on the queue");
                    unasked.push((bucket_id, change.key));
                    continue;
                }
            };
            outcomes.push((
                bucket_id,
                EventOutcome {
                    key: change.key,
                    sequencer: change.sequencer,
                    event_at: change.event_at,
                    at_source,
                },
            ));
        }
        Ok((outcomes, unasked))
    }
}

/// Whether `body` has the MD5 (hex) that SQS computed of it.
fn md5_is(body: &str, sent: &str) -> bool {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(body.as_bytes())).eq_ignore_ascii_case(sent)
}

/// Whether `a` comes after `b`, two events of one key: by sequencer when
/// both have one, else by time.
fn is_newer(a: &Change, b: &Change) -> bool {
    match (&a.sequencer, &b.sequencer) {
        (Some(x), Some(y)) => ledger::sequencer_is_newer(x, y),
        _ => a.event_at > b.event_at,
    }
}

/// What the source holds at `key` now: a HEAD, the second answer an event
/// needs before the ledger believes it.
async fn head(source: &Client, pair: &BucketPair, key: &str) -> Result<AtSource, StoreError> {
    let what = format!("HeadObject {}/{key} (an event named it)", pair.source);
    match source
        .head_object()
        .bucket(&pair.source)
        .key(key)
        .send()
        .await
    {
        Ok(h) => {
            let size = h.content_length().unwrap_or(0).max(0) as u64;
            let last_modified = h.last_modified().map(|t| t.to_string());
            Ok(AtSource::Present(ListedObject {
                key: key.to_owned(),
                size,
                etag: bare_etag(h.e_tag().unwrap_or_default()).to_owned(),
                filtered: pair.filter.leaves_out(key, size, last_modified.as_deref()),
                last_modified,
                // A HEAD names no class for STANDARD; a listing does.
                storage_class: Some(
                    h.storage_class()
                        .map_or("STANDARD", |c| c.as_str())
                        .to_owned(),
                ),
            }))
        }
        Err(e) => match StoreError::from_sdk(Side::Source, what, e) {
            e if e.kind == FailureKind::NoSuchKey => Ok(AtSource::Gone),
            e => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(bucket: &str, key: &str) -> Change {
        Change {
            bucket: bucket.into(),
            key: key.into(),
            removed: false,
            sequencer: Some("01".into()),
            event_at: "2026-12-07T10:00:00.000Z".into(),
            size: Some(1),
            etag: Some("e".into()),
        }
    }

    fn feed(shard: Option<Shard>) -> Feed {
        let pair = |id: i64, source: &str, prefix: &str| {
            let pair = BucketPair {
                source: source.into(),
                destination: format!("hub-{id}"),
                prefix: prefix.into(),
                ..BucketPair::default()
            };
            (id, pair)
        };
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        Feed::new(
            EventQueue {
                url: "http://127.0.0.1:1/queue".into(),
                endpoint: "http://127.0.0.1:1".into(),
            },
            aws_sdk_sqs::Client::from_conf(config),
            // One queue, three pairs: the whole of `audio`, its `feeds/`
            // prefix to a second destination, and another bucket.
            vec![
                pair(1, "audio", ""),
                pair(2, "audio", "feeds/"),
                pair(3, "onix", ""),
            ],
            shard,
        )
    }

    #[test]
    fn a_body_is_read_only_with_the_md5_sqs_sent() {
        assert!(md5_is("hello", "5d41402abc4b2a76b9719d911017c592"));
        assert!(md5_is("hello", "5D41402ABC4B2A76B9719D911017C592"));
        assert!(!md5_is("hellp", "5d41402abc4b2a76b9719d911017c592"));
    }

    #[test]
    fn a_key_goes_to_every_pair_that_holds_it_and_to_no_other() {
        let feed = feed(None);
        assert_eq!(feed.pairs_of(&change("audio", "feeds/a.xml")), [1, 2]);
        assert_eq!(feed.pairs_of(&change("audio", "feedsX/a.xml")), [1]);
        assert_eq!(feed.pairs_of(&change("onix", "feeds/a.xml")), [3]);
        // A bucket no pair copies (a queue shared with other teams).
        assert!(feed
            .pairs_of(&change("audio-other", "feeds/a.xml"))
            .is_empty());
    }

    #[test]
    fn a_shard_takes_only_its_own_keys_from_a_queue() {
        let shard = Shard { index: 0, count: 2 };
        let feed = feed(Some(shard));
        let keys: Vec<String> = (0..40).map(|i| format!("feeds/{i}.xml")).collect();
        for key in &keys {
            let want: &[i64] = if shard.owns(key) { &[1, 2] } else { &[] };
            assert_eq!(feed.pairs_of(&change("audio", key)), want, "{key}");
        }
        // The keys split between the two shards: neither takes them all.
        let owned = keys.iter().filter(|k| shard.owns(k)).count();
        assert!(owned > 0 && owned < keys.len(), "{owned} of {}", keys.len());
    }
}
