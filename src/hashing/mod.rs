//! Checksums computed on the bytes as they pass (MD5, SHA-256, S3 ETags, and the source's stored checksum in `stored.rs`).
//! It must not read anything a second time, nor know where the bytes go.
//!
//! Each byte is hashed at most once per algorithm on its way to the
//! destination: MD5 per part (the part's ETag), SHA-256 once over the whole
//! object in order (and MD5 over the whole, for a single-part source sent in
//! parts, whose ETag is that MD5). The state at each part boundary
//! ([`Sha256Chain`], [`Md5Chain`]) is what proves a part in place: it lets a
//! resumed upload carry on hashing without reading its earlier parts again,
//! and the read-back check each part.

pub mod stored;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aws_smithy_types::byte_stream::ByteStream;
use base64::Engine as _;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use md5::{Digest as _, Md5};
use md5_resumable::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::digest::generic_array::GenericArray;
use tokio::sync::Notify;

/// MD5 and SHA-256 of some bytes, and how many there were. A digest that
/// was not needed is not computed: then it is None, and its hex is empty
/// (as the ledger stores it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub md5: Option<[u8; 16]>,
    pub sha256: Option<[u8; 32]>,
    pub len: u64,
}

impl Digests {
    pub fn of(data: &[u8]) -> Digests {
        let mut h = Hasher::default();
        h.update(data);
        h.finish()
    }

    pub fn md5_hex(&self) -> String {
        self.md5.map(hex::encode).unwrap_or_default()
    }

    pub fn md5_base64(&self) -> String {
        self.md5
            .map(|m| base64::engine::general_purpose::STANDARD.encode(m))
            .unwrap_or_default()
    }

    pub fn sha256_hex(&self) -> String {
        self.sha256.map(hex::encode).unwrap_or_default()
    }
}

const SHA256_INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 whose running state can be written down at any byte and taken up
/// again: sha2's own compression function, with the padding of FIPS 180-4.
#[derive(Clone)]
pub struct Sha256Chain {
    state: [u32; 8],
    pending: [u8; 64],
    filled: usize,
    len: u64,
}

impl Default for Sha256Chain {
    fn default() -> Self {
        Sha256Chain {
            state: SHA256_INITIAL,
            pending: [0; 64],
            filled: 0,
            len: 0,
        }
    }
}

