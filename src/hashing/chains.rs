//! SHA-256 and MD5 whose running state can be written down at a part's end and taken up again (`parts.sha256_state`, `parts.md5_state`).
//! It must not hash anything but the bytes it is given, in the order given.

use md5_resumable::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::digest::generic_array::GenericArray;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::Digests;

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
}
