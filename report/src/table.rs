//! An output table: its columns are declared once (name plus how a row gives the value), and both
//! its Markdown and its CSV are rendered from that one declaration.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// One value of an output table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Int(usize),
    /// A number and how many decimals Markdown shows (CSV keeps every digit); `None` is absent.
    Num(Option<f64>, usize),
}

impl Cell {
    fn markdown(&self) -> String {
        match self {
            Cell::Text(s) => s.replace('|', "\\|"),
            Cell::Int(n) => n.to_string(),
            Cell::Num(Some(v), digits) => format!("{v:.digits$}"),
            Cell::Num(None, _) => "–".into(),
        }
    }

    /// Shortest text that reads back as the same f64, so other tools can compare exactly.
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Num(Some(v), _) => v.to_string(),
            Cell::Num(None, _) => String::new(),
        }
    }

    fn is_text(&self) -> bool {
        matches!(self, Cell::Text(_))
    }
}

/// A column: its CSV name (what SQL and Polars call it too) and its value for a row of type `R`.
pub struct Column<R> {
    pub name: &'static str,
    pub cell: fn(&R) -> Cell,
}

/// A rendered table: title, file stem, header and rows of cells.
#[derive(Clone, Debug, PartialEq)]
pub struct OutTable {
    /// `table03_rmse` → `table03_rmse.csv`.
    pub stem: &'static str,
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl OutTable {
    pub fn build<R>(stem: &'static str, title: impl Into<String>, columns: &[Column<R>], rows: &[R]) -> OutTable {
        OutTable {
            stem,
            title: title.into(),
            header: columns.iter().map(|c| c.name).collect(),
            rows: rows.iter().map(|r| columns.iter().map(|c| (c.cell)(r)).collect()).collect(),
        }
    }

    pub fn csv_name(&self) -> String {
        format!("{}.csv", self.stem)
    }

    /// Title, GitHub-flavoured table (numbers right-aligned) and where the CSV is.
    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let align: Vec<&str> = (0..self.header.len())
            .map(|j| if self.rows.first().is_some_and(|r| r[j].is_text()) { "---" } else { "---:" })
            .collect();
        let _ = writeln!(s, "|{}|", align.join("|"));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(Cell::markdown).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(s, "\nCSV: `{}`", self.csv_name());
        s
    }

    pub fn write_csv(&self, dir: &Path) -> Result<()> {
        let path = dir.join(self.csv_name());
        let mut w = csv::Writer::from_path(&path).with_context(|| format!("{}", path.display()))?;
        w.write_record(&self.header)?;
        for row in &self.rows {
            w.write_record(row.iter().map(Cell::csv))?;
        }
        w.flush().with_context(|| format!("{}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R {
        name: &'static str,
        v: Option<f64>,
    }

    const COLUMNS: [Column<R>; 3] = [
        Column { name: "model", cell: |r| Cell::Text(r.name.into()) },
        Column { name: "n", cell: |_| Cell::Int(3) },
        Column { name: "value", cell: |r| Cell::Num(r.v, 2) },
    ];

    fn table() -> OutTable {
        let rows = [R { name: "a|b", v: Some(0.1 + 0.2) }, R { name: "c,d", v: None }];
        OutTable::build("table99_x", "Table 99: x", &COLUMNS, &rows)
    }

    #[test]
    fn markdown_rounds_and_marks_absent_values() {
        let md = table().markdown();
        assert!(md.starts_with("### Table 99: x\n\n| model | n | value |\n|---|---:|---:|\n"), "{md}");
        assert!(md.contains("| a\\|b | 3 | 0.30 |"), "{md}");
        assert!(md.contains("| c,d | 3 | – |"), "{md}");
        assert!(md.contains("CSV: `table99_x.csv`"), "{md}");
    }

    #[test]
    fn csv_keeps_every_digit_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        table().write_csv(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("table99_x.csv")).unwrap();
        assert_eq!(text, "model,n,value\na|b,3,0.30000000000000004\n\"c,d\",3,\n");
    }
}
