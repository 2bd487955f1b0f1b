//! What the destination store in use does on each S3 behaviour that ferry
//! relies on or works around: the facts of the README's conformance table,
//! checked against the real server, so the table cannot go stale.
//! Garage and Ceph RGW differ; each is held to its own column.

mod support;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use ferry::store::Side;
use ferry_tools::demo::ensure_bucket;
use support::{servers, Fixture};

const MIB: usize = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
struct Facts {
    /// CompleteMultipartUpload answers the object's ETag.
    complete_gives_etag: bool,
    /// HEAD ?partNumber=1 answers part 1's length and the part count.
    head_part_number: bool,
    /// A part under 5 MiB that is not the last is refused.
    entity_too_small: bool,
    /// A wrong Content-MD5 is refused (BadDigest).
    content_md5_checked: bool,
    /// A second upload of a key stays listed after the first completes.
    other_uploads_survive_complete: bool,
    /// A 1,025-byte key is refused.
    long_key_refused: bool,
    /// The error code of ListParts for an upload that was aborted.
    list_parts_of_gone_upload: String,
    /// A PUT with If-None-Match: * over a key that exists is refused (412).
    if_none_match_honoured: bool,
}

fn expected(destination: &str) -> Facts {
    match destination {
        "ceph" => Facts {
            complete_gives_etag: false,
            head_part_number: false,
            entity_too_small: true,
            content_md5_checked: true,
            other_uploads_survive_complete: true,
            long_key_refused: true,
            list_parts_of_gone_upload: "NoSuchKey".into(),
            if_none_match_honoured: true,
        },
        _ => Facts {
            complete_gives_etag: true,
            head_part_number: true,
            entity_too_small: false,
            content_md5_checked: true,
            other_uploads_survive_complete: false,
            long_key_refused: false,
            list_parts_of_gone_upload: "NoSuchUpload".into(),
            if_none_match_honoured: false,
        },
    }
}

async fn upload(c: &Client, bucket: &str, key: &str, parts: &[usize]) -> Result<String, String> {
    let created = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let id = created.upload_id().unwrap().to_owned();
    let mut done = Vec::new();
    for (i, &len) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let part = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(vec![b'x' + i as u8; len]))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(part.e_tag().map(Into::into))
                .build(),
        );
    }
    let completed = c
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await;
    match completed {
        Ok(out) => Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_owned()),
        Err(e) => {
            let _ = c
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
            Err(format!("{:?}", e.into_service_error()))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_destination_behaves_as_the_readme_says() {
    let destination = servers().get("FERRY_DESTINATION").to_owned();
    let fx = Fixture::new("conformance", "").await;
    let c = &fx.destination;
    let bucket = format!("probe{}", fx.suffix);
    ensure_bucket(c, Side::Destination, &bucket).await.unwrap();

    let etag = upload(c, &bucket, "two-parts", &[5 * MIB, 1])
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket(&bucket)
        .key("two-parts")
        .part_number(1)
        .send()
        .await
        .unwrap();
    let whole = c
        .head_object()
        .bucket(&bucket)
        .key("two-parts")
        .send()
        .await
        .unwrap();
    assert!(
        whole.e_tag().unwrap().ends_with("-2\""),
        "HEAD gives the multipart ETag"
    );

    let small = upload(c, &bucket, "small-parts", &[MIB, 1]).await;

    let bad_md5 = c
        .put_object()
        .bucket(&bucket)
        .key("bad-md5")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await;

    // Two uploads of one key; the second completes.
    let first = c
        .create_multipart_upload()
        .bucket(&bucket)
        .key("twice")
        .send()
        .await
        .unwrap();
    upload(c, &bucket, "twice", &[1]).await.unwrap();
    let listed = c
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let survives = listed
        .uploads()
        .iter()
        .any(|u| u.upload_id() == first.upload_id());
    if survives {
        c.abort_multipart_upload()
            .bucket(&bucket)
            .key("twice")
            .upload_id(first.upload_id().unwrap())
            .send()
            .await
            .unwrap();
    }

    let aborted = c
        .create_multipart_upload()
        .bucket(&bucket)
        .key("aborted")
        .send()
        .await
        .unwrap();
    let aborted_id = aborted.upload_id().unwrap();
    c.abort_multipart_upload()
        .bucket(&bucket)
        .key("aborted")
        .upload_id(aborted_id)
        .send()
        .await
        .unwrap();
    let gone = c
        .list_parts()
        .bucket(&bucket)
        .key("aborted")
        .upload_id(aborted_id)
        .send()
        .await
        .expect_err("ListParts of an aborted upload");
    let gone_code = aws_sdk_s3::error::ProvideErrorMetadata::code(&gone)
        .unwrap_or("none")
        .to_owned();

    let long_key = c
        .put_object()
        .bucket(&bucket)
        .key("k".repeat(1025))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;

    let put_if_absent = |bytes: &'static [u8]| {
        c.put_object()
            .bucket(&bucket)
            .key("if-absent")
            .if_none_match("*")
            .body(ByteStream::from_static(bytes))
            .send()
    };
    put_if_absent(b"first").await.unwrap();
    let second = put_if_absent(b"second").await;
    let held = c
        .get_object()
        .bucket(&bucket)
        .key("if-absent")
        .send()
        .await
        .unwrap();
    let held = held.body.collect().await.unwrap().to_vec();
    let refused_412 = second
        .as_ref()
        .is_err_and(|e| e.raw_response().is_some_and(|r| r.status().as_u16() == 412));
    assert_eq!(
        refused_412,
        held == b"first",
        "a refused write must leave the first, an accepted one the second"
    );

    let found = Facts {
        complete_gives_etag: !etag.is_empty(),
        head_part_number: head.content_length() == Some(5 * MIB as i64)
            && head.parts_count() == Some(2),
        entity_too_small: small.as_ref().is_err_and(|e| e.contains("EntityTooSmall")),
        content_md5_checked: bad_md5.is_err(),
        other_uploads_survive_complete: survives,
        long_key_refused: long_key.is_err(),
        list_parts_of_gone_upload: gone_code,
        if_none_match_honoured: refused_412,
    };
    eprintln!("{destination}: {found:#?}");
    assert_eq!(found, expected(&destination), "{destination}");
}
