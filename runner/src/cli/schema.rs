//! `stuffed schema job|sweep`: the JSON Schema of job or sweep files, generated from the types
//! that read them (docs/schema/ holds the committed copies; README says how to point an editor
//! at them).
use crate::config_schema::{render, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which files: job configs or sweep files.
    #[arg(value_enum)]
    kind: Kind,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        super::common::write_stdout(render(self.kind).as_bytes())?;
        Ok(0)
    }
}
