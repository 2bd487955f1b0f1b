//! The demo data set, shaped like the audiobook platform's buckets, and a
//! byte-for-byte comparison of source and destination. It must not depend on ferry's internals beyond its public library.
//!
//! Used by `ferry-demo` (the README's first command) and by the end-to-end
//! tests, so both show the same shapes arriving intact.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use ferry::copy::metadata::Metadata;
use ferry::hashing::stored::{Algorithm, ChecksumHasher as StoredHasher};
use ferry::hashing::{bare_etag, Hasher};
use ferry::store::{chain, Side, StoreError};

/// Source multipart uploads use 8 MiB parts, as the AWS CLI does.
pub const SOURCE_PART_SIZE: u64 = 8 << 20;

/// One object the demo puts at the source.
#[derive(Clone, Debug)]
pub struct DemoObject {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Uploaded at the source as a multipart upload with 8 MiB parts.
    pub multipart: bool,
    /// With `multipart`: these part lengths instead of 8 MiB parts. Tools
    /// that stream, or resume, upload parts of unequal sizes.
    pub part_lengths: Vec<u64>,
    pub content_type: &'static str,
    pub cache_control: Option<&'static str>,
    pub content_disposition: Option<String>,
    pub content_language: Option<&'static str>,
    pub content_encoding: Option<&'static str>,
    pub expires: Option<&'static str>,
    pub user: Vec<(&'static str, String)>,
    pub seed: u64,
    /// The checksum the source stores with it, as a client that chose one
    /// asks: the algorithm, and for a multipart upload whether it is of the
    /// whole object (FULL_OBJECT) or of the parts (COMPOSITE).
    pub checksum: Option<(ChecksumAlgorithm, ChecksumType)>,
}

impl DemoObject {
    pub fn new(bucket: &str, key: String, size: u64, content_type: &'static str) -> DemoObject {
        let seed = fnv(bucket.as_bytes()) ^ fnv(key.as_bytes());
        DemoObject {
            bucket: bucket.into(),
            key,
            size,
            multipart: false,
            part_lengths: Vec::new(),
            content_type,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            content_encoding: None,
            expires: None,
            user: Vec::new(),
            seed,
            checksum: None,
        }
    }
}

/// How big the data set is: `full` for the demo, `small` for the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    Full,
    Small,
}

/// The four buckets of the platform, with `suffix` appended to each name
/// (tests use a unique suffix so they can run side by side).
pub fn bucket_names(suffix: &str) -> [String; 4] {
    ["audio", "mediafiles", "onix", "packages"].map(|b| format!("{b}{suffix}"))
}

