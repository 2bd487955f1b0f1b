//! `plan`'s data-quality checks: keys and objects that will break after the
//! move. It must not hold the keys in memory, nor name a key that collides
//! with nothing.
//!
//! Each finding names every key involved. Collisions are found by letting
//! SQLite sort the keys by a form of the key (NFC, or case folded), so that
//! keys sharing a form come one after another; duplicates by sorting the
//! objects by size and content. One group is held at a time.

use std::collections::BTreeMap;

use rusqlite::Connection;
use unicode_normalization::UnicodeNormalization;

use super::render::{Cell, Table};
use crate::config::BucketPair;
use crate::ledger;

/// Findings shown per check; the summary counts them all.
pub const SHOWN_PER_CHECK: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    NfcCollision,
    CaseCollision,
    DuplicateContent,
    EmptyObject,
    ControlCharacter,
    InvalidUtf8,
    EdgeSpace,
    DoubleSlash,
    ContentType,
    NoSourceProof,
}

impl Check {
    pub const ALL: [Check; 10] = [
        Check::NfcCollision,
        Check::CaseCollision,
        Check::DuplicateContent,
        Check::EmptyObject,
        Check::ControlCharacter,
        Check::InvalidUtf8,
        Check::EdgeSpace,
        Check::DoubleSlash,
        Check::ContentType,
        Check::NoSourceProof,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::NfcCollision => "unicode_nfc_collision",
            Check::CaseCollision => "case_collision",
            Check::DuplicateContent => "duplicate_content",
            Check::EmptyObject => "empty_object",
            Check::ControlCharacter => "control_character",
            Check::InvalidUtf8 => "invalid_utf8",
            Check::EdgeSpace => "leading_or_trailing_space",
            Check::DoubleSlash => "double_slash",
            Check::ContentType => "content_type_mismatch",
            Check::NoSourceProof => "no_source_proof",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Check::NfcCollision => {
                "equal after Unicode NFC normalisation: one file on macOS and in some apps"
            }
            Check::CaseCollision => {
                "equal when case is ignored: one file on Windows and case-insensitive filesystems"
            }
            Check::DuplicateContent => "the same bytes under several keys",
            Check::EmptyObject => "empty, and not a folder marker (its key does not end in /)",
            Check::ControlCharacter => "a control character in the key",
            Check::InvalidUtf8 => "U+FFFD in the key: the source name had bytes that are not UTF-8",
            Check::EdgeSpace => {
                "a name that starts or ends with a space: Windows and many tools drop it"
            }
            Check::DoubleSlash => {
                "// in the key: an empty folder name, which tools that map keys to paths lose"
            }
            Check::ContentType => "a Content-Type that contradicts the extension",
            Check::NoSourceProof => {
                "SSE-KMS with no stored checksum (written before 2025): its ETag is no MD5, so only reading the copy back proves it"
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub check: Check,
    pub bucket: String,
    pub keys: Vec<String>,
    /// For duplicates: the bytes that keeping one copy would save.
    pub bytes: u64,
    pub detail: String,
}

#[derive(Default)]
struct Tally {
    findings: u64,
    keys: u64,
    bytes: u64,
}

/// What the checks found, and the note on how (a sample, a cap).
#[derive(Default)]
pub struct Quality {
    shown: Vec<Finding>,
    tally: BTreeMap<Check, Tally>,
    notes: BTreeMap<Check, String>,
}

impl Quality {
    pub fn add(&mut self, f: Finding) {
        let tally = self.tally.entry(f.check).or_default();
        tally.findings += 1;
        tally.keys += f.keys.len() as u64;
        tally.bytes += f.bytes;
        if tally.findings <= SHOWN_PER_CHECK {
            self.shown.push(f);
        }
    }

    pub fn note(&mut self, check: Check, note: String) {
        self.notes.insert(check, note);
    }

    pub fn findings(&self) -> &[Finding] {
        &self.shown
    }

    /// `data quality`, one row per finding, and its summary, one row per check.
    pub fn tables(&self) -> Vec<Table> {
        let mut rows = Table::new(
            "data quality",
            vec!["check", "bucket", "keys", "bytes", "detail"],
        );
        let mut shown = self.shown.clone();
        shown.sort_by(|a, b| (a.check, &a.bucket, &a.keys).cmp(&(b.check, &b.bucket, &b.keys)));
        for f in shown {
            rows.push(vec![
                f.check.name().into(),
                f.bucket.into(),
                Cell::Keys(f.keys),
                Cell::Bytes(f.bytes),
                f.detail.into(),
            ]);
        }
        let mut summary = Table::new(
            "data quality summary",
            vec![
                "check",
                "findings",
                "keys",
                "bytes",
                "what_it_means",
                "note",
            ],
        );
        for check in Check::ALL {
            let t = self.tally.get(&check);
            let findings = t.map_or(0, |t| t.findings);
            let mut note = self.notes.get(&check).cloned().unwrap_or_default();
            if findings > SHOWN_PER_CHECK {
                note = format!("{note} the first {SHOWN_PER_CHECK} are listed")
                    .trim()
                    .to_owned();
            }
            summary.push(vec![
                check.name().into(),
                Cell::Count(findings),
                Cell::Count(t.map_or(0, |t| t.keys)),
                Cell::Bytes(t.map_or(0, |t| t.bytes)),
                check.why().into(),
                note.into(),
            ]);
        }
        vec![rows, summary]
    }
}

/// The checks that need one key at a time.
pub fn check_key(bucket: &str, key: &str, size: u64, quality: &mut Quality) {
    let mut found = |check: Check, detail: String| {
        quality.add(Finding {
            check,
            bucket: bucket.to_owned(),
            keys: vec![key.to_owned()],
            bytes: 0,
            detail,
        })
    };
    if size == 0 && !key.ends_with('/') {
        found(Check::EmptyObject, String::new());
    }
    let controls: Vec<String> = key
        .chars()
        .filter(|c| c.is_control())
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    if !controls.is_empty() {
        found(Check::ControlCharacter, controls.join(" "));
    }
    if key.contains('\u{FFFD}') {
        found(Check::InvalidUtf8, String::new());
    }
    let edged: Vec<&str> = key
        .split('/')
        .filter(|name| name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace))
        .collect();
    if !edged.is_empty() {
        found(
            Check::EdgeSpace,
            edged
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if key.contains("//") {
        found(Check::DoubleSlash, String::new());
    }
}

fn nfc(key: &str) -> String {
    key.nfc().collect()
}

fn case_folded(key: &str) -> String {
    key.to_lowercase()
}

/// Keys of one pair that share a form (NFC, or lower case) but differ.
pub fn collisions(
    conn: &Connection,
    pair: &BucketPair,
    quality: &mut Quality,
) -> rusqlite::Result<()> {
    let key = (
        pair.source.as_str(),
        pair.destination.as_str(),
        pair.prefix.as_str(),
    );
    for (check, form) in [
        (Check::NfcCollision, nfc as fn(&str) -> String),
        (Check::CaseCollision, case_folded),
    ] {
        let mut group: (Option<String>, Vec<String>) = (None, Vec::new());
        let close = |group: &mut (Option<String>, Vec<String>), quality: &mut Quality| {
            let keys = std::mem::take(&mut group.1);
            if keys.len() > 1 {
                let detail = match check {
                    Check::NfcCollision => keys
                        .iter()
                        .map(|k| if nfc(k) == *k { "NFC" } else { "not NFC" })
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => String::new(),
                };
                quality.add(Finding {
                    check,
                    bucket: pair.source.clone(),
                    keys,
                    bytes: 0,
                    detail,
                });
            }
        };
        ledger::for_each_key_by_form(conn, key, form, |form, key| {
            if group.0.as_deref() != Some(form.as_str()) {
                close(&mut group, quality);
                group.0 = Some(form);
            }
            group.1.push(key);
        })?;
        close(&mut group, quality);
    }
    Ok(())
}

/// Objects with the same size and content across the pairs' buckets: the
/// same single-part ETag (an MD5), or the same SHA-256 once copied.
pub fn duplicates(
    conn: &Connection,
    pairs: &[BucketPair],
    quality: &mut Quality,
) -> rusqlite::Result<()> {
    let planned = |row: &ledger::ContentRow| {
        pairs.iter().any(|p| {
            (p.source.as_str(), p.destination.as_str(), p.prefix.as_str())
                == (
                    row.pair.0.as_str(),
                    row.pair.1.as_str(),
                    row.pair.2.as_str(),
                )
        })
    };
    let mut group: Vec<ledger::ContentRow> = Vec::new();
    let close = |group: &mut Vec<ledger::ContentRow>, quality: &mut Quality| {
        if group.len() > 1 {
            let first = &group[0];
            let buckets: std::collections::BTreeSet<&str> =
                group.iter().map(|r| r.pair.0.as_str()).collect();
            let one_bucket = buckets.len() == 1;
            quality.add(Finding {
                check: Check::DuplicateContent,
                bucket: buckets.into_iter().collect::<Vec<_>>().join(" "),
                keys: group
                    .iter()
                    .map(|r| {
                        if one_bucket {
                            r.key.clone()
                        } else {
                            format!("{}/{}", r.pair.0, r.key)
                        }
                    })
                    .collect(),
                bytes: first.size * (group.len() as u64 - 1),
                detail: first.content.clone(),
            });
        }
        group.clear();
    };
    ledger::for_each_by_content(conn, |row| {
        if !planned(&row) {
            return;
        }
        if let Some(last) = group.last() {
            if (last.size, &last.content) != (row.size, &row.content) {
                close(&mut group, quality);
            }
        }
        group.push(row);
    })?;
    close(&mut group, quality);
    Ok(())
}

/// The Content-Types an extension may carry; None for an extension not checked.
pub fn expected_types(extension: &str) -> Option<&'static [&'static str]> {
    Some(match extension {
        "mp3" => &["audio/mpeg", "audio/mp3"],
        "m4a" | "m4b" => &["audio/mp4", "audio/x-m4a", "audio/x-m4b"],
        "aac" => &["audio/aac"],
        "wav" => &["audio/wav", "audio/x-wav", "audio/wave"],
        "flac" => &["audio/flac", "audio/x-flac"],
        "ogg" | "oga" => &["audio/ogg"],
        "jpg" | "jpeg" => &["image/jpeg"],
        "png" => &["image/png"],
        "gif" => &["image/gif"],
        "webp" => &["image/webp"],
        "xml" => &["application/xml", "text/xml", "application/onix+xml"],
        "json" => &["application/json"],
        "zip" => &["application/zip", "application/x-zip-compressed"],
        "pdf" => &["application/pdf"],
        "epub" => &["application/epub+zip"],
        "txt" => &["text/plain"],
        "csv" => &["text/csv"],
        _ => return None,
    })
}

/// The lower-case extension of the key's last name, if it has one.
pub fn extension(key: &str) -> Option<String> {
    key.rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
}

/// Whether `content_type` (parameters ignored) suits the key's extension;
/// None when the extension is not checked.
pub fn content_type_suits(key: &str, content_type: &str) -> Option<bool> {
    let expected = expected_types(&extension(key)?)?;
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(expected.contains(&essence.as_str()))
}

/// `--deep`: up to `n` objects of each pair whose extension is checked,
/// drawn at random (a reservoir: memory holds the sample, not the keys), with
/// how many such objects the pair has.
pub fn content_type_sample(
    conn: &Connection,
    pair: &BucketPair,
    n: usize,
) -> rusqlite::Result<(Vec<String>, u64)> {
    let mut sample = Vec::with_capacity(n);
    let mut population = 0u64;
    let key = (
        pair.source.as_str(),
        pair.destination.as_str(),
        pair.prefix.as_str(),
    );
    ledger::for_each_object(conn, key, |row| {
        if row.filtered.is_some()
            || extension(&row.key)
                .and_then(|e| expected_types(&e))
                .is_none()
        {
            return;
        }
        population += 1;
        if sample.len() < n {
            sample.push(row.key);
        } else {
            let slot = fastrand::u64(0..population) as usize;
            if slot < n {
                sample[slot] = row.key;
            }
        }
    })?;
    Ok((sample, population))
}

/// What a sampled object's HEAD says.
struct Sampled {
    content_type: String,
    has_tags: bool,
    /// Why neither its ETag (SSE-KMS) nor a stored checksum can prove its
    /// bytes, when they cannot.
    unproved: Option<&'static str>,
}

impl Sampled {
    fn of(h: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Sampled {
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        let kms = matches!(
            h.server_side_encryption(),
            Some(Sse::AwsKms | Sse::AwsKmsDsse)
        );
        Sampled {
            content_type: h.content_type().unwrap_or_default().to_owned(),
            has_tags: h.tag_count().unwrap_or(0) > 0,
            unproved: match crate::copy::proof::stored_of_head(h) {
                _ if !kms => None,
                None => Some("encrypted with SSE-KMS, and the source stored no checksum"),
                // ferry copies an SSE-KMS object on its own part boundaries.
                Some(s) if s.parts.is_some() => Some(
                    "encrypted with SSE-KMS, and its stored checksum is a composite of parts ferry does not cut alike",
                ),
                Some(_) => None,
            },
        }
    }
}

/// HEADs each sampled object at the source (with its stored checksum) and
/// reports the objects that neither their ETag nor a stored checksum can
/// prove (SSE-KMS, written before 2025), and the Content-Types
/// that contradict the extension. An object that cannot be asked (gone since
/// the listing) is counted in the note, never called a mismatch.
pub async fn check_content_types(
    source: &aws_sdk_s3::Client,
    samples: Vec<(BucketPair, Vec<String>, u64)>,
    quality: &mut Quality,
) {
    use futures::stream::{self, StreamExt};
    let mut asked = 0u64;
    let mut population = 0u64;
    let mut unanswered = 0u64;
    let mut tagged = 0u64;
    let mut no_proof = 0u64;
    for (pair, keys, of) in samples {
        population += of;
        let answers: Vec<(String, Option<Sampled>)> = stream::iter(keys)
            .map(|key| {
                let bucket = pair.source.clone();
                async move {
                    let head = source
                        .head_object()
                        .bucket(&bucket)
                        .key(&key)
                        .customize()
                        .mutate_request(crate::store::ask_stored_checksum)
                        .send()
                        .await;
                    (key, head.ok().map(|h| Sampled::of(&h)))
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for (key, answer) in answers {
            asked += 1;
            let Some(Sampled {
                content_type,
                has_tags,
                unproved,
            }) = answer
            else {
                unanswered += 1;
                continue;
            };
            tagged += u64::from(has_tags);
            if let Some(why) = unproved {
                no_proof += 1;
                quality.add(Finding {
                    check: Check::NoSourceProof,
                    bucket: pair.source.clone(),
                    keys: vec![key.clone()],
                    bytes: 0,
                    detail: why.into(),
                });
            }
            if content_type_suits(&key, &content_type) == Some(false) {
                let ext = extension(&key).unwrap_or_default();
                let expected = extension(&key)
                    .and_then(|e| expected_types(&e))
                    .map_or("", |t| t[0]);
                quality.add(Finding {
                    check: Check::ContentType,
                    bucket: pair.source.clone(),
                    keys: vec![key],
                    bytes: 0,
                    detail: format!("stored as {content_type:?}; .{ext} is {expected}"),
                });
            }
        }
    }
    quality.note(
        Check::NoSourceProof,
        format!("HEAD of the same sample of {asked}: {no_proof} have neither an MD5 ETag nor a stored checksum ferry can check"),
    );
    quality.note(
        Check::ContentType,
        format!(
            "HEAD of a random sample of {asked} of the {population} objects whose extension is checked; {tagged} of them carry tags{}",
            if unanswered > 0 {
                format!("; {unanswered} did not answer")
            } else {
                String::new()
            }
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(key: &str, size: u64) -> Vec<&'static str> {
        let mut q = Quality::default();
        check_key("b", key, size, &mut q);
        q.findings().iter().map(|f| f.check.name()).collect()
    }

    #[test]
    fn each_key_check_finds_its_keys_and_nothing_else() {
        assert!(found("covers/isbn-0001.jpg", 10).is_empty());
        assert!(found("covers/folder/", 0).is_empty());
        assert!(found("covers/with space/cover art.jpg", 10).is_empty());
        assert_eq!(found("placeholders/empty.txt", 0), ["empty_object"]);
        assert_eq!(found("covers/tab\there.jpg", 1), ["control_character"]);
        assert_eq!(found("covers/bad-\u{FFFD}.jpg", 1), ["invalid_utf8"]);
        assert_eq!(
            found("covers/trailing.jpg ", 1),
            ["leading_or_trailing_space"]
        );
        assert_eq!(found(" covers/x.jpg", 1), ["leading_or_trailing_space"]);
        assert_eq!(
            found("covers/folder /x.jpg", 1),
            ["leading_or_trailing_space"]
        );
        assert_eq!(found("covers//x.jpg", 1), ["double_slash"]);
    }

    fn ledger_with(rows: &[(&str, u64, &str)]) -> (tempfile::TempDir, Connection, BucketPair) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open_for_writing(&dir.path().join("l.sqlite")).unwrap();
        let b = ledger::ensure_bucket(&conn, "media", "hub-media", "").unwrap();
        let listed: Vec<ledger::ListedObject> = rows
            .iter()
            .map(|(key, size, etag)| ledger::ListedObject {
                key: (*key).into(),
                size: *size,
                etag: (*etag).into(),
                last_modified: None,
                storage_class: None,
                filtered: None,
            })
            .collect();
        let last = listed.last().unwrap().key.clone();
        ledger::record_listing_page(&mut conn, b, 1, &listed, &last).unwrap();
        let pair = BucketPair {
            source: "media".into(),
            destination: "hub-media".into(),
            prefix: "".into(),
            ..Default::default()
        };
        (dir, conn, pair)
    }

    #[test]
    fn collisions_and_duplicates_name_exactly_the_keys_involved() {
        let (_dir, conn, pair) = ledger_with(&[
            ("a/caf\u{e9}.jpg", 10, "e1"),
            ("a/cafe\u{301}.jpg", 11, "e2"),
            ("a/Cover.jpg", 12, "e3"),
            ("a/cover.jpg", 13, "e4"),
            ("a/COVER.jpg", 14, "e5"),
            ("a/one.jpg", 100, "same"),
            ("b/two.jpg", 100, "same"),
            ("c/three.jpg", 100, "same"),
            // Same ETag, other size: not the same bytes.
            ("c/four.jpg", 101, "same"),
            // Multipart ETags say nothing of the bytes before a copy.
            ("d/m1.mp3", 500, "abc-2"),
            ("d/m2.mp3", 500, "abc-2"),
            ("e/alone.jpg", 7, "e6"),
        ]);
        let mut q = Quality::default();
        collisions(&conn, &pair, &mut q).unwrap();
        duplicates(&conn, &[pair], &mut q).unwrap();
        let mut got: Vec<(&str, Vec<String>, u64)> = q
            .findings()
            .iter()
            .map(|f| (f.check.name(), f.keys.clone(), f.bytes))
            .collect();
        got.sort();
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (
                    "case_collision",
                    keys(&["a/COVER.jpg", "a/Cover.jpg", "a/cover.jpg"]),
                    0
                ),
                (
                    "duplicate_content",
                    keys(&["a/one.jpg", "b/two.jpg", "c/three.jpg"]),
                    200
                ),
                (
                    "unicode_nfc_collision",
                    keys(&["a/cafe\u{301}.jpg", "a/caf\u{e9}.jpg"]),
                    0
                ),
            ]
        );
    }

    #[test]
    fn content_types_are_checked_by_extension() {
        assert_eq!(content_type_suits("a/b.mp3", "audio/mpeg"), Some(true));
        assert_eq!(
            content_type_suits("a/b.MP3", "Audio/MPEG; charset=x"),
            Some(true)
        );
        assert_eq!(
            content_type_suits("a/b.mp3", "application/octet-stream"),
            Some(false)
        );
        assert_eq!(
            content_type_suits("a/b.unknown", "application/octet-stream"),
            None
        );
        assert_eq!(content_type_suits("a/no-extension", "text/plain"), None);
    }

    #[test]
    fn the_summary_counts_every_check_and_caps_the_rows() {
        let mut q = Quality::default();
        for i in 0..SHOWN_PER_CHECK + 5 {
            check_key("b", &format!("e{i}"), 0, &mut q);
        }
        let tables = q.tables();
        assert_eq!(tables[0].rows.len() as u64, SHOWN_PER_CHECK);
        let empty = tables[1]
            .rows
            .iter()
            .find(|r| r[0] == Cell::from("empty_object"))
            .unwrap();
        assert_eq!(empty[1], Cell::Count(SHOWN_PER_CHECK + 5));
        assert_eq!(tables[1].rows.len(), Check::ALL.len());
    }
}
