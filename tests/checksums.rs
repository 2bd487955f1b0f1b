//! The checksum a source stored with an object proves the bytes read are
//! its own: every algorithm S3 offers, of the whole object and composite of
//! its parts, single PUT and multipart, on a real server (Garage as the
//! source stores them all); and a bit flipped on the way from a source whose
//! ETag proves nothing (SSE-KMS, played by the proxy) is caught by it.

mod support;

use std::sync::atomic::Ordering;

use aws_sdk_s3::types::{ChecksumAlgorithm as A, ChecksumMode, ChecksumType as T};
use ferry_tools::demo::{self, DemoObject};
use support::faults::{FaultProxy, Plays};
use support::{assert_all_copied_byte_equal, servers, Fixture};

const MIB: u64 = 1 << 20;

const TRANSFER: &str = r#"
concurrency = 4
part_size = "8MiB"
multipart_threshold = "8MiB"
"#;

fn object(fx: &Fixture, name: &str, size: u64, checksum: Option<(A, T)>) -> DemoObject {
    let [audio, ..] = demo::bucket_names(&fx.suffix);
    let mut o = DemoObject::new(&audio, format!("books/{name}.mp3"), size, "audio/mpeg");
    o.checksum = checksum;
    o
}

fn multipart(fx: &Fixture, name: &str, parts: &[u64], checksum: (A, T)) -> DemoObject {
    object(fx, name, 0, Some(checksum)).with_parts(parts)
}

/// The source's own word on an object's stored checksum, as ferry records
/// it (`ALGORITHM:base64`, `-N` when composite); None when it has none.
async fn stored_at_source(fx: &Fixture, o: &DemoObject) -> Option<String> {
    let head = fx
        .source
        .head_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let found = [
        ("CRC32", head.checksum_crc32()),
        ("CRC32C", head.checksum_crc32_c()),
        ("CRC64NVME", head.checksum_crc64_nvme()),
        ("SHA1", head.checksum_sha1()),
        ("SHA256", head.checksum_sha256()),
    ]
    .into_iter()
    .find_map(|(name, value)| Some(format!("{name}:{}", value?)));
    found
}

