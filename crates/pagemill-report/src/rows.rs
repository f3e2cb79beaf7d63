//! Flat rows out: one JSON object a line, or CSV with a header row. The same writer serves
//! every command with rows (`run`'s mentions, `bench`'s requests), so the two formats hold
//! the same columns everywhere.

use std::io::Write;

use serde::Serialize;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated values, a header row first.
    Csv,
}

/// Writes rows one at a time (a long benchmark's requests as they finish).
pub struct RowWriter<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

/// Why a row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// Writing failed.
    #[error("writing rows: {0}")]
    Io(#[from] std::io::Error),
    /// A row could not be put in the format (a bug: rows are flat).
    #[error("writing rows: {0}")]
    Csv(#[from] csv::Error),
    /// A row could not be made JSON.
    #[error("writing rows: {0}")]
    Json(#[from] serde_json::Error),
}

impl<W: Write> RowWriter<W> {
    /// Rows of `kind` into `w`.
    pub fn new(kind: RowKind, w: W) -> Self {
        Self {
            inner: match kind {
                RowKind::Jsonl => Inner::Jsonl(w),
                RowKind::Csv => Inner::Csv(Box::new(csv::Writer::from_writer(w))),
            },
        }
    }

    /// One row.
    pub fn row(&mut self, row: &impl Serialize) -> Result<(), RowError> {
        match &mut self.inner {
            Inner::Jsonl(w) => {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")?;
            }
            Inner::Csv(w) => w.serialize(row)?,
        }
        Ok(())
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<(), RowError> {
        match &mut self.inner {
            Inner::Jsonl(w) => w.flush()?,
            Inner::Csv(w) => w.flush()?,
        }
        Ok(())
    }
}

/// Writes all `rows` and flushes.
pub fn write<T: Serialize>(kind: RowKind, w: impl Write, rows: &[T]) -> Result<(), RowError> {
    let mut out = RowWriter::new(kind, w);
    for r in rows {
        out.row(r)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        text: &'static str,
        start: Option<usize>,
        score: f64,
    }

    #[test]
    fn jsonl_and_csv_hold_the_same_columns() {
        let rows = [
            Row {
                text: "Acme, \"Corp\"",
                start: Some(4),
                score: 1.0,
            },
            Row {
                text: "Nowhere",
                start: None,
                score: 0.5,
            },
        ];
        let mut csv = Vec::new();
        write(RowKind::Csv, &mut csv, &rows).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "text,start,score\n\"Acme, \"\"Corp\"\"\",4,1.0\nNowhere,,0.5\n"
        );
        let mut jsonl = Vec::new();
        write(RowKind::Jsonl, &mut jsonl, &rows).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[1]["start"], serde_json::Value::Null);
        assert_eq!(lines[0]["text"], "Acme, \"Corp\"");
    }
}
