//! The torture harness (issue 24): seeded schedules of source changes, another writer, kills and faults, run with the real binary against the real servers, the invariants checked after every step.
//! It drives ferry only through its command line and config; it never reaches into the engine, and it never fixes what it finds.

pub mod check;
pub mod child;
pub mod world;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use check::{Listing, ReadBack, Violation};
use world::{Changes, Key, Pair, World};

use crate::support::faults::{FaultProxy, Rates};
use crate::support::{servers, Fixture};

/// Faults of ferry the harness found, each switched off (its trigger left
/// out of the mix) until its fix lands. Setting a constant to `true`
/// switches one on; `FERRY_TORTURE_KNOWN_FAULTS=NAME,NAME` some, `=on` all.
pub mod known {
    /// `ferry cleanup` (and a run) abort another writer's upload of a key
    /// ferry copies (seeds 3 and 6 into Ceph, switched on). Off: the other
    /// writer's uploads use its own keys only.
    /// Fixed (issue 24, item 6): switched on.
    pub const OTHER_WRITERS_UPLOADS_ON_FERRYS_KEYS: bool = true;
    /// An inventory without the optional Size or ETag column: without Size
    /// ferry copied an empty object and recorded it verified (seed 2 into
    /// Ceph). Fixed (issue 24, item 2): ferry now refuses a manifest without
    /// Size, LastModifiedDate, ETag and StorageClass before it records a row
    /// (tests/inventory.rs), so the harness always writes those four, and
    /// the others at random.
    pub const INVENTORY_WITHOUT_SIZE_OR_ETAG: bool = false;
    /// `report` calls a key deleted at the source `changed` ("deleted at
    /// the source since it was listed") even once it is gone from the
    /// destination too (removed by `delete = true`, or never copied), so it
    /// never exits 0 after a deletion (seed 1). Off: a settled report may
    /// exit 1 when every problem is such a key, gone from both stores.
    /// Fixed (issue 24, item 4: such a key is `gone`): switched on.
    pub const REPORT_COUNTS_KEYS_GONE_FROM_BOTH_STORES: bool = true;
    /// An upload ferry started in a pass with faults outlives the next pass
    /// that completed, on Ceph (seed 4 with the Ceph destination; the
    /// faults are not seeded, so a replay may miss it). Off: an upload
    /// initiated while faults were on is not counted against ferry.
    /// Believed fixed with item 9a (a lost CreateMultipartUpload answer): switched on.
    pub const UPLOADS_LEFT_BY_FAULTY_PASSES: bool = true;
    /// A copy ferry made and did not record (killed before the record)
    /// becomes a `conflict`, "which ferry did not write": once its source
    /// is deleted it is never removed (seed 9 into Ceph; the kill's timing
    /// is not seeded, so a replay may miss it). Off: a settled world may
    /// keep a key whose bytes are a version the source once held, and
    /// `report` may call it a conflict.
    /// Fixed (issue 24, item 5: write intents): switched on.
    pub const UNRECORDED_COPY_BECOMES_CONFLICT: bool = true;

    /// Whether a fault's trigger is in the mix: its constant, or
    /// FERRY_TORTURE_KNOWN_FAULTS naming it (or `on`, for all of them).
    pub(super) fn on(fault: bool, name: &str) -> bool {
        fault
            || std::env::var("FERRY_TORTURE_KNOWN_FAULTS")
                .is_ok_and(|v| v.split(',').any(|n| n.trim() == "on" || n.trim() == name))
    }
}

/// Whether the known fault named is in the mix (see `known::on`).
macro_rules! known_on {
    ($fault:ident) => {
        known::on(known::$fault, stringify!($fault))
    };
}

