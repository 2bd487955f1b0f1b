//! Where an object's parts begin and end: the source's own boundaries when they
//! can be learned and used, ferry's even parts otherwise. It must not read object bytes.
//!
//! The source's own boundaries make the destination ETag equal the source's.
//! The source is asked with HEAD only.

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::config::{MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::copy::single::quoted;
use crate::copy::{CopyError, Engine};
use crate::ledger::WorkItem;
use crate::store::{FailureKind, Side, StoreError};

/// How many part HEADs of one object are in flight at once.
const PART_HEADS_IN_FLIGHT: usize = 8;
/// Why a source whose part answers cannot be trusted gets ferry's own parts.
const PARTS_UNTRUSTED: &str = "the source store answers HEAD ?partNumber= with an ETag other than the object's (412 to If-Match) while the whole object is unchanged, so its part answers are not trusted; ferry cut its own parts and proves the bytes by SHA-256 read back";

/// One part of the destination upload: which source bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    pub number: u32,
    pub offset: u64,
    pub length: u64,
}

/// The parts, and how far they can be trusted to reproduce the source ETag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub parts: Vec<PartPlan>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The source was a single-part upload: ferry cuts it its own way, and
    /// the whole-object MD5 proves the bytes.
    Own,
    /// The source's boundaries, worked out from part 1 and the last part.
    /// Unequal middle parts can still fool this, so a wrong MD5-of-MD5s at
    /// the end means "ask every part", never "the source is corrupt".
    SourceGuessed,
    /// The source's boundaries, asked part by part.
    SourceExact,
    /// The source was a multipart upload, but its boundaries cannot be
    /// learned or used: ferry's own parts, and the reason the ETag differs.
    /// The bytes are then proved by SHA-256 read back from the destination.
    EtagNotKept(String),
}

impl Layout {
    pub fn part_size(&self) -> u64 {
        self.parts[0].length
    }

    /// Whether the MD5 of the parts' MD5s must equal the source ETag.
    pub fn keeps_source_etag(&self) -> bool {
        matches!(self.origin, Origin::SourceGuessed | Origin::SourceExact)
    }

    pub fn etag_note(&self) -> Option<String> {
        match &self.origin {
            Origin::EtagNotKept(why) => Some(why.clone()),
            _ => None,
        }
    }
}

/// Splits `size` bytes into parts of `part_size`, the last one shorter.
pub fn even_layout(size: u64, part_size: u64) -> Vec<PartPlan> {
    if size == 0 {
        return vec![PartPlan {
            number: 1,
            offset: 0,
            length: 0,
        }];
    }
    (0..size.div_ceil(part_size))
        .map(|i| {
            let offset = i * part_size;
            PartPlan {
                number: i as u32 + 1,
                offset,
                length: part_size.min(size - offset),
            }
        })
        .collect()
}

/// Parts of given lengths, in order.
fn layout_of(lengths: &[u64]) -> Vec<PartPlan> {
    let mut offset = 0;
    lengths
        .iter()
        .enumerate()
        .map(|(i, &length)| {
            let part = PartPlan {
                number: i as u32 + 1,
                offset,
                length,
            };
            offset += length;
            part
        })
        .collect()
}

/// The part size for an object ferry splits itself: the configured size,
/// raised in whole MiB when the object would need more than 10,000 parts.
pub fn part_size_for(size: u64, configured: u64) -> u64 {
    if size.div_ceil(configured) <= MAX_PARTS {
        configured
    } else {
        size.div_ceil(MAX_PARTS).div_ceil(1 << 20) * (1 << 20)
    }
}

/// The part count a source ETag says the object was uploaded with.
pub fn source_part_count(etag: &str) -> Option<u32> {
    etag.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .filter(|&n| n > 0)
}

