//! The whole-object digests of an object whose parts travel in parallel, fed in part order, with their states at each part's end.
//! It must not let a part feed its bytes before the parts ahead of it.

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use super::{Digests, Md5Chain, Sha256Chain};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
}