const MIB: u64 = 1 << 20;
/// ferry's budget of object bytes in memory, and what a process may hold
/// beyond it (runtime, SDK, ledger, buffers): measured, see the README.
pub const BUDGET: u64 = 16 * MIB;
pub const OVERHEAD: u64 = 96 * MIB;
const TRANSFER: &str = "concurrency = 8\npart_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\nmax_bytes_in_flight = \"16MiB\"\nread_timeout = \"2s\"\nmax_bandwidth = \"40MB/s\"";
/// At most this many passes bring every key to byte-equal once the world stops.
const SETTLE_PASSES: usize = 3;

/// What one schedule did.
pub struct Outcome {
    pub seed: u64,
    pub steps: usize,
    pub elapsed: Duration,
}

/// How one step's ferry is set up.
#[derive(Clone, Copy, Debug, Default)]
struct Stage {
    faults: bool,
    filter: bool,
    delete: bool,
    /// Each pair lists from its newest inventory (when it has one, and
    /// the pass has not read it yet).
    inventory: bool,
}

/// The fixture and proxies of one schedule: two bucket pairs, each store
/// reached through a clean proxy or a faulty one, per step.
struct Harness {
    fx: Fixture,
    head: String,
    clean: (FaultProxy, FaultProxy),
    faulty: (FaultProxy, FaultProxy),
    garage: bool,
    /// When each run with faults went, for `known::UPLOADS_LEFT_BY_FAULTY_PASSES`.
    faulty_runs: std::cell::RefCell<Vec<(SystemTime, SystemTime)>>,
    /// The bucket that holds both pairs' inventories, and how many each has.
    inventories: (String, std::cell::Cell<usize>),
    /// The destination bucket of the ledger's snapshots (`[backup]`).
    backup: String,
    /// When the box was lost (its ledger deleted, perhaps restored from the
    /// newest snapshot): what a new ledger cannot prove is excused after.
    losses: std::cell::RefCell<Vec<SystemTime>>,
}

impl Harness {
    async fn new(seed: u64) -> (Harness, World) {
        let fx = Fixture::with_destination("torture", TRANSFER, "", None).await;
        let text = std::fs::read_to_string(&fx.config_path).unwrap();
        let head = text.split("[[buckets]]").next().unwrap().to_owned();
        let pairs: Vec<Pair> = (0..2)
            .map(|i| Pair {
                source: format!("t{i}{}", fx.suffix),
                destination: format!("hub-t{i}{}", fx.suffix),
            })
            .collect();
        for p in &pairs {
            ferry_tools::demo::fill(
                &fx.source,
                &fx.destination,
                &[(p.source.clone(), p.destination.clone())],
                &[],
                1,
            )
            .await
            .expect("create the buckets");
        }
        let backup = format!("ledger{}", fx.suffix);
        fx.destination
            .create_bucket()
            .bucket(&backup)
            .send()
            .await
            .expect("create the snapshot bucket");
        let inventories = format!("inv{}", fx.suffix);
        fx.source
            .create_bucket()
            .bucket(&inventories)
            .send()
            .await
            .expect("create the inventory bucket");
        let (src, dst) = (
            servers().get("FERRY_SOURCE_ENDPOINT"),
            servers().get("FERRY_DEST_ENDPOINT"),
        );
        let stall = Duration::from_secs(3);
        let faulty = |flip_request, flip_response| Rates {
            slow_down: 0.04,
            internal_error: 0.02,
            reset_before: 0.02,
            reset_during: 0.02,
            stall: 0.005,
            truncate: 0.02,
            flip_request,
            flip_response,
        };
        let harness = Harness {
            head,
            clean: (
                FaultProxy::start(src, Rates::default(), stall).await,
                FaultProxy::start(dst, Rates::default(), stall).await,
            ),
            faulty: (
                FaultProxy::start(src, faulty(0.0, 0.03), stall).await,
                FaultProxy::start(dst, faulty(0.03, 0.0), stall).await,
            ),
            garage: servers().get("FERRY_DEST_ENDPOINT").ends_with(":9100"),
            inventories: (inventories, std::cell::Cell::new(0)),
            faulty_runs: Default::default(),
            backup,
            losses: Default::default(),
            fx,
        };
        (harness, World::new(pairs, seed))
    }

