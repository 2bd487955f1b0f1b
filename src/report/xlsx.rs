//! Workbooks for the team's spreadsheets (`--format xlsx`): one sheet per
//! table. It must not compute, and must not let a cell run as a formula.
//!
//! Numbers are numbers, with a human-readable column beside every byte
//! count; the header row is frozen and filtered; text is written as text,
//! so a key such as `=HYPERLINK(…)` stays a key.

use std::path::Path;

use rust_xlsxwriter::{Format as CellFormat, Workbook, XlsxError};

use super::render::{Cell, Table};

/// Widest a column gets (about 60 characters): long keys wrap instead.
const MAX_WIDTH_PIXELS: u32 = 420;

pub fn write(tables: &[Table], path: &Path) -> Result<(), XlsxError> {
    let mut book = Workbook::new();
    let header = CellFormat::new().set_bold();
    let count = CellFormat::new().set_num_format("#,##0");
    let decimal = CellFormat::new().set_num_format("#,##0.00");
    let wrapped = CellFormat::new().set_text_wrap();
    let mut names: Vec<String> = Vec::new();
    for table in tables {
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name(&table.title, &names))?;
        names.push(sheet_name(&table.title, &names));
        // A byte count gets a second, human-readable column beside it.
        let human: Vec<bool> = (0..table.columns.len())
            .map(|c| {
                table
                    .rows
                    .iter()
                    .any(|r| matches!(r[c], Cell::Bytes(_) | Cell::Rate(_)))
            })
            .collect();
        let mut col = 0u16;
        for (c, name) in table.columns.iter().enumerate() {
            sheet.write_string_with_format(0, col, *name, &header)?;
            col += 1;
            if human[c] {
                sheet.write_string_with_format(0, col, format!("{name}_human"), &header)?;
                col += 1;
            }
        }
        let last_col = col.saturating_sub(1);
        for (r, row) in table.rows.iter().enumerate() {
            let r = r as u32 + 1;
            let mut col = 0u16;
            for (c, cell) in row.iter().enumerate() {
                match cell {
                    Cell::Count(n) | Cell::Bytes(n) | Cell::Rate(n) => {
                        sheet.write_number_with_format(r, col, *n as f64, &count)?;
                    }
                    Cell::Number(x) => {
                        sheet.write_number_with_format(r, col, *x, &decimal)?;
                    }
                    Cell::Text(s) => {
                        sheet.write_string(r, col, s)?;
                    }
                    Cell::Keys(_) => {
                        sheet.write_string_with_format(r, col, cell.human(), &wrapped)?;
                    }
                }
                col += 1;
                if human[c] {
                    sheet.write_string(r, col, cell.human())?;
                    col += 1;
                }
            }
        }
        sheet.set_freeze_panes(1, 0)?;
        sheet.autofilter(0, 0, table.rows.len() as u32, last_col)?;
        sheet.autofit_to_max_width(MAX_WIDTH_PIXELS);
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
