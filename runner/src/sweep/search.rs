//! Adaptive threshold search (`search:` in a sweep file): for each cell of the other varied
//! keys, bisect one ordered key on a yes/no [`Criterion`] until the answer's flip is bracketed
//! between two adjacent values. The engine is a pure function of a cell's known answers
//! ([`decide`]); [`replay`] rebuilds a cell's rounds from whatever the database knows, so a
//! killed controller resumes with the same decisions; [`counts`] simulates every monotone
//! threshold position for the dry run's worst-case and expected job counts.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stuffed_model::protocol::criterion::{Answer, Criterion, EarlyStop};
use stuffed_model::protocol::SearchDecision;

/// Most values a search may range over.
pub const MAX_VALUES: usize = 256;

/// The `search:` block of a sweep file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// The ordered job-config key searched (not also set by grid, zip, seeds or derived).
    pub key: String,
    /// Strictly ascending numbers (or `range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
    /// A geometric range of integers (or `values`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<GeometricRange>,
    /// The question each probe's final evaluation answers.
    pub criterion: Criterion,
    /// Which way the answer is expected to flip; a flip the other way is reported as
    /// non-monotone. Default: either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Direction>,
    /// Probe jobs per cell at most (default: the bisection's worst case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<usize>,
    /// Interior probes per cell per round (1: bisection; k: k-section).
    #[serde(default = "one")]
    pub probes_per_round: usize,
    /// Sets `early_stop: {criterion, stop_when}` on every probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<SearchEarlyStop>,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// `range: {from: 64, to: 4096, factor: 2}`: from, from * factor, ... up to `to`, rounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeometricRange {
    pub from: i64,
    pub to: i64,
    pub factor: f64,
}

/// `early_stop: {stop_when: true}` in a search: the criterion is the search's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchEarlyStop {
    #[serde(default = "yes")]
    pub stop_when: bool,
}

/// Which way a monotone answer flips along the ordered values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Yes at small values, no at large ones.
    YesBelow,
    /// No at small values, yes at large ones.
    YesAbove,
}

impl SearchSpec {
    /// The searched values, checked: numbers, strictly ascending, 2 to [`MAX_VALUES`] of them.
    /// Errors name the field at fault (`values`, `range`, ...).
    pub fn values(&self) -> Result<Vec<Value>, (&'static str, String)> {
        let values = match (&self.values, &self.range) {
            (Some(v), None) => v.clone(),
            (None, Some(r)) => r.values().map_err(|e| ("range", e))?,
            (Some(_), Some(_)) => return Err(("range", "give `values` or `range`, not both".into())),
            (None, None) => return Err(("key", "a search needs `values: [...]` or `range: {from, to, factor}`".into())),
        };
        let mut prev: Option<f64> = None;
        for v in &values {
            let Some(x) = v.as_f64() else { return Err(("values", format!("search values must be numbers, got {v}"))) };
            if prev.is_some_and(|p| x <= p) {
                return Err(("values", format!("search values must be strictly ascending: {v} follows {}", prev.unwrap_or(x))));
            }
            prev = Some(x);
        }
        if values.len() < 2 || values.len() > MAX_VALUES {
            return Err(("values", format!("a search needs 2 to {MAX_VALUES} values, got {}", values.len())));
        }
        Ok(values)
    }

    /// The engine's settings for `n` values, the budget checked (at least the two ends).
    pub fn settings(&self, n: usize) -> Result<Settings, (&'static str, String)> {
        if self.probes_per_round == 0 || self.probes_per_round > MAX_VALUES {
            return Err(("probes_per_round", format!("probes_per_round must be 1 to {MAX_VALUES}, got {}", self.probes_per_round)));
        }
        let mut s = Settings { n, expect: self.expect, budget: usize::MAX, per_round: self.probes_per_round };
        let worst = counts(&s).worst;
        match self.budget {
            Some(b) if b < 2 => Err(("budget", format!("a budget below 2 cannot probe both ends (got {b})"))),
            Some(b) => Ok(Settings { budget: b, ..s }),
            None => {
                s.budget = worst;
                Ok(s)
            }
        }
    }

    /// The `early_stop` every probe gets, if the search asks for it.
    pub fn early_stop(&self) -> Option<EarlyStop> {
        self.early_stop.as_ref().map(|e| EarlyStop { criterion: self.criterion.clone(), stop_when: e.stop_when })
    }
}