    fn write_config(&self, world: &World, stage: Stage) -> std::path::PathBuf {
        let (src, dst) = if stage.faults {
            &self.faulty
        } else {
            &self.clean
        };
        let mut text = String::new();
        if stage.delete {
            text.push_str("delete = true\n");
        }
        text.push_str(
            &self
                .head
                .replace(servers().get("FERRY_SOURCE_ENDPOINT"), &src.url())
                .replace(servers().get("FERRY_DEST_ENDPOINT"), &dst.url()),
        );
        // Snapshots of the ledger, often: what a lost box comes back from.
        text.push_str(&format!(
            "[backup]\nbucket = \"{}\"\nevery = \"2s\"\nkeep = 3\n",
            self.backup
        ));
        for p in &world.pairs {
            text.push_str(&format!(
                "[[buckets]]\nsource = \"{}\"\ndestination = \"{}\"\n",
                p.source, p.destination
            ));
            if stage.filter {
                text.push_str(&format!("exclude = ['^{}']\n", world::FILTERED_PREFIX));
            }
            if stage.inventory && self.inventories.1.get() > 0 {
                text.push_str(&format!(
                    "inventory = \"s3://{}/reports/{}/\"\n",
                    self.inventories.0, p.source
                ));
            }
        }
        let path = self.fx.dir.path().join("torture.toml");
        std::fs::write(&path, text).unwrap();
        // Holds no secret, but ferry warns about any config others can read.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path
    }

    async fn ferry(
        &self,
        world: &World,
        stage: Stage,
        args: &[&str],
        kill_after: Option<Duration>,
    ) -> child::Ended {
        let config = self.write_config(world, stage);
        let started = SystemTime::now();
        let ended = child::ferry(self.fx.dir.path(), &config, args, kill_after).await;
        if stage.faults {
            self.faulty_runs
                .borrow_mut()
                .push((started, SystemTime::now()));
        }
        ended
    }

