//! The checksum a source stored with an object (CRC32, CRC32C, CRC64NVME, SHA-1 or SHA-256; of the whole object or composite of its parts), read from the store's answer, and the same computed on the bytes as they pass.
//! It must not decide what a mismatch means (the copy engine does), nor read a byte twice.
//!
//! Since 2025 S3 stores a checksum with every new object: the one the
//! client chose, or a full-object CRC64NVME. It is the only proof that the
//! bytes read are the source's when the ETag is not an MD5 (SSE-KMS). A
//! composite checksum (`value-N`) is the algorithm over the parts' own
//! checksums, concatenated in part order; a full-object one is of the
//! bytes, which for a CRC the parts' CRCs combine into without reading
//! anything again.

use std::fmt;

use base64::Engine as _;
use sha2::Digest as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        [
            Algorithm::Crc32,
            Algorithm::Crc32c,
            Algorithm::Crc64Nvme,
            Algorithm::Sha1,
            Algorithm::Sha256,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// A CRC as S3 writes it: big-endian, 4 bytes for the 32-bit ones.
    fn crc_bytes(self, crc: u64) -> Vec<u8> {
        match self {
            Algorithm::Crc64Nvme => crc.to_be_bytes().to_vec(),
            _ => (crc as u32).to_be_bytes().to_vec(),
        }
    }
}

/// What the source stored: the algorithm, the value, and for a composite
/// checksum how many parts it was made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub algorithm: Algorithm,
    pub value: Vec<u8>,
    /// `Some(n)`: composite of `n` parts; `None`: of the whole object.
    pub parts: Option<u32>,
}

/// The `x-amz-checksum-*` values of an answer (HeadObject or GetObject with
/// `x-amz-checksum-mode: ENABLED`), each as the store sent it.
#[derive(Default)]
pub struct Answered<'a> {
    pub crc32: Option<&'a str>,
    pub crc32c: Option<&'a str>,
    pub crc64nvme: Option<&'a str>,
    pub sha1: Option<&'a str>,
    pub sha256: Option<&'a str>,
    /// `x-amz-checksum-type`: COMPOSITE or FULL_OBJECT, when the store says.
    pub kind: Option<&'a str>,
}

impl Stored {
    /// The one checksum an answer carries, if it carries one ferry can read.
    pub fn from_answer(a: &Answered) -> Option<Stored> {
        let (algorithm, text) = [
            (Algorithm::Crc64Nvme, a.crc64nvme),
            (Algorithm::Crc32c, a.crc32c),
            (Algorithm::Crc32, a.crc32),
            (Algorithm::Sha256, a.sha256),
            (Algorithm::Sha1, a.sha1),
        ]
        .into_iter()
        .find_map(|(alg, v)| Some((alg, v?)))?;
        let stored = Stored::parse_value(algorithm, text)?;
        // A store that says FULL_OBJECT but writes `-N` (or the other way
        // round) gave an answer ferry cannot read for sure: no proof is
        // claimed from it.
        match (a.kind, stored.parts) {
            (Some("FULL_OBJECT"), Some(_)) | (Some("COMPOSITE"), None) => None,
            _ => Some(stored),
        }
    }

    fn parse_value(algorithm: Algorithm, text: &str) -> Option<Stored> {
        let (b64, parts) = match text.rsplit_once('-') {
            Some((b64, n)) => (b64, Some(n.parse::<u32>().ok().filter(|n| *n > 0)?)),
            None => (text, None),
        };
        let value = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let expected = match algorithm {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        };
        (value.len() == expected).then_some(Stored {
            algorithm,
            value,
            parts,
        })
    }

    /// As the ledger keeps it: `CRC64NVME:base64`, with `-N` when composite.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}",
            self.algorithm.name(),
            value_text(&self.value, self.parts)
        )
    }

    /// Takes up [`to_text`](Self::to_text); None if the text is not one.
    pub fn parse(text: &str) -> Option<Stored> {
        let (name, value) = text.split_once(':')?;
        Stored::parse_value(Algorithm::from_name(name)?, value)
    }

    /// What the bytes of `parts` (each its own checksum under this
    /// algorithm, and its length, in part order) make, to compare with the
    /// stored value. None when they cannot tell: a composite of another
    /// number of parts (the parts were not cut at the source's boundaries),
    /// or a full-object SHA over more than one part, which only the whole
    /// object's digest gives.
    pub fn of_parts(&self, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
        match self.parts {
            Some(n) if n as usize == parts.len() => {
                let mut h = ChecksumHasher::new(self.algorithm);
                parts.iter().for_each(|(c, _)| h.update(c));
                Some(h.finish())
            }
            Some(_) => None,
            None if parts.len() == 1 => Some(parts[0].0.clone()),
            None => {
                let crc = self.algorithm.crc()?;
                let mut whole: Option<u64> = None;
                for (value, len) in parts {
                    let part = crc_of_bytes(value)?;
                    whole = Some(match whole {
                        None => part,
                        Some(before) => crc_fast::checksum_combine(crc, before, part, *len),
                    });
                }
                Some(self.algorithm.crc_bytes(whole?))
            }
        }
    }
}

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A checksum value as S3 writes it: base64, and `-N` when composite.
pub fn value_text(value: &[u8], parts: Option<u32>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    match parts {
        Some(n) => format!("{b64}-{n}"),
        None => b64,
    }
}

