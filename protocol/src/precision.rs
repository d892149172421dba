//! Compute precision, one enum for training configs, evaluations and the command line.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 on a GPU, fp32 on the CPU.
    #[default]
    Auto,
    Bf16,
    Fp32,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::Bf16, Precision::Fp32];

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Bf16 => "bf16",
            Precision::Fp32 => "fp32",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| crate::Error::Unknown {
            what: "precision",
            value: s.into(),
            expected: "auto, bf16, fp32".into(),
        })
    }
}