/// The demo's objects. Every shape the platform holds is here: large audio
/// (single and multipart at the source), hundreds of small ONIX files, zip
/// packages, an empty object, and keys that break naive tools.
pub fn data_set(scale: Scale, suffix: &str) -> Vec<DemoObject> {
    let [audio, media, onix, packages] = bucket_names(suffix);
    let mib = 1u64 << 20;
    let (audio_sizes, onix_count, package_count): (&[(u64, bool)], usize, usize) = match scale {
        // 50 to 300 MiB, the middle one uploaded in one PUT at the source.
        Scale::Full => (
            &[
                (300 * mib + 12_345, true),
                (64 * mib + 3, false),
                (120 * mib, true),
            ],
            400,
            12,
        ),
        Scale::Small => (&[(40 * mib + 12_345, true), (20 * mib + 3, false)], 120, 4),
    };
    let mut set = Vec::new();
    for (i, &(size, multipart)) in audio_sizes.iter().enumerate() {
        let mut o = DemoObject::new(
            &audio,
            format!("books/978316148410{i}/chapter-{:02}.mp3", i + 1),
            size,
            "audio/mpeg",
        );
        o.multipart = multipart;
        o.cache_control = Some("private, max-age=86400");
        o.content_disposition = Some(format!("attachment; filename=\"chapter-{:02}.mp3\"", i + 1));
        o.content_language = Some("de-DE");
        o.user = vec![
            ("isbn", format!("978316148410{i}")),
            ("narrator", "Jürgen Müller".into()),
        ];
        set.push(o);
    }
    for i in 0..onix_count {
        let size = 2_000 + (fnv(&i.to_le_bytes()) % 30_000);
        let mut o = DemoObject::new(
            &onix,
            format!("feeds/2026-11-{:02}/onix-{i:05}.xml", 1 + i % 28),
            size,
            "application/xml",
        );
        o.user = vec![("onix-release", "3.0".into())];
        if i % 50 == 0 {
            o.content_encoding = Some("gzip");
        }
        set.push(o);
    }
    for i in 0..package_count {
        let size = mib + fnv(&(i as u64 * 7).to_le_bytes()) % (5 * mib);
        let mut o = DemoObject::new(
            &packages,
            format!("deliveries/retailer-{}/package-{i:04}.zip", i % 3),
            size,
            "application/zip",
        );
        o.expires = Some("Thu, 01 Jan 2037 00:00:00 GMT");
        set.push(o);
    }
    // A multipart source object below the multipart threshold: its ETag ends
    // in -2, and ferry must still keep its part layout.
    let mut bundle = DemoObject::new(
        &packages,
        "deliveries/bundle-small-multipart.zip".into(),
        10 * mib + 77,
        "application/zip",
    );
    bundle.multipart = true;
    set.push(bundle);

    let long_key = {
        let head = "covers/very-long/";
        let mut k = String::from(head);
        while k.len() < 1020 {
            k.push_str("abcdefghij/");
        }
        k.truncate(1020);
        k.push_str(".jpg");
        k
    };
    let odd_keys = [
        "covers/with space/cover art.jpg".to_owned(),
        "covers/hörbuch – Ünïcödé 日本語.jpg".to_owned(),
        "covers/a+b=c.jpg".to_owned(),
        "covers/100% pure.jpg".to_owned(),
        "covers/%2F not a slash.jpg".to_owned(),
        long_key,
    ];
    for (i, key) in odd_keys.into_iter().enumerate() {
        set.push(DemoObject::new(
            &media,
            key,
            100_000 + i as u64 * 1_111,
            "image/jpeg",
        ));
    }
    for i in 0..20 {
        set.push(DemoObject::new(
            &media,
            format!("covers/isbn-{i:04}.jpg"),
            50_000 + i * 10_000,
            "image/jpeg",
        ));
    }
    set.push(DemoObject::new(
        &media,
        "placeholders/empty.txt".into(),
        0,
        "text/plain",
    ));
    set.extend(data_quality_objects(&media));
    set
}

/// Objects that `plan`'s data-quality checks must each find for one reason
/// (besides `placeholders/empty.txt`, an empty object), and a folder marker
/// that none may name: (object, the check that names it, if any).
pub fn data_quality_cases(bucket: &str) -> Vec<(DemoObject, Option<&'static str>)> {
    let jpg = |key: &str, size: u64| DemoObject::new(bucket, key.into(), size, "image/jpeg");
    // The same bytes as covers/isbn-0003.jpg (80,000 bytes; seeds come from the key).
    let mut copy = jpg("covers/copy-of-isbn-0003.jpg", 80_000);
    copy.seed = jpg("covers/isbn-0003.jpg", 0).seed;
    let mut preview = DemoObject::new(
        bucket,
        "audio-samples/preview.mp3".into(),
        4_000,
        "application/octet-stream",
    );
    preview.seed ^= 1;
    vec![
        (
            jpg("covers/caf\u{e9}.jpg", 1_000),
            Some("unicode_nfc_collision"),
        ),
        (
            jpg("covers/cafe\u{301}.jpg", 1_001),
            Some("unicode_nfc_collision"),
        ),
        (jpg("covers/Cover-A.jpg", 1_002), Some("case_collision")),
        (jpg("covers/cover-a.jpg", 1_003), Some("case_collision")),
        (copy, Some("duplicate_content")),
        (
            jpg("covers/tab\there.jpg", 1_004),
            Some("control_character"),
        ),
        (
            jpg("covers/broken-\u{FFFD}-name.jpg", 1_005),
            Some("invalid_utf8"),
        ),
        (
            jpg("covers/trailing-space.jpg ", 1_006),
            Some("leading_or_trailing_space"),
        ),
        (jpg("covers//double-slash.jpg", 1_007), Some("double_slash")),
        (
            DemoObject::new(
                bucket,
                "covers/folder-marker/".into(),
                0,
                "application/x-directory",
            ),
            None,
        ),
        (preview, Some("content_type_mismatch")),
    ]
}