impl GeometricRange {
    fn values(&self) -> Result<Vec<Value>, String> {
        if self.from < 1 || self.to < self.from {
            return Err(format!("range needs 1 <= from <= to, got from {} to {}", self.from, self.to));
        }
        if !(self.factor.is_finite() && self.factor > 1.0) {
            return Err(format!("range factor must be above 1, got {}", self.factor));
        }
        let mut out: Vec<i64> = Vec::new();
        let mut x = self.from as f64;
        while x.round() <= self.to as f64 {
            let v = x.round() as i64;
            if out.last() != Some(&v) {
                out.push(v);
            }
            if out.len() > MAX_VALUES {
                return Err(format!("range has more than {MAX_VALUES} values"));
            }
            x *= self.factor;
        }
        Ok(out.into_iter().map(Value::from).collect())
    }
}

/// What the engine needs to know about a cell's search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Number of values (at least 2).
    pub n: usize,
    pub expect: Option<Direction>,
    /// Probe jobs at most.
    pub budget: usize,
    /// Interior probes per round.
    pub per_round: usize,
}

/// How a cell's search ended, in value indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Bracket(usize, usize),
    AllYes,
    AllNo,
    NonMonotone(Vec<(usize, bool)>),
    Undecided(usize, String),
    BudgetExhausted(usize, usize),
    Failed(usize, String),
}

/// The engine's next step for a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run these value indices next (ascending).
    Probe(Vec<usize>),
    Done(Outcome),
}

impl Decision {
    /// The decision in values, for the record.
    pub fn in_values(&self, values: &[Value]) -> SearchDecision {
        let v = |i: usize| values.get(i).cloned().unwrap_or(Value::Null);
        match self {
            Decision::Probe(p) => SearchDecision::Probe { values: p.iter().map(|&i| v(i)).collect() },
            Decision::Done(o) => match o {
                Outcome::Bracket(a, b) => SearchDecision::Bracket { lo: v(*a), hi: v(*b) },
                Outcome::AllYes => SearchDecision::AllYes,
                Outcome::AllNo => SearchDecision::AllNo,
                Outcome::NonMonotone(a) => SearchDecision::NonMonotone { answers: a.iter().map(|&(i, b)| (v(i), b)).collect() },
                Outcome::Undecided(i, why) => SearchDecision::Undecided { at: v(*i), why: why.clone() },
                Outcome::BudgetExhausted(a, b) => SearchDecision::BudgetExhausted { lo: v(*a), hi: v(*b) },
                Outcome::Failed(i, why) => SearchDecision::Failed { at: v(*i), why: why.clone() },
            },
        }
    }
}

/// The cell's known yes/no answers by index, or the first undecided one.
fn answers(known: &BTreeMap<usize, Answer>) -> Result<Vec<(usize, bool)>, (usize, String)> {
    known
        .iter()
        .map(|(&i, a)| match a {
            Answer::Undecided(why) => Err((i, why.clone())),
            a => Ok((i, a.as_bool() == Some(true))),
        })
        .collect()
}

/// The bracket the known answers give: the adjacent known indices whose answers differ, when
/// there is exactly one such pair.
pub fn bracket(known: &BTreeMap<usize, Answer>) -> Option<(usize, usize)> {
    let a = answers(known).ok()?;
    let flips: Vec<(usize, usize)> = a.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| (w[0].0, w[1].0)).collect();
    (flips.len() == 1).then(|| flips[0])
}

/// The next step of a cell given every answer known so far (value index -> answer). The first
/// round probes both ends; then k-section inside the bracket. Every known answer is checked
/// for monotonicity: more than one flip, or a flip against `expect`, ends the cell.
pub fn decide(s: &Settings, known: &BTreeMap<usize, Answer>) -> Decision {
    let a = match answers(known) {
        Ok(a) => a,
        Err((i, why)) => return Decision::Done(Outcome::Undecided(i, why)),
    };
    let ends: Vec<usize> = [0, s.n - 1].into_iter().filter(|i| !known.contains_key(i)).collect();
    let left = s.budget.saturating_sub(known.len());
    if !ends.is_empty() {
        return if left >= ends.len() { Decision::Probe(ends) } else { Decision::Done(Outcome::BudgetExhausted(0, s.n - 1)) };
    }
    let flips: Vec<usize> = (0..a.len() - 1).filter(|&k| a[k].1 != a[k + 1].1).collect();
    let (lo, hi) = match flips.as_slice() {
        [] if a[0].1 => return Decision::Done(Outcome::AllYes),
        [] => return Decision::Done(Outcome::AllNo),
        [k] => (a[*k], a[*k + 1]),
        _ => return Decision::Done(Outcome::NonMonotone(a)),
    };
    let dir = if lo.1 { Direction::YesBelow } else { Direction::YesAbove };
    if s.expect.is_some_and(|e| e != dir) {
        return Decision::Done(Outcome::NonMonotone(a));
    }
    let (lo, hi) = (lo.0, hi.0);
    if hi == lo + 1 {
        return Decision::Done(Outcome::Bracket(lo, hi));
    }
    if left == 0 {
        return Decision::Done(Outcome::BudgetExhausted(lo, hi));
    }
    let p = s.per_round.min(hi - lo - 1).min(left);
    Decision::Probe((1..=p).map(|j| lo + (hi - lo) * j / (p + 1)).collect())
}

