//! The exports researchers load elsewhere (issue 24): the pandas and DuckDB examples of
//! docs/results-schema.md run as written, against the version-1 dump of tests/fixtures/ (so an
//! old dump imports too): each example's `# stuffed ...` lines are run with `--db`, then its
//! Python with the project's .venv. Without a .venv holding pandas, pyarrow and duckdb (`make
//! test-deps` installs them) the test says SKIPPED and why; under CI it fails instead.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok, repo, stuffed, text};

/// The `<!-- example: NAME -->` code blocks of the document: (name, code).
fn examples(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in doc.split("<!-- example: ").skip(1) {
        let Some((name, rest)) = part.split_once(" -->") else { continue };
        let code = rest.split_once("```python\n").and_then(|(_, c)| c.split_once("```")).map(|(c, _)| c.to_string());
        out.push((name.to_string(), code.unwrap_or_else(|| panic!("example {name}: no ```python block after its marker"))));
    }
    out
}

/// The project's Python with pandas, pyarrow and duckdb, or why there is none.
fn python() -> Result<PathBuf, String> {
    let py = repo().join(".venv/bin/python");
    if !py.exists() {
        return Err(format!("{} does not exist (make test-deps creates it)", py.display()));
    }
    let o = Command::new(&py).args(["-c", "import pandas, pyarrow, duckdb"]).output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("{} lacks pandas, pyarrow or duckdb (make test-deps installs them): {}", py.display(), text(&o).trim()));
    }
    Ok(py)
}

#[test]
fn the_pandas_and_duckdb_examples_of_the_schema_doc_run() {
    let py = match python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("CI").is_some() => panic!("under CI the Python examples must run: {why}"),
        Err(why) => {
            println!("SKIPPED: the pandas and DuckDB examples of docs/results-schema.md: {why}");
            return;
        }
    };
    let doc = std::fs::read_to_string(repo().join("docs/results-schema.md")).unwrap();
    let found = examples(&doc);
    assert_eq!(found.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["pandas", "duckdb"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = repo().join("tests/fixtures/dump-v1.json");
    ok(d, &["results", "import", "--db", "r.db", fixture.to_str().unwrap()]);
    for (name, code) in &found {
        for line in code.lines().filter_map(|l| l.trim().strip_prefix("# stuffed ")) {
            let mut args: Vec<&str> = line.split_whitespace().collect();
            args.extend(["--db", "r.db"]);
            ok(d, &args);
        }
        let o = Command::new(&py).args(["-c", code]).current_dir(d).output().unwrap();
        let out = text(&o);
        assert!(o.status.success(), "example {name} failed:\n{code}\n{out}");
        // What the fixture holds: its two jobs, the passkey grid's lengths and the ratio column.
        let want: &[&str] = match name.as_str() {
            "pandas" => &["repro-forget", "d_state=8 seq_len=2048", "32768", "0.9"],
            _ => &["ratio", "d_state=8 seq_len=2048"],
        };
        for w in want {
            assert!(out.contains(w), "example {name} printed no {w:?}:\n{out}");
        }
    }
}

#[test]
fn parquet_is_refused_for_formats_it_cannot_hold_and_long_exports_filter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = repo().join("tests/fixtures/dump-v1.json");
    ok(d, &["results", "import", "--db", "r.db", fixture.to_str().unwrap()]);
    let o = stuffed(d, &["results", "export", "--db", "r.db", "--format", "dump", "--out", "x.parquet"]);
    assert!(!o.status.success() && text(&o).contains("Parquet holds the csv, long and long-evals formats"), "{}", text(&o));
    assert!(!Path::new(&d.join("x.parquet")).exists());
    let all = ok(d, &["results", "export", "--db", "r.db", "--format", "long-evals"]);
    let recall = ok(d, &["results", "export", "--db", "r.db", "--format", "long-evals", "--sweep", "repro-recall"]);
    assert!(recall.lines().count() > 1 && recall.lines().count() < all.lines().count());
    assert!(recall.lines().skip(1).all(|l| l.contains(",repro-recall,")), "{recall}");
}