fn data_quality_objects(bucket: &str) -> Vec<DemoObject> {
    data_quality_cases(bucket)
        .into_iter()
        .map(|(o, _)| o)
        .collect()
}

impl DemoObject {
    /// A multipart object at the source with parts of these lengths.
    pub fn with_parts(mut self, lengths: &[u64]) -> DemoObject {
        self.multipart = true;
        self.size = lengths.iter().sum();
        self.part_lengths = lengths.to_vec();
        self
    }

    /// The chunks the object is uploaded in at the source: `part_lengths`
    /// or `SOURCE_PART_SIZE` parts for a multipart upload, else one. Each is
    /// (offset, length).
    pub fn chunks(&self) -> Vec<(u64, u64)> {
        if !self.multipart {
            return vec![(0, self.size)];
        }
        if !self.part_lengths.is_empty() {
            let mut offset = 0;
            return self
                .part_lengths
                .iter()
                .map(|&len| {
                    offset += len;
                    (offset - len, len)
                })
                .collect();
        }
        (0..self.size.div_ceil(SOURCE_PART_SIZE))
            .map(|i| {
                (
                    i * SOURCE_PART_SIZE,
                    SOURCE_PART_SIZE.min(self.size - i * SOURCE_PART_SIZE),
                )
            })
            .collect()
    }

    /// MD5 and SHA-256 of the object's bytes, from the generator alone: what
    /// any correct copy must hash to, whatever the stores say.
    pub fn expected_digests(&self) -> ferry::hashing::Digests {
        let mut h = Hasher::default();
        for (offset, len) in self.chunks() {
            h.update(&content(self.seed, offset, len as usize));
        }
        h.finish()
    }
}

/// Deterministic bytes that do not repeat: stores that deduplicate blocks
/// (Garage does) get no help.
pub fn content(seed: u64, offset: u64, len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf);
    Bytes::from(buf)
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

impl From<StoreError> for DemoError {
    fn from(e: StoreError) -> Self {
        DemoError(e.to_string())
    }
}

fn sdk_err<E, R>(
    side: Side,
    action: String,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> DemoError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: ferry::store::HttpStatus + std::fmt::Debug + 'static,
{
    move |e| StoreError::from_sdk(side, action, e).into()
}

/// Creates a bucket unless it is there already.
pub async fn ensure_bucket(client: &Client, side: Side, bucket: &str) -> Result<(), DemoError> {
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.as_service_error()
                    .map(|s| s.is_bucket_already_owned_by_you()),
                Some(true)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_err(side, format!("CreateBucket {bucket}"))(e)),
    }
}

impl DemoObject {
    /// The headers and user metadata the object carries at the source.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            content_type: Some(self.content_type.to_owned()),
            content_encoding: self.content_encoding.map(Into::into),
            content_disposition: self.content_disposition.clone(),
            content_language: self.content_language.map(Into::into),
            cache_control: self.cache_control.map(Into::into),
            expires: self.expires.map(Into::into),
            user: self
                .user
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<HashMap<_, _>>(),
            tags: None,
        }
    }
}