    /// The box is lost: the ledger goes, and with `restore` the newest
    /// snapshot comes back (`ferry ledger restore`, through clean proxies).
    async fn lose_the_box(&self, world: &World, restore: bool, changes: &mut Changes) {
        self.losses.borrow_mut().push(SystemTime::now());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.fx.config.ledger.display()));
        }
        let mut what = "the box is lost with its ledger".to_owned();
        if restore {
            let restored = self
                .ferry(world, Stage::default(), &["ledger", "restore"], None)
                .await;
            what += &format!(", then `ferry ledger restore`: exit {:?}", restored.code);
        }
        changes.log.push(what);
    }

    /// Whether an upload was begun before the box was last lost: the new
    /// ledger cannot know it (README, "what is lost between snapshots").
    fn started_before_a_loss(&self, upload: &ferry::cleanup::Incomplete) -> bool {
        let (Some(last), Some(at)) = (
            self.losses.borrow().last().copied(),
            upload
                .initiated
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
        ) else {
            return false;
        };
        at <= last + Duration::from_secs(1)
    }

    /// Whether an upload was initiated during a run with faults (give or
    /// take the second the store rounds its time to).
    fn started_under_faults(&self, upload: &ferry::cleanup::Incomplete) -> bool {
        let Some(at) = upload
            .initiated
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        else {
            return false;
        };
        let second = Duration::from_secs(1);
        self.faulty_runs
            .borrow()
            .iter()
            .any(|(from, to)| *from - second <= at && at <= *to + second)
    }

    /// An inventory of what the source holds now, for each pair, with
    /// Bucket and Key and a random choice of the optional columns in a
    /// random order.
    async fn write_inventories(
        &self,
        rng: &mut fastrand::Rng,
        world: &World,
        changes: &mut Changes,
    ) {
        use crate::support::inventory::{self, Line, Report, OPTIONAL_COLUMNS};
        let n = self.inventories.1.get() + 1;
        self.inventories.1.set(n);
        let all_on = known_on!(INVENTORY_WITHOUT_SIZE_OR_ETAG);
        for (i, pair) in world.pairs.iter().enumerate() {
            let mut schema = vec!["Bucket", "Key"];
            schema.extend(OPTIONAL_COLUMNS.iter().copied().filter(|c| {
                rng.bool()
                    || (!all_on
                        && matches!(*c, "Size" | "ETag" | "LastModifiedDate" | "StorageClass"))
            }));
            rng.shuffle(&mut schema);
            let lines: Vec<Line> = world
                .source
                .iter()
                .filter(|(k, _)| k.0 == i)
                .map(|(k, v)| Line {
                    key: k.1.clone(),
                    size: v.object.size,
                    etag: v.etag.clone(),
                })
                .collect();
            let dated = format!("reports/{}/2026-12-06T{n:02}-00Z/", pair.source);
            let report = Report {
                at: (&self.inventories.0, &dated),
                source_bucket: &pair.source,
                schema: &schema,
                files: rng.usize(1..3),
                format: "CSV",
                md5: None,
            };
            inventory::write(&self.fx.source, report, &lines).await;
            changes.log.push(format!(
                "inventory {n} of pair {i}: {} keys, columns {}",
                lines.len(),
                schema.join(",")
            ));
        }
    }

    /// Upload ids ferry aborted, and keys it wrote (a PUT or a completed
    /// upload), through any proxy.
    fn seen(&self) -> (HashSet<String>, HashSet<String>) {
        let proxies = [&self.clean.1, &self.faulty.1];
        let aborted = proxies
            .iter()
            .flat_map(|p| p.injected.aborted_uploads.lock().unwrap().clone());
        let completed = proxies.iter().flat_map(|p| {
            let mut written = p.injected.completes.lock().unwrap().clone();
            written.extend(p.injected.put_keys.lock().unwrap().iter().cloned());
            written
        });
        (aborted.collect(), completed.collect())
    }
}

/// The state a schedule carries from one check to the next.
struct Checks {
    before: Listing,
    read: ReadBack,
}

impl Checks {
    /// Every invariant that holds after any step; returns the destination's listing.
    async fn after_step(
        &mut self,
        h: &Harness,
        world: &mut World,
        changes: &Changes,
        ended: &child::Ended,
    ) -> Result<Listing, Violation> {
        let dest = &h.fx.destination;
        let now = check::destination_listing(world, dest).await;
        check::memory(ended.peak_rss, BUDGET, OVERHEAD)?;
        check::others_untouched(world, &now)?;
        check::nothing_deleted_under_a_live_source(world, &self.before, &now, changes)?;
        let seen = h.seen();
        check::uploads(
            world,
            dest,
            (&seen.0, &seen.1),
            (ended.code == Some(0), h.garage),
            |u| {
                (!known_on!(UPLOADS_LEFT_BY_FAULTY_PASSES) && h.started_under_faults(u))
                    || h.started_before_a_loss(u)
            },
        )
        .await?;
        check::verified_rows_read_back(world, &h.fx.config.ledger, dest, &now, &mut self.read)
            .await?;
        self.before = now.clone();
        Ok(now)
    }

    /// What the destination's object under `key` (listed with `etag`)
    /// hashes to, read once per ETag.
    async fn sha256_at_destination(
        &mut self,
        h: &Harness,
        world: &World,
        key: &Key,
        etag: &str,
    ) -> String {
        let slot = (key.clone(), etag.to_owned());
        if !self.read.contains_key(&slot) {
            let bucket = &world.pairs[key.0].destination;
            let got = ferry_tools::demo::observe(
                &h.fx.destination,
                ferry::store::Side::Destination,
                bucket,
                &key.1,
            )
            .await;
            self.read
                .insert(slot.clone(), got.map(|g| g.sha256).unwrap_or_default());
        }
        self.read[&slot].clone()
    }

