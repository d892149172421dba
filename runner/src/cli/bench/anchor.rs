//! The same-run anchor of `stuffed bench suite --anchor`: mamba_ssm's Triton Mamba-2 trained
//! (or run forward) on the suite's shapes by a Python given on the command line, in this
//! invocation, so that a ratio never compares figures from two days. The script
//! (scripts/bench/mamba_ssm_anchor.py) is built into the binary and run with `python -c`; it
//! reads the cases as JSON on stdin and answers one JSON line per case and repeat.
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::{Deserialize, Serialize};

const SCRIPT: &str = include_str!("../../../../scripts/bench/mamba_ssm_anchor.py");

/// Longest line read from the anchor (a JSON record is a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct AnchorArgs {
    /// Run mamba_ssm's Triton model on every case's shape in this invocation (needs
    /// --anchor-src and a Python with torch and triton): the record's ratios are then same-run.
    #[arg(long, requires = "anchor_src")]
    anchor: bool,
    /// The Python that runs the anchor.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    anchor_python: PathBuf,
    /// The directory holding the `mamba_ssm` package (github state-spaces/mamba, with
    /// `mamba_ssm/__init__.py` reduced to a version line so its CUDA extension is not imported).
    #[arg(long, value_name = "DIR")]
    anchor_src: Option<PathBuf>,
    /// More import directories for the anchor (e.g. where einops was installed), repeatable.
    #[arg(long, value_name = "DIR")]
    anchor_pythonpath: Vec<PathBuf>,
    /// Runs of each case in the anchor's process; its figure is the best (Triton autotunes on
    /// first use).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    anchor_repeats: u32,
    /// Separate anchor processes, one after the other (each autotunes Triton anew): on the H200
    /// the anchor's best moved by up to 30% between two invocations, on two machines, while the
    /// repeats within one agreed within 2-15% (results/bench, 3 December); whether processes on
    /// one machine differ as much is what this measures. The record keeps each process's best.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    anchor_processes: u32,
}

