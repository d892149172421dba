//! `stuffed man`: the manual page (clap_mangen, roff) of `stuffed` on standard output, or with
//! `--out DIR` one page per command (`stuffed.1`, `stuffed-sweep.1`, `stuffed-sweep-run.1`, ...)
//! as `make install` installs them.
use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write `stuffed.1` and one page per subcommand into this directory instead.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let cmd = super::Cli::command();
        match self.out {
            Some(dir) => {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                clap_mangen::generate_to(cmd, &dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
                eprintln!("man pages written to {}", dir.display());
            }
            None => {
                let mut out = Vec::new();
                clap_mangen::Man::new(cmd).render(&mut out)?;
                super::common::write_stdout(&out)?;
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_has_the_name_the_synopsis_and_the_subcommands() {
        let mut out = Vec::new();
        clap_mangen::Man::new(crate::cli::Cli::command()).render(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH stuffed"), "{page}");
        for word in [".SH NAME", ".SH SYNOPSIS", "sweep", "results", "completions"] {
            assert!(page.contains(word), "man page lacks {word}");
        }
    }

    #[test]
    fn man_out_writes_one_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        Args { out: Some(dir.path().to_path_buf()) }.run().unwrap();
        for page in ["stuffed.1", "stuffed-sweep.1", "stuffed-sweep-run.1", "stuffed-completions.1"] {
            assert!(dir.path().join(page).is_file(), "{page} missing");
        }
    }
}
