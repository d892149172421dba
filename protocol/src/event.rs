//! The worker's event log: one JSON object per line of `events.jsonl`,
//! `{"seq": n, "kind": ..., <fields of the kind>, "time": "...", "format": 2}`. Sequence
//! numbers only grow (across resumes and attempts), so the controller ingests each event once.
//! Lines written before the `format` field existed read as format 1 with the same fields.
use serde::{Deserialize, Serialize};

use crate::criterion::Answer;
use crate::eval::EvalResult;
use crate::serde_nan::f64_or_nan;
use crate::{AttemptEnd, FailureKind};

/// The format written by this version. 1: the untyped events of earlier versions (no
/// `format` field, no failure kind in `done`).
pub const EVENT_FORMAT: u32 = 2;

fn format_1() -> u32 {
    1
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
    pub time: String,
    #[serde(default = "format_1")]
    pub format: u32,
}

impl Envelope {
    pub fn new(seq: u64, event: Event, time: String) -> Envelope {
        Envelope { seq, event, time, format: EVENT_FORMAT }
    }

    /// Parses one line of an event file.
    pub fn parse(line: &[u8]) -> Result<Envelope, crate::Error> {
        serde_json::from_slice(line).map_err(|e| crate::Error::Malformed { what: "event", message: e.to_string() })
    }

    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("events serialize");
        s.push('\n');
        s
    }
}

/// What happened. The `kind` field of a line names the variant.
// An event is built, written and dropped one at a time: the size of the `eval` variant (a whole
// result) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Event {
    /// Training started from scratch.
    Start {
        total_steps: i64,
        batch: i64,
        seq_len: i64,
        params: i64,
        state_size: i64,
        device: String,
        precision: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssd: Option<String>,
    },
    /// Training continued from a checkpoint.
    Resume {
        step: i64,
        tokens: i64,
        total_steps: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssd: Option<String>,
    },
    /// Training metrics at a logged step.
    Train {
        step: i64,
        tokens: i64,
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
        lr: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        grad_norm: f64,
        tokens_per_s: f64,
        mem_gb: f64,
    },
    /// Validation loss.
    Val {
        step: i64,
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
        tokens: i64,
    },
    /// A complete checkpoint; `path` is relative to the run directory.
    Checkpoint { step: i64, tokens: i64, path: String },
    /// Stopped on request after a checkpoint.
    Interrupted { step: i64, checkpoint: String },
    /// NaN/inf loss or gradient.
    Diverged {
        step: i64,
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        grad_norm: f64,
    },
    /// One evaluation of the job's config (its index in `evals`) on the checkpoint of `step`.
    Eval {
        eval_index: i64,
        step: i64,
        /// Training tokens seen by that checkpoint (absent before format 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<i64>,
        result: EvalResult,
    },
    /// Training stopped early (`early_stop`): the evaluations at `step` answered `criterion`
    /// with the answer that stops it. The job completes with those evaluations as its final ones.
    #[serde(rename = "early_stop")]
    EarlyStop {
        step: i64,
        tokens: i64,
        /// The criterion as [`crate::Criterion::describe`] writes it (`ratio > 1.5`).
        criterion: String,
        answer: Answer,
    },
    /// The worker's final word on this attempt.
    Done(Done),
}

impl Event {
    /// The event's name (the `kind` field of its line).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start { .. } => "start",
            Event::Resume { .. } => "resume",
            Event::Train { .. } => "train",
            Event::Val { .. } => "val",
            Event::Checkpoint { .. } => "checkpoint",
            Event::Interrupted { .. } => "interrupted",
            Event::Diverged { .. } => "diverged",
            Event::Eval { .. } => "eval",
            Event::EarlyStop { .. } => "early_stop",
            Event::Done(_) => "done",
        }
    }
}

/// The status word of a `done` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DoneStatus {
    Completed,
    Failed,
    Diverged,
    Interrupted,
}