fn crc_of_bytes(value: &[u8]) -> Option<u64> {
    match value.len() {
        4 => Some(u32::from_be_bytes(value.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(value.try_into().ok()?)),
        _ => None,
    }
}

/// One of the five algorithms, computed as the bytes pass.
#[derive(Clone)]
pub struct ChecksumHasher(Running);

#[derive(Clone)]
enum Running {
    Crc(Algorithm, crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl ChecksumHasher {
    pub fn new(algorithm: Algorithm) -> ChecksumHasher {
        ChecksumHasher(match algorithm.crc() {
            Some(crc) => Running::Crc(algorithm, crc_fast::Digest::new(crc)),
            None if algorithm == Algorithm::Sha1 => Running::Sha1(sha1::Sha1::default()),
            None => Running::Sha256(sha2::Sha256::new()),
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Running::Crc(_, d) => d.update(data),
            Running::Sha1(h) => sha1::Digest::update(h, data),
            Running::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self.0 {
            Running::Crc(algorithm, d) => algorithm.crc_bytes(d.finalize()),
            Running::Sha1(h) => sha1::Digest::finalize(h).to_vec(),
            Running::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(v)
    }

    fn of(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
        let mut h = ChecksumHasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    #[test]
    fn each_algorithm_gives_the_published_check_value() {
        // The check values of the CRC catalogue, and FIPS 180's for "abc".
        let check = |a, want: &str| assert_eq!(hex::encode(of(a, b"123456789")), want, "{a:?}");
        check(Algorithm::Crc32, "cbf43926");
        check(Algorithm::Crc32c, "e3069283");
        check(Algorithm::Crc64Nvme, "ae8b14860a799888");
        assert_eq!(
            hex::encode(of(Algorithm::Sha1, b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(of(Algorithm::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_full_object_crc_is_combined_from_its_parts_crcs() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cuts = [(0, 40_000), (40_000, 99_999), (99_999, 100_000)];
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let stored = Stored {
                algorithm,
                value: of(algorithm, &data),
                parts: None,
            };
            let parts: Vec<(Vec<u8>, u64)> = cuts
                .iter()
                .map(|&(a, b)| (of(algorithm, &data[a..b]), (b - a) as u64))
                .collect();
            assert_eq!(
                stored.of_parts(&parts),
                Some(stored.value.clone()),
                "{algorithm:?}"
            );
            let mut flipped = data.clone();
            flipped[50_000] ^= 1;
            let parts: Vec<(Vec<u8>, u64)> = cuts
                .iter()
                .map(|&(a, b)| (of(algorithm, &flipped[a..b]), (b - a) as u64))
                .collect();
            assert_ne!(
                stored.of_parts(&parts),
                Some(stored.value.clone()),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn a_composite_is_the_checksum_of_the_parts_checksums_and_needs_their_number() {
        // Garage's answer for parts "a" * 5 MiB and "b" * 1000 with CRC32:
        // parts r/zBbw== and tgSiTw==, the object MQVsmQ==-2.
        let p1 = of(Algorithm::Crc32, &vec![b'a'; 5 << 20]);
        let p2 = of(Algorithm::Crc32, &[b'b'; 1000]);
        assert_eq!((b64(&p1), b64(&p2)), ("r/zBbw==".into(), "tgSiTw==".into()));
        let stored = Stored::from_answer(&Answered {
            crc32: Some("MQVsmQ==-2"),
            kind: Some("COMPOSITE"),
            ..Answered::default()
        })
        .unwrap();
        assert_eq!(stored.parts, Some(2));
        let parts = vec![(p1.clone(), 5 << 20), (p2, 1000)];
        assert_eq!(stored.of_parts(&parts), Some(stored.value.clone()));
        // Cut elsewhere, the parts cannot tell: no proof, not a mismatch.
        assert_eq!(stored.of_parts(&parts[..1]), None);
    }

    #[test]
    fn the_ledger_text_reads_back_and_a_confused_answer_is_no_proof() {
        for text in [
            "CRC64NVME:AAECAwQFBgc=",
            "SHA256:gzKREhG1RwKmrTCIEhem1Qh4SLYssbnaSjmwJsKJ6aA=-2",
        ] {
            assert_eq!(Stored::parse(text).unwrap().to_text(), text);
        }
        assert_eq!(Stored::parse("CRC32:AAEC"), None, "3 bytes is no CRC32");
        assert_eq!(Stored::parse("MD5:AAECAw=="), None);
        let confused = Answered {
            crc32: Some("MQVsmQ==-2"),
            kind: Some("FULL_OBJECT"),
            ..Answered::default()
        };
        assert_eq!(Stored::from_answer(&confused), None);
        let confused = Answered {
            crc32: Some("MQVsmQ=="),
            kind: Some("COMPOSITE"),
            ..Answered::default()
        };
        assert_eq!(Stored::from_answer(&confused), None);
    }
}
