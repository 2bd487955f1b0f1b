//! Checksums computed on the bytes as they pass (MD5, SHA-256, S3 ETags).
//! It must not read anything a second time, nor know where the bytes go.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aws_smithy_types::byte_stream::ByteStream;
use base64::Engine as _;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::sync::Notify;

/// MD5 and SHA-256 of some bytes, and how many there were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
    pub len: u64,
}

impl Digests {
    pub fn of(data: &[u8]) -> Digests {
        let mut h = Hasher::default();
        h.update(data);
        h.finish()
    }

    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    pub fn md5_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.md5)
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

#[derive(Clone, Default)]
pub struct Hasher {
    md5: Md5,
    sha256: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha256.update(data);
        self.len += data.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.finalize().into(),
            sha256: self.sha256.finalize().into(),
            len: self.len,
        }
    }
}

/// The ETag S3 gives a multipart object: MD5 of the parts' MD5s, then `-N`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

/// ETags come quoted from S3; compare them bare.
pub fn bare_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// What a [`HashingBody`] saw.
#[derive(Default)]
pub struct Tap {
    hasher: Hasher,
    /// The chunks themselves, kept (by reference count, not copied) when the
    /// whole-object hash must see them later, in part order.
    kept: Vec<Bytes>,
    keep: bool,
}

impl Tap {
    pub fn finish(self) -> (Digests, Vec<Bytes>) {
        (self.hasher.finish(), self.kept)
    }
}

/// A request body that streams a source response into an upload while
/// hashing every chunk on its way through.
pub struct HashingBody {
    inner: ByteStream,
    len: u64,
    tap: Arc<Mutex<Tap>>,
}

impl HashingBody {
    pub fn new(inner: ByteStream, len: u64, keep_chunks: bool) -> (HashingBody, Arc<Mutex<Tap>>) {
        let tap = Arc::new(Mutex::new(Tap {
            keep: keep_chunks,
            ..Tap::default()
        }));
        (
            HashingBody {
                inner,
                len,
                tap: tap.clone(),
            },
            tap,
        )
    }
}