/// The final event of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub status: DoneStatus,
    pub exit_code: i32,
    pub error: Option<String>,
    /// Why it failed, as the worker classified its own error (absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_s: Option<f64>,
    /// The step at which training stopped early (`early_stop`); the job is completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<i64>,
}

impl Done {
    /// A failed attempt's final event.
    pub fn failed(kind: FailureKind, exit_code: i32, error: String) -> Done {
        let status = match kind {
            FailureKind::Diverged => DoneStatus::Diverged,
            FailureKind::Interrupted => DoneStatus::Interrupted,
            _ => DoneStatus::Failed,
        };
        Done {
            status,
            exit_code,
            error: Some(error),
            failure: Some(kind),
            steps: None,
            tokens: None,
            final_loss: None,
            val_loss: None,
            wall_s: None,
            early_stop: None,
        }
    }

    /// How the attempt ended. A format-1 failure without a kind is `Internal`: its kind was
    /// never recorded, and no message is searched for one.
    pub fn end(&self) -> AttemptEnd {
        match self.status {
            DoneStatus::Completed => AttemptEnd::Completed,
            DoneStatus::Diverged => AttemptEnd::Failed(FailureKind::Diverged),
            DoneStatus::Interrupted => AttemptEnd::Failed(FailureKind::Interrupted),
            DoneStatus::Failed => AttemptEnd::Failed(self.failure.unwrap_or(FailureKind::Internal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_lines_read() {
        let lines = [
            r#"{"seq":1,"kind":"start","total_steps":60,"batch":4,"seq_len":64,"params":123,"state_size":512,"device":"cpu","precision":"Float","ssd":"tensor","time":"2026-11-28T10:00:00Z"}"#,
            r#"{"seq":2,"kind":"train","step":1,"tokens":256,"loss":5.5,"lr":0.001,"grad_norm":null,"tokens_per_s":1000.0,"mem_gb":0.0,"time":"t"}"#,
            r#"{"seq":3,"kind":"checkpoint","step":1,"tokens":256,"path":"ckpt/step-00000001","time":"t"}"#,
            r#"{"seq":4,"kind":"done","status":"failed","exit_code":1,"error":"CUDA out of memory","time":"t"}"#,
        ];
        let evs: Vec<Envelope> = lines.iter().map(|l| Envelope::parse(l.as_bytes()).unwrap()).collect();
        assert!(evs.iter().all(|e| e.format == 1));
        assert!(matches!(evs[1].event, Event::Train { grad_norm, .. } if grad_norm.is_nan()));
        let Event::Done(d) = &evs[3].event else { panic!("done") };
        // Format 1 carried no kind: the message is not searched for one.
        assert_eq!(d.end(), AttemptEnd::Failed(FailureKind::Internal));
    }

    #[test]
    fn lines_round_trip_with_kind_first() {
        let e = Envelope::new(7, Event::Val { step: 3, loss: 2.5, tokens: 99 }, "t".into());
        let line = e.to_line();
        assert!(line.starts_with(r#"{"seq":7,"kind":"val","step":3"#), "{line}");
        assert!(line.ends_with("\"format\":2}\n"), "{line}");
        assert_eq!(Envelope::parse(line.trim_end().as_bytes()).unwrap(), e);
        let d = Envelope::new(8, Event::Done(Done::failed(FailureKind::Oom, 1, "x".into())), "t".into());
        let back = Envelope::parse(d.to_line().as_bytes()).unwrap();
        let Event::Done(done) = back.event else { panic!("done") };
        assert_eq!(done.end(), AttemptEnd::Failed(FailureKind::Oom));
        assert!(done.end().retryable());
    }

    #[test]
    fn unknown_kinds_are_errors_not_silence() {
        let e = Envelope::parse(br#"{"seq":1,"kind":"telepathy","time":"t"}"#).unwrap_err();
        assert!(e.to_string().contains("telepathy"), "{e}");
    }
}