/// Puts one demo object at the source, as a single PUT or a multipart upload.
pub async fn put(client: &Client, o: &DemoObject) -> Result<(), DemoError> {
    let what = format!("upload {}/{}", o.bucket, o.key);
    let metadata = o.metadata();
    let algorithm = o.checksum.as_ref().map(|c| c.0.clone());
    if !o.multipart {
        let bytes = content(o.seed, 0, o.size as usize);
        let sums = Sums::of(algorithm.as_ref(), &bytes);
        let request = client
            .put_object()
            .bucket(&o.bucket)
            .key(&o.key)
            .set_checksum_crc32(sums.crc32)
            .set_checksum_crc32_c(sums.crc32c)
            .set_checksum_crc64_nvme(sums.crc64nvme)
            .set_checksum_sha1(sums.sha1)
            .set_checksum_sha256(sums.sha256)
            .body(ByteStream::from(bytes));
        metadata
            .onto_put(request)
            .send()
            .await
            .map_err(sdk_err(Side::Source, what))?;
        return Ok(());
    }
    let request = client
        .create_multipart_upload()
        .bucket(&o.bucket)
        .key(&o.key)
        .set_checksum_algorithm(algorithm.clone())
        .set_checksum_type(o.checksum.as_ref().map(|c| c.1.clone()));
    let created = metadata
        .onto_create(request)
        .send()
        .await
        .map_err(sdk_err(Side::Source, what.clone()))?;
    let upload_id = created.upload_id().unwrap_or_default();
    let mut parts = Vec::new();
    let mut whole = algorithm
        .as_ref()
        .map(|a| StoredHasher::new(stored_algorithm(a)));
    for (i, (offset, len)) in o.chunks().into_iter().enumerate() {
        let number = i as i32 + 1;
        let bytes = content(o.seed, offset, len as usize);
        if let Some(h) = &mut whole {
            h.update(&bytes);
        }
        let sums = Sums::of(algorithm.as_ref(), &bytes);
        let part = client
            .upload_part()
            .bucket(&o.bucket)
            .key(&o.key)
            .upload_id(upload_id)
            .part_number(number)
            .set_checksum_crc32(sums.crc32)
            .set_checksum_crc32_c(sums.crc32c)
            .set_checksum_crc64_nvme(sums.crc64nvme)
            .set_checksum_sha1(sums.sha1)
            .set_checksum_sha256(sums.sha256)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(sdk_err(Side::Source, what.clone()))?;
        // A part's checksum goes back with Complete, as S3 requires.
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(Into::into))
                .set_checksum_crc32(part.checksum_crc32().map(Into::into))
                .set_checksum_crc32_c(part.checksum_crc32_c().map(Into::into))
                .set_checksum_crc64_nvme(part.checksum_crc64_nvme().map(Into::into))
                .set_checksum_sha1(part.checksum_sha1().map(Into::into))
                .set_checksum_sha256(part.checksum_sha256().map(Into::into))
                .build(),
        );
    }
    let mut complete = client
        .complete_multipart_upload()
        .bucket(&o.bucket)
        .key(&o.key)
        .upload_id(upload_id);
    if let (Some((algorithm, ChecksumType::FullObject)), Some(whole)) = (&o.checksum, whole) {
        // A full-object checksum is given whole at Complete (Garage needs it).
        let value = Some(ferry::hashing::stored::value_text(&whole.finish(), None));
        complete = complete.checksum_type(ChecksumType::FullObject);
        complete = match algorithm {
            ChecksumAlgorithm::Crc32 => complete.set_checksum_crc32(value),
            ChecksumAlgorithm::Crc32C => complete.set_checksum_crc32_c(value),
            ChecksumAlgorithm::Crc64Nvme => complete.set_checksum_crc64_nvme(value),
            _ => complete,
        };
    }
    complete
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(sdk_err(Side::Source, what))?;
    Ok(())
}

/// A checksum sent with the bytes, computed here and given as a header:
/// the SDK's own would travel as an aws-chunked trailer, which Garage refuses.
#[derive(Default)]
struct Sums {
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
}

impl Sums {
    fn of(algorithm: Option<&ChecksumAlgorithm>, bytes: &[u8]) -> Sums {
        let Some(a) = algorithm else {
            return Sums::default();
        };
        let mut h = StoredHasher::new(stored_algorithm(a));
        h.update(bytes);
        let value = Some(ferry::hashing::stored::value_text(&h.finish(), None));
        match stored_algorithm(a) {
            Algorithm::Crc32 => Sums {
                crc32: value,
                ..Sums::default()
            },
            Algorithm::Crc32c => Sums {
                crc32c: value,
                ..Sums::default()
            },
            Algorithm::Crc64Nvme => Sums {
                crc64nvme: value,
                ..Sums::default()
            },
            Algorithm::Sha1 => Sums {
                sha1: value,
                ..Sums::default()
            },
            Algorithm::Sha256 => Sums {
                sha256: value,
                ..Sums::default()
            },
        }
    }
}

