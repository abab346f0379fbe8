//! The human form of the listings (`key list`, `history`, `doctor`,
//! `runner status`): aligned columns, coloured only when asked to (stdout
//! is a terminal and `NO_COLOR` is unset, see [`crate::cli::output::color`]).
//!
//! Columns are one space apart and at least as wide as their minimum, so
//! the usual output keeps its long-standing layout; a longer cell widens
//! its whole column instead of pushing its row out of line. The last
//! column is never padded. Colour wraps the padded text, so escape codes
//! never count towards a width.

use std::fmt::Write as _;

/// How a cell is coloured on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// No colour.
    Plain,
    /// Bold (headers).
    Strong,
    /// Green: as it should be.
    Good,
    /// Yellow: worth a look.
    Warn,
    /// Red: wrong.
    Bad,
}

impl Tone {
    /// The SGR escape that starts the tone, or `None` for plain text.
    fn escape(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Strong => Some("\x1b[1m"),
            Tone::Good => Some("\x1b[32m"),
            Tone::Warn => Some("\x1b[33m"),
            Tone::Bad => Some("\x1b[1;31m"),
        }
    }
}

/// One cell: its text and tone.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    tone: Tone,
}

impl Cell {
    /// A cell in `tone`.
    pub fn toned(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell::toned(text, Tone::Plain)
    }
}

/// An aligned table, rendered as text.
#[derive(Debug, Clone)]
pub struct Table {
    min_widths: Vec<usize>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table whose columns are at least `min_widths` characters wide.
    pub fn new(min_widths: &[usize]) -> Table {
        Table {
            min_widths: min_widths.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a header row (bold on a terminal).
    #[must_use]
    pub fn header(mut self, titles: &[&str]) -> Table {
        let row = titles.iter().map(|t| Cell::toned(*t, Tone::Strong));
        self.rows.push(row.collect());
        self
    }

    /// Adds a row.
    pub fn row(&mut self, cells: impl IntoIterator<Item = Cell>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// The table, one line per row; with escape codes only if `color`.
    pub fn render(&self, color: bool) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                let cells = self.rows.iter().filter_map(|row| row.get(column));
                let widest = cells.map(|c| c.text.chars().count()).max();
                widest
                    .unwrap_or(0)
                    .max(self.min_widths.get(column).copied().unwrap_or(0))
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push(' ');
                }
                let last = column + 1 == row.len();
                let pad = if last {
                    0
                } else {
                    widths[column].saturating_sub(cell.text.chars().count())
                };
                match cell.tone.escape().filter(|_| color) {
                    Some(start) => {
                        let _ = write!(line, "{start}{}\x1b[0m", cell.text);
                    }
                    None => line.push_str(&cell.text),
                }
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end_matches(' '));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(&[4, 0]).header(&["ID", "STATE", "NOTE"]);
        table.row(["1".into(), Cell::toned("ok", Tone::Good), "fine".into()]);
        table.row([
            "12345".into(),
            Cell::toned("failing", Tone::Bad),
            "look".into(),
        ]);
        table
    }

    #[test]
    fn columns_align_to_the_widest_cell_or_the_minimum() {
        assert_eq!(
            sample().render(false),
            "ID    STATE   NOTE\n\
             1     ok      fine\n\
             12345 failing look\n"
        );
    }

    #[test]
    fn colour_wraps_padded_cells_without_shifting_them() {
        let text = sample().render(true);
        assert!(text.starts_with("\x1b[1mID\x1b[0m   "), "{text:?}");
        assert!(text.contains("\x1b[32mok\x1b[0m      fine"), "{text:?}");
        assert!(text.contains("\x1b[1;31mfailing\x1b[0m look"), "{text:?}");
        let stripped = text.replace("\x1b[0m", "");
        let stripped = ["\x1b[1m", "\x1b[32m", "\x1b[1;31m"]
            .iter()
            .fold(stripped, |text, code| text.replace(code, ""));
        assert_eq!(stripped, sample().render(false));
    }

    #[test]
    fn the_last_column_is_not_padded() {
        let mut table = Table::new(&[10, 10]);
        table.row(["a".into(), "b".into()]);
        assert_eq!(table.render(false), "a          b\n");
    }
}
