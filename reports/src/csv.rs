// Numeric tables from CSV files (the `csv` crate reads them): a header row, comma-separated
// fields, double-quoted fields with "" escapes (a quoted field may span lines), blank lines
// skipped, fields trimmed. Errors name the file, the 1-based line and the column.
use std::path::Path;

use crate::Error;

/// One parsed record: the 1-based line it starts on and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Split CSV text into records (the header is the first). `path` is only used in error
/// messages.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Record>, Error> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut records = Vec::new();
    for r in reader.records() {
        let r = r.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            let msg = match e.kind() {
                csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
                _ => e.to_string(),
            };
            Error::Csv { path: path.to_path_buf(), line, msg }
        })?;
        let line = r.position().map_or(0, |p| line_at(text, p.byte() as usize));
        records.push(Record { line, fields: r.iter().map(str::to_string).collect() });
    }
    Ok(records)
}

/// The 1-based line of the first field at or after byte `at` (the reader's position of a record
/// is where it started reading, before the blank lines it skipped).
fn line_at(text: &str, at: usize) -> usize {
    let (before, after) = text.as_bytes().split_at(at.min(text.len()));
    let skipped = after.iter().take_while(|b| b.is_ascii_whitespace() && **b != b'"').filter(|b| **b == b'\n').count();
    1 + before.iter().filter(|b| **b == b'\n').count() + skipped
}

/// The largest CSV read (256 MiB: a sweep's wide table is a few MB).
pub const MAX_CSV_BYTES: u64 = 256 << 20;

/// A regular file of at most `limit` bytes as text ("file too large: N bytes, limit M"; a
/// device such as /dev/zero or a pipe is refused, never read without end).
fn read_bounded(path: &Path, limit: u64) -> Result<String, Error> {
    use std::io::Read;
    let csv_err = |msg: String| Error::Csv { path: path.to_path_buf(), line: 0, msg };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(csv_err("not a regular file (a device, a pipe or a directory): refusing to read it".into()));
    }
    if meta.len() > limit {
        return Err(csv_err(format!("file too large: {} bytes, limit {limit}", meta.len())));
    }
    let mut buf = String::new();
    std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_string(&mut buf)).map_err(|e| Error::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(csv_err(format!("file too large: more than {limit} bytes, limit {limit}")));
    }
    Ok(buf)
}

/// Read the named numeric columns of a CSV file with a header row; returns one vector per
/// requested column, in the order asked.
pub fn read_columns(path: &Path, columns: &[&str]) -> Result<Vec<Vec<f64>>, Error> {
    let cols = read_columns_opt(path, columns)?;
    for (k, col) in cols.iter().enumerate() {
        if let Some(i) = col.iter().position(Option::is_none) {
            return Err(Error::Csv { path: path.to_path_buf(), line: i + 2, msg: format!("column \"{}\": empty", columns[k]) });
        }
    }
    Ok(cols.into_iter().map(|c| c.into_iter().flatten().collect()).collect())
}

/// [`read_columns`] where an empty field reads as `None` (an unbounded side of a censored
/// value).
pub fn read_columns_opt(path: &Path, columns: &[&str]) -> Result<Vec<Vec<Option<f64>>>, Error> {
    let text = read_bounded(path, MAX_CSV_BYTES)?;
    let records = parse(&text, path)?;
    let csv_err = |line: usize, msg: String| Error::Csv { path: path.to_path_buf(), line, msg };
    let Some((header, rows)) = records.split_first() else {
        return Err(csv_err(1, "empty file: no header row".into()));
    };
    let names: Vec<&str> = header.fields.iter().map(|f| f.trim()).collect();
    let mut index = Vec::with_capacity(columns.len());
    for want in columns {
        match names.iter().position(|n| n == want) {
            Some(i) => index.push(i),
            None => return Err(csv_err(header.line, format!("column \"{want}\" not found in header (columns: {})", names.join(", ")))),
        }
    }
    let mut out = vec![Vec::with_capacity(rows.len()); columns.len()];
    for rec in rows {
        for (k, &i) in index.iter().enumerate() {
            let col = format!("column {} (\"{}\")", i + 1, columns[k]);
            let raw = rec
                .fields
                .get(i)
                .map(|s| s.trim())
                .ok_or_else(|| csv_err(rec.line, format!("{col}: missing ({} fields on this line)", rec.fields.len())))?;
            if raw.is_empty() {
                out[k].push(None);
                continue;
            }
            let v: f64 = raw.parse().map_err(|_| csv_err(rec.line, format!("{col}: \"{raw}\" is not a number")))?;
            if !v.is_finite() {
                return Err(csv_err(rec.line, format!("{col}: \"{raw}\" is not finite")));
            }
            out[k].push(Some(v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<Record> {
        parse(text, Path::new("t.csv")).expect("parses")
    }

    #[test]
    fn quotes_crlf_and_blank_lines() {
        let r = p("a,\"b,c\"\r\n\r\n1,\"x\"\"y\"\n\"multi\nline\",2\n");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].fields, vec!["a", "b,c"]);
        assert_eq!(r[1].line, 3);
        assert_eq!(r[1].fields, vec!["1", "x\"y"]);
        assert_eq!(r[2].line, 4);
        assert_eq!(r[2].fields, vec!["multi\nline", "2"]);
    }

    #[test]
    fn empty_fields_are_kept() {
        let r = p("a,,b\n,\n");
        assert_eq!(r[0].fields, vec!["a", "", "b"]);
        assert_eq!(r[1].fields, vec!["", ""]);
    }

    #[test]
    fn an_unterminated_quote_reads_to_the_end_and_lines_skip_blank_ones() {
        // The csv crate's rule: the quoted field runs to the end of the file.
        let r = p("a\n\n\n\"b\n");
        assert_eq!(r[1], Record { line: 4, fields: vec!["b".into()] });
    }

    #[test]
    fn devices_and_oversized_files_are_refused() {
        let e = read_columns(Path::new("/dev/zero"), &["x"]).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let d = std::env::temp_dir().join(format!("stuffed-csv-bound-{}", std::process::id()));
        std::fs::write(&d, "x\n1\n").unwrap();
        assert!(read_bounded(&d, 3).unwrap_err().to_string().contains("file too large: 4 bytes, limit 3"));
        assert_eq!(read_columns(&d, &["x"]).unwrap(), vec![vec![1.0]]);
        std::fs::remove_file(&d).unwrap();
    }
}
