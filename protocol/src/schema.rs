//! The field reference of docs/results-schema.md, generated from the types: every event kind,
//! every evaluation result and the job row, with the fields their JSON carries. A test holds the
//! document to it (`STUFFED_BLESS=1 cargo test -p stuffed-protocol` rewrites it).
use serde::Serialize;
use serde_json::Value;

use crate::eval::*;
use crate::event::{Done, DoneStatus, Event};
use crate::{FailureKind, JobRecord};

/// Where the generated section starts and ends in the document.
pub const BEGIN: &str = "<!-- BEGIN GENERATED: field reference (stuffed-protocol schema.rs) -->";
pub const END: &str = "<!-- END GENERATED -->";

fn sample_events() -> Vec<Event> {
    let done = Done {
        status: DoneStatus::Completed,
        exit_code: 0,
        error: None,
        failure: Some(FailureKind::Oom),
        steps: Some(0),
        tokens: Some(0),
        final_loss: Some(0.0),
        val_loss: Some(0.0),
        wall_s: Some(0.0),
        early_stop: Some(0),
    };
    let s = || String::new();
    vec![
        Event::Start { total_steps: 0, batch: 0, seq_len: 0, params: 0, state_size: 0, device: s(), precision: s(), ssd: Some(s()) },
        Event::Resume { step: 0, tokens: 0, total_steps: 0, ssd: Some(s()) },
        Event::Train { step: 0, tokens: 0, loss: 0.0, lr: 0.0, grad_norm: 0.0, tokens_per_s: 0.0, mem_gb: 0.0 },
        Event::Val { step: 0, loss: 0.0, tokens: 0 },
        Event::Checkpoint { step: 0, tokens: 0, path: s() },
        Event::Interrupted { step: 0, checkpoint: s() },
        Event::Diverged { step: 0, loss: 0.0, grad_norm: 0.0 },
        Event::Eval { eval_index: 0, step: 0, tokens: Some(0), result: EvalResult::Loss(LossResult::default()) },
        Event::EarlyStop { step: 0, tokens: 0, criterion: s(), answer: crate::criterion::Answer::Yes },
        Event::Done(done),
    ]
}

/// One search decision of every kind (the match keeps the list complete).
fn sample_decisions() -> Vec<crate::SearchDecision> {
    use crate::SearchDecision as D;
    let all = vec![
        D::Probe { values: vec![] },
        D::Bracket { lo: Value::Null, hi: Value::Null },
        D::AllYes,
        D::AllNo,
        D::NonMonotone { answers: vec![] },
        D::Undecided { at: Value::Null, why: String::new() },
        D::BudgetExhausted { lo: Value::Null, hi: Value::Null },
        D::Failed { at: Value::Null, why: String::new() },
    ];
    for d in &all {
        match d {
            D::Probe { .. } | D::Bracket { .. } | D::AllYes | D::AllNo | D::NonMonotone { .. } => {}
            D::Undecided { .. } | D::BudgetExhausted { .. } | D::Failed { .. } => {}
        }
    }
    all
}

fn keys<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v).expect("serializes") {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn row(name: &str, fields: &[String]) -> String {
    let f: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
    format!("| `{name}` | {} |\n", f.join(", "))
}

/// The generated section, markers included.
pub fn field_reference() -> String {
    let mut out = format!("{BEGIN}\n");
    out.push_str("\n### Event kinds (`events.jsonl`; every line also has `seq`, `time` and `format`)\n\n| kind | fields |\n|---|---|\n");
    for e in sample_events() {
        let fields: Vec<String> = keys(&e).into_iter().filter(|k| k != "kind").collect();
        out.push_str(&row(e.name(), &fields));
    }
    out.push_str("\n### Evaluation results (`evals.result`; every one also has `kind`)\n\n| object | fields |\n|---|---|\n");
    let search =
        LengthSearch { outcome: SearchOutcome::Bracketed, last_pass: Some(0), first_fail: Some(0), probes: Vec::new(), monotone: true };
    let passkey = PasskeyResult { t_recall: Some(0), search: Some(search.clone()), ..Default::default() };
    let range = SearchRange { range: [0, 0], resolution: 0 };
    let passkey_params = PasskeyParams { search: Some(range), ..Default::default() };
    let states = StatesResult { histogram: Some(StateHistogram::default()), ..Default::default() };
    let loss = LossResult { collapse: Some(Collapse::default()), mean_loss: Some(0.0), ..Default::default() };
    let loss_params = LossParams { path: Some(String::new()), device: Some(String::new()), ..Default::default() };
    for (name, fields) in [
        ("loss", keys(&loss)),
        ("loss.params", keys(&loss_params)),
        ("loss.buckets[]", keys(&Bucket { start: 0, end: 0, loss: 0.0 })),
        ("loss.collapse", keys(&Collapse::default())),
        ("passkey", keys(&passkey)),
        ("passkey.params", keys(&passkey_params)),
        ("passkey.params.search", keys(&range)),
        ("passkey.cells[]", keys(&PasskeyCell { len: 0, depth: 0.0, accuracy: 0.0, n: 0 })),
        ("passkey.search", keys(&search)),
        ("passkey.search.probes[]", keys(&SearchProbe { len: 0, accuracy: 0.0, recalled: false })),
        ("states", keys(&states)),
        ("states.params", keys(&StatesParams::default())),
        ("states.layers[].heads[]", keys(&HeadStates::default())),
        ("states.histogram", keys(&StateHistogram::default())),
    ] {
        out.push_str(&row(name, &fields));
    }
    out.push_str("\n### Job rows (`results export --format dump`, the reports' input)\n\n| object | fields |\n|---|---|\n");
    out.push_str(&row("job", &keys(&JobRecord::default())));
    out.push_str(&row("job.model", &keys(&crate::ModelDims::default())));
    let step = crate::SearchStep {
        sweep: String::new(),
        cell: String::new(),
        round: 0,
        probe: 0,
        value: Value::Null,
        job_id: None,
        answer: None,
        decision: crate::SearchDecision::AllYes,
        lo: None,
        hi: None,
    };
    out.push_str(&row("search_steps[]", &keys(&step)));
    out.push_str(&format!(
        "\nSearch decisions (`search_steps[].decision.decision`): {}.\n",
        sample_decisions()
            .iter()
            .map(|d| format!("`{}`", serde_json::to_value(d).expect("serializes")["decision"].as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(&format!(
        "\nFailure kinds (`done.failure`, `attempts.error_class`): {}.\n",
        FailureKind::ALL.map(|k| format!("`{}`", k.as_str())).join(", ")
    ));
    out.push_str(&format!("\n{END}\n"));
    out
}