impl Sha256Chain {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.filled > 0 {
            let take = (64 - self.filled).min(data.len());
            self.pending[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < 64 {
                return;
            }
            let block = self.pending;
            compress(&mut self.state, &block);
            self.filled = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            compress(&mut self.state, block);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// How many bytes went in.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut padding = [0u8; 64];
        padding[0] = 0x80;
        let zeros = if self.filled < 56 {
            56 - self.filled
        } else {
            120 - self.filled
        };
        self.update(&padding[..zeros]);
        self.update(&bits.to_be_bytes());
        debug_assert_eq!(self.filled, 0);
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The state as text for the ledger: `LENGTH:STATE:TAIL`, the last two
    /// in hex (the tail is the bytes of a block not yet full).
    pub fn checkpoint(&self) -> String {
        let mut state = [0u8; 32];
        for (bytes, word) in state.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        format!(
            "{}:{}:{}",
            self.len,
            hex::encode(state),
            hex::encode(&self.pending[..self.filled])
        )
    }

    /// Takes up a [`checkpoint`](Self::checkpoint); None if the text is not one.
    pub fn resume(checkpoint: &str) -> Option<Sha256Chain> {
        let mut fields = checkpoint.split(':');
        let len: u64 = fields.next()?.parse().ok()?;
        let state_hex = fields.next()?;
        let tail = hex::decode(fields.next()?).ok()?;
        if fields.next().is_some() || tail.len() as u64 != len % 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(state_hex, &mut bytes).ok()?;
        let mut chain = Sha256Chain {
            len,
            filled: tail.len(),
            ..Sha256Chain::default()
        };
        for (word, b) in chain.state.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_be_bytes(b.try_into().ok()?);
        }
        chain.pending[..tail.len()].copy_from_slice(&tail);
        Some(chain)
    }
}

fn compress(state: &mut [u32; 8], block: &[u8]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

/// The whole-object MD5 of a single-part source sent in parts, whose state
/// can be written down at a part's end and taken up again: a resumed upload
/// must still prove the object against the source's ETag before completing it.
#[derive(Clone, Default)]
pub struct Md5Chain(md5_resumable::Md5);

impl Md5Chain {
    pub fn update(&mut self, data: &[u8]) {
        md5_resumable::Digest::update(&mut self.0, data);
    }

    pub fn finish(self) -> [u8; 16] {
        md5_resumable::Digest::finalize(self.0).into()
    }

    /// The state as hex, for the ledger.
    pub fn checkpoint(&self) -> String {
        hex::encode(self.0.serialize())
    }

    /// Takes up a [`checkpoint`](Self::checkpoint); None if the text is not one.
    pub fn resume(checkpoint: &str) -> Option<Md5Chain> {
        let bytes = hex::decode(checkpoint).ok()?;
        let state = SerializedState::<md5_resumable::Md5>::try_from(&bytes[..]).ok()?;
        md5_resumable::Md5::deserialize(&state).ok().map(Md5Chain)
    }
}

/// MD5 and SHA-256 as the bytes pass, each only when asked for.
#[derive(Clone)]
pub struct Hasher {
    md5: Option<Md5>,
    sha256: Option<Sha256Chain>,
    len: u64,
}

impl Default for Hasher {
    /// Both digests.
    fn default() -> Self {
        Hasher::new(true, true)
    }
}

impl Hasher {
    pub fn new(md5: bool, sha256: bool) -> Hasher {
        Hasher {
            md5: md5.then(Md5::new),
            sha256: sha256.then(Sha256Chain::default),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        if let Some(s) = &mut self.sha256 {
            s.update(data);
        }
        self.len += data.len() as u64;
    }

    /// The SHA-256 state so far, if SHA-256 is computed.
    pub fn checkpoint(&self) -> Option<String> {
        self.sha256.as_ref().map(Sha256Chain::checkpoint)
    }

    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.map(|m| m.finalize().into()),
            sha256: self.sha256.map(Sha256Chain::finish),
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
    /// The part's own checksum in the algorithm the source stored, if any.
    checksum: Option<stored::ChecksumHasher>,
}

/// What a [`Tap`] saw, once the body has passed.
pub struct Tapped {
    pub digests: Digests,
    pub chunks: Vec<Bytes>,
    pub checksum: Option<Vec<u8>>,
}

impl Tap {
    pub fn finish(self) -> Tapped {
        Tapped {
            digests: self.hasher.finish(),
            chunks: self.kept,
            checksum: self.checksum.map(stored::ChecksumHasher::finish),
        }
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
    /// MD5 always (the part's ETag); SHA-256 of the part alone when
    /// `part_sha256`; the chunks kept for an ordered whole-object hash when
    /// `keep_chunks`; the part's checksum in the source's stored
    /// algorithm when `checksum` names one.
    pub fn new(
        inner: ByteStream,
        len: u64,
        (part_sha256, keep_chunks): (bool, bool),
        checksum: Option<stored::Algorithm>,
    ) -> (HashingBody, Arc<Mutex<Tap>>) {
        let tap = Arc::new(Mutex::new(Tap {
            hasher: Hasher::new(true, part_sha256),
            kept: Vec::new(),
            keep: keep_chunks,
            checksum: checksum.map(stored::ChecksumHasher::new),
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
                if let Some(c) = &mut tap.checksum {
                    c.update(&chunk);
                }
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

/// The whole-object SHA-256 (and MD5, when asked) of an object whose parts
/// travel in parallel: each part, once acknowledged, feeds its bytes in part
/// order, and gets the states at its end to write down.
pub struct OrderedHasher {
    state: Mutex<Ordered>,
    turn: Notify,
}

struct Ordered {
    next_part: u32,
    sha256: Sha256Chain,
    md5: Option<Md5Chain>,
}

/// The whole object's hash states at the end of a part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    pub sha256: String,
    pub md5: Option<String>,
}

impl OrderedHasher {
    /// Starts at the first byte, with MD5 too when `md5`.
    pub fn new(md5: bool) -> OrderedHasher {
        OrderedHasher::continuing(1, Sha256Chain::default(), md5.then(Md5Chain::default))
    }

    /// Carries on after the parts before `first_part`, whose states are given.
    pub fn continuing(
        first_part: u32,
        sha256: Sha256Chain,
        md5: Option<Md5Chain>,
    ) -> OrderedHasher {
        OrderedHasher {
            state: Mutex::new(Ordered {
                next_part: first_part,
                sha256,
                md5,
            }),
            turn: Notify::new(),
        }
    }

    /// Waits until every part before `part_number` has been fed, then feeds
    /// `chunks`; returns the states at the end of this part.
    pub async fn feed(&self, part_number: u32, chunks: Vec<Bytes>) -> Checkpoints {
        loop {
            let notified = self.turn.notified();
            {
                let mut state = self.state.lock().expect("hasher lock");
                if state.next_part == part_number {
                    for c in &chunks {
                        state.sha256.update(c);
                        if let Some(md5) = &mut state.md5 {
                            md5.update(c);
                        }
                    }
                    state.next_part += 1;
                    let checkpoints = Checkpoints {
                        sha256: state.sha256.checkpoint(),
                        md5: state.md5.as_ref().map(Md5Chain::checkpoint),
                    };
                    drop(state);
                    self.turn.notify_waiters();
                    return checkpoints;
                }
            }
            notified.await;
        }
    }

    pub fn finish(self) -> Digests {
        let state = self.state.into_inner().expect("hasher lock");
        Digests {
            len: state.sha256.len(),
            md5: state.md5.map(Md5Chain::finish),
            sha256: Some(state.sha256.finish()),
        }
    }
}

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
    fn the_chain_is_sha256_at_every_length_and_every_cut() {
        use sha2::Digest as _;
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            let want: [u8; 32] = sha2::Sha256::digest(&data[..len]).into();
            for cut in [0, 1, len / 3, len.saturating_sub(1), len] {
                let cut = cut.min(len);
                let mut first = Sha256Chain::default();
                first.update(&data[..cut]);
                // Written down and taken up again, as across a restart.
                let mut second = Sha256Chain::resume(&first.checkpoint()).unwrap();
                second.update(&data[cut..len]);
                assert_eq!(second.finish(), want, "length {len}, cut at {cut}");
            }
        }
    }

    #[test]
    fn a_checkpoint_that_is_not_one_is_refused() {
        for bad in ["", "3", "3:00:abcdef", "x:00:", "0:zz:", "1:00:"] {
            assert!(Sha256Chain::resume(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        let parts = [
            Digests::of(b"hello ").md5.unwrap(),
            Digests::of(b"world").md5.unwrap(),
        ];
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
        let h = Arc::new(OrderedHasher::new(true));
        let late = {
            let h = h.clone();
            tokio::spawn(async move { h.feed(2, vec![Bytes::from_static(b"world")]).await })
        };
        tokio::task::yield_now().await;
        let first = h
            .feed(1, vec![Bytes::from_static(b"hello "), Bytes::new()])
            .await;
        late.await.unwrap();
        let d = Arc::try_unwrap(h).ok().unwrap().finish();
        assert_eq!(d, Digests::of(b"hello world"));
        // Carrying on from part 1's checkpoints gives the same digests.
        let resumed = OrderedHasher::continuing(
            2,
            Sha256Chain::resume(&first.sha256).unwrap(),
            Md5Chain::resume(first.md5.as_deref().unwrap()),
        );
        resumed.feed(2, vec![Bytes::from_static(b"world")]).await;
        assert_eq!(resumed.finish(), d);
    }

    #[test]
    fn the_md5_chain_is_md5_at_every_length_and_every_cut() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 11 + 5) as u8).collect();
        for len in 0..data.len() {
            let want = Digests::of(&data[..len]).md5.unwrap();
            for cut in [0, 1, len / 3, len.saturating_sub(1), len] {
                let cut = cut.min(len);
                let mut first = Md5Chain::default();
                first.update(&data[..cut]);
                let mut second = Md5Chain::resume(&first.checkpoint()).unwrap();
                second.update(&data[cut..len]);
                assert_eq!(second.finish(), want, "length {len}, cut at {cut}");
            }
        }
        for bad in ["", "zz", "00"] {
            assert!(Md5Chain::resume(bad).is_none(), "{bad:?}");
        }
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
