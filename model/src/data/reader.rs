//! Reading the documents of one input file, whatever its layout: plain text (optionally
//! .gz/.dz/.zst compressed), JSON Lines (.jsonl/.ndjson, plain, .gz or .zst) and Parquet shards
//! as Hugging Face datasets ship them (FineWeb, SlimPajama, RedPajama: a string column chosen by
//! `field`). Bad records are reported, never fatal.
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use crate::{Error, Result};

/// One record of an input, or why it was rejected (`invalid_utf8`, `invalid_json`,
/// `missing_field`) with where it was (`file[:line]`).
pub enum Record {
    Text(String),
    Bad(&'static str, String),
}

/// The layout of a file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Text,
    Jsonl,
    Parquet,
}

/// One JSONL line as a record: the string at `field`, or why it is bad (`at` names the line).
pub fn jsonl_record(line: &[u8], field: &str, at: String) -> Record {
    match std::str::from_utf8(line) {
        Err(_) => Record::Bad("invalid_utf8", at),
        Ok(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Err(_) => Record::Bad("invalid_json", at),
            Ok(v) => match v.get(field).and_then(|t| t.as_str()) {
                None => Record::Bad("missing_field", at),
                Some(t) => Record::Text(t.to_string()),
            },
        },
    }
}

pub fn layout(name: &str) -> Layout {
    let base = crate::data::clean::inner_name(name);
    if base.ends_with(".parquet") {
        Layout::Parquet
    } else if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        Layout::Jsonl
    } else {
        Layout::Text
    }
}

/// The decompressed byte stream of a file (.gz and dictd's .dz are gzip; .zst is zstd).
pub fn open(path: &Path) -> Result<Box<dyn Read>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(if name.ends_with(".gz") || name.ends_with(".dz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| Error::io(path, e))?)
    } else {
        Box::new(file)
    })
}

/// Text of bytes: UTF-8 as is; text with a few invalid bytes (Latin-1 names in old sources,
/// under 1 in 1,000) with those replaced; `None` for anything else.
pub fn decode_text(bytes: Vec<u8>) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            let bytes = e.into_bytes();
            let s = String::from_utf8_lossy(&bytes);
            let bad = s.matches('\u{FFFD}').count();
            (bad * 1000 < bytes.len()).then(|| s.into_owned())
        }
    }
}

/// All records of a file. Text files are one record; JSONL one per non-blank line; Parquet one
/// per row.
pub fn records(path: &Path, field: &str) -> Result<Vec<Record>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match layout(name) {
        Layout::Parquet => parquet_records(path, field),
        Layout::Jsonl => jsonl_records(path, field),
        Layout::Text => {
            let mut bytes = Vec::new();
            open(path)?.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
            Ok(vec![match String::from_utf8(bytes) {
                Ok(s) => Record::Text(s),
                Err(_) => Record::Bad("invalid_utf8", path.display().to_string()),
            }])
        }
    }
}

fn jsonl_records(path: &Path, field: &str) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (i, line) in BufReader::new(open(path)?).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        out.push(jsonl_record(&line, field, at));
    }
    Ok(out)
}

/// Rows of a Parquet file, reading the `field` column only. A file without that column is an
/// error (a wrong `--field` should not silently yield an empty corpus).
pub fn parquet_records(path: &Path, field: &str) -> Result<Vec<Record>> {
    let perr = |e: parquet::errors::ParquetError| Error::at(path, format!("parquet: {e}"));
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(perr)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let col = schema.root_schema().get_fields().iter().find(|f| f.name() == field).cloned();
    let Some(col) = col else {
        let names: Vec<String> = schema.root_schema().get_fields().iter().map(|f| f.name().to_string()).collect();
        return Err(Error::at(path, format!("no column '{field}' (columns: {}): choose one with --field", names.join(", "))));
    };
    let projection = parquet::schema::types::Type::group_type_builder("schema").with_fields(vec![col]).build().map_err(perr)?;
    let mut out = Vec::new();
    for (i, row) in reader.get_row_iter(Some(projection)).map_err(perr)?.enumerate() {
        let row = row.map_err(perr)?;
        let at = || format!("{}:row {}", path.display(), i);
        let rec = match row.get_column_iter().next().map(|(_, v)| v) {
            Some(Field::Str(s)) => Record::Text(s.clone()),
            Some(Field::Bytes(b)) => match std::str::from_utf8(b.data()) {
                Ok(s) => Record::Text(s.to_string()),
                Err(_) => Record::Bad("invalid_utf8", at()),
            },
            _ => Record::Bad("missing_field", at()),
        };
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::sync::Arc;

    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// Writes a Parquet file with a string column `text` and an int column `id` (as HF shards
    /// have), one row per text.
    pub fn write_parquet(path: &Path, column: &str, texts: &[&str]) {
        let schema = Arc::new(parse_message_type(&format!("message schema {{ REQUIRED BYTE_ARRAY {column} (UTF8); }}")).expect("schema"));
        let props = Arc::new(WriterProperties::builder().build());
        let file = File::create(path).expect("create");
        let mut w = SerializedFileWriter::new(file, schema, props).expect("writer");
        let mut rg = w.next_row_group().expect("row group");
        let mut col = rg.next_column().expect("column").expect("one column");
        let values: Vec<ByteArray> = texts.iter().map(|t| ByteArray::from(*t)).collect();
        col.typed::<ByteArrayType>().write_batch(&values, None, None).expect("write");
        col.close().expect("close column");
        rg.close().expect("close row group");
        w.close().expect("close file");
    }

    #[test]
    fn parquet_rows_are_read_from_the_chosen_column() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("train-00000-of-00001.parquet");
        write_parquet(&p, "raw_content", &["first document", "second one"]);
        let recs = records(&p, "raw_content").expect("read");
        let texts: Vec<String> = recs.into_iter().filter_map(|r| if let Record::Text(t) = r { Some(t) } else { None }).collect();
        assert_eq!(texts, vec!["first document", "second one"]);
        let err = records(&p, "text").err().expect("missing column").to_string();
        assert!(err.contains("no column 'text'") && err.contains("raw_content"), "{err}");
    }

    #[test]
    fn jsonl_zst_records_and_bad_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("a.jsonl.zst");
        let raw = b"{\"text\": \"hello\"}\n{\"other\": 1}\nnot json\n\n{\"text\": \"bye\"}\n";
        std::fs::write(&p, zstd::encode_all(&raw[..], 3).expect("zstd")).expect("write");
        let recs = records(&p, "text").expect("read");
        let kinds: Vec<&str> = recs
            .iter()
            .map(|r| match r {
                Record::Text(_) => "text",
                Record::Bad(k, _) => k,
            })
            .collect();
        assert_eq!(kinds, vec!["text", "missing_field", "invalid_json", "text"]);
    }

    #[test]
    fn text_with_a_few_latin1_bytes_is_kept() {
        let mut b = "x".repeat(5000).into_bytes();
        b[10] = 0xE9;
        assert!(decode_text(b).is_some());
        assert!(decode_text(vec![0xFF; 100]).is_none());
    }
}
