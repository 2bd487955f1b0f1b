//! What one part sent left behind: its number, ETag and MD5, what proves it when read back, and its own checksum in the source's algorithm.
//! It must not send or read anything; `send.rs` makes them, `resume.rs` takes them back from the ledger.

use crate::hashing::stored::{Algorithm, Stored};
use crate::hashing::PartCheck;
use crate::ledger::PartRecord;

pub(super) struct PartDone {
    pub(super) number: u32,
    pub(super) etag: String,
    pub(super) md5: [u8; 16],
    pub(super) check: PartCheck,
    /// The whole object's MD5 state at the part's end, when it was hashed.
    pub(super) md5_state: Option<String>,
    /// The part's own checksum in the algorithm the source stored (as
    /// `parts.checksum` keeps it: `ALGORITHM:base64`).
    pub(super) checksum: Option<Stored>,
}

impl PartDone {
    pub(super) fn from_record(p: &PartRecord) -> PartDone {
        let mut md5 = [0u8; 16];
        // The ledger only ever holds MD5s ferry computed; a bad one makes the
        // Complete ETag check fail, which is a retry, never a success.
        let _ = hex::decode_to_slice(&p.md5, &mut md5);
        PartDone {
            number: p.part_number,
            etag: p.etag.clone(),
            md5,
            check: PartCheck::from_columns(&p.sha256, p.sha256_state.as_deref()),
            md5_state: p.md5_state.clone(),
            checksum: p.checksum.as_deref().and_then(Stored::parse),
        }
    }

    /// The part's own checksum, when it is in `algorithm`.
    pub(super) fn checksum_in(&self, algorithm: Option<Algorithm>) -> Option<&[u8]> {
        self.checksum
            .as_ref()
            .filter(|c| Some(c.algorithm) == algorithm)
            .map(|c| c.value.as_slice())
    }
}
