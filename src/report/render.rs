//! Tables for people and for programs: one model, four renderings.
//! It must not compute; a formula-like cell stays text in CSV.
//!
//! `table` and `markdown` are for reading and pasting into documents, `csv`
//! opens in a spreadsheet (cells that a spreadsheet would run as a formula are
//! escaped), `json` is stable for scripts (numbers stay numbers).

use comfy_table::presets::{ASCII_MARKDOWN, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, ContentArrangement, Table as Grid};
use serde_json::{Map, Value};

pub use super::table::{Cell, Table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
    /// A workbook, one sheet per table: only to a file (`--output`).
    Xlsx,
}

/// The tables as text. A workbook is not text: [`emit`] writes it, and here
/// it falls back to the table form.
pub fn render(tables: &[Table], format: Format) -> String {
    match format {
        Format::Table | Format::Xlsx => text(tables, Text::Terminal(terminal_width())),
        Format::Markdown => text(tables, Text::Markdown),
        Format::Csv => csv(tables),
        Format::Json => json(tables),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("--format xlsx writes a workbook, not text: add --output FILE.xlsx")]
    WorkbookNeedsFile,
    #[error("cannot write {path}: {message}. Check that its folder exists and has room")]
    Write {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Writes the tables to `output`, or prints them when there is none.
pub fn emit(
    tables: &[Table],
    format: Format,
    output: Option<&std::path::Path>,
) -> Result<(), OutputError> {
    let failed = |path: &std::path::Path, e: &dyn std::fmt::Display| OutputError::Write {
        path: path.to_owned(),
        message: e.to_string(),
    };
    match (format, output) {
        (Format::Xlsx, None) => Err(OutputError::WorkbookNeedsFile),
        (Format::Xlsx, Some(path)) => {
            super::xlsx::write(tables, path).map_err(|e| failed(path, &e))
        }
        (_, Some(path)) => {
            std::fs::write(path, render(tables, format)).map_err(|e| failed(path, &e))
        }
        (_, None) => {
            print!("{}", render(tables, format));
            Ok(())
        }
    }
}

/// How wide the terminal is: `COLUMNS` when set (a script may set it),
/// else what the terminal says; None when the output is not a terminal (a
/// file or a pipe), which then gets whole rows.
fn terminal_width() -> Option<u16> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .or_else(|| Grid::new().width())
}

#[derive(Clone, Copy, PartialEq)]
enum Text {
    Markdown,
    /// For a person at a terminal this many characters wide (if known).
    Terminal(Option<u16>),
}

fn text(tables: &[Table], form: Text) -> String {
    let markdown = form == Text::Markdown;
    let mut out = String::new();
    for t in tables {
        if markdown {
            out.push_str(&format!("### {}\n\n", t.title));
        } else {
            out.push_str(&format!("{}\n", t.title));
        }
        if t.rows.is_empty() {
            out.push_str("(none)\n\n");
            continue;
        }
        // A terminal shows the columns that are not prose, and wraps their
        // cells to its width; a document gets them all.
        let shown: Vec<usize> = (0..t.columns.len())
            .filter(|&i| markdown || !t.prose.contains(&t.columns[i]))
            .collect();
        let mut grid = Grid::new();
        grid.load_preset(if markdown {
            ASCII_MARKDOWN
        } else {
            UTF8_FULL_CONDENSED
        });
        if let Text::Terminal(width) = form {
            grid.set_content_arrangement(ContentArrangement::Dynamic);
            if let Some(width) = width {
                grid.set_width(width);
            }
        }
        grid.set_header(shown.iter().map(|&i| t.columns[i]));
        for row in &t.rows {
            grid.add_row(shown.iter().map(|&i| row[i].human()).map(|s| {
                if markdown {
                    s.replace('|', "\\|")
                } else {
                    s
                }
            }));
        }
        for (at, &i) in shown.iter().enumerate() {
            if t.rows[0][i].is_numeric() {
                if let Some(col) = grid.column_mut(at) {
                    col.set_cell_alignment(CellAlignment::Right);
                }
            }
        }
        out.push_str(&grid.to_string());
        out.push('\n');
        if shown.len() < t.columns.len() {
            out.push_str(&format!(
                "({}: in --format csv, json or xlsx)\n",
                t.prose.join(", ")
            ));
        }
        out.push('\n');
    }
    out
}

/// Each table is a CSV block after a `# title` line; blocks are separated by
/// a blank line.
fn csv(tables: &[Table]) -> String {
    let mut out = String::new();
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("# {}\n", t.title));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&t.columns).expect("write to memory");
        for row in &t.rows {
            w.write_record(row.iter().map(|c| match c {
                Cell::Text(s) => defuse_formula(s),
                other => other.plain(),
            }))
            .expect("write to memory");
        }
        out.push_str(
            &String::from_utf8(w.into_inner().expect("flush to memory"))
                .expect("utf-8 in, utf-8 out"),
        );
    }
    out
}

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, or a tab or CR
/// first) gets a leading apostrophe, as OWASP recommends, so it shows as text.
pub fn defuse_formula(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

fn json(tables: &[Table]) -> String {
    let mut doc = Map::new();
    for t in tables {
        let rows: Vec<Value> = t
            .rows
            .iter()
            .map(|row| {
                Value::Object(
                    t.columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.to_string(), v.json()))
                        .collect(),
                )
            })
            .collect();
        doc.insert(t.title.replace(' ', "_"), Value::Array(rows));
    }
    let mut s = serde_json::to_string_pretty(&Value::Object(doc)).expect("json");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Table> {
        let mut t = Table::new("buckets", vec!["bucket", "objects", "bytes"]);
        t.push(vec!["audio".into(), Cell::Count(3), Cell::Bytes(3 << 20)]);
        t.push(vec![
            "=HYPERLINK(\"x\")".into(),
            Cell::Count(1),
            Cell::Bytes(5),
        ]);
        vec![t]
    }

    #[test]
    fn a_terminal_table_fits_its_width_and_leaves_prose_to_the_other_forms() {
        let mut t =
            Table::new("catalog", vec!["bucket", "objects", "approach"]).with_prose(&["approach"]);
        let long_key = "delivery/2024/".repeat(12);
        let sentence = "copy with its own part boundaries, ".repeat(10);
        t.push(vec![
            long_key.as_str().into(),
            Cell::Count(3),
            sentence.as_str().into(),
        ]);
        let shown = text(std::slice::from_ref(&t), Text::Terminal(Some(60)));
        for line in shown.lines() {
            assert!(
                line.chars().count() <= 60,
                "{} chars: {line}",
                line.chars().count()
            );
        }
        assert!(!shown.contains("part boundaries"), "{shown}");
        assert!(
            shown.contains("(approach: in --format csv, json or xlsx)"),
            "{shown}"
        );
        // Wrapped, not cut: every character of the key is still there.
        let first_column: String = shown
            .lines()
            .filter_map(|l| l.strip_prefix('│')?.split('┆').next())
            .map(str::trim)
            .collect();
        assert!(first_column.contains(&long_key), "{shown}");
        for form in [Format::Csv, Format::Json, Format::Markdown] {
            assert!(
                render(std::slice::from_ref(&t), form).contains(&sentence),
                "{form:?}"
            );
        }
    }

    #[test]
    fn csv_escapes_formulas_and_parses_back() {
        let out = render(&sample(), Format::Csv);
        let body = out.strip_prefix("# buckets\n").unwrap();
        let mut r = csv::Reader::from_reader(body.as_bytes());
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(rows[0], vec!["audio", "3", "3145728"]);
        assert_eq!(rows[1], vec!["'=HYPERLINK(\"x\")", "1", "5"]);
        for lead in ["+1", "-1", "@SUM(A1)"] {
            assert!(defuse_formula(lead).starts_with('\''));
        }
        assert_eq!(defuse_formula("books/a.mp3"), "books/a.mp3");
    }

    #[test]
    fn json_keeps_numbers_numbers() {
        let v: Value = serde_json::from_str(&render(&sample(), Format::Json)).unwrap();
        assert_eq!(v["buckets"][0]["bytes"], Value::from(3u64 << 20));
        assert_eq!(v["buckets"][0]["bucket"], Value::from("audio"));
    }

    #[test]
    fn markdown_is_a_pipe_table_with_human_sizes() {
        let out = render(&sample(), Format::Markdown);
        assert!(out.starts_with("### buckets\n"));
        assert!(out.contains("| audio "));
        assert!(out.contains("3.0 MiB"));
    }

    #[test]
    fn a_rate_reads_per_second_to_people_and_is_a_number_to_programs() {
        let mut t = Table::new("status", vec!["rate_last_5_min"]);
        t.push(vec![Cell::Rate(1_677_722)]);
        assert!(render(&[t.clone()], Format::Table).contains("1.6 MiB/s"));
        let v: Value = serde_json::from_str(&render(&[t], Format::Json)).unwrap();
        assert_eq!(v["status"][0]["rate_last_5_min"], Value::from(1_677_722u64));
    }
}
