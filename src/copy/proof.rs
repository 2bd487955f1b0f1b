//! What proves the bytes read are the source's: its ETag (their MD5, or the MD5 of their parts' MD5s) and the checksum it stored (read from its answers).
//! It must not read bytes or call a source corrupt on anything but a computed value that differs from a stored one.

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;

use super::CopyError;
use crate::hashing::stored::{Answered, Stored};
use crate::ledger::WorkItem;
use crate::store::{FailureKind, Side, StoreError};

/// Whether a source ETag is the MD5 of the object's bytes: a single-part
/// upload, stored unencrypted or with SSE-S3 (SSE-KMS and SSE-C ETags are not).
pub(crate) fn etag_is_md5(
    etag: &str,
    sse: Option<&aws_sdk_s3::types::ServerSideEncryption>,
) -> bool {
    use aws_sdk_s3::types::ServerSideEncryption as Sse;
    etag.len() == 32
        && etag.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(sse, None | Some(Sse::Aes256))
}

/// The bytes read must be the source's: compare what was computed with what
/// the source's ETag says they are.
pub(crate) fn check_source(item: &WorkItem, computed_etag: &str) -> Result<(), CopyError> {
    if computed_etag == item.source_etag {
        return Ok(());
    }
    Err(StoreError::new(
        Side::Source,
        FailureKind::SourceCorrupt,
        format!("GetObject {}/{}", item.source_bucket, item.key),
        format!(
            "the bytes read hash to {computed_etag}, but the source's ETag is {}",
            item.source_etag
        ),
    )
    .into())
}

/// What proved the bytes read were the source's, besides reading the copy back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Proved {
    /// The source's ETag: their MD5, or the MD5 of their parts' MD5s.
    pub etag: bool,
    /// The checksum the source stored with the object.
    pub checksum: Option<Stored>,
}

/// The bytes read must be the source's: compare the checksum computed on
/// them (None when the parts could not make it, see [`Stored::of_parts`])
/// with the one the source stored. Whether it proved anything is the answer.
pub(crate) fn check_stored(
    item: &WorkItem,
    stored: &Stored,
    computed: Option<Vec<u8>>,
) -> Result<bool, CopyError> {
    let Some(computed) = computed else {
        return Ok(false);
    };
    if computed == stored.value {
        return Ok(true);
    }
    Err(StoreError::new(
        Side::Source,
        FailureKind::SourceCorrupt,
        format!("GetObject {}/{}", item.source_bucket, item.key),
        format!(
            "the bytes read have {} {}, but the source stored {}",
            stored.algorithm.name(),
            crate::hashing::stored::value_text(&computed, stored.parts),
            stored
        ),
    )
    .into())
}

/// The checksum a HEAD with `x-amz-checksum-mode: ENABLED` answered.
pub(crate) fn stored_of_head(head: &HeadObjectOutput) -> Option<Stored> {
    Stored::from_answer(&Answered {
        crc32: head.checksum_crc32(),
        crc32c: head.checksum_crc32_c(),
        crc64nvme: head.checksum_crc64_nvme(),
        sha1: head.checksum_sha1(),
        sha256: head.checksum_sha256(),
        kind: head.checksum_type().map(|t| t.as_str()),
    })
}

/// The checksum a GET with `x-amz-checksum-mode: ENABLED` answered.
pub(crate) fn stored_of_get(got: &GetObjectOutput) -> Option<Stored> {
    Stored::from_answer(&Answered {
        crc32: got.checksum_crc32(),
        crc32c: got.checksum_crc32_c(),
        crc64nvme: got.checksum_crc64_nvme(),
        sha1: got.checksum_sha1(),
        sha256: got.checksum_sha256(),
        kind: got.checksum_type().map(|t| t.as_str()),
    })
}
