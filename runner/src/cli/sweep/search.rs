//! `stuffed sweep run` on a sweep with a `search:` block: rounds of probes. Each round replays
//! every cell's search from the database (answers of completed probes), records the steps,
//! registers the probes still to run and runs them all together on the local controller; until
//! every cell is done. The state lives in the database alone, so a controller killed mid-round
//! resumes with the same decisions and job ids, and completed probes are never rerun.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Value};
use stuffed_model::protocol::criterion::Answer;
use stuffed_model::protocol::{JobStatus, SearchStep};

use super::{add_planned, register, Planned};
use crate::cli::common::{print_rows, TableFormat};
use crate::sched::local::{Controller, Options, Summary};
use crate::sched::PlannedJob;
use crate::store::Db;
use crate::sweep::search::{counts, replay, Decision, Probe, Round};
use crate::sweep::{LoadedSearch, LoadedSweep};

/// One cell: the label of the other varied keys and its probes' jobs, by value index.
pub struct Cell<'a> {
    pub label: String,
    pub jobs: &'a [Planned],
}

/// The cells of a search sweep: the searched key is the expansion's last axis, so each run of
/// `n` consecutive jobs is a cell (its label: the job label less the searched key's part).
pub fn cells<'a>(search: &LoadedSearch, planned: &'a [Planned]) -> Vec<Cell<'a>> {
    planned
        .chunks(search.values.len())
        .map(|jobs| {
            let label = jobs[0].0.label.rsplit_once(' ').map_or(String::new(), |(cell, _)| cell.to_string());
            Cell { label, jobs }
        })
        .collect()
}

/// The answer a completed job gives to the search's criterion: read from its final evaluation
/// of the index the criterion resolves to. An evaluation that is missing or cannot answer is
/// an undecided answer with the reason.
async fn answer(db: &Db, search: &LoadedSearch, job: &PlannedJob) -> anyhow::Result<Answer> {
    let kinds: Vec<&str> = job.config.evals.iter().map(|e| e.kind()).collect();
    let index = match search.spec.criterion.resolve(&kinds) {
        Ok(i) => i as i64,
        Err(e) => return Ok(Answer::Undecided(e)),
    };
    let evals = db.evals(&job.id).await?;
    let last = evals.into_iter().filter(|e| e.eval_index == index).max_by_key(|e| e.step);
    Ok(match last {
        Some(e) => search.spec.criterion.answer(&e.result).unwrap_or_else(Answer::Undecided),
        None => Answer::Undecided(format!("no result of evaluation {index}")),
    })
}

/// What the database knows of each probe of a cell: answers of completed jobs; failures of
/// the jobs in `failed` (those that ended without completing in this run); pending otherwise.
async fn probes(db: &Db, search: &LoadedSearch, cell: &Cell<'_>, failed: &HashSet<String>) -> anyhow::Result<Vec<Probe>> {
    let mut out = Vec::with_capacity(cell.jobs.len());
    for (job, _) in cell.jobs {
        let row = db.job(&job.id).await.ok();
        out.push(match row {
            Some(r) if r.status == JobStatus::Completed => Probe::Answered(answer(db, search, job).await?),
            Some(r) if failed.contains(&job.id) => {
                Probe::Failed(format!("{}{}", r.status.as_str(), r.error.map(|e| format!(": {e}")).unwrap_or_default()))
            }
            _ => Probe::Pending,
        });
    }
    Ok(out)
}

fn answer_text(a: &Answer) -> String {
    match a {
        Answer::Undecided(why) => format!("undecided: {why}"),
        a => a.word().to_string(),
    }
}