    /// Keys whose destination object holds the bytes of a version the
    /// source held under that key once: ferry's copy, recorded or not.
    async fn ferrys_bytes(&mut self, h: &Harness, world: &World, now: &Listing) -> HashSet<Key> {
        let mut ours = HashSet::new();
        for (key, (_, etag)) in now {
            let sha = self.sha256_at_destination(h, world, key, etag).await;
            let versions = world.history.iter().filter(|((k, _), _)| k == key);
            if versions
                .into_iter()
                .any(|(_, o)| o.expected_digests().sha256_hex() == sha)
            {
                ours.insert(key.clone());
            }
        }
        ours
    }

    /// The keys that are not byte-equal with the source (or should not be
    /// at the destination at all), each with why.
    async fn unsettled(&mut self, h: &Harness, world: &World, now: &Listing) -> Vec<String> {
        let mut off = Vec::new();
        // After a lost ledger, ferry's older copy of a key that changed since
        // is as unprovable as another writer's: a conflict, untouched (README,
        // "Losing the box").
        let unprovable: HashSet<Key> = if h.losses.borrow().is_empty() {
            HashSet::new()
        } else {
            let conflicts = in_conflict(h, world);
            let ours = self.ferrys_bytes(h, world, now).await;
            ours.intersection(&conflicts).cloned().collect()
        };
        for (key, version) in &world.source {
            if unprovable.contains(key) {
                continue;
            }
            let Some((_, etag)) = now.get(key) else {
                off.push(format!("{key:?} missing at the destination"));
                continue;
            };
            if self.sha256_at_destination(h, world, key, etag).await
                != version.object.expected_digests().sha256_hex()
            {
                off.push(format!("{key:?} differs from the source"));
            }
        }
        let excused = if !h.losses.borrow().is_empty() {
            // A copy no ledger knew of, its source deleted since: ferry
            // cannot know to remove it (README, "what is lost"). A key the
            // ledger lists must settle as ever.
            let known = in_ledger(h, world);
            let conflicts = in_conflict(h, world);
            let ours = self.ferrys_bytes(h, world, now).await;
            ours.into_iter()
                .filter(|k| !known.contains(k) || conflicts.contains(k))
                .collect()
        } else if known_on!(UNRECORDED_COPY_BECOMES_CONFLICT) {
            HashSet::new()
        } else {
            let conflicts = in_conflict(h, world);
            let ours = self.ferrys_bytes(h, world, now).await;
            ours.intersection(&conflicts).cloned().collect()
        };
        off.extend(
            now.keys()
                .filter(|k| !world.source.contains_key(*k) && !excused.contains(*k))
                .map(|k| format!("{k:?} at the destination, not at the source")),
        );
        off
    }
}

/// Keys the ledger holds in `conflict`.
/// Every key the ledger has a row for.
fn in_ledger(h: &Harness, world: &World) -> HashSet<Key> {
    ledger_keys(h, world, "1")
}

fn in_conflict(h: &Harness, world: &World) -> HashSet<Key> {
    ledger_keys(h, world, "o.state = 'conflict'")
}

/// The keys of the ledger's rows that match `condition` (SQL on `o`).
fn ledger_keys(h: &Harness, world: &World, condition: &str) -> HashSet<Key> {
    let db = h.fx.ledger();
    let mut q = db
        .prepare(&format!("SELECT b.destination, o.key FROM objects o JOIN buckets b ON b.id = o.bucket_id WHERE {condition}"))
        .unwrap();
    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)));
    rows.unwrap()
        .map(Result::unwrap)
        .filter_map(|(bucket, key)| Some((world.pair_of_destination(&bucket)?, key)))
        .collect()
}

