//! The torture harness's model of the world: what ferry's source holds, every
//! version it ever held, and what the other writer wrote at the destination.
//! It changes the real stores only as the model says; it judges nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use ferry::store::Side;
use ferry_tools::demo::{self, DemoObject};

const MIB: u64 = 1 << 20;
/// Keys only the other writer uses: ferry's source never holds them.
pub const OTHER_PREFIX: &str = "other/";
/// Keys the harness's filter leaves out, when it is on.
pub const FILTERED_PREFIX: &str = "skip/";

/// A key of one bucket pair (its index in `World::pairs`).
pub type Key = (usize, String);

/// One object as written: its bytes (from the demo generator) and the ETag
/// the store gave it.
#[derive(Clone, Debug)]
pub struct Version {
    pub object: DemoObject,
    pub etag: String,
}

/// An upload the other writer started and leaves open.
#[derive(Clone, Debug)]
pub struct OpenUpload {
    pub key: Key,
    pub upload_id: String,
}

#[derive(Clone, Debug)]
pub struct Pair {
    pub source: String,
    pub destination: String,
}

/// What one step changed, for the invariants that compare before and after.
#[derive(Default, Debug)]
pub struct Changes {
    /// Keys deleted at the source in this step.
    pub source_deleted: BTreeSet<Key>,
    /// Keys the other writer deleted at the destination in this step.
    pub other_deleted: BTreeSet<Key>,
    /// One line per mutation, printed with a failing step.
    pub log: Vec<String>,
}

pub struct World {
    pub pairs: Vec<Pair>,
    pub source: BTreeMap<Key, Version>,
    /// Every version the source ever held, by (key, ETag).
    pub history: HashMap<(Key, String), DemoObject>,
    /// The other writer's objects at the destination.
    pub other: BTreeMap<Key, Version>,
    pub other_uploads: Vec<OpenUpload>,
    next_seed: u64,
}

/// A key with the shapes that break naive code: spaces, `+`, `%`, unicode,
/// a trailing space, deep and long paths. Drawn from a small pool, so keys
/// come back (overwritten, deleted, put again).
fn odd_key(rng: &mut fastrand::Rng) -> String {
    const DIRS: [&str; 7] = [
        "",
        "books/",
        "a b/",
        "hörbuch/",
        "x+y/",
        "100%/",
        "deep/er/st/",
    ];
    const NAMES: [&str; 6] = ["f", "ä-", "with space ", "plus+", "pct%25", "dot."];
    let dir = if rng.u8(..10) == 0 {
        FILTERED_PREFIX
    } else {
        DIRS[rng.usize(..DIRS.len())]
    };
    let mut key = format!("{dir}{}{}", NAMES[rng.usize(..NAMES.len())], rng.u8(..24));
    match rng.u8(..12) {
        0 => key.push(' '),
        1 => key = format!("{}{key}", "long-".repeat(40)),
        _ => {}
    }
    key
}

