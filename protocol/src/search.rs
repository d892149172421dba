//! The adaptive threshold search's record (runner `sweep::search`): one [`SearchStep`] per probe
//! of a round of a cell, and one per cell's final decision. The controller writes them to the
//! `search_steps` table; `sweep status`, the dump and the report read them.
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the search decided for a cell in one round, in the searched key's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum SearchDecision {
    /// Run probes at these values.
    Probe { values: Vec<Value> },
    /// The answer flips between these two adjacent values: the threshold is bracketed.
    Bracket { lo: Value, hi: Value },
    /// Yes at every value probed, both ends included: the threshold lies outside the range.
    AllYes,
    /// No at every value probed, both ends included.
    AllNo,
    /// More than one flip, or a flip against `expect`: the answers by value, in order.
    NonMonotone { answers: Vec<(Value, bool)> },
    /// A probe's evaluation could not answer; the cell stops there.
    Undecided { at: Value, why: String },
    /// The cell's probe budget ran out before the bracket closed: the bracket so far.
    BudgetExhausted { lo: Value, hi: Value },
    /// A probe's job did not complete (failed or diverged); a rerun tries it again.
    Failed { at: Value, why: String },
}

impl SearchDecision {
    /// True when the cell is finished (everything but `Probe`).
    pub fn is_done(&self) -> bool {
        !matches!(self, SearchDecision::Probe { .. })
    }

    /// A short text for tables: `probe 128, 256`, `bracket 128..256`, `non-monotone (64 yes,
    /// 128 no, 256 yes)`.
    pub fn describe(&self) -> String {
        let v = |x: &Value| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self {
            SearchDecision::Probe { values } => format!("probe {}", values.iter().map(v).collect::<Vec<_>>().join(", ")),
            SearchDecision::Bracket { lo, hi } => format!("bracket {}..{}", v(lo), v(hi)),
            SearchDecision::AllYes => "yes everywhere (threshold outside the range)".into(),
            SearchDecision::AllNo => "no everywhere (threshold outside the range)".into(),
            SearchDecision::NonMonotone { answers } => {
                let a: Vec<String> = answers.iter().map(|(x, b)| format!("{} {}", v(x), if *b { "yes" } else { "no" })).collect();
                format!("non-monotone ({})", a.join(", "))
            }
            SearchDecision::Undecided { at, why } => format!("undecided at {}: {why}", v(at)),
            SearchDecision::BudgetExhausted { lo, hi } => format!("budget exhausted, bracket so far {}..{}", v(lo), v(hi)),
            SearchDecision::Failed { at, why } => format!("probe at {} did not complete: {why}", v(at)),
        }
    }
}

/// One row of the search's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchStep {
    pub sweep: String,
    /// The cell: the label of the other varied keys (`d_state=8`; empty when nothing else varies).
    pub cell: String,
    /// 0 for the first round (both ends).
    pub round: i64,
    /// The probed value's index in the searched values; -1 on a cell's final row.
    pub probe: i64,
    /// The probed value (null on a final row).
    pub value: Value,
    /// The probe's job (none on a final row).
    pub job_id: Option<String>,
    /// `yes`, `no` or `undecided: why` once the probe's job completed.
    pub answer: Option<String>,
    /// The round's decision (a final row: the cell's outcome).
    pub decision: SearchDecision,
    /// The bracket known when the decision was made (the values whose answers differ).
    pub lo: Option<Value>,
    pub hi: Option<Value>,
}
