//! What proves a copy when it is read back (each part's check against the ledger), and the ETag bytes make on given part boundaries.
//! It must not read a stream twice.

use md5::{Digest as _, Md5};

use aws_smithy_types::byte_stream::ByteStream;

use super::{multipart_etag, Digests, Hasher};

/// What proves one part of a copy when it is read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartCheck {
    /// The whole object's SHA-256 checkpoint at the part's end.
    Chain(String),
    /// The SHA-256 of the part alone (a part hashed on its own as it streamed).
    Sha256(String),
    /// Only its length: nothing was recorded of its bytes.
    Length,
}

impl PartCheck {
    /// From the ledger's columns: a checkpoint if there is one, else the
    /// part's own SHA-256 if there is one.
    pub fn from_columns(sha256: &str, sha256_state: Option<&str>) -> PartCheck {
        match (sha256_state.filter(|s| !s.is_empty()), sha256) {
            (Some(state), _) => PartCheck::Chain(state.to_owned()),
            (None, sha) if !sha.is_empty() => PartCheck::Sha256(sha.to_owned()),
            _ => PartCheck::Length,
        }
    }
}

/// One part of an object as it must read back: its place and its proof.
#[derive(Clone, Debug)]
pub struct ExpectedPart {
    pub number: u32,
    pub length: u64,
    pub check: PartCheck,
}

/// Streams `body` once: the whole object's SHA-256 and length (and MD5 when
/// `md5`: SHA-256 proves the bytes, MD5 only a source's single-part ETag),
/// and whether every part (split at the expected lengths) reads back as
/// recorded.
pub async fn read_and_check(
    mut body: ByteStream,
    parts: Vec<ExpectedPart>,
    md5: bool,
) -> Result<(Digests, Result<(), String>), aws_smithy_types::byte_stream::error::Error> {
    let mut checker = PartChecker::new(parts, md5);
    while let Some(chunk) = body.try_next().await? {
        checker.update(&chunk);
    }
    Ok(checker.finish())
}

/// Hashes a stream whole and checks each part at its boundary.
struct PartChecker {
    whole: Hasher,
    parts: Vec<ExpectedPart>,
    index: usize,
    left: u64,
    /// The part's own SHA-256, for a part recorded with one.
    alone: Option<Hasher>,
    verdict: Result<(), String>,
}

impl PartChecker {
    fn new(parts: Vec<ExpectedPart>, md5: bool) -> Self {
        let mut checker = PartChecker {
            whole: Hasher::new(md5, true),
            parts,
            index: 0,
            left: 0,
            alone: None,
            verdict: Ok(()),
        };
        checker.open_part();
        checker
    }

    fn open_part(&mut self) {
        let part = self.parts.get(self.index);
        self.left = part.map_or(0, |p| p.length);
        self.alone = part
            .filter(|p| matches!(p.check, PartCheck::Sha256(_)))
            .map(|_| Hasher::new(false, true));
    }

    fn update(&mut self, mut chunk: &[u8]) {
        if self.verdict.is_err() {
            self.whole.update(chunk);
            return;
        }
        while !chunk.is_empty() {
            if self.index >= self.parts.len() {
                self.verdict = Err("the object is longer than its parts".into());
                self.whole.update(chunk);
                return;
            }
            let take = (self.left as usize).min(chunk.len());
            self.whole.update(&chunk[..take]);
            if let Some(alone) = &mut self.alone {
                alone.update(&chunk[..take]);
            }
            chunk = &chunk[take..];
            self.left -= take as u64;
            if self.left == 0 {
                if let Err(e) = self.close_part() {
                    self.verdict = Err(e);
                    self.whole.update(chunk);
                    return;
                }
            }
        }
    }

    fn close_part(&mut self) -> Result<(), String> {
        let part = &self.parts[self.index];
        match &part.check {
            PartCheck::Chain(want) => {
                let got = self.whole.checkpoint().unwrap_or_default();
                if &got != want {
                    return Err(format!(
                        "part {} reads back with the object's SHA-256 state {got} at its end, not the {want} recorded when it was sent",
                        part.number
                    ));
                }
            }
            PartCheck::Sha256(want) => {
                let got = self.alone.take().map(|h| h.finish().sha256_hex());
                if got.as_deref() != Some(want.as_str()) {
                    return Err(format!(
                        "part {} reads back with SHA-256 {}, not the {want} recorded when it was sent",
                        part.number,
                        got.unwrap_or_default()
                    ));
                }
            }
            PartCheck::Length => {}
        }
        self.index += 1;
        self.open_part();
        Ok(())
    }

    fn finish(mut self) -> (Digests, Result<(), String>) {
        // Zero-length parts (an empty object) end without a byte.
        while self.verdict.is_ok() && self.index < self.parts.len() && self.left == 0 {
            if let Err(e) = self.close_part() {
                self.verdict = Err(e);
            }
        }
        if self.verdict.is_ok() && self.index < self.parts.len() {
            self.verdict = Err("the object is shorter than its parts".into());
        }
        (self.whole.finish(), self.verdict)
    }
}

/// The ETag S3 gives bytes uploaded in parts of the given lengths (a
/// multipart upload, `md5-of-md5s-N` even for one part) or in one PUT (the
/// plain MD5), computed as the bytes pass, with the whole object's SHA-256
/// and MD5. It proves a copy equal to a source that shows that ETag without
/// reading the source.
pub struct EtagOnParts {
    multipart: bool,
    whole: Hasher,
    part: Md5,
    lengths: Vec<u64>,
    index: usize,
    left: u64,
    part_md5s: Vec<[u8; 16]>,
    too_long: bool,
}

