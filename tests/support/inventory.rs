//! S3 Inventory reports as AWS writes them, for the tests that list from one:
//! gzipped CSV files and their manifest, with the columns a `fileSchema` names.

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use md5::Digest as _;

/// AWS's columns when a configuration asks for the usual optional fields.
pub const USUAL_SCHEMA: &[&str] = &[
    "Bucket",
    "Key",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
];

/// Optional columns an inventory configuration may add, beyond Bucket and Key.
pub const OPTIONAL_COLUMNS: &[&str] = &[
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "IsMultipartUploaded",
    "ReplicationStatus",
    "EncryptionStatus",
    "IsLatest",
    "IsDeleteMarker",
    "BucketKeyStatus",
    "ChecksumAlgorithm",
];

/// One object's line.
pub struct Line {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// Where a report goes and what it looks like.
pub struct Report<'a> {
    /// The bucket that holds inventories, and the dated folder of this one.
    pub at: (&'a str, &'a str),
    /// The bucket the report describes.
    pub source_bucket: &'a str,
    pub schema: &'a [&'a str],
    /// CSV files the lines are spread over.
    pub files: usize,
    pub format: &'a str,
    /// Replaces the last file's true MD5 in the manifest when given.
    pub md5: Option<&'a str>,
}

/// What `manifest.checksum` says of the manifest beside it.
#[derive(Clone, Copy)]
pub enum Checksum<'a> {
    /// The manifest's MD5, in hex, as AWS writes it.
    True,
    /// Something else.
    Says(&'a str),
    /// No `manifest.checksum` (not written yet).
    Missing,
}

/// `manifest.json` under `dated`, then its `manifest.checksum`: the keys
/// and bodies to write, in AWS's order.
pub fn manifest_files(
    dated: &str,
    manifest: &serde_json::Value,
    checksum: Checksum,
) -> Vec<(String, Vec<u8>)> {
    let body = manifest.to_string().into_bytes();
    let md5 = hex::encode(md5::Md5::digest(&body));
    let mut files = vec![(format!("{dated}manifest.json"), body)];
    let says = match checksum {
        Checksum::True => Some(md5.as_str()),
        Checksum::Says(text) => Some(text),
        Checksum::Missing => None,
    };
    if let Some(says) = says {
        files.push((
            format!("{dated}manifest.checksum"),
            format!("{says}\n").into_bytes(),
        ));
    }
    files
}

/// Keys in an inventory are URL-encoded, spaces as `+`.
pub fn encode(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(key, KEEP)
        .to_string()
        .replace(' ', "+")
}

fn field(column: &str, bucket: &str, line: &Line) -> String {
    match column {
        "Bucket" => bucket.to_owned(),
        "Key" => encode(&line.key),
        "Size" => line.size.to_string(),
        "LastModifiedDate" => "2026-11-28T10:00:00.000Z".into(),
        "ETag" => line.etag.clone(),
        "StorageClass" => "STANDARD".into(),
        "IsMultipartUploaded" => line.etag.contains('-').to_string(),
        "IsLatest" => "true".into(),
        "IsDeleteMarker" => "false".into(),
        "ReplicationStatus" | "ChecksumAlgorithm" => String::new(),
        "EncryptionStatus" => "SSE-S3".into(),
        "BucketKeyStatus" => "DISABLED".into(),
        other => panic!("no inventory column {other}"),
    }
}

/// Writes the report's files and then its manifest (the manifest last, as
/// AWS does: a reader that sees it finds every file).
pub async fn write(client: &Client, report: Report<'_>, lines: &[Line]) {
    let (bucket, dated) = report.at;
    let mut listed = Vec::new();
    let mut bodies = Vec::new();
    let chunks: Vec<&[Line]> = lines
        .chunks(lines.len().div_ceil(report.files).max(1))
        .collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut csv = String::new();
        for line in *chunk {
            let fields: Vec<String> = report
                .schema
                .iter()
                .map(|c| format!("\"{}\"", field(c, report.source_bucket, line)))
                .collect();
            csv.push_str(&fields.join(","));
            csv.push('\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let file_key = format!("{dated}files/part-{i}.csv.gz");
        let true_md5 = hex::encode(md5::Md5::digest(&gz));
        let md5 = report
            .md5
            .filter(|_| i + 1 == chunks.len())
            .unwrap_or(&true_md5)
            .to_owned();
        listed.push(serde_json::json!({"key": file_key, "size": gz.len(), "MD5checksum": md5}));
        bodies.push((file_key, gz));
    }
    let manifest = serde_json::json!({
        "sourceBucket": report.source_bucket,
        "destinationBucket": format!("arn:aws:s3:::{bucket}"),
        "version": "2016-11-30",
        "creationTimestamp": "1764324000000",
        "fileFormat": report.format,
        "fileSchema": report.schema.join(", "),
        "files": listed,
    });
    bodies.extend(manifest_files(dated, &manifest, Checksum::True));
    for (key, body) in bodies {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }
}
