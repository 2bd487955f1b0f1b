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
//!
//! One file per idea: `chains.rs` (SHA-256 and MD5 that can be written down
//! and taken up again), `body.rs` (the request body that hashes as it
//! streams), `ordered.rs` (parts fed to the whole-object digests in order),
//! `parts.rs` (what proves a copy read back; the ETag on part boundaries),
//! `stored.rs` (the checksum the source stored).

mod body;
mod chains;
mod ordered;
mod parts;
pub mod stored;

pub use body::{HashingBody, Tap, Tapped};
pub use chains::{Md5Chain, Sha256Chain};
pub use ordered::{Checkpoints, OrderedHasher};
pub use parts::{read_and_check, EtagOnParts, ExpectedPart, PartCheck};

use base64::Engine as _;
use md5::{Digest as _, Md5};

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
}
