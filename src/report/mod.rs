//! Reports read from the ledger: `plan`, `status`, `report`, and their tables.
//! They open their own read-only connection and must not write, so they run beside `ferry run`.

pub mod page;
pub mod plan;
pub mod quality;
pub mod reconcile;
pub mod render;
pub mod restore_cost;
pub mod sorted;
pub mod status;
pub mod table;
pub mod xlsx;