impl EtagOnParts {
    /// `multipart`: uploaded in parts (`lengths`), else in one PUT (one length).
    pub fn new(lengths: Vec<u64>, multipart: bool) -> EtagOnParts {
        let left = lengths.first().copied().unwrap_or(0);
        EtagOnParts {
            multipart,
            whole: Hasher::default(),
            part: Md5::new(),
            lengths,
            index: 0,
            left,
            part_md5s: Vec::new(),
            too_long: false,
        }
    }

    pub fn update(&mut self, mut chunk: &[u8]) {
        self.whole.update(chunk);
        while !chunk.is_empty() {
            if self.index >= self.lengths.len() {
                self.too_long = true;
                return;
            }
            let take = (self.left as usize).min(chunk.len());
            self.part.update(&chunk[..take]);
            self.left -= take as u64;
            chunk = &chunk[take..];
            if self.left == 0 {
                self.close_part();
            }
        }
    }

    fn close_part(&mut self) {
        let md5 = std::mem::replace(&mut self.part, Md5::new()).finalize();
        self.part_md5s.push(md5.into());
        self.index += 1;
        self.left = self.lengths.get(self.index).copied().unwrap_or(0);
    }

    /// The whole object's digests, and the ETag; None when the bytes do not
    /// fill the parts exactly.
    pub fn finish(mut self) -> (Digests, Option<String>) {
        // Zero-length parts (an empty object) end without a byte.
        while self.index < self.lengths.len() && self.left == 0 {
            self.close_part();
        }
        let whole = self.whole.finish();
        let etag = match self.part_md5s.len() {
            _ if self.too_long || self.index < self.lengths.len() => None,
            1 if !self.multipart => Some(whole.md5_hex()),
            _ => Some(multipart_etag(&self.part_md5s)),
        };
        (whole, etag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::Sha256Chain;
    use bytes::Bytes;

    #[test]
    fn the_etag_on_parts_is_the_one_s3_gives_and_bytes_that_do_not_fill_the_parts_have_none() {
        let data: Vec<u8> = (0..25u32).map(|i| i as u8).collect();
        let mut one = EtagOnParts::new(vec![25], false);
        one.update(&data[..7]);
        one.update(&data[7..]);
        let (whole, etag) = one.finish();
        assert_eq!(etag.as_deref(), Some(Digests::of(&data).md5_hex().as_str()));
        assert_eq!(whole.sha256_hex(), Digests::of(&data).sha256_hex());

        let mut parts = EtagOnParts::new(vec![10, 10, 5], true);
        for chunk in data.chunks(3) {
            parts.update(chunk);
        }
        let md5 = |b: &[u8]| Digests::of(b).md5.unwrap();
        let expected = multipart_etag(&[md5(&data[..10]), md5(&data[10..20]), md5(&data[20..])]);
        assert_eq!(parts.finish().1, Some(expected));
        // Other part boundaries make another ETag.
        let mut other = EtagOnParts::new(vec![12, 13], true);
        other.update(&data);
        assert_ne!(
            other.finish().1,
            Some(multipart_etag(&[
                md5(&data[..10]),
                md5(&data[10..20]),
                md5(&data[20..])
            ]))
        );

        let mut short = EtagOnParts::new(vec![10, 10, 10], true);
        short.update(&data);
        assert_eq!(short.finish().1, None, "shorter than its parts");
        let mut long = EtagOnParts::new(vec![10, 10], true);
        long.update(&data);
        assert_eq!(long.finish().1, None, "longer than its parts");
        let empty = EtagOnParts::new(vec![0], false);
        assert_eq!(
            empty.finish().1.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        // A multipart upload of one part: the MD5 of its MD5, then -1.
        let mut one_part = EtagOnParts::new(vec![25], true);
        one_part.update(&data);
        assert_eq!(one_part.finish().1, Some(multipart_etag(&[md5(&data)])));
    }

    fn chained(parts: &[&[u8]]) -> Vec<ExpectedPart> {
        let mut chain = Sha256Chain::default();
        parts
            .iter()
            .enumerate()
            .map(|(i, data)| {
                chain.update(data);
                ExpectedPart {
                    number: i as u32 + 1,
                    length: data.len() as u64,
                    check: PartCheck::Chain(chain.checkpoint()),
                }
            })
            .collect()
    }

    fn alone(number: u32, data: &[u8]) -> ExpectedPart {
        ExpectedPart {
            number,
            length: data.len() as u64,
            check: PartCheck::Sha256(Digests::of(data).sha256_hex()),
        }
    }

    #[tokio::test]
    async fn read_and_check_finds_the_part_that_differs() {
        let body = || ByteStream::from(Bytes::from_static(b"hello world"));
        for (good, bad) in [
            (
                chained(&[b"hello ", b"world"]),
                chained(&[b"hello ", b"World"]),
            ),
            (
                vec![alone(1, b"hello "), alone(2, b"world")],
                vec![alone(1, b"hello "), alone(2, b"World")],
            ),
        ] {
            let (whole, ok) = read_and_check(body(), good, true).await.unwrap();
            assert_eq!(whole, Digests::of(b"hello world"));
            assert_eq!(ok, Ok(()));
            let (whole, bad) = read_and_check(body(), bad, false).await.unwrap();
            assert!(bad.unwrap_err().starts_with("part 2 "));
            // The whole object is still hashed, for the verdict's record.
            assert_eq!(whole.sha256, Digests::of(b"hello world").sha256);
            assert_eq!((whole.md5, whole.len), (None, 11));
        }
        let (_, short) = read_and_check(body(), chained(&[b"hello world!"]), false)
            .await
            .unwrap();
        assert!(short.unwrap_err().contains("shorter"));
        let (_, long) = read_and_check(body(), chained(&[b"hello"]), false)
            .await
            .unwrap();
        assert!(long.unwrap_err().contains("longer"));
    }
}
