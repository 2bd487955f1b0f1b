//! The request body that streams a source response into an upload, hashing each chunk on its way (MD5, SHA-256, the source's stored checksum).
//! It must not hold a chunk longer than the whole-object hash needs it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{stored, Digests, Hasher};

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
