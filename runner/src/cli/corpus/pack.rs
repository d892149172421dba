//! `stuffed corpus pack` and `stuffed corpus unpack`: a corpus as zstd chunks with a
//! checksummed index, for hosts without network that receive files in limited pieces.
use std::path::PathBuf;

use anyhow::Context;
use stuffed_model::data::pack;

use super::super::common::print_json;
use super::super::Format;

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// Corpus directory.
    dir: PathBuf,
    /// Output prefix: writes PREFIX.0000.zst, PREFIX.0001.zst, ... and PREFIX.index.json.
    #[arg(long)]
    out: PathBuf,
    /// Largest chunk, e.g. 60MiB, 500KiB or a byte count.
    #[arg(long, default_value = "60MiB")]
    chunk_size: String,
    /// zstd level (1-19).
    #[arg(long, default_value_t = 3)]
    level: i32,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct UnpackArgs {
    /// Pack prefix (as given to `pack --out`) or its PREFIX.index.json.
    prefix: PathBuf,
    /// Corpus directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Only check that every chunk is present and intact.
    #[arg(long)]
    verify_only: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Parses `60MiB`, `512KiB`, `1GiB`, `60MB` or a plain byte count.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("invalid size '{s}'"))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        u => anyhow::bail!("invalid size unit '{u}' in '{s}': expected KiB, MiB, GiB, KB, MB or GB"),
    };
    Ok((n * mult) as u64)
}

impl PackArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        let chunk = parse_size(&self.chunk_size)?;
        let t0 = std::time::Instant::now();
        let idx = pack::pack(&self.dir, &self.out, chunk, self.level)?;
        match self.format {
            Format::Json => print_json(&idx)?,
            Format::Text => {
                let per100m = idx.compressed_bytes as f64 / (idx.tokens.max(1) as f64 / 1e8);
                println!(
                    "packed {} ({} tokens, {:.1} MiB) into {} chunks of at most {:.1} MiB: {:.1} MiB compressed, {:.1} MiB per 100M tokens, {:.0} s",
                    self.dir.display(),
                    idx.tokens,
                    idx.raw_bytes as f64 / 1048576.0,
                    idx.chunks.len(),
                    chunk as f64 / 1048576.0,
                    idx.compressed_bytes as f64 / 1048576.0,
                    per100m / 1048576.0,
                    t0.elapsed().as_secs_f64()
                );
                println!("index: {}.index.json", self.out.display());
            }
        }
        Ok(0)
    }
}

impl UnpackArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        let idx = if self.verify_only { pack::verify(&self.prefix)? } else { pack::unpack(&self.prefix, &self.out)? };
        match self.format {
            Format::Json => print_json(&idx)?,
            Format::Text if self.verify_only => println!("{} chunks present and intact", idx.chunks.len()),
            Format::Text => {
                println!("unpacked {} chunks into {} ({} tokens; every file verified)", idx.chunks.len(), self.out.display(), idx.tokens)
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("60MiB").expect("ok"), 60 * 1024 * 1024);
        assert_eq!(parse_size("512KiB").expect("ok"), 512 * 1024);
        assert_eq!(parse_size("1000").expect("ok"), 1000);
        assert_eq!(parse_size("2MB").expect("ok"), 2_000_000);
        assert!(parse_size("3 parsecs").is_err());
    }
}
