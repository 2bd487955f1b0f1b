//! Object tags: read at the source when the object has any, sent with the
//! PUT or CreateMultipartUpload, and confirmed at the destination afterwards.
//! It must not drop a tag silently.

use aws_sdk_s3::types::{Tag, Tagging};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{CopyError, Engine};
use crate::ledger::WorkItem;
use crate::store::{FailureKind, Side, StoreError};

/// What `x-amz-tagging` leaves unencoded: RFC 3986's unreserved characters.
const TAG_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Tags as the `x-amz-tagging` header takes them: `k=v&k2=v2`, each encoded,
/// in key order so that two sets compare equal.
pub fn encode(tags: &[Tag]) -> String {
    let mut pairs: Vec<(&str, &str)> = tags.iter().map(|t| (t.key(), t.value())).collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, TAG_VALUE),
                utf8_percent_encode(v, TAG_VALUE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The source object's tags, or None when it has none or tags are not
/// copied. `count` is the object's `x-amz-tagging-count` when the store said
/// it; without it the tags are asked for. A store without tagging at all
/// (NotImplemented) has none to copy.
pub async fn of_source(
    engine: &Engine,
    item: &WorkItem,
    count: Option<i32>,
) -> Result<Option<String>, CopyError> {
    if !engine.transfer.copy_tags || count == Some(0) {
        return Ok(None);
    }
    let what = format!("GetObjectTagging {}/{}", item.source_bucket, item.key);
    match tags_at(&engine.source, &item.source_bucket, &item.key).await {
        Ok(Some(tags)) if !tags.is_empty() => Ok(Some(encode(&tags))),
        Ok(_) => Ok(None),
        Err(e) => {
            let mut e = StoreError::from_sdk(Side::Source, &what, e);
            if e.kind == FailureKind::AccessDenied {
                e.message = format!(
                    "{}: the source credentials need s3:GetObjectTagging, or set copy_tags = false to copy without tags",
                    e.message
                );
            }
            Err(e.into())
        }
    }
}

/// The tags an object holds, or None when the store has no tagging at all
/// (NotImplemented, as Garage answers). Ceph RGW's empty 200 is no tags.
pub async fn tags_at(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<Tag>>, GetTaggingError> {
    match client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(got) => Ok(Some(got.tag_set().to_vec())),
        Err(e) if not_implemented(&e) => Ok(None),
        Err(e) if answered_no_tags(&e) => Ok(Some(Vec::new())),
        Err(e) => Err(e),
    }
}

pub type GetTaggingError = aws_sdk_s3::error::SdkError<
    aws_sdk_s3::operation::get_object_tagging::GetObjectTaggingError,
    aws_smithy_runtime_api::http::Response,
>;

/// Whether the source credentials may read object tags in `bucket`. AWS
/// leaves GetObject's `x-amz-tagging-count` out when they may not, so a
/// tagged object would look untagged and be copied without its tags. A key
/// that does not exist answers NoSuchKey when they may, AccessDenied when
/// they may not; a store without tagging has no tags to lose. Only
/// AccessDenied is an error: a probe that fails otherwise (a network fault)
/// proves nothing, and is logged.
pub async fn check_readable(client: &aws_sdk_s3::Client, bucket: &str) -> Result<(), StoreError> {
    const PROBE: &str = ".ferry-probe/tags-readable";
    let Err(e) = tags_at(client, bucket, PROBE).await else {
        return Ok(());
    };
    let mut e = StoreError::from_sdk(
        Side::Source,
        format!("GetObjectTagging {bucket}/{PROBE}"),
        e,
    );
    match e.kind {
        FailureKind::NoSuchKey => Ok(()),
        FailureKind::AccessDenied => {
            e.message = format!(
                "{}: the source credentials may not read object tags, so tagged objects would be copied without them. Grant s3:GetObjectTagging on bucket {bucket}, or set copy_tags = false to copy without tags",
                e.message
            );
            Err(e)
        }
        _ => {
            tracing::warn!(bucket, error = %e, "could not check that the source credentials may read object tags");
            Ok(())
        }
    }
}

/// Ceph RGW answers GetObjectTagging for an object without tags with 200
/// and no body, which the SDK cannot parse.
fn answered_no_tags<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 200)
}

fn not_implemented<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "NotImplemented")
}

/// After the copy: the destination must hold exactly the tags sent. Ceph
/// RGW drops the tags of CreateMultipartUpload, so tags missing from ferry's
/// own fresh copy are put once more (PutObjectTagging) and read again. A
/// store without tagging, or one that still holds other tags, fails the
/// object with the reason.
pub async fn confirm(engine: &Engine, item: &WorkItem, sent: &str) -> Result<(), CopyError> {
    let what = format!("GetObjectTagging {}/{}", item.dest_bucket, item.key);
    let refused = |why: String| -> CopyError {
        StoreError::new(
            Side::Destination,
            FailureKind::Refused,
            &what,
            format!("{why}; set copy_tags = false to copy objects without their tags"),
        )
        .into()
    };
    match held(engine, item, &what).await? {
        None => {
            return Err(refused(
                "the destination does not support object tags".into(),
            ))
        }
        Some(held) if held == sent => return Ok(()),
        Some(_) => {}
    }
    let put = format!("PutObjectTagging {}/{}", item.dest_bucket, item.key);
    engine
        .destination
        .put_object_tagging()
        .bucket(&item.dest_bucket)
        .key(&item.key)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(decode(sent)))
                .build()
                .map_err(|e| {
                    StoreError::new(Side::Destination, FailureKind::Other, &put, e.to_string())
                })?,
        )
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, &put, e))?;
    match held(engine, item, &what).await? {
        Some(held) if held == sent => Ok(()),
        Some(held) => Err(refused(format!(
            "the destination holds the tags {held:?}, not the {sent:?} sent"
        ))),
        None => Err(refused(
            "the destination does not support object tags".into(),
        )),
    }
}

/// The tags the destination holds, encoded; None when it has no tagging.
async fn held(engine: &Engine, item: &WorkItem, what: &str) -> Result<Option<String>, CopyError> {
    match tags_at(&engine.destination, &item.dest_bucket, &item.key).await {
        Ok(tags) => Ok(tags.map(|t| encode(&t))),
        Err(e) => Err(StoreError::from_sdk(Side::Destination, what, e).into()),
    }
}

/// The tags of an `x-amz-tagging` value.
fn decode(encoded: &str) -> Vec<Tag> {
    let text = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    encoded
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Tag::builder().key(text(k)).value(text(v)).build().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_encoded_in_key_order() {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
        let tags = [
            tag("z", "1"),
            tag("genre", "Hörbuch & Krimi"),
            tag("a b", "x=y"),
        ];
        let encoded = encode(&tags);
        assert_eq!(encoded, "a%20b=x%3Dy&genre=H%C3%B6rbuch%20%26%20Krimi&z=1");
        assert_eq!(encode(&decode(&encoded)), encoded);
    }
}