impl http_body::Body for HashingBody {
    type Data = Bytes;
    type Error = aws_smithy_types::byte_stream::error::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let mut tap = self.tap.lock().expect("tap lock");
                tap.hasher.update(&chunk);
                if tap.keep {
                    tap.kept.push(chunk.clone());
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    // The exact length makes the upload carry Content-Length, and makes a
    // source stream that ends early fail the upload instead of shortening it.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// The whole-object MD5 and SHA-256 of an object whose parts travel in
/// parallel: each part, once acknowledged, feeds its bytes in part order.
pub struct OrderedHasher {
    state: Mutex<(u32, Hasher)>,
    turn: Notify,
}

impl OrderedHasher {
    pub fn new(first_part: u32) -> OrderedHasher {
        OrderedHasher {
            state: Mutex::new((first_part, Hasher::default())),
            turn: Notify::new(),
        }
    }

    /// Waits until every part before `part_number` has been fed, then feeds `chunks`.
    pub async fn feed(&self, part_number: u32, chunks: Vec<Bytes>) {
        loop {
            let notified = self.turn.notified();
            {
                let mut state = self.state.lock().expect("hasher lock");
                if state.0 == part_number {
                    for c in &chunks {
                        state.1.update(c);
                    }
                    state.0 += 1;
                    drop(state);
                    self.turn.notify_waiters();
                    return;
                }
            }
            notified.await;
        }
    }

    pub fn finish(self) -> Digests {
        self.state.into_inner().expect("hasher lock").1.finish()
    }
}

/// One part of an object as it must read back: its place and its SHA-256.
#[derive(Clone, Debug)]
pub struct ExpectedPart {
    pub number: u32,
    pub length: u64,
    /// None: the length is checked, the bytes are not.
    pub sha256: Option<String>,
}

/// Streams `body` once: the whole object's digests, and whether every part
/// (split at the expected lengths) has the SHA-256 it must have.
pub async fn read_and_check(
    mut body: ByteStream,
    parts: Vec<ExpectedPart>,
) -> Result<(Digests, Result<(), String>), aws_smithy_types::byte_stream::error::Error> {
    let mut whole = Hasher::default();
    let mut checker = PartChecker::new(parts);
    let mut verdict = Ok(());
    while let Some(chunk) = body.try_next().await? {
        whole.update(&chunk);
        if verdict.is_ok() {
            verdict = checker.update(&chunk);
        }
    }
    if verdict.is_ok() {
        verdict = checker.finish();
    }
    Ok((whole.finish(), verdict))
}

/// Splits a stream at part boundaries and checks each part's SHA-256.
struct PartChecker {
    parts: Vec<ExpectedPart>,
    index: usize,
    left: u64,
    hasher: Hasher,
}

impl PartChecker {
    fn new(parts: Vec<ExpectedPart>) -> Self {
        let left = parts.first().map_or(0, |p| p.length);
        PartChecker {
            parts,
            index: 0,
            left,
            hasher: Hasher::default(),
        }
    }

    fn update(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while !chunk.is_empty() {
            if self.index >= self.parts.len() {
                return Err("the object is longer than its parts".into());
            }
            let take = (self.left as usize).min(chunk.len());
            self.hasher.update(&chunk[..take]);
            chunk = &chunk[take..];
            self.left -= take as u64;
            if self.left == 0 {
                self.close_part()?;
            }
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<(), String> {
        let part = &self.parts[self.index];
        let got = std::mem::take(&mut self.hasher).finish().sha256_hex();
        if let Some(want) = part.sha256.as_deref().filter(|want| *want != got) {
            return Err(format!(
                "part {} reads back with SHA-256 {got}, not the {want} recorded when it was sent",
                part.number
            ));
        }
        self.index += 1;
        self.left = self.parts.get(self.index).map_or(0, |p| p.length);
        Ok(())
    }

    fn finish(mut self) -> Result<(), String> {
        // Zero-length parts (an empty object) end without a byte.
        while self.index < self.parts.len() && self.left == 0 {
            self.close_part()?;
        }
        if self.index < self.parts.len() {
            return Err("the object is shorter than its parts".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        let d = Digests::of(b"abc");
        assert_eq!(d.md5_hex(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.md5_base64(), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(d.len, 3);
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        let parts = [Digests::of(b"hello ").md5, Digests::of(b"world").md5];
        let mut joined = Vec::new();
        joined.extend_from_slice(&parts[0]);
        joined.extend_from_slice(&parts[1]);
        assert_eq!(
            multipart_etag(&parts),
            format!("{}-2", Digests::of(&joined).md5_hex())
        );
    }

    #[tokio::test]
    async fn ordered_hasher_hashes_parts_in_order_whatever_order_they_finish() {
        let h = Arc::new(OrderedHasher::new(1));
        let late = {
            let h = h.clone();
            tokio::spawn(async move { h.feed(2, vec![Bytes::from_static(b"world")]).await })
        };
        tokio::task::yield_now().await;
        h.feed(1, vec![Bytes::from_static(b"hello "), Bytes::new()])
            .await;
        late.await.unwrap();
        let d = Arc::try_unwrap(h).ok().unwrap().finish();
        assert_eq!(d, Digests::of(b"hello world"));
    }

    fn part(number: u32, data: &[u8]) -> ExpectedPart {
        ExpectedPart {
            number,
            length: data.len() as u64,
            sha256: Some(Digests::of(data).sha256_hex()),
        }
    }

    #[tokio::test]
    async fn read_and_check_finds_the_part_that_differs() {
        let body = || ByteStream::from(Bytes::from_static(b"hello world"));
        let (whole, ok) = read_and_check(body(), vec![part(1, b"hello "), part(2, b"world")])
            .await
            .unwrap();
        assert_eq!(whole, Digests::of(b"hello world"));
        assert_eq!(ok, Ok(()));
        let (_, bad) = read_and_check(body(), vec![part(1, b"hello "), part(2, b"World")])
            .await
            .unwrap();
        assert!(bad.unwrap_err().starts_with("part 2 "));
        let (_, short) = read_and_check(body(), vec![part(1, b"hello world!")])
            .await
            .unwrap();
        assert!(short.unwrap_err().contains("shorter"));
    }
}
