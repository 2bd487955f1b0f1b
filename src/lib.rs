//! ferry moves object storage from AWS S3 to Hetzner Object Storage and
//! proves that every byte arrived.
//!
//! A byte travels: `config` → `list` (pages into the `ledger`) → `copy`
//! (scheduler → workers: GET range → hash → PUT/UploadPart) → destination,
//! with the ledger recording each step. `report` reads the ledger.

pub mod cleanup;
pub mod cli;
pub mod config;
pub mod copy;
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