/// Why the destination would refuse these parts, if it would: every part but
/// the last at least 5 MiB, none over 5 GiB, at most 10,000 of them.
fn unsendable(parts: &[PartPlan]) -> Option<String> {
    if parts.len() as u64 > MAX_PARTS {
        return Some(format!(
            "the source has {} parts; S3 allows {MAX_PARTS}",
            parts.len()
        ));
    }
    let last = parts.len() - 1;
    parts.iter().enumerate().find_map(|(i, p)| {
        if i < last && p.length < MIN_PART_SIZE {
            Some(format!(
                "the source's part {} is {} bytes, under the 5 MiB that S3 stores require of every part but the last",
                p.number, p.length
            ))
        } else if p.length > MAX_PART_SIZE {
            Some(format!(
                "the source's part {} is {} bytes, over S3's 5 GiB",
                p.number, p.length
            ))
        } else {
            None
        }
    })
}

/// The layout to copy `item` with. `head1` is the source's answer to HEAD
/// ?partNumber=1 for a multipart source, a plain HEAD otherwise; `last`, its
/// answer for the last part when that was asked beside part 1 (asked here if not).
pub(super) async fn plan(
    engine: &Engine,
    item: &WorkItem,
    (head1, last): (&HeadObjectOutput, Option<&PartHead>),
    part_size: u64,
    exact: bool,
) -> Result<Layout, CopyError> {
    let own = || even_layout(item.size, part_size_for(item.size, part_size));
    let Some(count) = source_part_count(&item.source_etag) else {
        return Ok(Layout {
            parts: own(),
            origin: Origin::Own,
        });
    };
    let not_kept = |why: String| Layout {
        parts: own(),
        origin: Origin::EtagNotKept(why),
    };
    if let Some(why) = encrypted_etag(head1) {
        return Ok(not_kept(why));
    }
    let first = length_of(head1);
    // A store that ignores ?partNumber= (Ceph RGW) answers with the whole
    // object and no part count: it cannot tell its boundaries. So does the
    // whole-object answer that stands in for an untrusted part 1 (`head_first_part`).
    if count > 1 && head1.parts_count().is_none() && first == item.size {
        return Ok(not_kept(
            "the source store does not tell its part boundaries (it ignores ?partNumber=, or answers it with the part's own ETag), so ferry cut its own parts; the bytes are proved by SHA-256 read back".into(),
        ));
    }
    let mut guess = None;
    if !exact && count > 0 && first > 0 {
        let rest = item.size.saturating_sub(first * (count as u64 - 1));
        let fits = item.size > first * (count as u64 - 1) && rest <= first;
        if fits {
            guess = Some(even_layout(item.size, first));
        }
    }
    // The last part is cheap to ask, and catches most unequal layouts before
    // a byte is read.
    if let Some(parts) = &guess {
        if count > 1 {
            let expected = parts[parts.len() - 1].length;
            let asked;
            let answer = match last {
                Some(answer) => answer,
                None => {
                    asked = head_part(engine, item, count).await?;
                    &asked
                }
            };
            let PartHead::Part(head) = answer else {
                return Ok(not_kept(PARTS_UNTRUSTED.into()));
            };
            if length_of(head) != expected {
                guess = None;
            }
        }
    }
    let (parts, origin) = match guess {
        Some(parts) => (parts, Origin::SourceGuessed),
        None => match exact_parts(engine, item, count).await? {
            Some(parts) => (parts, Origin::SourceExact),
            None => return Ok(not_kept(PARTS_UNTRUSTED.into())),
        },
    };
    let total: u64 = parts.iter().map(|p| p.length).sum();
    if total != item.size || parts.len() as u32 != count {
        return Ok(not_kept(format!(
            "the source's {count} parts add up to {total} bytes, not the listed {}; ferry cut its own parts",
            item.size
        )));
    }
    if let Some(why) = unsendable(&parts) {
        return Ok(not_kept(format!("{why}; ferry cut its own parts")));
    }
    Ok(Layout { parts, origin })
}