/// A cell's replayed rounds as the rows of `search_steps`.
fn steps(sweep: &str, search: &LoadedSearch, cell: &Cell<'_>, rounds: &[Round]) -> Vec<SearchStep> {
    let v = |i: usize| search.values.get(i).cloned().unwrap_or(Value::Null);
    let mut out = Vec::new();
    for (r, round) in rounds.iter().enumerate() {
        let decision = round.decision.in_values(&search.values);
        let (lo, hi) = (round.bracket.map(|b| v(b.0)), round.bracket.map(|b| v(b.1)));
        let base = SearchStep {
            sweep: sweep.to_string(),
            cell: cell.label.clone(),
            round: r as i64,
            probe: -1,
            value: Value::Null,
            job_id: None,
            answer: None,
            decision,
            lo,
            hi,
        };
        if round.probes.is_empty() {
            out.push(base.clone());
        }
        for (i, p) in &round.probes {
            let answer = match p {
                Probe::Answered(a) => Some(answer_text(a)),
                Probe::Failed(why) => Some(format!("failed: {why}")),
                Probe::Pending => None,
            };
            let job_id = cell.jobs.get(*i).map(|(j, _)| j.id.clone());
            out.push(SearchStep { probe: *i as i64, value: v(*i), job_id, answer, ..base.clone() });
        }
    }
    out
}

/// Replays every cell, records its steps, and returns the probes (indices into `planned`) the
/// unfinished cells wait for.
async fn advance(db: &Db, loaded: &LoadedSweep, planned: &[Planned], failed: &HashSet<String>) -> anyhow::Result<Vec<usize>> {
    let Some(search) = &loaded.search else { return Ok(vec![]) };
    let n = search.values.len();
    let mut next = Vec::new();
    for (c, cell) in cells(search, planned).iter().enumerate() {
        let known = probes(db, search, cell, failed).await?;
        let rounds = replay(&search.settings, |i| known.get(i).cloned().unwrap_or(Probe::Pending));
        db.record_search_cell(loaded.name(), &cell.label, &steps(loaded.name(), search, cell, &rounds)).await?;
        // Every probe decided on belongs to the sweep, run here or answered by another sweep.
        for (i, _) in rounds.iter().flat_map(|r| &r.probes) {
            add_planned(db, loaded.name(), &cell.jobs[*i], c * n + i).await?;
        }
        if let Some(Round { decision: Decision::Probe(_), probes, .. }) = rounds.last() {
            next.extend(probes.iter().filter(|(_, p)| *p == Probe::Pending).map(|(i, _)| c * n + i));
        }
    }
    Ok(next)
}

/// Runs the search's rounds to the end (or a stop, a cancel, a failed round).
pub async fn run(
    db: &Db,
    loaded: &LoadedSweep,
    file: &std::path::Path,
    planned: &[Planned],
    opts: &Options,
    stop: &AtomicBool,
) -> anyhow::Result<Summary> {
    let name = loaded.name();
    register(db, loaded, file, "local", &[]).await?;
    let mut total = Summary::default();
    let mut failed: HashSet<String> = HashSet::new();
    // A GPU retired in one round stays out of the later ones.
    let mut opts = opts.clone();
    for round in 0.. {
        let next = advance(db, loaded, planned, &failed).await?;
        if next.is_empty() || db.is_cancelled(name).await? {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            // Stopped between rounds: cells are unfinished, as after an interrupted job.
            total.interrupted = total.interrupted.max(1);
            break;
        }
        let jobs: Vec<PlannedJob> = next.iter().map(|&i| planned[i].0.clone()).collect();
        eprintln!("sweep {name}: search round {round}: {} probe job(s)", jobs.len());
        let s = Controller::new(db, name, &jobs, &opts).run(stop).await?;
        opts.gpus.retain(|g| !s.gpus_retired.contains(&g.index));
        total.gpus_retired.extend(&s.gpus_retired);
        for j in &jobs {
            if db.job(&j.id).await?.status != JobStatus::Completed {
                failed.insert(j.id.clone());
            }
        }
        total.completed += s.completed;
        total.failed += s.failed;
        total.interrupted += s.interrupted;
        total.skipped += s.skipped;
        total.retried += s.retried;
        if s.interrupted > 0 {
            break;
        }
    }
    Ok(total)
}

