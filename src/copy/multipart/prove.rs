//! What proves the parts sent are the source's bytes, before the upload is completed: the source's ETag (on its own boundaries, or the whole MD5) and its stored checksum.
//! It must not send or read anything; it judges what the parts recorded.

use super::layout::Layout;
use super::part::PartDone;
use crate::copy::{check_source, check_stored, CopyError, Proved};
use crate::hashing::stored::{Algorithm, Stored};
use crate::hashing::{multipart_etag, Digests};
use crate::ledger::WorkItem;

/// Before anything becomes visible: do the bytes read hash to what the
/// source says they are? Its ETag is the MD5 of the parts' MD5s for a
/// multipart source copied with its own boundaries, the plain MD5 for an
/// unencrypted single-part one (`whole_md5`); any other source ETag proves
/// nothing. Its stored checksum, when it has one, is made from the parts'
/// own checksums, or for a SHA-256 of the whole from `whole`. A difference
/// is an error; what could not be computed proves nothing and fails nothing.
pub(super) fn at_source(
    item: &WorkItem,
    layout: &Layout,
    done: &[PartDone],
    whole: Option<&Digests>,
    (whole_md5, stored): (bool, Option<&Stored>),
) -> Result<Proved, CopyError> {
    let mut proved = Proved::default();
    if layout.keeps_source_etag() {
        let md5s: Vec<[u8; 16]> = done.iter().map(|p| p.md5).collect();
        check_source(item, &multipart_etag(&md5s))?;
        proved.etag = true;
    } else if whole_md5 {
        // Always hashed in order; no digest fails the check, never passes it.
        check_source(item, &whole.map(Digests::md5_hex).unwrap_or_default())?;
        proved.etag = true;
    }
    let Some(stored) = stored else {
        return Ok(proved);
    };
    let computed = if whole_sha256_proves(stored, done.len()) {
        whole.and_then(|w| w.sha256).map(|d| d.to_vec())
    } else if stored.parts.is_some() && !layout.keeps_source_etag() {
        // A composite is of the source's parts: ferry's own parts (an
        // SSE-KMS source, one whose boundaries cannot be learned) may be
        // as many and cut elsewhere. No proof, and no mismatch either.
        None
    } else {
        let length_of = |n: u32| layout.parts.get(n as usize - 1).map_or(0, |p| p.length);
        done.iter()
            .map(|p| {
                Some((
                    p.checksum_in(Some(stored.algorithm))?.to_vec(),
                    length_of(p.number),
                ))
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|parts| stored.of_parts(&parts))
    };
    if check_stored(item, stored, computed)? {
        proved.checksum = Some(stored.clone());
    }
    Ok(proved)
}

/// A SHA-256 of the whole object, sent in more than one part: the parts'
/// own checksums cannot make it, the whole object's digest does.
pub(super) fn whole_sha256_proves(stored: &Stored, parts: usize) -> bool {
    stored.parts.is_none() && stored.algorithm == Algorithm::Sha256 && parts > 1
}