/// The SDK's name for an algorithm, as ferry's.
fn stored_algorithm(a: &ChecksumAlgorithm) -> Algorithm {
    match a {
        ChecksumAlgorithm::Crc32 => Algorithm::Crc32,
        ChecksumAlgorithm::Crc32C => Algorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme => Algorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1 => Algorithm::Sha1,
        _ => Algorithm::Sha256,
    }
}

/// Creates every bucket pair, then puts the whole data set at the source.
pub async fn fill(
    source: &Client,
    destination: &Client,
    pairs: &[(String, String)],
    set: &[DemoObject],
    concurrency: usize,
) -> Result<(), DemoError> {
    use futures::stream::{StreamExt, TryStreamExt};
    for (src, dst) in pairs {
        ensure_bucket(source, Side::Source, src).await?;
        ensure_bucket(destination, Side::Destination, dst).await?;
    }
    futures::stream::iter(set)
        .map(|o| put(source, o))
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// What one object looks like from one store, read in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub size: u64,
    pub etag: String,
    pub sha256: String,
    pub md5: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub user: Vec<(String, String)>,
}

/// Streams an object and hashes it; never holds it whole.
pub async fn observe(
    client: &Client,
    side: Side,
    bucket: &str,
    key: &str,
) -> Result<Observed, DemoError> {
    let got = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(sdk_err(side, format!("GetObject {bucket}/{key}")))?;
    let mut user: Vec<(String, String)> = got
        .metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    user.sort();
    let mut observed = Observed {
        size: 0,
        etag: bare_etag(got.e_tag().unwrap_or_default()).to_owned(),
        sha256: String::new(),
        md5: String::new(),
        content_type: got.content_type().map(Into::into),
        content_encoding: got.content_encoding().map(Into::into),
        content_disposition: got.content_disposition().map(Into::into),
        content_language: got.content_language().map(Into::into),
        cache_control: got.cache_control().map(Into::into),
        expires: got.expires_string().map(Into::into),
        user,
    };
    let mut body = got.body;
    let mut hasher = Hasher::default();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| DemoError(format!("reading {bucket}/{key}: {}", chain(&e))))?
    {
        hasher.update(&chunk);
    }
    let d = hasher.finish();
    observed.size = d.len;
    observed.sha256 = d.sha256_hex();
    observed.md5 = d.md5_hex();
    Ok(observed)
}

/// The result of comparing every source object with its copy.
#[derive(Debug, Default)]
pub struct Comparison {
    pub objects: u64,
    pub bytes: u64,
    pub etags_equal: u64,
    pub differences: Vec<String>,
}

/// Reads every object of `pairs` (source bucket, destination bucket) on both
/// sides and compares bytes, size and metadata.
pub async fn compare(
    source: &Client,
    destination: &Client,
    pairs: &[(String, String)],
) -> Result<Comparison, DemoError> {
    use futures::stream::{StreamExt, TryStreamExt};
    let mut result = Comparison::default();
    for (src_bucket, dst_bucket) in pairs {
        let mut pages = source
            .list_objects_v2()
            .bucket(src_bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(sdk_err(Side::Source, format!("ListObjectsV2 {src_bucket}")))?;
            let keys: Vec<&str> = page
                .contents()
                .iter()
                .map(|o| o.key().unwrap_or_default())
                .collect();
            let observed: Vec<_> = futures::stream::iter(keys)
                .map(|key| async move {
                    let want = observe(source, Side::Source, src_bucket, key).await?;
                    let got = observe(destination, Side::Destination, dst_bucket, key).await;
                    Ok::<_, DemoError>((key, want, got))
                })
                .buffer_unordered(8)
                .try_collect()
                .await?;
            for (key, want, got) in observed {
                match got {
                    Ok(got) => {
                        result.objects += 1;
                        result.bytes += got.size;
                        if got.etag == want.etag {
                            result.etags_equal += 1;
                        }
                        let (mut a, mut b) = (want.clone(), got.clone());
                        a.etag.clear();
                        b.etag.clear();
                        if a != b {
                            result.differences.push(format!(
                                "{src_bucket}/{key}: source {want:?} destination {got:?}"
                            ));
                        }
                    }
                    Err(e) => result.differences.push(format!("{src_bucket}/{key}: {e}")),
                }
            }
        }
    }
    Ok(result)
}