impl World {
    pub fn new(pairs: Vec<Pair>, seed: u64) -> World {
        World {
            pairs,
            source: BTreeMap::new(),
            history: HashMap::new(),
            other: BTreeMap::new(),
            other_uploads: Vec::new(),
            next_seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// An object of a random shape: mostly a few KiB, some empty, some
    /// single-part over the multipart threshold, some multipart at the
    /// source with unequal parts (5 MiB and more, the last smaller).
    fn shape(&mut self, rng: &mut fastrand::Rng, bucket: &str, key: &str) -> DemoObject {
        let mut o = match rng.u8(..100) {
            0..=9 => DemoObject::new(bucket, key.into(), 0, "application/octet-stream"),
            10..=15 => DemoObject::new(
                bucket,
                key.into(),
                5 * MIB + rng.u64(..2 * MIB),
                "audio/mpeg",
            ),
            16..=21 => {
                let mut parts = vec![5 * MIB + rng.u64(..MIB)];
                if rng.bool() {
                    parts.push(5 * MIB + rng.u64(..MIB));
                }
                parts.push(1 + rng.u64(..MIB));
                DemoObject::new(bucket, key.into(), 0, "audio/mp4").with_parts(&parts)
            }
            _ => DemoObject::new(bucket, key.into(), rng.u64(1..16 << 10), "text/xml"),
        };
        // Fresh bytes for every version, so an overwrite is told apart.
        self.next_seed = self.next_seed.wrapping_add(0x2545_F491_4F6C_DD1D);
        o.seed = self.next_seed;
        o
    }

    /// One batch of source puts, overwrites and deletes.
    pub async fn mutate_source(
        &mut self,
        rng: &mut fastrand::Rng,
        client: &Client,
        changes: &mut Changes,
    ) {
        for _ in 0..rng.usize(1..8) {
            let pair = rng.usize(..self.pairs.len());
            let existing: Vec<Key> = self
                .source
                .keys()
                .filter(|k| k.0 == pair)
                .cloned()
                .collect();
            let delete = !existing.is_empty() && rng.u8(..4) == 0;
            if delete {
                let key = existing[rng.usize(..existing.len())].clone();
                if changes.source_deleted.contains(&key) {
                    continue;
                }
                delete_object(client, Side::Source, &self.pairs[pair].source, &key.1).await;
                self.source.remove(&key);
                changes.log.push(format!("source: delete {key:?}"));
                changes.source_deleted.insert(key);
                continue;
            }
            let key = (pair, odd_key(rng));
            if changes.source_deleted.contains(&key) {
                continue; // a key deleted and put again in one batch says nothing new
            }
            let bucket = self.pairs[pair].source.clone();
            let object = self.shape(rng, &bucket, &key.1);
            let etag = put(client, Side::Source, &object).await;
            changes.log.push(format!(
                "source: {} {key:?} ({} B{})",
                if self.source.contains_key(&key) {
                    "overwrite"
                } else {
                    "put"
                },
                object.size,
                if object.multipart { ", multipart" } else { "" }
            ));
            self.history
                .insert((key.clone(), etag.clone()), object.clone());
            self.source.insert(key, Version { object, etag });
        }
    }

    /// The other writer's batch at the destination: its own keys, keys
    /// ferry's source holds that are free at the destination (ferry must
    /// then leave them alone), deletes of its own objects, and multipart
    /// uploads it leaves open (under keys ferry copies too, with
    /// `uploads_on_shared_keys`).
    pub async fn mutate_destination(
        &mut self,
        rng: &mut fastrand::Rng,
        client: &Client,
        changes: &mut Changes,
        uploads_on_shared_keys: bool,
    ) {
        for _ in 0..rng.usize(1..4) {
            let pair = rng.usize(..self.pairs.len());
            let bucket = self.pairs[pair].destination.clone();
            match rng.u8(..10) {
                0..=2 => {
                    let key = (pair, format!("{OTHER_PREFIX}{}", rng.u8(..16)));
                    self.other_put(rng, client, key, changes).await;
                }
                3..=5 => {
                    // A key ferry copies, free at the destination right now.
                    let shared: Vec<Key> = self
                        .source
                        .keys()
                        .filter(|k| k.0 == pair && !self.other.contains_key(*k))
                        .cloned()
                        .collect();
                    if shared.is_empty() {
                        continue;
                    }
                    let key = shared[rng.usize(..shared.len())].clone();
                    if client
                        .head_object()
                        .bucket(&bucket)
                        .key(&key.1)
                        .send()
                        .await
                        .is_err()
                    {
                        self.other_put(rng, client, key, changes).await;
                    }
                }
                6..=7 => {
                    let ours: Vec<Key> =
                        self.other.keys().filter(|k| k.0 == pair).cloned().collect();
                    if ours.is_empty() {
                        continue;
                    }
                    let key = ours[rng.usize(..ours.len())].clone();
                    delete_object(client, Side::Destination, &bucket, &key.1).await;
                    self.other.remove(&key);
                    changes.log.push(format!("other writer: delete {key:?}"));
                    changes.other_deleted.insert(key);
                }
                _ => {
                    let key = if rng.bool() || !uploads_on_shared_keys {
                        (pair, format!("{OTHER_PREFIX}upload-{}", rng.u8(..8)))
                    } else {
                        match self
                            .source
                            .keys()
                            .filter(|k| k.0 == pair)
                            .nth(rng.usize(..8))
                        {
                            Some(k) => k.clone(),
                            None => continue,
                        }
                    };
                    let upload_id = start_upload(client, &bucket, &key.1).await;
                    changes.log.push(format!(
                        "other writer: upload in progress {key:?} {upload_id}"
                    ));
                    self.other_uploads.push(OpenUpload { key, upload_id });
                }
            }
        }
    }

    async fn other_put(
        &mut self,
        rng: &mut fastrand::Rng,
        client: &Client,
        key: Key,
        changes: &mut Changes,
    ) {
        let bucket = self.pairs[key.0].destination.clone();
        let mut object = self.shape(rng, &bucket, &key.1);
        // Small, and never empty: empty bytes equal any empty source object's,
        // and a key that holds the source's very bytes is fairly ferry's to adopt.
        if object.size > 64 << 10 || object.size == 0 {
            object = DemoObject {
                size: 1 + rng.u64(..4096),
                multipart: false,
                part_lengths: Vec::new(),
                ..object
            };
        }
        let etag = put(client, Side::Destination, &object).await;
        changes
            .log
            .push(format!("other writer: put {key:?} ({} B)", object.size));
        self.other.insert(key, Version { object, etag });
    }

    /// The other writer takes back everything it holds: objects deleted,
    /// uploads aborted. The world then has ferry's keys alone.
    pub async fn other_writer_leaves(&mut self, client: &Client) {
        for (key, _) in std::mem::take(&mut self.other) {
            delete_object(
                client,
                Side::Destination,
                &self.pairs[key.0].destination,
                &key.1,
            )
            .await;
        }
        for upload in std::mem::take(&mut self.other_uploads) {
            // Garage may have dropped it already (see the README): NoSuchUpload is fine.
            let _ = client
                .abort_multipart_upload()
                .bucket(&self.pairs[upload.key.0].destination)
                .key(&upload.key.1)
                .upload_id(&upload.upload_id)
                .send()
                .await;
        }
    }

    pub fn pair_of_destination(&self, bucket: &str) -> Option<usize> {
        self.pairs.iter().position(|p| p.destination == bucket)
    }
}

/// Puts `o` and returns the ETag the store gave it. The world's own writes
/// are not what is tested: one the local server was too slow to answer
/// within the torture's 2 s read timeout is sent again (the same bytes).
async fn put(client: &Client, side: Side, o: &DemoObject) -> String {
    let mut tries = 0;
    while let Err(e) = demo::put(client, o).await {
        tries += 1;
        if tries == 3 {
            panic!("{side:?} put: {e}");
        }
        eprintln!(
            "torture: the world's own {side:?} put of {} failed ({e}); again",
            o.key
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let head = client
        .head_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .send()
        .await;
    let head = head.unwrap_or_else(|e| panic!("{side:?} HEAD {}: {e:?}", o.key));
    ferry::hashing::bare_etag(head.e_tag().unwrap_or_default()).to_owned()
}

async fn delete_object(client: &Client, side: Side, bucket: &str, key: &str) {
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{side:?} delete {bucket}/{key}: {e:?}"));
}

/// Starts a multipart upload and sends its first part, then leaves it open.
async fn start_upload(client: &Client, bucket: &str, key: &str) -> String {
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await;
    let upload_id = created
        .expect("other writer: create upload")
        .upload_id()
        .unwrap()
        .to_owned();
    client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from(demo::content(
            upload_id.len() as u64,
            0,
            1024,
        )))
        .send()
        .await
        .expect("other writer: upload a part");
    upload_id
}
