//! Flags and helpers shared by several subcommands: device, precision, model source.
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use stuffed_model::{checkpoint, cuda, Mamba2LM, MambaConfig};
use tch::{Device, Kind};

/// Compute precision of matmuls and convolutions (parameters stay fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    Bf16,
    Fp32,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp32 => Kind::Float,
        }
    }

    /// bf16 on a GPU, fp32 on the CPU.
    pub fn default_for(device: Device) -> Precision {
        if device.is_cuda() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }
}

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
    /// A checkpoint directory (config.json + model.safetensors).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl ModelSource {
    pub fn config(&self) -> anyhow::Result<MambaConfig> {
        match (&self.preset, &self.checkpoint) {
            (Some(p), _) => Ok(MambaConfig::preset(p)?),
            (_, Some(dir)) => Ok(MambaConfig::from_json_file(&dir.join(checkpoint::CONFIG_FILE))?),
            _ => anyhow::bail!("give --preset NAME or --checkpoint DIR"),
        }
    }

    /// The model with its weights (a preset gets the reference random init, seed 0).
    pub fn load(&self, device: Device) -> anyhow::Result<(Mamba2LM, checkpoint::CheckpointMeta)> {
        match &self.checkpoint {
            Some(dir) => checkpoint::load(dir, device).with_context(|| format!("loading checkpoint {}", dir.display())),
            None => {
                tch::manual_seed(0);
                Ok((Mamba2LM::new(&self.config()?, device)?, Default::default()))
            }
        }
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
