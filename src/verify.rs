//! Reading copies back: every byte of the destination object is streamed,
//! hashed, and compared with what the ledger recorded when it was sent —
//! whole object and part by part. Hetzner does not check the checksums it is
//! sent, so this is ferry's proof that what arrived is still what was sent.

use crate::copy::hashing::{bare_etag, read_and_check, Digests, ExpectedPart};
use crate::copy::{with_retries, CopyError, Engine};
use crate::ledger::{self, Verification, VerifyItem};
use crate::store::{FailureKind, Side, StoreError};

/// Reads one copy back. A copy that is missing or differs is a verdict
/// (`ok: false`, with the reason); only a read that cannot be done is an error.
pub async fn verify_object(engine: &Engine, item: &VerifyItem) -> Result<Verification, CopyError> {
    let id = item.object_id;
    let recorded = engine
        .writer
        .call(move |c| ledger::copied_parts(c, id))
        .await?;
    let expected: Vec<ExpectedPart> = if recorded.is_empty() {
        vec![ExpectedPart {
            number: 1,
            length: item.size,
            sha256: Some(item.sha256.clone()),
        }]
    } else {
        recorded
            .into_iter()
            .map(|(number, length, sha256)| ExpectedPart {
                number,
                length,
                sha256: Some(sha256),
            })
            .collect()
    };
    // A read holds no object in memory, only a request slot.
    let _ticket = engine.budget.admit(0).await;
    let what = format!("GetObject {}/{} (verify)", item.dest_bucket, item.key);
    let read = with_retries(&engine.budget, &what, || {
        read_copy(
            engine,
            &item.dest_bucket,
            &item.key,
            expected.clone(),
            &what,
        )
    })
    .await;
    let (etag, whole, parts) = match read {
        Ok(r) => r,
        Err(CopyError::Store(e)) if e.kind == FailureKind::NoSuchKey => {
            return Ok(Verification {
                object_id: id,
                ok: false,
                reason: Some("missing at the destination".into()),
                size: None,
                sha256: None,
                md5: None,
            })
        }
        Err(e) => return Err(e),
    };
    let sha256 = whole.sha256_hex();
    let md5 = whole.md5_hex();
    let reason = if whole.len != item.size {
        Some(format!(
            "size {} at the destination, {} copied",
            whole.len, item.size
        ))
    } else if sha256 != item.sha256 {
        Some(format!(
            "SHA-256 {sha256} at the destination, {} copied",
            item.sha256
        ))
    } else if md5 != item.md5 {
        Some(format!("MD5 {md5} at the destination, {} copied", item.md5))
    } else if etag != item.dest_etag {
        Some(format!(
            "ETag {etag} at the destination, {} when copied",
            item.dest_etag
        ))
    } else {
        parts.err()
    };
    Ok(Verification {
        object_id: id,
        ok: reason.is_none(),
        reason,
        size: Some(whole.len),
        sha256: Some(sha256),
        md5: Some(md5),
    })
}

/// Streams a copy from the destination once: its ETag, its whole-object
/// digests, and whether each part reads back with its recorded SHA-256.
pub(crate) async fn read_copy(
    engine: &Engine,
    bucket: &str,
    key: &str,
    expected: Vec<ExpectedPart>,
    what: &str,
) -> Result<(String, Digests, Result<(), String>), CopyError> {
    let got = engine
        .destination
        .get_object()
        .bucket(bucket)
        .key(key)
        // The callers retry the whole read.
        .customize()
        .config_override(crate::store::no_sdk_retries())
        .send()
        .await
        .map_err(|e| StoreError::from_sdk(Side::Destination, what, e))?;
    let etag = bare_etag(got.e_tag().unwrap_or_default()).to_owned();
    let (whole, parts) = read_and_check(got.body, expected).await.map_err(|e| {
        StoreError::new(
            Side::Destination,
            FailureKind::Unreachable,
            what,
            e.to_string(),
        )
    })?;
    Ok((etag, whole, parts))
}

/// Parses `--sample`: "5%" or "0.05".
pub fn parse_sample(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!(
            "--sample {text:?}: give a share like 5% or 0.05 (above 0, at most 100%)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sample;

    #[test]
    fn samples_parse_as_shares() {
        assert_eq!(parse_sample("5%"), Ok(0.05));
        assert_eq!(parse_sample("0.25"), Ok(0.25));
        assert_eq!(parse_sample("100%"), Ok(1.0));
        assert!(parse_sample("0").is_err());
        assert!(parse_sample("150%").is_err());
        assert!(parse_sample("lots").is_err());
    }
}