/// (source_checksum, proof) the ledger recorded for a key's copy.
fn recorded_proof(fx: &Fixture, key: &str) -> (Option<String>, String) {
    fx.ledger()
        .query_row(
            "SELECT c.source_checksum, c.proof FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_stored_checksum_is_proved_on_the_bytes_and_recorded() {
    let fx = Fixture::new("stored-sums", TRANSFER).await;
    let composite = |a: A| (a, T::Composite);
    let full = |a: A| (a, T::FullObject);
    let mut set = Vec::new();
    // One PUT at the source, one PUT by ferry: the checksum of the whole.
    for (name, a) in [
        ("crc32", A::Crc32),
        ("crc32c", A::Crc32C),
        ("crc64nvme", A::Crc64Nvme),
        ("sha1", A::Sha1),
        ("sha256", A::Sha256),
    ] {
        set.push(object(
            &fx,
            &format!("single-{name}"),
            300_001,
            Some(full(a)),
        ));
    }
    // One PUT at the source, sent in ferry's own 8 MiB parts: the parts'
    // CRCs combined, or the whole object's SHA-256 hashed in order.
    set.push(object(
        &fx,
        "big-crc32c",
        12 * MIB + 5,
        Some(full(A::Crc32C)),
    ));
    set.push(object(
        &fx,
        "big-sha256",
        12 * MIB + 5,
        Some(full(A::Sha256)),
    ));
    // Multipart at the source, copied on its own boundaries: composite of
    // the parts' checksums, or (CRCs only) of the whole.
    let parts = [5 * MIB, 5 * MIB + 3];
    for (name, a) in [
        ("crc32", A::Crc32),
        ("crc32c", A::Crc32C),
        ("sha1", A::Sha1),
        ("sha256", A::Sha256),
    ] {
        set.push(multipart(
            &fx,
            &format!("parts-{name}"),
            &parts,
            composite(a),
        ));
    }
    for (name, a) in [
        ("crc32", A::Crc32),
        ("crc32c", A::Crc32C),
        ("crc64nvme", A::Crc64Nvme),
    ] {
        set.push(multipart(&fx, &format!("whole-{name}"), &parts, full(a)));
    }
    let none = object(&fx, "no-checksum", 300_001, None);
    set.push(none.clone());
    fx.fill(&set).await;

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_all_copied_byte_equal(&fx, &set).await;
    for o in &set {
        let stored = stored_at_source(&fx, o).await;
        let (recorded, proof) = recorded_proof(&fx, &o.key);
        if o.checksum.is_none() {
            assert_eq!((recorded, proof.as_str()), (None, "etag"), "{}", o.key);
            continue;
        }
        let stored = stored.unwrap_or_else(|| panic!("{}: the source stored no checksum", o.key));
        assert_eq!(recorded.as_deref(), Some(stored.as_str()), "{}", o.key);
        assert!(proof.ends_with("checksum"), "{}: proof {proof}", o.key);
        if o.multipart && matches!(o.checksum, Some((_, T::Composite))) {
            assert!(
                stored.ends_with("-2"),
                "{}: {stored} is a composite of 2",
                o.key
            );
        }
    }
    // What a person reads: 14 objects proved by their ETag and their
    // stored checksum, the one without a checksum by its ETag alone.
    let verify = fx.ferry(&["verify", "--all"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(
        verify
            .stdout
            .contains("proved the source's: 1 by their ETag, 14 by both"),
        "{verify:?}"
    );
    let report = fx.ferry(&["report", "--format", "csv"]);
    let (header, rows) = support::csv_table(&report.stdout, "proofs");
    let row = rows
        .iter()
        .find(|r| r[0] == none.bucket)
        .expect("the audio bucket's row");
    let column = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
    assert_eq!(
        (
            column("by ETag"),
            column("by both"),
            column("read back only")
        ),
        ("1", "14", "0"),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bit_flipped_on_the_way_from_a_source_whose_etag_proves_nothing_is_caught_by_its_crc() {
    let fx = Fixture::new("crc-only", TRANSFER).await;
    let single = object(&fx, "kms-single", 700_003, Some((A::Crc32C, T::FullObject)));
    // One PUT at the source, sent in two parts by ferry: its part 2 is flipped.
    let big = object(
        &fx,
        "kms-big",
        12 * MIB + 5,
        Some((A::Crc64Nvme, T::FullObject)),
    );
    // And one written before 2025: no stored checksum, so nothing but a
    // read-back of the copy proves it, which `plan` says before the copy.
    let unproved = object(&fx, "kms-old", 50_000, None);
    // Multipart at the source, with a composite of its 6 MiB parts: ferry
    // cuts its own 8 MiB parts for an SSE-KMS source, as many (2) but
    // elsewhere. Its composite proves nothing then, and must not call the
    // source corrupt either.
    let parts = multipart(
        &fx,
        "kms-parts",
        &[6 * MIB, 6 * MIB],
        (A::Crc32, T::Composite),
    );
    let set = vec![single.clone(), big.clone(), unproved.clone(), parts.clone()];
    fx.fill(&set).await;
    let proxy = FaultProxy::playing(
        servers().get("FERRY_SOURCE_ENDPOINT"),
        Plays {
            // Their ETags are then no MD5 to ferry: only the CRC can tell.
            kms: Some("books/kms-".into()),
            flip_get: Some("kms-single.mp3".into()),
            // Its part 2 exactly: kms-parts has a part 2 from 8 MiB too.
            flip_range: Some(format!("bytes={}-{}", 8 * MIB, big.size - 1)),
            ..Plays::default()
        },
    )
    .await;
    fx.source_through(&proxy.url());
    let plan = fx.ferry(&["plan", "--deep", "--format", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let flagged: Vec<&str> = json["data_quality"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == "no_source_proof")
        .flat_map(|r| r["keys"].as_array().unwrap())
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        flagged,
        vec![unproved.key.as_str(), parts.key.as_str()],
        "{plan:?}"
    );

    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        proxy.injected.get_flipped.load(Ordering::Relaxed),
        "{run:?}"
    );
    assert!(
        proxy.injected.range_flipped.load(Ordering::Relaxed),
        "{run:?}"
    );
    let reread = run.stderr.matches("reading the object again").count();
    assert_eq!(
        reread, 2,
        "each flipped object was read again once: {run:?}"
    );
    assert!(
        run.stderr.contains("but the source stored CRC32C:"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("but the source stored CRC64NVME:"),
        "{run:?}"
    );
    assert_all_copied_byte_equal(&fx, &set).await;
    for o in &set[..2] {
        let (recorded, proof) = recorded_proof(&fx, &o.key);
        assert_eq!(proof, "checksum", "{}", o.key);
        assert_eq!(recorded, stored_at_source(&fx, o).await, "{}", o.key);
    }
    assert_eq!(recorded_proof(&fx, &unproved.key), (None, "none".into()));
    assert_eq!(recorded_proof(&fx, &parts.key), (None, "none".into()));
    let report = fx.ferry(&["report", "--format", "csv"]);
    let (header, rows) = support::csv_table(&report.stdout, "proofs");
    let row = rows
        .iter()
        .find(|r| r[0] == single.bucket)
        .expect("the audio bucket's row");
    let column = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
    assert_eq!(
        (column("by stored checksum"), column("read back only")),
        ("2", "2"),
        "{report:?}"
    );
}