/// Each unsettled key with its ledger state and last error, for a finding.
fn ledger_says(h: &Harness, world: &World, off: &[String]) -> String {
    let db = h.fx.ledger();
    let mut q = db
        .prepare("SELECT b.destination, o.key, o.state, o.attempts, o.last_error FROM objects o JOIN buckets b ON b.id = o.bucket_id")
        .unwrap();
    let rows = q.query_map([], |r| {
        let (bucket, key): (String, String) = (r.get(0)?, r.get(1)?);
        let pair = world.pair_of_destination(&bucket).unwrap_or(9);
        let (state, attempts, error): (String, i64, Option<String>) =
            (r.get(2)?, r.get(3)?, r.get(4)?);
        Ok((
            format!("{:?}", (pair, key)),
            format!(
                "{state}, {attempts} attempts, {}",
                error.unwrap_or_default()
            ),
        ))
    });
    let rows: std::collections::HashMap<String, String> =
        rows.unwrap().map(Result::unwrap).collect();
    off.iter()
        .map(|line| {
            let key = line.split(") ").next().unwrap_or("").to_owned() + ")";
            format!(
                "  {line}; ledger: {}",
                rows.get(&key).map_or("no row", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn fail(seed: u64, step: &str, v: Violation, changes: &Changes, ended: Option<&child::Ended>) -> ! {
    panic!(
        "torture: seed {seed}, {step}, key {:?}: {}\nthis step:\n  {}\n{}\nreplay: FERRY_TORTURE_SEED={seed} cargo test --test torture",
        v.key,
        v.what,
        changes.log.join("\n  "),
        ended.map_or(String::new(), child::Ended::told),
    )
}

/// Runs the schedule `seed` names; panics with the seed, the step, the key
/// and what differs at the first broken invariant.
pub async fn schedule(seed: u64) -> Outcome {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let (h, mut world) = Harness::new(seed).await;
    let mut checks = Checks {
        before: Listing::new(),
        read: ReadBack::new(),
    };
    let steps = rng.usize(6..12);
    for step in 1..=steps {
        let mut changes = Changes::default();
        // An inventory written before the step's changes is a day old when read.
        let inventory = rng.u8(..3);
        if inventory == 0 {
            h.write_inventories(&mut rng, &world, &mut changes).await;
        }
        world
            .mutate_source(&mut rng, &h.fx.source, &mut changes)
            .await;
        if inventory == 1 {
            h.write_inventories(&mut rng, &world, &mut changes).await;
        }
        if rng.u8(..3) > 0 {
            world
                .mutate_destination(
                    &mut rng,
                    &h.fx.destination,
                    &mut changes,
                    known_on!(OTHER_WRITERS_UPLOADS_ON_FERRYS_KEYS),
                )
                .await;
        }
        let stage = Stage {
            faults: rng.u8(..5) < 2,
            filter: rng.bool(),
            delete: rng.bool(),
            inventory: rng.bool(),
        };
        if rng.u8(..8) == 0 {
            h.lose_the_box(&world, rng.bool(), &mut changes).await;
        }
        let kill_after = (rng.u8(..3) == 0).then(|| Duration::from_millis(rng.u64(50..1500)));
        changes
            .log
            .push(format!("ferry: {stage:?}, kill after {kill_after:?}"));
        let mut ended = h.ferry(&world, stage, &["run", "--once"], kill_after).await;
        if rng.u8(..4) == 0 {
            changes.log.push("ferry cleanup".into());
            let cleanup = h.ferry(&world, stage, &["cleanup"], None).await;
            if cleanup.code != Some(0) && !stage.faults {
                fail(
                    seed,
                    &format!("step {step}"),
                    Violation {
                        key: None,
                        what: "ferry cleanup failed".into(),
                    },
                    &changes,
                    Some(&cleanup),
                );
            }
            ended.peak_rss = ended.peak_rss.max(cleanup.peak_rss);
        }
        if let Err(v) = checks.after_step(&h, &mut world, &changes, &ended).await {
            fail(seed, &format!("step {step}"), v, &changes, Some(&ended));
        }
        eprintln!(
            "torture: seed {seed} step {step}/{steps}: {} changes, {stage:?}, {}, peak {} MiB",
            changes.log.len() - 1,
            match (kill_after, ended.code) {
                (Some(at), None) => format!("killed after {} ms", at.as_millis()),
                (_, code) => format!("exit {code:?}"),
            },
            ended.peak_rss >> 20
        );
        if std::env::var("FERRY_TORTURE_VERBOSE").is_ok() {
            eprintln!("  {}\n{}", changes.log.join("\n  "), ended.told());
        }
    }
    settle(seed, &h, &mut world, &mut checks).await;
    Outcome {
        seed,
        steps,
        elapsed: started.elapsed(),
    }
}

/// The world stops changing: the other writer takes back what it holds,
/// filters off, `delete = true`, no faults. At most SETTLE_PASSES passes
/// must bring every key to byte-equal, and `verify` and `report` exit 0.
async fn settle(seed: u64, h: &Harness, world: &mut World, checks: &mut Checks) {
    let mut changes = Changes::default();
    changes
        .log
        .push("the other writer leaves; filters off, delete = true, no faults".into());
    let other: Vec<_> = world.other.keys().cloned().collect();
    world.other_writer_leaves(&h.fx.destination).await;
    changes.other_deleted.extend(other);
    let stage = Stage {
        delete: true,
        ..Stage::default()
    };
    let mut off = Vec::new();
    for pass in 1..=SETTLE_PASSES {
        let ended = h.ferry(world, stage, &["run", "--once"], None).await;
        let now = match checks.after_step(h, world, &changes, &ended).await {
            Ok(now) => now,
            Err(v) => fail(
                seed,
                &format!("settling, pass {pass}"),
                v,
                &changes,
                Some(&ended),
            ),
        };
        changes = Changes::default();
        off = checks.unsettled(h, world, &now).await;
        if off.is_empty() {
            break;
        }
        if pass == SETTLE_PASSES {
            let what = format!(
                "stuck: {SETTLE_PASSES} passes after the world stopped, not byte-equal:\n{}",
                ledger_says(h, world, &off)
            );
            fail(
                seed,
                "settling",
                Violation { key: None, what },
                &changes,
                Some(&ended),
            );
        }
    }
    debug_assert!(off.is_empty());
    let verify = h.ferry(world, stage, &["verify", "--all"], None).await;
    if verify.code != Some(0) {
        let what = format!(
            "`ferry verify --all` exit {:?} after the world settled",
            verify.code
        );
        fail(
            seed,
            "settled",
            Violation { key: None, what },
            &changes,
            Some(&verify),
        );
    }
    let report = h
        .ferry(world, stage, &["report", "--format", "csv"], None)
        .await;
    let now = check::destination_listing(world, &h.fx.destination).await;
    let ours = checks.ferrys_bytes(h, world, &now).await;
    let tolerated = |row: &csv::StringRecord| {
        let gone = &row[2] == "changed" && &row[3] == "deleted at the source since it was listed";
        let pair = world.pairs.iter().position(|p| p.source == row[0]);
        let ferrys = pair.is_some_and(|i| ours.contains(&(i, row[1].to_owned())));
        let adopted = &row[2] == "conflict" && ferrys;
        let orphan = &row[2] == "extra" && ferrys && !h.losses.borrow().is_empty();
        let lost = !h.losses.borrow().is_empty();
        (gone && !known_on!(REPORT_COUNTS_KEYS_GONE_FROM_BOTH_STORES))
            || (adopted && (lost || !known_on!(UNRECORDED_COPY_BECOMES_CONFLICT)))
            || orphan
    };
    let known_only = || {
        crate::support::csv_block(&report.stdout, "problems")
            .iter()
            .all(tolerated)
    };
    if report.code != Some(0) && !(report.code == Some(1) && known_only()) {
        let what = format!(
            "`ferry report` exit {:?} after the world settled",
            report.code
        );
        fail(
            seed,
            "settled",
            Violation { key: None, what },
            &changes,
            Some(&report),
        );
    }
}
