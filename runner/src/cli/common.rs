//! Flags and helpers shared by several subcommands: device, precision, model source.
use std::path::PathBuf;

use anyhow::Context;
use stuffed_model::ssd::SsdBackend;
use stuffed_model::{checkpoint, cuda, Mamba2LM, MambaConfig};
use tch::Device;

/// The device of `spec`.
pub fn device(spec: &str) -> anyhow::Result<Device> {
    Ok(cuda::parse_device(spec)?)
}

/// `--preset NAME` or `--checkpoint DIR`: where a model comes from.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ModelSource {
    /// A named size: 130m, 370m, 780m, 1.3b, 2.7b, small, tiny.
    #[arg(long)]
    pub preset: Option<String>,
    /// A checkpoint: a directory (config.json in mamba_ssm's or transformers' layout, with
    /// model.safetensors, sharded safetensors or pytorch_model.bin) or hf:ORG/NAME[@REVISION]
    /// from the local Hugging Face cache.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl ModelSource {
    pub fn config(&self) -> anyhow::Result<MambaConfig> {
        match (&self.preset, &self.checkpoint) {
            (Some(p), _) => Ok(MambaConfig::preset(p)?),
            (_, Some(dir)) => Ok(checkpoint::open(dir)?.cfg),
            _ => anyhow::bail!("give --preset NAME or --checkpoint DIR"),
        }
    }

    /// The model with its weights (a preset gets the reference random init, seed 0), running
    /// its SSD with `ssd` (the command line's `--ssd`, resolved on `device`).
    pub fn load(&self, device: Device, ssd: SsdBackend) -> anyhow::Result<(Mamba2LM, checkpoint::CheckpointMeta)> {
        let (lm, meta) = match &self.checkpoint {
            Some(dir) => checkpoint::load(dir, device).with_context(|| format!("loading checkpoint {}", dir.display()))?,
            None => (Mamba2LM::seeded(&self.config()?, device, 0)?, Default::default()),
        };
        Ok((lm.with_ssd(ssd)?, meta))
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    write_stdout(format!("{}\n", serde_json::to_string_pretty(v)?).as_bytes())
}

/// Writes to standard output; a full disk or a closed pipe is an error, not a panic.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).context("writing to standard output")
}

/// `--db PATH` (or $STUFFED_DB; default results/stuffed.db).
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Results database.
    #[arg(long, env = "STUFFED_DB", default_value = "results/stuffed.db")]
    pub db: PathBuf,
}

impl DbArgs {
    pub async fn open(&self) -> anyhow::Result<crate::store::Db> {
        crate::store::Db::open(&self.db).await
    }

    /// The database for a command that only changes what is already there (`sweep cancel`):
    /// a missing one is an error, never created.
    pub async fn open_existing(&self) -> anyhow::Result<crate::store::Db> {
        crate::store::Db::must_exist(&self.db)?;
        self.open().await
    }

    /// The database for a command that only reads (a missing one is an error; nothing created
    /// or written).
    pub async fn open_read_only(&self) -> anyhow::Result<crate::store::Db> {
        crate::store::Db::open_read_only(&self.db).await
    }
}

/// A tokio runtime for the database and the controller loop.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Rows as a JSON array of objects keyed by `header`.
pub fn rows_json(header: &[String], rows: &[Vec<serde_json::Value>]) -> serde_json::Value {
    rows.iter().map(|r| serde_json::Value::Object(header.iter().cloned().zip(r.iter().cloned()).collect())).collect()
}

/// Prints rows as an aligned table, CSV or JSON (an array of objects).
pub fn print_rows(format: TableFormat, header: &[String], rows: &[Vec<serde_json::Value>]) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    render_rows(format, header, rows, &mut buf)?;
    write_stdout(&buf)
}

/// Writes rows as an aligned table, CSV or JSON (an array of objects).
pub fn render_rows(
    format: TableFormat,
    header: &[String],
    rows: &[Vec<serde_json::Value>],
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f != 0.0 && (1e-3..1e7).contains(&f.abs()) => {
                format!("{f:.6}").trim_end_matches('0').trim_end_matches('.').to_string()
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    match format {
        TableFormat::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&rows_json(header, rows))?)?;
        }
        TableFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(header)?;
            for r in rows {
                w.write_record(r.iter().map(cell))?;
            }
            w.flush()?;
        }
        TableFormat::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|i| cells.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0).min(48))
                .collect();
            let line = |vals: Vec<String>| {
                vals.iter()
                    .zip(&widths)
                    .map(|(v, w)| {
                        let v: String = v.chars().take(*w).collect();
                        format!("{v:<w$}", w = *w)
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            writeln!(out, "{}", line(header.to_vec()))?;
            for r in cells {
                writeln!(out, "{}", line(r))?;
            }
        }
    }
    Ok(())
}

/// A number for people to read: whole numbers in full, others to 5 significant digits
/// (`1.3073`, `149387`, `0.00021`, `3.2e-7`); JSON output keeps full precision.
pub fn short_num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let mag = x.abs().log10().floor() as i32;
    if mag < -4 {
        let s = format!("{x:.4e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        return format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'));
    }
    let decimals = (4 - mag).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A JSON value as text output shows it: numbers by `short_num`, a missing value as `none`,
/// strings unquoted.
pub fn text_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), short_num),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Output format of tabular commands: `--format table` (or `text`, as every other command
/// spells it), `csv` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum TableFormat {
    #[default]
    #[value(alias = "text")]
    Table,
    Csv,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people_have_five_significant_digits() {
        let cases = [
            (1.3073150080907747, "1.3073"),
            (149387.218903, "149387"),
            (50003968.0, "50003968"),
            (0.000212345, "0.00021234"),
            (3.25e-7, "3.25e-7"),
            (-2.5, "-2.5"),
            (0.0, "0"),
        ];
        for (x, want) in cases {
            assert_eq!(short_num(x), want, "{x}");
        }
        assert_eq!(text_value(&serde_json::Value::Null), "none");
        assert_eq!(text_value(&serde_json::json!(6.387900545803859)), "6.3879");
        assert_eq!(text_value(&serde_json::json!(false)), "false");
    }

    #[test]
    fn csv_rows_are_quoted_by_the_csv_crate() {
        let header = vec!["label".to_string(), "x".into()];
        let rows = vec![vec![serde_json::json!("a,\"b\"\nc"), serde_json::json!(1.5)], vec![serde_json::Value::Null, serde_json::json!(2)]];
        let mut out = Vec::new();
        render_rows(TableFormat::Csv, &header, &rows, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "label,x\n\"a,\"\"b\"\"\nc\",1.5\n,2\n");
    }
}
