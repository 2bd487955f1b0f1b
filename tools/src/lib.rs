//! Tools around ferry, kept out of the product crate: the demo data set, the
//! benchmark and the ledger bench. ferry must not depend on them.
//!
//! Tools around ferry, kept out of the product crate: the demo data set and
//! its byte-for-byte comparison (`ferry-demo`, and the tests' fixtures), the
//! benchmark against rclone and s3sync (`ferry-bench`, and its `--events`
//! lag bench and the demo's events mode in `events_bench`), and the ledger at
//! tens of millions of keys (`ferry-ledger-bench`). They use ferry's public
//! library; ferry must not depend on them.

pub mod demo;
pub mod events_bench;
pub mod wan;
