//! Typed tables streamed to CSV or Parquet, for the long-format exports: the columns and their
//! types are known before the first row, rows go through one at a time (a Parquet file is
//! written in row groups of [`ROW_GROUP`] rows), so an export of millions of points holds at
//! most one row group in memory. Parquet goes through the `parquet` crate's own column writers
//! (no Arrow): every column is OPTIONAL (a missing value is null), text is UTF-8, compression is
//! zstd.
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::Value;

/// Rows per Parquet row group.
pub const ROW_GROUP: usize = 65_536;

/// The type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    Float,
    Bool,
    /// UTF-8 text; a value that is not a string is written as its JSON text.
    Text,
}

impl ColumnType {
    /// The narrowest type holding every one of `values` (nulls fit any; none at all is text).
    pub fn infer<'a>(values: impl IntoIterator<Item = &'a Value>) -> ColumnType {
        let mut ty: Option<ColumnType> = None;
        for v in values {
            let this = match v {
                Value::Null => continue,
                Value::Bool(_) => ColumnType::Bool,
                Value::Number(n) if n.is_i64() => ColumnType::Int,
                Value::Number(_) => ColumnType::Float,
                _ => ColumnType::Text,
            };
            ty = Some(match (ty, this) {
                (None, t) => t,
                (Some(a), b) if a == b => a,
                (Some(ColumnType::Int | ColumnType::Float), ColumnType::Int | ColumnType::Float) => ColumnType::Float,
                _ => ColumnType::Text,
            });
        }
        ty.unwrap_or(ColumnType::Text)
    }
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Column {
        Column { name: name.into(), ty }
    }
}

