//! `ferry status`: where each bucket stands, from the ledger alone.

use bytesize::ByteSize;
use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};

use crate::ledger::{self, BucketStatus, LedgerError};

pub fn read(path: &std::path::Path) -> Result<Vec<BucketStatus>, LedgerError> {
    let conn = ledger::open_reader(path)?;
    Ok(ledger::bucket_status(&conn)?)
}

/// A table that pastes into a spreadsheet or a Markdown document as is.
pub fn render(rows: &[BucketStatus]) -> String {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header(vec![
        "source",
        "destination",
        "listed",
        "copied",
        "verified",
        "mismatched",
        "failed",
        "skipped",
        "pending",
        "bytes listed",
        "bytes copied",
        "done",
    ]);
    let mut total = BucketStatus {
        source: "total".into(),
        ..BucketStatus::default()
    };
    for r in rows {
        table.add_row(row(r));
        total.listed += r.listed;
        total.copied += r.copied;
        total.verified += r.verified;
        total.mismatched += r.mismatched;
        total.failed += r.failed;
        total.skipped += r.skipped;
        total.pending += r.pending;
        total.bytes_listed += r.bytes_listed;
        total.bytes_copied += r.bytes_copied;
    }
    if rows.len() > 1 {
        table.add_row(row(&total));
    }
    for i in 2..12 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}

fn row(r: &BucketStatus) -> Vec<String> {
    let source = if r.prefix.is_empty() {
        r.source.clone()
    } else {
        format!("{}/{}", r.source, r.prefix)
    };
    let done = if r.bytes_listed == 0 {
        if r.listed == r.copied {
            100.0
        } else {
            0.0
        }
    } else {
        r.bytes_copied as f64 * 100.0 / r.bytes_listed as f64
    };
    vec![
        source,
        r.destination.clone(),
        r.listed.to_string(),
        r.copied.to_string(),
        r.verified.to_string(),
        r.mismatched.to_string(),
        r.failed.to_string(),
        r.skipped.to_string(),
        r.pending.to_string(),
        ByteSize(r.bytes_listed).display().iec().to_string(),
        ByteSize(r.bytes_copied).display().iec().to_string(),
        format!("{done:.1}%"),
    ]
}
