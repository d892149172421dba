//! How an attempt ended and what the controller does about it. The worker classifies its own
//! failure (it holds the typed error) and writes the kind into its final `done` event; the
//! controller decides retries from the kind alone, never from an error message.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::JobStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A bad job config (unknown key, invalid model, impossible size): never retried.
    Config,
    /// Missing or unusable input data (corpus, tokenizer, checkpoint): never retried.
    Data,
    /// NaN/inf loss or gradient: deterministic, never retried.
    Diverged,
    /// CUDA out of memory: retried with the GPU to itself.
    Oom,
    /// The host ran out of memory (the batch system killed the task): not retried.
    #[serde(rename = "out_of_memory")]
    HostOom,
    /// Died without a final event (killed, crashed, machine lost): retried from the checkpoint.
    Killed,
    /// Ran past the sweep's timeout: retried from the checkpoint.
    Timeout,
    /// Stopped on request (Ctrl-C, cancel): not retried in this run.
    Interrupted,
    /// Anything else (a bug, an unexpected library error): recorded, not retried.
    #[serde(alias = "failed")]
    Internal,
}

impl FailureKind {
    pub const ALL: [FailureKind; 9] = [
        FailureKind::Config,
        FailureKind::Data,
        FailureKind::Diverged,
        FailureKind::Oom,
        FailureKind::HostOom,
        FailureKind::Killed,
        FailureKind::Timeout,
        FailureKind::Interrupted,
        FailureKind::Internal,
    ];

    pub fn retryable(self) -> bool {
        matches!(self, FailureKind::Oom | FailureKind::Killed | FailureKind::Timeout)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Config => "config",
            FailureKind::Data => "data",
            FailureKind::Diverged => "diverged",
            FailureKind::Oom => "oom",
            FailureKind::HostOom => "out_of_memory",
            FailureKind::Killed => "killed",
            FailureKind::Timeout => "timeout",
            FailureKind::Interrupted => "interrupted",
            FailureKind::Internal => "internal",
        }
    }

    /// The job status this failure leaves when it is not retried.
    pub fn job_status(self) -> JobStatus {
        match self {
            FailureKind::Diverged => JobStatus::Diverged,
            FailureKind::Interrupted => JobStatus::Interrupted,
            _ => JobStatus::Failed,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "failed" {
            return Ok(FailureKind::Internal); // the name of Internal before the protocol crate
        }
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| crate::Error::Unknown {
            what: "failure kind",
            value: s.into(),
            expected: Self::ALL.map(|k| k.as_str()).join(", "),
        })
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    Completed,
    Failed(FailureKind),
}

impl AttemptEnd {
    pub fn retryable(self) -> bool {
        matches!(self, AttemptEnd::Failed(k) if k.retryable())
    }

    /// The attempt's stored status and error class.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptEnd::Completed => "completed",
            AttemptEnd::Failed(k) => k.as_str(),
        }
    }

    /// The job status this end leaves when it is not retried.
    pub fn job_status(self) -> JobStatus {
        match self {
            AttemptEnd::Completed => JobStatus::Completed,
            AttemptEnd::Failed(k) => k.job_status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_is_a_match_on_the_kind() {
        let retried: Vec<_> = FailureKind::ALL.into_iter().filter(|k| k.retryable()).collect();
        assert_eq!(retried, [FailureKind::Oom, FailureKind::Killed, FailureKind::Timeout]);
        assert!(!AttemptEnd::Completed.retryable());
        assert_eq!(AttemptEnd::Failed(FailureKind::Diverged).job_status(), JobStatus::Diverged);
    }

    #[test]
    fn names_round_trip_and_the_old_name_reads() {
        for k in FailureKind::ALL {
            assert_eq!(k.as_str().parse::<FailureKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<FailureKind>(&json).unwrap(), k);
        }
        assert_eq!("failed".parse::<FailureKind>().unwrap(), FailureKind::Internal);
        assert_eq!(serde_json::from_str::<FailureKind>("\"failed\"").unwrap(), FailureKind::Internal);
        assert!("nope".parse::<FailureKind>().unwrap_err().to_string().contains("expected one of"));
    }
}