impl AnchorArgs {
    pub fn enabled(&self) -> bool {
        self.anchor
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorKind {
    Train,
    Eval,
}

/// One shape for the anchor, in the script's keys.
#[derive(Debug, Serialize)]
pub struct AnchorCase {
    name: &'static str,
    kind: AnchorKind,
    d_model: i64,
    n_layer: i64,
    vocab: i64,
    d_state: i64,
    headdim: i64,
    chunk: i64,
    batch: i64,
    seq: i64,
    steps: i64,
    warmup: i64,
}

impl AnchorCase {
    pub fn new(
        name: &'static str,
        kind: AnchorKind,
        cfg: &stuffed_model::MambaConfig,
        batch: i64,
        seq: i64,
        steps: i64,
        warmup: i64,
    ) -> AnchorCase {
        AnchorCase {
            name,
            kind,
            d_model: cfg.d_model,
            n_layer: cfg.n_layer,
            vocab: cfg.padded_vocab(),
            d_state: cfg.d_state(),
            headdim: cfg.headdim(),
            chunk: cfg.ssm_cfg.chunk_size,
            batch,
            seq,
            steps,
            warmup: warmup.max(1),
        }
    }
}

/// One line of the script's answer.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(skip)]
    process: u32,
    name: String,
    tokens_per_s: Option<f64>,
    step_ms: Option<f64>,
    peak_memory_gb: Option<f64>,
    params: Option<i64>,
    error: Option<String>,
}

/// What the anchor reached on one case: the best repeat, and every repeat.
#[derive(Debug, Clone, Serialize)]
pub struct AnchorResult {
    pub what: String,
    pub kind: AnchorKind,
    pub batch: i64,
    pub seq: i64,
    pub tokens_per_s: Option<f64>,
    pub step_ms: Option<f64>,
    pub peak_memory_gb: Option<f64>,
    pub params: Option<i64>,
    /// tokens/s of each repeat, in order (process by process).
    pub repeats: Vec<f64>,
    /// The best tokens/s of each anchor process that measured the case, in order.
    pub processes: Vec<f64>,
    pub error: Option<String>,
}

/// The anchor's answers: the versions it ran (`meta`) and a result per case.
pub struct Anchors {
    pub meta: serde_json::Value,
    by_case: BTreeMap<String, AnchorResult>,
}

impl Anchors {
    pub fn get(&self, case: &str) -> Option<&AnchorResult> {
        self.by_case.get(case)
    }
}

/// Runs the anchor on `cases` in `--anchor-processes` processes, printing each case as it ends.
pub fn run(args: &AnchorArgs, cases: &[AnchorCase]) -> anyhow::Result<Anchors> {
    let src = args.anchor_src.as_ref().context("--anchor needs --anchor-src DIR")?;
    anyhow::ensure!(
        src.join("mamba_ssm").join("__init__.py").is_file(),
        "--anchor-src {}: expected a directory holding mamba_ssm/__init__.py",
        src.display()
    );
    println!(
        "== anchor: mamba_ssm (Triton) on {} case(s), {} repeat(s) each in {} process(es), via {}",
        cases.len(),
        args.anchor_repeats,
        args.anchor_processes,
        args.anchor_python.display()
    );
    let mut meta = serde_json::Value::Null;
    let mut lines: Vec<Line> = Vec::new();
    for process in 0..args.anchor_processes {
        let (m, mut ls) = run_process(args, src, cases, process)?;
        if !m.is_null() {
            meta = m;
        }
        lines.append(&mut ls);
    }
    let what = format!(
        "mamba_ssm {} Triton SSD, torch {}, same run",
        meta["mamba_ssm"].as_str().unwrap_or("?"),
        meta["torch"].as_str().unwrap_or("?")
    );
    let mut by_case = BTreeMap::new();
    for case in cases {
        let mine: Vec<&Line> = lines.iter().filter(|l| l.name == case.name).collect();
        let best = mine
            .iter()
            .filter(|l| l.tokens_per_s.is_some())
            .max_by(|a, b| a.tokens_per_s.partial_cmp(&b.tokens_per_s).unwrap_or(std::cmp::Ordering::Equal));
        by_case.insert(
            case.name.to_string(),
            AnchorResult {
                what: what.clone(),
                kind: case.kind,
                batch: case.batch,
                seq: case.seq,
                tokens_per_s: best.and_then(|l| l.tokens_per_s),
                step_ms: best.and_then(|l| l.step_ms),
                peak_memory_gb: best.and_then(|l| l.peak_memory_gb),
                params: best.and_then(|l| l.params),
                repeats: mine.iter().filter_map(|l| l.tokens_per_s).collect(),
                processes: (0..args.anchor_processes)
                    .filter_map(|p| mine.iter().filter(|l| l.process == p).filter_map(|l| l.tokens_per_s).reduce(f64::max))
                    .collect(),
                error: if best.is_none() { mine.iter().find_map(|l| l.error.clone()).or(Some("no answer".into())) } else { None },
            },
        );
    }
    Ok(Anchors { meta, by_case })
}

/// One anchor process: its meta record and its lines (tagged with `process`).
fn run_process(
    args: &AnchorArgs,
    src: &std::path::Path,
    cases: &[AnchorCase],
    process: u32,
) -> anyhow::Result<(serde_json::Value, Vec<Line>)> {
    let mut cmd = Command::new(&args.anchor_python);
    cmd.arg("-c").arg(SCRIPT).arg("--src").arg(src).arg("--repeats").arg(args.anchor_repeats.to_string());
    for p in &args.anchor_pythonpath {
        cmd.arg("--pythonpath").arg(p);
    }
    if args.anchor_processes > 1 {
        println!("  anchor process {} of {}", process + 1, args.anchor_processes);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("--anchor-python {}: cannot start it", args.anchor_python.display()))?;
    let input = serde_json::to_vec(cases)?;
    child.stdin.take().context("anchor stdin")?.write_all(&input).context("writing the cases to the anchor")?;
    let stdout = child.stdout.take().context("anchor stdout")?;
    let mut meta = serde_json::Value::Null;
    let mut lines: Vec<Line> = Vec::new();
    let mut reader = std::io::BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).context("reading the anchor's output")?;
        if n == 0 {
            break;
        }
        anyhow::ensure!(buf.len() <= MAX_LINE, "the anchor wrote a line longer than {MAX_LINE} bytes");
        let text = String::from_utf8_lossy(&buf);
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
            println!("  anchor: {}", text.trim());
            continue;
        };
        if let Some(m) = value.get("meta") {
            meta = m.clone();
            continue;
        }
        let mut line: Line = serde_json::from_value(value).context("an anchor record")?;
        line.process = process;
        match (&line.tokens_per_s, &line.error) {
            (Some(t), _) => println!("  anchor [{}]: {:.0} tokens/s", line.name, t),
            (None, Some(e)) => println!("  anchor [{}]: failed: {e}", line.name),
            _ => {}
        }
        lines.push(line);
    }
    let status = child.wait().context("waiting for the anchor")?;
    anyhow::ensure!(status.success() || !lines.is_empty(), "the anchor failed ({status}) before measuring anything");
    Ok((meta, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several anchor processes: each answers in its own process (a stand-in "python" that
    /// ignores the script, reads the cases and answers from a counter file, so that each process
    /// reports other figures); the result keeps every repeat and each process's best, and the
    /// best of all of them is the case's figure.
    #[cfg(unix)]
    #[test]
    fn processes_are_run_apart_and_kept_apart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/mamba_ssm")).unwrap();
        std::fs::write(dir.path().join("src/mamba_ssm/__init__.py"), "__version__ = \"0\"\n").unwrap();
        let fake = dir.path().join("python");
        let counter = dir.path().join("n");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\ncat > /dev/null\nn=$(cat {c} 2>/dev/null || echo 0)\necho $((n + 1)) > {c}\n\
                 echo '{{\"meta\": {{\"mamba_ssm\": \"0\", \"torch\": \"0\"}}}}'\n\
                 echo 'a line that is not JSON'\n\
                 echo \"{{\\\"name\\\": \\\"train-tiny\\\", \\\"tokens_per_s\\\": $((100 + 10 * n))}}\"\n\
                 echo \"{{\\\"name\\\": \\\"train-tiny\\\", \\\"tokens_per_s\\\": $((105 + 10 * n))}}\"\n",
                c = counter.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let args = AnchorArgs {
            anchor: true,
            anchor_python: fake,
            anchor_src: Some(dir.path().join("src")),
            anchor_pythonpath: Vec::new(),
            anchor_repeats: 2,
            anchor_processes: 3,
        };
        let cfg = stuffed_model::MambaConfig::preset("tiny").unwrap();
        let cases = [AnchorCase::new("train-tiny", AnchorKind::Train, &cfg, 2, 64, 1, 1)];
        let anchors = run(&args, &cases).unwrap();
        let r = anchors.get("train-tiny").unwrap();
        assert_eq!(r.repeats, vec![100.0, 105.0, 110.0, 115.0, 120.0, 125.0]);
        assert_eq!(r.processes, vec![105.0, 115.0, 125.0]);
        assert_eq!(r.tokens_per_s, Some(125.0));
        assert!(r.error.is_none());
        assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    }
}