/// What the database says about one probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Answered(Answer),
    /// Not run yet, or running.
    Pending,
    /// Its job ended without completing, in this run (a later run tries it again).
    Failed(String),
}

/// One round of a cell as replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub decision: Decision,
    /// The bracket known when the decision was made.
    pub bracket: Option<(usize, usize)>,
    /// The probes of a `Probe` decision and what is known of each.
    pub probes: Vec<(usize, Probe)>,
}

/// A cell's rounds rebuilt from what is known of each probe: decisions follow from answers
/// alone, so the same answers give the same rounds. Ends with a `Done` round, or with a round
/// whose probes are not all answered (the one to run). A failed probe ends the cell.
pub fn replay(s: &Settings, mut look: impl FnMut(usize) -> Probe) -> Vec<Round> {
    let mut known = BTreeMap::new();
    let mut rounds = Vec::new();
    loop {
        let decision = decide(s, &known);
        let bracket = bracket(&known);
        let Decision::Probe(idx) = &decision else {
            rounds.push(Round { decision, bracket, probes: vec![] });
            return rounds;
        };
        let probes: Vec<(usize, Probe)> = idx.iter().map(|&i| (i, look(i))).collect();
        let failed = probes.iter().find_map(|(i, p)| match p {
            Probe::Failed(why) => Some((*i, why.clone())),
            _ => None,
        });
        let all = probes.iter().all(|(_, p)| matches!(p, Probe::Answered(_)));
        for (i, p) in &probes {
            if let Probe::Answered(a) = p {
                known.insert(*i, a.clone());
            }
        }
        rounds.push(Round { decision, bracket, probes });
        if let Some((i, why)) = failed {
            rounds.push(Round { decision: Decision::Done(Outcome::Failed(i, why)), bracket: self::bracket(&known), probes: vec![] });
            return rounds;
        }
        if !all {
            return rounds;
        }
    }
}

/// Probe jobs per cell: the most and the mean over the `n + 1` monotone threshold positions
/// (each simulated with the engine; answers flip the expected way, yes-below by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub worst: usize,
    pub expected: f64,
}