/// The lengths of the parts the source object was uploaded in (one: a
/// single PUT), asked with HEADs, whether or not a destination would take
/// them; None when the store cannot tell them, or when the source's ETag is
/// not an MD5 of its bytes (SSE-KMS). For proving a copy without a ledger
/// record (`copy/adopt.rs`).
pub(crate) async fn source_boundaries(
    engine: &Engine,
    item: &WorkItem,
) -> Result<Option<Vec<u64>>, CopyError> {
    let Some(count) = source_part_count(&item.source_etag) else {
        let head = head_whole(engine, item).await?;
        return Ok(encrypted_etag(&head).is_none().then(|| vec![item.size]));
    };
    let head1 = head_first_part(engine, item).await?;
    if encrypted_etag(&head1).is_some()
        || (count > 1 && head1.parts_count().is_none() && length_of(&head1) == item.size)
    {
        return Ok(None);
    }
    let Some(parts) = exact_parts(engine, item, count).await? else {
        return Ok(None);
    };
    let lengths: Vec<u64> = parts.iter().map(|p| p.length).collect();
    let fits = lengths.len() == count as usize && lengths.iter().sum::<u64>() == item.size;
    Ok(fits.then_some(lengths))
}

/// Why a multipart source's ETag says nothing of its bytes: encrypted with
/// SSE-KMS (or DSSE-KMS), the store's ETag is not the MD5 of the parts' MD5s.
/// The copy gets ferry's own parts, proved by SHA-256 read back.
fn encrypted_etag(head: &HeadObjectOutput) -> Option<String> {
    use aws_sdk_s3::types::ServerSideEncryption as Sse;
    match head.server_side_encryption() {
        Some(sse @ (Sse::AwsKms | Sse::AwsKmsDsse)) => Some(format!(
            "the source object is encrypted with {} and its ETag is not an MD5 of its bytes; ferry cut its own parts and proves the bytes by SHA-256 read back",
            sse.as_str()
        )),
        _ => None,
    }
}

/// Every part's length, from HEAD ?partNumber=i; None when the store's
/// part answers are not to be trusted.
async fn exact_parts(
    engine: &Engine,
    item: &WorkItem,
    count: u32,
) -> Result<Option<Vec<PartPlan>>, CopyError> {
    let lengths: Vec<Option<u64>> = stream::iter(1..=count)
        .map(|n| async move {
            head_part(engine, item, n).await.map(|h| match h {
                PartHead::Part(h) => Some(length_of(&h)),
                PartHead::Untrusted(_) => None,
            })
        })
        .buffered(PART_HEADS_IN_FLIGHT)
        .try_collect()
        .await?;
    let lengths: Option<Vec<u64>> = lengths.into_iter().collect();
    Ok(lengths.map(|l| layout_of(&l)))
}

fn length_of(head: &HeadObjectOutput) -> u64 {
    head.content_length().unwrap_or(0).max(0) as u64
}

/// What the source answered of one part.
pub(super) enum PartHead {
    Part(HeadObjectOutput),
    /// The part was refused If-Match (412) while the whole object still has
    /// the listed ETag: the store gives a part an ETag of its own (moto
    /// does), so its part answers are not trusted. The whole object's answer.
    Untrusted(HeadObjectOutput),
}

/// HEAD ?partNumber=1 of a multipart source, If-Match the listed ETag; the
/// whole object's answer when the part's is not to be trusted.
pub(super) async fn head_first_part(
    engine: &Engine,
    item: &WorkItem,
) -> Result<HeadObjectOutput, CopyError> {
    match head_part(engine, item, 1).await? {
        PartHead::Part(head) | PartHead::Untrusted(head) => Ok(head),
    }
}

/// HEAD of the last part of a source uploaded in several parts, asked beside
/// part 1 so that learning a layout costs one round trip to the source, not
/// two. None for other objects, and when it failed: `plan` then asks again.
pub(super) async fn head_last_part(engine: &Engine, item: &WorkItem) -> Option<PartHead> {
    match source_part_count(&item.source_etag) {
        Some(count) if count > 1 => head_part(engine, item, count).await.ok(),
        _ => None,
    }
}

