//! An output table: its columns are declared once (name plus how a row gives the value), and both
//! its Markdown and its CSV are rendered from that one declaration. An estimate column is one
//! Markdown column, `value [lo, hi]`, and three CSV columns, `name`, `name_lo`, `name_hi`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bootstrap::Estimate;

/// The CSV suffixes of an estimate's interval bounds.
pub const LO: &str = "_lo";
pub const HI: &str = "_hi";

/// One value of an output table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Int(usize),
    /// A number and how many decimals Markdown shows (CSV keeps every digit); `None` is absent.
    Num(Option<f64>, usize),
    /// A number with its interval, decimals as `Num`; only in an `estimate` column.
    Est(Estimate, usize),
    /// A p-value: three significant digits in Markdown.
    P(Option<f64>),
}

impl Cell {
    fn markdown(&self) -> String {
        let num = |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        match self {
            Cell::Text(s) => s.replace('|', "\\|"),
            Cell::Int(n) => n.to_string(),
            Cell::Num(v, digits) => num(*v, *digits),
            Cell::Est(e, digits) => match (e.lo, e.hi) {
                (Some(lo), Some(hi)) if e.value.is_some() => {
                    format!("{} [{}, {}]", num(e.value, *digits), num(Some(lo), *digits), num(Some(hi), *digits))
                }
                _ => num(e.value, *digits),
            },
            Cell::P(Some(p)) if *p >= 1e-3 => format!("{p:.3}"),
            Cell::P(Some(p)) => format!("{p:.2e}"),
            Cell::P(None) => "–".into(),
        }
    }

    /// Shortest text that reads back as the same f64, so other tools can compare exactly; a
    /// number always has a `.` or an exponent, so a reader never takes a float column for an
    /// integer one because every value in it happens to be whole.
    fn csv(&self) -> Vec<String> {
        let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:?}"));
        match self {
            Cell::Text(s) => vec![s.clone()],
            Cell::Int(n) => vec![n.to_string()],
            Cell::Num(v, _) | Cell::P(v) => vec![num(*v)],
            Cell::Est(e, _) => vec![num(e.value), num(e.lo), num(e.hi)],
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
    /// Its cells are `Cell::Est`: two more CSV columns, `name_lo` and `name_hi`.
    pub estimate: bool,
}

impl<R> Column<R> {
    pub const fn new(name: &'static str, cell: fn(&R) -> Cell) -> Column<R> {
        Column { name, cell, estimate: false }
    }

    pub const fn estimate(name: &'static str, cell: fn(&R) -> Cell) -> Column<R> {
        Column { name, cell, estimate: true }
    }
}

/// A rendered table: title, file stem, header and rows of cells.
#[derive(Clone, Debug, PartialEq)]
pub struct OutTable {
    /// `table03_rmse` → `table03_rmse.csv`.
    pub stem: &'static str,
    pub title: String,
    pub header: Vec<&'static str>,
    /// The CSV's header: `header` with each estimate column's `_lo` and `_hi` after it.
    pub csv_header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl OutTable {
    pub fn build<R>(stem: &'static str, title: impl Into<String>, columns: &[Column<R>], rows: &[R]) -> OutTable {
        let cell = |c: &Column<R>, r: &R| {
            let cell = (c.cell)(r);
            assert_eq!(c.estimate, matches!(cell, Cell::Est(..)), "{stem}.{}: estimate column ⇔ Cell::Est", c.name);
            cell
        };
        OutTable {
            stem,
            title: title.into(),
            header: columns.iter().map(|c| c.name).collect(),
            csv_header: columns
                .iter()
                .flat_map(|c| {
                    let suffixes = if c.estimate { &[LO, HI][..] } else { &[] };
                    std::iter::once(c.name.to_string()).chain(suffixes.iter().map(|s| format!("{}{s}", c.name)))
                })
                .collect(),
            rows: rows.iter().map(|r| columns.iter().map(|c| cell(c, r)).collect()).collect(),
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
        w.write_record(&self.csv_header)?;
        for row in &self.rows {
            w.write_record(row.iter().flat_map(Cell::csv))?;
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
        e: Estimate,
        p: Option<f64>,
    }

    const COLUMNS: [Column<R>; 5] = [
        Column::new("model", |r| Cell::Text(r.name.into())),
        Column::new("n", |_| Cell::Int(3)),
        Column::new("value", |r| Cell::Num(r.v, 2)),
        Column::estimate("mean", |r| Cell::Est(r.e, 1)),
        Column::new("p", |r| Cell::P(r.p)),
    ];

    fn table() -> OutTable {
        let e = Estimate { value: Some(40.0), lo: Some(33.25), hi: Some(46.75), n: 3 };
        let rows = [
            R { name: "a|b", v: Some(0.1 + 0.2), e, p: Some(0.0123456) },
            R { name: "c,d", v: None, e: Estimate { lo: None, hi: None, ..e }, p: Some(3.2e-12) },
            R { name: "e", v: Some(2.0), e: Estimate::default(), p: None },
        ];
        OutTable::build("table99_x", "Table 99: x", &COLUMNS, &rows)
    }

    #[test]
    fn markdown_rounds_and_marks_absent_values() {
        let md = table().markdown();
        assert!(md.starts_with("### Table 99: x\n\n| model | n | value | mean | p |\n|---|---:|---:|---:|---:|\n"), "{md}");
        assert!(md.contains("| a\\|b | 3 | 0.30 | 40.0 [33.2, 46.8] | 0.012 |"), "{md}");
        assert!(md.contains("| c,d | 3 | – | 40.0 | 3.20e-12 |"), "{md}");
        assert!(md.contains("| e | 3 | 2.00 | – | – |"), "{md}");
        assert!(md.contains("CSV: `table99_x.csv`"), "{md}");
    }

    #[test]
    fn csv_keeps_every_digit_and_quotes_and_spells_out_intervals() {
        let dir = tempfile::tempdir().unwrap();
        table().write_csv(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("table99_x.csv")).unwrap();
        assert_eq!(
            text,
            "model,n,value,mean,mean_lo,mean_hi,p\n\
             a|b,3,0.30000000000000004,40.0,33.25,46.75,0.0123456\n\
             \"c,d\",3,,40.0,,,3.2e-12\n\
             e,3,2.0,,,,\n"
        );
    }

    #[test]
    #[should_panic(expected = "table99_y.mean: estimate column ⇔ Cell::Est")]
    fn an_estimate_column_gives_estimates() {
        let wrong: [Column<R>; 1] = [Column::estimate("mean", |r| Cell::Num(r.v, 1))];
        OutTable::build("table99_y", "", &wrong, &[R { name: "", v: None, e: Estimate::default(), p: None }]);
    }
}
