//! Workbooks for the team's spreadsheets (`--format xlsx`): one sheet per
//! table. It must not compute, and must not let a cell run as a formula.
//!
//! Numbers are numbers, with a human-readable column beside every byte
//! count; the header row is frozen and filtered; text is written as text,
//! so a key such as `=HYPERLINK(…)` stays a key.

use std::path::Path;

use rust_xlsxwriter::{Format as CellFormat, FormatAlign, Workbook, XlsxError};

use super::table::{Cell, Table};

/// Widest a text column gets, in characters: longer text wraps.
const MAX_WIDTH: usize = 50;
/// Room for a number with its thousands separators.
const NUMBER_WIDTH: usize = 16;
/// Points per line of a row (Calibri 11).
const LINE_HEIGHT: f64 = 15.0;

/// One cell as it goes into the sheet.
enum Out {
    Number(f64, bool),
    Text(String),
}

pub fn write(tables: &[Table], path: &Path) -> Result<(), XlsxError> {
    let mut book = Workbook::new();
    let header = CellFormat::new().set_bold();
    let count = CellFormat::new()
        .set_num_format("#,##0")
        .set_align(FormatAlign::Top);
    let decimal = CellFormat::new()
        .set_num_format("#,##0.00")
        .set_align(FormatAlign::Top);
    let wrapped = CellFormat::new()
        .set_text_wrap()
        .set_align(FormatAlign::Top);
    let mut names: Vec<String> = Vec::new();
    for table in tables {
        let sheet = book.add_worksheet();
        let name = sheet_name(&table.title, &names);
        sheet.set_name(&name)?;
        names.push(name);
        // A byte count gets a second, human-readable column beside it.
        let human: Vec<bool> = (0..table.columns.len())
            .map(|c| {
                table
                    .rows
                    .iter()
                    .any(|r| matches!(r[c], Cell::Bytes(_) | Cell::Rate(_)))
            })
            .collect();
        let mut headers: Vec<String> = Vec::new();
        for (c, name) in table.columns.iter().enumerate() {
            headers.push((*name).to_owned());
            if human[c] {
                headers.push(format!("{name}_human"));
            }
        }
        let rows: Vec<Vec<Out>> = table
            .rows
            .iter()
            .map(|row| {
                let mut out = Vec::new();
                for (c, cell) in row.iter().enumerate() {
                    out.push(match cell {
                        Cell::Count(n) | Cell::Bytes(n) | Cell::Rate(n) => {
                            Out::Number(*n as f64, false)
                        }
                        Cell::Number(x) => Out::Number(*x, true),
                        Cell::Text(s) => Out::Text(s.clone()),
                        Cell::Keys(_) => Out::Text(cell.human()),
                    });
                    if human[c] {
                        out.push(Out::Text(cell.human()));
                    }
                }
                out
            })
            .collect();
        // Widths from the content, as autofit would, but known here so that
        // each row can be as tall as its longest wrapped text.
        let widths: Vec<usize> = (0..headers.len())
            .map(|c| {
                rows.iter()
                    .map(|r| match &r[c] {
                        Out::Number(..) => NUMBER_WIDTH,
                        Out::Text(t) => t.lines().map(|l| l.chars().count()).max().unwrap_or(0),
                    })
                    .chain([headers[c].chars().count() + 2])
                    .max()
                    .unwrap_or(0)
                    .clamp(6, MAX_WIDTH)
            })
            .collect();
        for (c, (name, width)) in headers.iter().zip(&widths).enumerate() {
            sheet.write_string_with_format(0, c as u16, name, &header)?;
            sheet.set_column_width(c as u16, *width as f64 + 1.0)?;
        }
        for (r, row) in rows.iter().enumerate() {
            let r = r as u32 + 1;
            let mut lines = 1;
            for (c, out) in row.iter().enumerate() {
                let c16 = c as u16;
                match out {
                    Out::Number(x, false) => sheet.write_number_with_format(r, c16, *x, &count)?,
                    Out::Number(x, true) => sheet.write_number_with_format(r, c16, *x, &decimal)?,
                    // Text stays text: never a formula, whatever it starts with.
                    Out::Text(t) => {
                        lines = lines.max(
                            t.lines()
                                .map(|l| l.chars().count().div_ceil(widths[c]).max(1))
                                .sum::<usize>(),
                        );
                        sheet.write_string_with_format(r, c16, t, &wrapped)?
                    }
                };
            }
            if lines > 1 {
                sheet.set_row_height(r, LINE_HEIGHT * lines as f64)?;
            }
        }
        sheet.set_freeze_panes(1, 0)?;
        let last_col = headers.len().saturating_sub(1) as u16;
        sheet.autofilter(0, 0, table.rows.len() as u32, last_col)?;
        // Printed (or made a PDF), a table is one page wide.
        sheet.set_landscape();
        sheet.set_print_fit_to_pages(1, 0);
    }
    book.save(path)
}

/// Excel's rules: at most 31 characters, none of `[]:*?/\`, unique.
fn sheet_name(title: &str, taken: &[String]) -> String {
    let base: String = title
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
        .take(31)
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        let suffix = format!(" {n}");
        name = format!(
            "{}{suffix}",
            &base[..base.floor_char_boundary(31 - suffix.len())]
        );
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_follow_excels_rules() {
        assert_eq!(sheet_name("data quality", &[]), "data quality");
        assert_eq!(sheet_name("a/b:c", &[]), "a_b_c");
        let long = "x".repeat(40);
        assert_eq!(sheet_name(&long, &[]).len(), 31);
        let taken = vec![sheet_name(&long, &[])];
        let second = sheet_name(&long, &taken);
        assert_eq!(second.len(), 31);
        assert!(second.ends_with(" 2"));
    }
}
