//! Reports read from the ledger. They open their own read-only connection
//! and never write, so they can run beside `ferry run`.

pub mod plan;
pub mod reconcile;
pub mod render;
pub mod status;