/// Simulates the search on every monotone answer pattern.
pub fn counts(s: &Settings) -> Counts {
    let dir = s.expect.unwrap_or(Direction::YesBelow);
    let runs: Vec<usize> = (0..=s.n)
        .map(|t| {
            let answer = |i: usize| match dir {
                Direction::YesBelow => i < t,
                Direction::YesAbove => i >= t,
            };
            let rounds = replay(s, |i| Probe::Answered(if answer(i) { Answer::Yes } else { Answer::No }));
            rounds.iter().map(|r| r.probes.len()).sum()
        })
        .collect();
    Counts { worst: runs.iter().copied().max().unwrap_or(0), expected: runs.iter().sum::<usize>() as f64 / runs.len() as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(n: usize, budget: usize, per_round: usize, expect: Option<Direction>) -> Settings {
        Settings { n, expect, budget, per_round }
    }

    /// Runs a cell to the end on a synthetic verdict; the outcome and the probes used, in order.
    fn run(s: &Settings, verdict: impl Fn(usize) -> Answer) -> (Outcome, Vec<usize>) {
        let mut asked = Vec::new();
        let rounds = replay(s, |i| {
            asked.push(i);
            Probe::Answered(verdict(i))
        });
        match rounds.last().map(|r| &r.decision) {
            Some(Decision::Done(o)) => (o.clone(), asked),
            other => panic!("not finished: {other:?}"),
        }
    }

    fn yn(b: bool) -> Answer {
        if b {
            Answer::Yes
        } else {
            Answer::No
        }
    }

    #[test]
    fn bisection_brackets_a_monotone_threshold_either_way() {
        let s = settings(8, usize::MAX, 1, None);
        for t in 1..8 {
            let (o, asked) = run(&s, |i| yn(i < t));
            assert_eq!(o, Outcome::Bracket(t - 1, t), "threshold {t}");
            assert!(asked.len() <= 2 + 3, "threshold {t}: {asked:?}");
            let (o, _) = run(&s, |i| yn(i >= t));
            assert_eq!(o, Outcome::Bracket(t - 1, t));
        }
        let (_, asked) = run(&s, |i| yn(i < 3));
        assert_eq!(asked, vec![0, 7, 3, 1, 2]);
    }

    #[test]
    fn all_yes_and_all_no_stop_after_the_ends() {
        let s = settings(6, usize::MAX, 1, Some(Direction::YesBelow));
        assert_eq!(run(&s, |_| Answer::Yes), (Outcome::AllYes, vec![0, 5]));
        assert_eq!(run(&s, |_| Answer::No), (Outcome::AllNo, vec![0, 5]));
    }

    #[test]
    fn non_monotone_answers_are_reported() {
        // Bisection probes only inside the bracket, so it sees a second flip only through
        // k-section (or `expect`): yes, no, yes, no in one round.
        let s = settings(5, usize::MAX, 3, None);
        let (o, _) = run(&s, |i| yn(i == 0 || i == 2));
        assert_eq!(o, Outcome::NonMonotone(vec![(0, true), (1, false), (2, true), (3, false), (4, false)]));
        // One flip against `expect`.
        let s = settings(5, usize::MAX, 1, Some(Direction::YesBelow));
        let (o, asked) = run(&s, |i| yn(i >= 2));
        assert_eq!(o, Outcome::NonMonotone(vec![(0, false), (4, true)]));
        assert_eq!(asked, vec![0, 4]);
    }

    #[test]
    fn budget_exhausted_gives_the_bracket_so_far() {
        let s = settings(17, 3, 1, None);
        let (o, asked) = run(&s, |i| yn(i < 5));
        assert_eq!(o, Outcome::BudgetExhausted(0, 8));
        assert_eq!(asked.len(), 3);
    }

    #[test]
    fn undecided_stops_the_cell_at_that_value() {
        let s = settings(9, usize::MAX, 1, None);
        let (o, _) = run(&s, |i| if i == 4 { Answer::Undecided("nan".into()) } else { yn(i < 6) });
        assert_eq!(o, Outcome::Undecided(4, "nan".into()));
    }

    #[test]
    fn k_section_probes_several_values_per_round() {
        let s = settings(16, usize::MAX, 3, None);
        let rounds = replay(&s, |i| Probe::Answered(yn(i < 10)));
        assert_eq!(rounds[1].decision, Decision::Probe(vec![3, 7, 11]));
        assert_eq!(rounds.last().map(|r| &r.decision), Some(&Decision::Done(Outcome::Bracket(9, 10))));
        assert!(rounds.len() <= 4);
    }

    #[test]
    fn replay_stops_at_the_first_unanswered_round_and_at_failures() {
        let s = settings(9, usize::MAX, 1, None);
        let rounds = replay(&s, |i| if i == 4 { Probe::Pending } else { Probe::Answered(yn(i < 2)) });
        assert_eq!(rounds.len(), 2);
        assert_eq!(rounds[1].decision, Decision::Probe(vec![4]));
        assert_eq!(rounds[1].bracket, Some((0, 8)));
        let rounds = replay(&s, |i| if i == 4 { Probe::Failed("oom".into()) } else { Probe::Answered(yn(i < 2)) });
        assert_eq!(rounds.last().map(|r| &r.decision), Some(&Decision::Done(Outcome::Failed(4, "oom".into()))));
    }

    #[test]
    fn counts_are_exact_over_every_threshold() {
        // 2 values: both ends always, nothing else.
        assert_eq!(counts(&settings(2, usize::MAX, 1, None)), Counts { worst: 2, expected: 2.0 });
        // 5 values: thresholds 0 and 5 cost the 2 ends; 1..4 bisect [0, 4] in 2 more.
        let c = counts(&settings(5, usize::MAX, 1, None));
        assert_eq!(c.worst, 4);
        assert!((c.expected - 20.0 / 6.0).abs() < 1e-9, "{c:?}");
        let spec: SearchSpec = serde_json::from_value(serde_json::json!({
            "key": "train.seq_len", "range": {"from": 64, "to": 4096, "factor": 2}, "criterion": {"test": "collapsed"}
        }))
        .unwrap();
        let values = spec.values().unwrap();
        assert_eq!(values.len(), 7);
        assert_eq!(spec.settings(values.len()).unwrap().budget, counts(&settings(7, usize::MAX, 1, None)).worst);
    }

    #[test]
    fn bad_values_are_refused() {
        let mk = |v: serde_json::Value| -> SearchSpec {
            serde_json::from_value(serde_json::json!({"key": "train.seq_len", "values": v, "criterion": {"test": "collapsed"}})).unwrap()
        };
        assert!(mk(serde_json::json!([64, 64])).values().unwrap_err().1.contains("strictly ascending"));
        assert!(mk(serde_json::json!([64, "a"])).values().unwrap_err().1.contains("numbers"));
        assert!(mk(serde_json::json!([64])).values().unwrap_err().1.contains("2 to"));
        let mut s = mk(serde_json::json!([1, 2, 3]));
        s.budget = Some(1);
        assert!(s.settings(3).unwrap_err().1.contains("budget"));
    }
}