/// Where rows go.
pub trait RowSink {
    /// One row, a value per column in the columns' order.
    fn write_row(&mut self, row: &[Value]) -> anyhow::Result<()>;
    /// Flushes what is buffered and closes the output.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

/// A CSV cell: empty for null, numbers in full precision (shortest text that reads back the
/// same), strings as they are, anything else as JSON text.
fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where CSV text goes, closed once written (a gzip stream writes its trailer, a file is
/// synced).
pub trait Output: Write {
    fn close(self) -> std::io::Result<()>;
}

impl Output for std::io::BufWriter<std::io::Stdout> {
    fn close(mut self) -> std::io::Result<()> {
        self.flush()
    }
}

impl Output for std::io::BufWriter<std::fs::File> {
    fn close(self) -> std::io::Result<()> {
        self.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

impl Output for flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>> {
    fn close(self) -> std::io::Result<()> {
        self.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

impl Output for &mut Vec<u8> {
    fn close(self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sink for rows of `columns`: CSV on standard output when `out` is `None`, else a file by
/// its name: `.parquet` Parquet, `.gz` gzip-compressed CSV (deterministic: no time or name in
/// the header), anything else CSV.
pub fn sink_for(out: Option<&Path>, columns: &[Column]) -> anyhow::Result<Box<dyn RowSink>> {
    let Some(path) = out else {
        return Ok(Box::new(CsvSink::new(std::io::BufWriter::new(std::io::stdout()), columns)?));
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "parquet" {
        return Ok(Box::new(ParquetSink::create(path, columns)?));
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    if ext == "gz" {
        let gz = flate2::GzBuilder::new().mtime(0).write(file, flate2::Compression::best());
        return Ok(Box::new(CsvSink::new(gz, columns)?));
    }
    Ok(Box::new(CsvSink::new(file, columns)?))
}

/// Rows as CSV with a header line.
pub struct CsvSink<W: Output> {
    w: csv::Writer<W>,
}

impl<W: Output> CsvSink<W> {
    pub fn new(out: W, columns: &[Column]) -> anyhow::Result<CsvSink<W>> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(columns.iter().map(|c| c.name.as_str()))?;
        Ok(CsvSink { w })
    }
}

impl<W: Output> RowSink for CsvSink<W> {
    fn write_row(&mut self, row: &[Value]) -> anyhow::Result<()> {
        Ok(self.w.write_record(row.iter().map(csv_cell))?)
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.w.flush().context("writing CSV")?;
        let inner = self.w.into_inner().map_err(|e| anyhow::anyhow!("writing CSV: {}", e.error()))?;
        inner.close().context("writing CSV")
    }
}

/// Buffered values of one column, nulls as `None`.
enum Buffer {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

impl Buffer {
    fn new(ty: ColumnType) -> Buffer {
        match ty {
            ColumnType::Int => Buffer::Int(Vec::new()),
            ColumnType::Float => Buffer::Float(Vec::new()),
            ColumnType::Bool => Buffer::Bool(Vec::new()),
            ColumnType::Text => Buffer::Text(Vec::new()),
        }
    }

    /// Appends `v`, converted to the column's type; a value of another type is an error
    /// naming the column.
    fn push(&mut self, name: &str, v: &Value) -> anyhow::Result<()> {
        let bad = || anyhow::anyhow!("column {name}: {v} does not fit the column's type");
        match self {
            Buffer::Int(b) => b.push(if v.is_null() { None } else { Some(v.as_i64().ok_or_else(bad)?) }),
            Buffer::Float(b) => b.push(if v.is_null() { None } else { Some(v.as_f64().ok_or_else(bad)?).filter(|x| x.is_finite()) }),
            Buffer::Bool(b) => b.push(if v.is_null() { None } else { Some(v.as_bool().ok_or_else(bad)?) }),
            Buffer::Text(b) => b.push(match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }),
        }
        Ok(())
    }
}

/// The definition levels (1 present, 0 null) and the present values of a column.
fn levels<T: Clone>(values: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
    (values.iter().flatten().cloned().collect(), values.iter().map(|v| i16::from(v.is_some())).collect())
}

/// Rows as a Parquet file.
pub struct ParquetSink {
    writer: SerializedFileWriter<std::fs::File>,
    columns: Vec<Column>,
    buffers: Vec<Buffer>,
    rows: usize,
}

impl ParquetSink {
    pub fn create(path: &Path, columns: &[Column]) -> anyhow::Result<ParquetSink> {
        let fields = columns
            .iter()
            .map(|c| {
                let (physical, logical) = match c.ty {
                    ColumnType::Int => (Physical::INT64, None),
                    ColumnType::Float => (Physical::DOUBLE, None),
                    ColumnType::Bool => (Physical::BOOLEAN, None),
                    ColumnType::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                };
                let t = Type::primitive_type_builder(&c.name, physical)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_logical_type(logical)
                    .build()
                    .with_context(|| format!("Parquet column {}", c.name))?;
                Ok(Arc::new(t))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let schema = Type::group_type_builder("schema").with_fields(fields).build()?;
        let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))?;
        Ok(ParquetSink { writer, columns: columns.to_vec(), buffers: columns.iter().map(|c| Buffer::new(c.ty)).collect(), rows: 0 })
    }

    /// Writes the buffered rows as one row group.
    fn flush_group(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        for buffer in &mut self.buffers {
            let mut col = group.next_column()?.context("the Parquet schema has fewer columns than the table")?;
            match buffer {
                Buffer::Int(b) => {
                    let (v, d) = levels(b);
                    col.typed::<Int64Type>().write_batch(&v, Some(&d), None)?;
                    b.clear();
                }
                Buffer::Float(b) => {
                    let (v, d) = levels(b);
                    col.typed::<DoubleType>().write_batch(&v, Some(&d), None)?;
                    b.clear();
                }
                Buffer::Bool(b) => {
                    let (v, d) = levels(b);
                    col.typed::<BoolType>().write_batch(&v, Some(&d), None)?;
                    b.clear();
                }
                Buffer::Text(b) => {
                    let d: Vec<i16> = b.iter().map(|v| i16::from(v.is_some())).collect();
                    let v: Vec<ByteArray> = b.drain(..).flatten().map(|s| ByteArray::from(s.into_bytes())).collect();
                    col.typed::<ByteArrayType>().write_batch(&v, Some(&d), None)?;
                }
            }
            col.close()?;
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }
}

impl RowSink for ParquetSink {
    fn write_row(&mut self, row: &[Value]) -> anyhow::Result<()> {
        anyhow::ensure!(row.len() == self.columns.len(), "a row of {} values for {} columns", row.len(), self.columns.len());
        for ((buffer, column), v) in self.buffers.iter_mut().zip(&self.columns).zip(row) {
            buffer.push(&column.name, v)?;
        }
        self.rows += 1;
        if self.rows >= ROW_GROUP {
            self.flush_group()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.flush_group()?;
        self.writer.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;

    fn columns() -> Vec<Column> {
        vec![
            Column::new("job", ColumnType::Text),
            Column::new("model.d_state", ColumnType::Int),
            Column::new("value", ColumnType::Float),
            Column::new("final", ColumnType::Bool),
        ]
    }

    fn rows() -> Vec<Vec<Value>> {
        vec![
            vec![json!("a,\"b\""), json!(8), json!(1.2345678901234567), json!(true)],
            vec![Value::Null, Value::Null, Value::Null, Value::Null],
            vec![json!("c"), json!(16), json!(2), json!(false)],
        ]
    }

    #[test]
    fn column_types_are_the_narrowest_that_hold_every_value() {
        assert_eq!(ColumnType::infer(&[json!(1), Value::Null, json!(2)]), ColumnType::Int);
        assert_eq!(ColumnType::infer(&[json!(1), json!(0.5)]), ColumnType::Float);
        assert_eq!(ColumnType::infer(&[json!(true)]), ColumnType::Bool);
        assert_eq!(ColumnType::infer(&[json!(1), json!("x")]), ColumnType::Text);
        assert_eq!(ColumnType::infer(&[Value::Null]), ColumnType::Text);
    }

    #[test]
    fn csv_keeps_full_precision_and_quotes() {
        let mut out = Vec::new();
        let mut sink = Box::new(CsvSink::new(&mut out, &columns()).unwrap());
        for r in rows() {
            sink.write_row(&r).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "job,model.d_state,value,final\n\"a,\"\"b\"\"\",8,1.2345678901234567,true\n,,,\nc,16,2,false\n"
        );
    }

    #[test]
    fn parquet_rows_read_back_typed_with_nulls_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let mut sink = Box::new(ParquetSink::create(&p, &columns()).unwrap());
        let n = ROW_GROUP + 2;
        for i in 0..n {
            sink.write_row(&rows()[i % 3]).unwrap();
        }
        sink.finish().unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let back: Vec<String> = reader.get_row_iter(None).unwrap().take(3).map(|r| r.unwrap().to_string()).collect();
        assert_eq!(
            back,
            [
                r#"{job: "a,"b"", model.d_state: 8, value: 1.2345678901234567, final: true}"#,
                "{job: null, model.d_state: null, value: null, final: null}",
                r#"{job: "c", model.d_state: 16, value: 2.0, final: false}"#
            ]
        );
        assert_eq!(reader.metadata().file_metadata().num_rows(), n as i64);
        let e = ParquetSink::create(&dir.path().join("u.parquet"), &columns())
            .unwrap()
            .write_row(&[json!("x"), json!("eight"), Value::Null, Value::Null])
            .unwrap_err();
        assert!(e.to_string().contains("column model.d_state: \"eight\" does not fit"), "{e}");
    }
}
