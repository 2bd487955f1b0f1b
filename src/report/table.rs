//! The table model every report is built as: titled columns of cells that know whether they are counts, bytes, keys or text.
//! It must not render; `render.rs` and `xlsx.rs` do, each its own way.

use bytesize::ByteSize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Count(u64),
    /// Shown as KiB/MiB/GiB to people, as a plain number of bytes to programs.
    Bytes(u64),
    /// Bytes per second: as Bytes, with `/s` for people.
    Rate(u64),
    Number(f64),
    /// Object keys: a list in JSON; quoted and escaped, one per line, for
    /// people and spreadsheets, so that spaces and control characters show.
    Keys(Vec<String>),
}

impl Cell {
    pub(super) fn human(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Bytes(b) => ByteSize(*b).display().iec().to_string(),
            Cell::Rate(b) => format!("{}/s", ByteSize(*b).display().iec()),
            Cell::Number(x) => format!("{x:.2}"),
            Cell::Keys(keys) => quoted_lines(keys),
        }
    }

    pub(super) fn plain(&self) -> String {
        match self {
            Cell::Bytes(b) | Cell::Count(b) | Cell::Rate(b) => b.to_string(),
            Cell::Number(x) => format!("{x:.2}"),
            Cell::Text(s) => s.clone(),
            Cell::Keys(keys) => quoted_lines(keys),
        }
    }

    pub(super) fn json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Count(n) | Cell::Bytes(n) | Cell::Rate(n) => Value::from(*n),
            Cell::Number(x) => Value::from((x * 100.0).round() / 100.0),
            Cell::Keys(keys) => Value::from(keys.clone()),
        }
    }

    pub(super) fn is_numeric(&self) -> bool {
        !matches!(self, Cell::Text(_) | Cell::Keys(_))
    }
}

fn quoted_lines(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

/// A titled table. Its title is the JSON key, the Markdown heading and the
/// CSV block's comment line.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub title: String,
    /// snake_case: they are JSON keys and CSV headers too.
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    /// Columns of sentences: left out of the table a terminal shows (they
    /// would make its rows hundreds of characters wide), kept in every
    /// other form.
    pub prose: Vec<&'static str>,
}

impl Table {
    pub fn new(title: &str, columns: Vec<&'static str>) -> Table {
        Table {
            title: title.to_owned(),
            columns,
            rows: Vec::new(),
            prose: Vec::new(),
        }
    }

    /// Marks `columns` as prose (see [`Table::prose`]).
    pub fn with_prose(mut self, columns: &[&'static str]) -> Table {
        debug_assert!(columns.iter().all(|c| self.columns.contains(c)));
        self.prose = columns.to_vec();
        self
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }
}