/// The dry run's search summary as JSON (null without a search): the key, its values, the
/// criterion, cells, budget and the grid's, worst-case and expected job counts.
pub fn plan_json(loaded: &LoadedSweep, planned: &[Planned]) -> Value {
    let Some(search) = &loaded.search else { return Value::Null };
    let n = search.values.len();
    let cells = planned.len() / n.max(1);
    let c = counts(&search.settings);
    json!({"key": search.spec.key, "values": search.values, "criterion": search.spec.criterion.describe(), "cells": cells,
        "budget_per_cell": search.settings.budget, "per_round": search.settings.per_round, "jobs_full_grid": planned.len(),
        "jobs_worst_case": cells * c.worst.min(search.settings.budget), "jobs_expected": cells as f64 * c.expected})
}

/// `sweep status --format json` of a search sweep: its steps as stored (null without a search).
pub async fn status_json(db: &Db, name: &str) -> anyhow::Result<Value> {
    let steps = db.search_steps(name).await?;
    Ok(if steps.is_empty() { Value::Null } else { json!({"steps": steps}) })
}

/// The dry run's search summary: cells, the full grid, and the search's worst-case and
/// expected job counts (every monotone threshold position simulated with the engine).
pub fn print_plan(loaded: &LoadedSweep, planned: &[Planned]) {
    let Some(search) = &loaded.search else { return };
    let n = search.values.len();
    let cells = planned.len() / n.max(1);
    let c = counts(&search.settings);
    let values: Vec<String> = search.values.iter().map(Value::to_string).collect();
    println!(
        "\nsearch over {} = [{}] on `{}`: {cells} cell(s) of {n} values; budget {} probe(s) per cell, {} per round",
        search.spec.key,
        values.join(", "),
        search.spec.criterion.describe(),
        search.settings.budget,
        search.settings.per_round
    );
    let worst = cells * c.worst.min(search.settings.budget);
    let expected = cells as f64 * c.expected;
    println!(
        "jobs: full grid {}, search worst case {worst}, expected {expected:.1} ({:.0}% of the grid); the table above lists every possible probe",
        planned.len(),
        100.0 * expected / planned.len().max(1) as f64
    );
}

/// `sweep status NAME` on a search sweep: per cell its state, then its steps.
pub async fn print_status(db: &Db, name: &str) -> anyhow::Result<()> {
    let steps = db.search_steps(name).await?;
    if steps.is_empty() {
        return Ok(());
    }
    let mut by_cell: Vec<(&str, Vec<&SearchStep>)> = Vec::new();
    for s in &steps {
        match by_cell.iter_mut().find(|(c, _)| *c == s.cell) {
            Some((_, v)) => v.push(s),
            None => by_cell.push((&s.cell, vec![s])),
        }
    }
    println!("search:");
    for (cell, steps) in &by_cell {
        let last = steps.last().map(|s| &s.decision);
        let state = match last {
            Some(d) if d.is_done() => d.describe(),
            Some(d) => format!("running: {}", d.describe()),
            None => "-".into(),
        };
        println!("  {}: {state}", if cell.is_empty() { "(all)" } else { cell });
    }
    let header: Vec<String> = ["cell", "round", "value", "job", "answer", "decision", "bracket"].map(String::from).to_vec();
    let rows: Vec<Vec<Value>> = steps
        .iter()
        .map(|s| {
            let bracket = match (&s.lo, &s.hi) {
                (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
                _ => "-".into(),
            };
            vec![
                json!(s.cell),
                json!(s.round),
                s.value.clone(),
                json!(s.job_id.as_deref().map(|j| &j[..8.min(j.len())]).unwrap_or("-")),
                json!(s.answer.as_deref().unwrap_or("-")),
                json!(s.decision.describe()),
                json!(bracket),
            ]
        })
        .collect();
    print_rows(TableFormat::Table, &header, &rows)
}