/// HEAD ?partNumber=n, If-Match the listed ETag. A 412 is not taken on the
/// part's word: a HEAD of the whole object, If-Match too, says whether the
/// object changed since it was listed.
pub(super) async fn head_part(
    engine: &Engine,
    item: &WorkItem,
    number: u32,
) -> Result<PartHead, CopyError> {
    let what = format!(
        "HeadObject {}/{} part {number}",
        item.source_bucket, item.key
    );
    let answer = engine
        .source
        .head_object()
        .bucket(&item.source_bucket)
        .key(&item.key)
        .if_match(quoted(&item.source_etag))
        .part_number(number as i32)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e));
    match answer {
        Ok(head) => Ok(PartHead::Part(head)),
        Err(e) if e.kind == FailureKind::SourceChanged => {
            // A 412 here too: the object did change.
            let whole = head_whole(engine, item).await?;
            tracing::info!(bucket = %item.source_bucket, key = %item.key, part = number, reason = PARTS_UNTRUSTED,
                "the source refused a part's If-Match, but the object is unchanged");
            Ok(PartHead::Untrusted(whole))
        }
        Err(e) => Err(e.into()),
    }
}

/// HEAD of the whole source object, of the listed version (If-Match), with
/// the checksum it stored.
pub(crate) async fn head_whole(
    engine: &Engine,
    item: &WorkItem,
) -> Result<HeadObjectOutput, CopyError> {
    let what = format!("HeadObject {}/{}", item.source_bucket, item.key);
    let head = engine
        .source
        .head_object()
        .bucket(&item.source_bucket)
        .key(&item.key)
        .if_match(quoted(&item.source_etag))
        .customize()
        .mutate_request(crate::store::ask_stored_checksum)
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Source, &what, e))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_layout_covers_every_byte_once() {
        let parts = even_layout(20, 8);
        assert_eq!(parts, layout_of(&[8, 8, 4]));
        assert_eq!(even_layout(16, 8).len(), 2);
        assert_eq!(even_layout(0, 8), layout_of(&[0]));
    }

    #[test]
    fn layout_of_places_unequal_parts_end_to_end() {
        let parts = layout_of(&[5, 7, 1]);
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.offset, p.length))
                .collect::<Vec<_>>(),
            vec![(0, 5), (5, 7), (12, 1)]
        );
    }

    #[test]
    fn part_size_grows_past_ten_thousand_parts() {
        assert_eq!(part_size_for(100 << 20, 16 << 20), 16 << 20);
        let five_tb = 5u64 << 40;
        let size = part_size_for(five_tb, 16 << 20);
        assert!(five_tb.div_ceil(size) <= MAX_PARTS);
        assert!(size >= MIN_PART_SIZE);
        assert_eq!(size % (1 << 20), 0);
    }

    #[test]
    fn source_part_count_reads_the_etag_suffix() {
        assert_eq!(
            source_part_count("9b2cf535f27731c974343645a3985328-13"),
            Some(13)
        );
        assert_eq!(source_part_count("9b2cf535f27731c974343645a3985328"), None);
        // "-0" would underflow a part count; no S3 store makes it.
        assert_eq!(
            source_part_count("9b2cf535f27731c974343645a3985328-0"),
            None
        );
    }

    #[test]
    fn a_kms_encrypted_source_etag_is_not_taken_as_an_md5() {
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        let head = |sse: Option<Sse>| {
            HeadObjectOutput::builder()
                .set_server_side_encryption(sse)
                .build()
        };
        let why = encrypted_etag(&head(Some(Sse::AwsKms))).unwrap();
        assert!(why.contains("aws:kms"), "{why}");
        assert!(encrypted_etag(&head(Some(Sse::AwsKmsDsse))).is_some());
        // SSE-S3 ETags are MD5s as if unencrypted.
        assert_eq!(encrypted_etag(&head(Some(Sse::Aes256))), None);
        assert_eq!(encrypted_etag(&head(None)), None);
    }

    #[test]
    fn parts_a_destination_would_refuse_are_named() {
        let mib = 1 << 20;
        assert_eq!(unsendable(&layout_of(&[5 * mib, 8 * mib, 1])), None);
        let small = unsendable(&layout_of(&[5 * mib, mib, 8 * mib])).unwrap();
        assert!(small.contains("part 2"), "{small}");
        assert!(unsendable(&layout_of(&[6 << 30])).is_some());
    }
}
