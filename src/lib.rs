//! ferry moves object storage from AWS S3 to Hetzner Object Storage and proves
//! that every byte arrived. ARCHITECTURE.md maps the rooms; this file only names them.
//!
//! A byte travels: `config` → `list` (pages into the `ledger`) → `copy`
//! (pool → worker: GET range → `hashing` → PUT/UploadPart) → destination,
//! with the ledger recording each step; `verify` reads it back, `report` and
//! `status` read the ledger.

pub mod backup;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod copy;
pub mod dry_run;
pub mod events;
pub mod filter;
pub mod hashing;
pub mod ledger;
pub mod limits;
pub mod list;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod run;
pub mod shutdown;
pub mod store;
pub mod verify;
