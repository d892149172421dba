//! The report's adaptive-search section: per sweep and cell, how its search ended (the
//! bracket of the searched key, or why not) and the probes it took.
use stuffed_protocol::SearchStep;

use super::Analysis;

/// One row per searched cell: sweep, cell, outcome, probes run, rounds.
pub(super) fn rows(a: &Analysis) -> Vec<[String; 5]> {
    let steps: &[SearchStep] = &a.data.search_steps;
    let mut cells: Vec<(&str, &str)> = Vec::new();
    for s in steps {
        if !cells.contains(&(s.sweep.as_str(), s.cell.as_str())) {
            cells.push((&s.sweep, &s.cell));
        }
    }
    cells
        .into_iter()
        .map(|(sweep, cell)| {
            let of: Vec<&SearchStep> = steps.iter().filter(|s| s.sweep == sweep && s.cell == cell).collect();
            let last = of.iter().max_by_key(|s| (s.round, s.probe));
            let outcome = match last.map(|s| &s.decision) {
                Some(d) if d.is_done() => d.describe(),
                Some(d) => format!("unfinished ({})", d.describe()),
                None => "-".into(),
            };
            let probes = of.iter().filter(|s| s.probe >= 0).count();
            let rounds = last.map_or(0, |s| s.round + 1);
            [
                sweep.to_string(),
                if cell.is_empty() { "(all)".into() } else { cell.to_string() },
                outcome,
                probes.to_string(),
                rounds.to_string(),
            ]
        })
        .collect()
}
