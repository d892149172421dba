//! Hostile inputs and trust boundaries (issue 25, docs/security.md), end to end through the
//! binary: an imported dump that names files outside the runs directory, sweep values that
//! would become shell lines, a stored pid of an unrelated process, devices and gzip bombs as
//! inputs, sizes that overflow, deep expressions, a full stdout, and the weaker ones. One test
//! per class; each runs on the CPU in seconds.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, stuffed, text};
use serde_json::{json, Value};

const ID: &str = "abcdef0123456789";

/// A dump of one completed job of sweep `name` whose recorded paths are `log`, `artifact`
/// and `run_dir` (a reproduction export holds another machine's absolute paths).
fn dump(name: &str, run_dir: &str, log: &str, artifacts: &[&str], backend: Value) -> Value {
    let spec = format!("name: {name}\nbase:\n  model: {{preset: tiny}}\n  train: {{seq_len: 64, batch_size: 2, steps: 3, lr: 0.01, device: cpu}}\nbackend: {backend}\n");
    json!({
        "format": "stuffed-results", "version": 1,
        "sweeps": [{"name": name, "description": "", "spec": spec, "source_path": null, "backend": "slurm", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "cancelled_at": null}],
        "jobs": [{"id": ID, "config": {"model": {"preset": "tiny"}}, "state_size": 1, "n_params": 1, "train_len": 64, "run_dir": run_dir, "status": "pending", "attempts": 1,
                  "error": null, "error_class": null, "step": 3, "total_steps": 3, "last_loss": 1.0, "tokens_per_s": null, "peak_mem_gb": null, "created_at": "2026-01-01T00:00:00Z", "finished_at": null}],
        "sweep_jobs": [{"sweep": name, "job_id": ID, "label": "x", "varied": {}, "position": 0}],
        "attempts": [{"id": 1, "job_id": ID, "number": 1, "backend": "local", "backend_id": null, "host": "gpu-host", "gpu": null, "gpu_name": null, "pid": 1,
                      "started_at": "2026-01-01T00:00:00Z", "ended_at": null, "status": "completed", "exit_code": 0, "error_class": null, "error": null, "log_path": log,
                      "git_commit": null, "git_dirty": null, "version": null, "libtorch": null, "seed": 0}],
        "metrics": [], "evals": [],
        "artifacts": artifacts.iter().map(|p| json!([ID, "checkpoint", p, 1])).collect::<Vec<_>>()
    })
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string(v).unwrap()).unwrap();
}

/// One HTTP/1.1 GET with the given extra header lines; (status, body).
fn http_get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let host =
        if headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) { String::new() } else { format!("Host: {addr}\r\n") };
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(s, "GET {path} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let t = String::from_utf8_lossy(&raw).into_owned();
    let status = t.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, t.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}

struct Serve(std::process::Child);

/// SIGTERM (so that `stuffed serve` removes its scratch directory), SIGKILL after 5 s.
impl Drop for Serve {
    fn drop(&mut self) {
        // Safety: kill(2) on the id of a child not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stuffed serve` on a free loopback port; its address.
fn serve(dir: &Path, args: &[&str]) -> (Serve, String) {
    let mut child = Command::new(common::bin())
        .arg("serve")
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("STUFFED_DB")
        .env_remove("STUFFED_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let guard = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        let n = out.read(&mut buf).unwrap_or(0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(rest) = seen.split("listening on http://").nth(1) {
            if let Some(addr) = rest.split('/').next().filter(|_| rest.contains('/')) {
                let addr = addr.to_string();
                std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
                return (guard, addr);
            }
        }
        if n == 0 {
            break;
        }
    }
    panic!("stuffed serve did not start: {seen}");
}

#[test]
fn an_imported_dump_never_makes_the_dashboard_serve_files_outside_the_runs_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("results/runs/mine/ckpt")).unwrap();
    std::fs::write(d.join("results/runs/mine/worker.log"), "our own log\n").unwrap();
    std::fs::write(d.join("results/runs/mine/ckpt/config.json"), "{}").unwrap();
    std::fs::write(d.join("secret.txt"), "root:secret-content").unwrap();
    std::os::unix::fs::symlink(d.join("secret.txt"), d.join("results/runs/mine/escape.log")).unwrap();
    let db = d.join("results/stuffed.db");
    let dbs = db.to_str().unwrap();
    let (secret, escape) = (d.join("secret.txt").display().to_string(), d.join("results/runs/mine/escape.log").display().to_string());
    let hostile = [
        ("../../../../etc/passwd", "/etc/shadow"),
        ("/etc", "../secret.txt"),
        (secret.as_str(), escape.as_str()),
        ("results/runs/../../secret.txt", "results/runs/mine/../../../secret.txt"),
    ];
    let mut bodies = Vec::new();
    for (i, (artifact, log)) in hostile.iter().enumerate() {
        let name = format!("evil{i}");
        let mut v = dump(&name, "/tmp/runs/x", log, &[artifact, "/no/such/dir"], json!("local"));
        let id = format!("{ID}{i}");
        let text = v.to_string().replace(ID, &id);
        v = serde_json::from_str(&text).unwrap();
        write_json(&d.join(format!("{name}.json")), &v);
        ok(d, &["results", "import", "--db", dbs, &format!("{name}.json")]);
        bodies.push(id);
    }
    // A job of ours, with a log and a checkpoint inside the runs directory.
    let mine = dump("mine", "results/runs/mine", "results/runs/mine/worker.log", &["results/runs/mine/ckpt"], json!("local"));
    let mine: Value = serde_json::from_str(&mine.to_string().replace(ID, "f00d")).unwrap();
    write_json(&d.join("mine.json"), &mine);
    ok(d, &["results", "import", "--db", dbs, "mine.json"]);

    let (_s, a) = serve(d, &["--db", dbs]);
    let (status, body) = http_get(&a, "/files/jobs/f00d/attempts/1/log", &[]);
    assert_eq!((status, body.as_str()), (200, "our own log\n"));
    let (status, body) = http_get(&a, "/files/jobs/f00d/artifacts/0", &[]);
    assert!(status == 200 && body.contains("config.json"), "{status} {body}");
    let mut answers = std::collections::BTreeSet::new();
    for id in &bodies {
        for p in [
            format!("/files/jobs/{id}/attempts/1/log"),
            format!("/files/jobs/{id}/artifacts/0"),
            format!("/files/jobs/{id}/artifacts/1"),
            format!("/files/jobs/{id}/artifacts/0/passwd"),
        ] {
            let (status, body) = http_get(&a, &p, &[]);
            assert_eq!(status, 404, "{p}: {body}");
            assert!(!body.contains("root:"), "{p} leaked a file: {body}");
            answers.insert(body);
        }
        let (_, body) = http_get(&a, &format!("/api/jobs/{id}/log"), &[]);
        assert!(!body.contains("root:") && body.contains("no such file in the runs directory"), "{body}");
    }
    assert_eq!(answers.len(), 1, "every refused file gets the same answer (nothing says what exists): {answers:?}");
}

#[test]
fn the_dashboard_token_and_host_checks_hold() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("t.db");
    common::empty_db(d, &db);
    let token = "0123456789abcdef-token";
    let (_s, a) = serve(d, &["--db", db.to_str().unwrap(), "--token", token]);
    assert_eq!(http_get(&a, "/api/sweeps", &[]).0, 401);
    assert_eq!(http_get(&a, "/api/sweeps", &["Authorization: Bearer wrong-token-0123456789"]).0, 401);
    assert_eq!(http_get(&a, "/api/sweeps", &[&format!("Authorization: Bearer {token}")]).0, 200);
    assert_eq!(http_get(&a, &format!("/api/sweeps?token={token}"), &[]).0, 200);
    assert_eq!(http_get(&a, "/api/sweeps", &[&format!("Cookie: stuffed_token={token}")]).0, 200);
    let auth = format!("Authorization: Bearer {token}");
    assert_eq!(http_get(&a, "/api/sweeps", &["Host: 127.0.0.1:evil.com", &auth]).0, 403);
    assert_eq!(http_get(&a, "/api/sweeps", &["Host: 127.0.0.1", "Host: evil.com", &auth]).0, 403);
    let o = stuffed(d, &["serve", "--db", db.to_str().unwrap(), "--token", "short", "--bind", "127.0.0.1:0"]);
    assert!(!o.status.success() && text(&o).contains("at least 16 characters"), "{}", text(&o));
}

#[test]
fn sweep_values_never_become_shell_lines_and_imported_specs_are_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = "base:\n  model: {preset: tiny}\n  train: {seq_len: 64, batch_size: 2, steps: 3, lr: 0.01, device: cpu}\n";
    for backend in [
        r#"{kind: slurm, partition: "gpu\necho pwned"}"#,
        r#"{kind: slurm, time: "1:00:00\nid"}"#,
        r#"{kind: slurm, extra_sbatch: ["--constraint=a\nid"]}"#,
        r#"{kind: slurm, extra_sbatch: ["--wrap=id"]}"#,
    ] {
        std::fs::write(d.join("s.yaml"), format!("name: s\n{base}backend: {backend}\n")).unwrap();
        let o = stuffed(d, &["sweep", "run", "s.yaml", "--dry-run", "--db", "x.db"]);
        assert!(!o.status.success() && text(&o).contains("backend"), "{backend}: {}", text(&o));
    }
    for name in [".", "..", ".hidden"] {
        std::fs::write(d.join("n.yaml"), format!("name: \"{name}\"\n{base}")).unwrap();
        let o = stuffed(d, &["sweep", "run", "n.yaml", "--dry-run", "--db", "x.db"]);
        assert!(!o.status.success() && text(&o).contains("not a valid sweep name"), "{name}: {}", text(&o));
    }
    // A stored spec from an import: `sweep sync` checks it like a sweep file.
    let db = d.join("i.db");
    let dbs = db.to_str().unwrap();
    write_json(&d.join("inj.json"), &dump("inj", "/tmp/runs/x", "/x.log", &[], json!({"kind": "slurm", "partition": "gpu\nid"})));
    ok(d, &["results", "import", "--db", dbs, "inj.json"]);
    let o = stuffed(d, &["sweep", "sync", "--db", dbs, "inj"]);
    assert!(!o.status.success() && text(&o).contains("control character"), "{}", text(&o));
    // A clean spec whose job's run directory lies elsewhere: nothing is created there.
    let outside = d.join("outside").join("feedf00d");
    let far = dump("far", outside.to_str().unwrap(), "/x.log", &[], json!({"kind": "slurm"}));
    let mut far: Value = serde_json::from_str(&far.to_string().replace(ID, "feedf00d")).unwrap();
    far["attempts"] = json!([]);
    write_json(&d.join("far.json"), &far);
    ok(d, &["results", "import", "--db", dbs, "far.json"]);
    std::fs::create_dir_all(d.join("results/runs")).unwrap();
    let o = stuffed(d, &["sweep", "sync", "--db", dbs, "far"]);
    assert!(!o.status.success() && text(&o).contains("refusing to write outside"), "{}", text(&o));
    assert!(!d.join("outside").exists(), "a directory was created outside the runs directory");
}

#[test]
fn sweep_cancel_never_signals_an_unrelated_process_with_the_stored_pid() {
    if std::fs::read_to_string("/proc/locks").is_err() {
        println!("SKIPPED: no /proc/locks here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let run_dir = d.join("results/runs").join(ID);
    std::fs::create_dir_all(&run_dir).unwrap();
    // The lock is held (by this test, as a live worker would), but not by the stored pid.
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(run_dir.join("lock")).unwrap();
    // Safety: flock on a descriptor owned by this test.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let mut v = dump("c", run_dir.to_str().unwrap(), "/x.log", &[], json!("local"));
    v["jobs"][0]["status"] = json!("running");
    v["attempts"][0]["status"] = json!("running");
    v["attempts"][0]["pid"] = json!(victim.id());
    v["attempts"][0]["host"] = Value::Null;
    write_json(&d.join("c.json"), &v);
    let dbs = d.join("c.db");
    ok(d, &["results", "import", "--db", dbs.to_str().unwrap(), "c.json"]);
    let out = ok(d, &["sweep", "cancel", "--db", dbs.to_str().unwrap(), "c"]);
    assert!(out.contains("asked 0 running worker(s)"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(matches!(victim.try_wait(), Ok(None)), "the unrelated process was signalled");
    let _ = victim.kill();
    let _ = victim.wait();
}

#[test]
fn devices_oversized_files_and_gzip_bombs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = Instant::now();
    std::fs::write(d.join("z.yaml"), "name: z\nbase: /dev/zero\n").unwrap();
    for args in [
        vec!["sweep", "run", "/dev/zero", "--dry-run", "--db", "x.db"],
        vec!["sweep", "run", "z.yaml", "--dry-run", "--db", "x.db"],
        vec!["train", "--config", "/dev/zero"],
        vec!["fit", "--csv", "/dev/zero", "--model", "linear", "--x", "a", "--y", "b"],
        vec!["results", "import", "--db", "x.db", "/dev/zero"],
    ] {
        let o = stuffed(d, &args);
        assert!(!o.status.success() && text(&o).contains("not a regular file"), "{args:?}: {}", text(&o));
    }
    // 64 MiB of zeros in a small gzip, against a 16 MiB limit.
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(d.join("bomb.json.gz")).unwrap(), flate2::Compression::best());
    gz.write_all(b"{\"format\": \"").unwrap();
    for _ in 0..64 {
        gz.write_all(&vec![b'0'; 1 << 20]).unwrap();
    }
    gz.finish().unwrap();
    let o = stuffed(d, &["results", "import", "--db", "x.db", "--max-bytes", "16777216", "bomb.json.gz"]);
    assert!(!o.status.success() && text(&o).contains("file too large"), "{}", text(&o));
    let big = d.join("big.yaml");
    std::fs::write(&big, "# padding\n".repeat(2 << 20)).unwrap();
    let o = stuffed(d, &["sweep", "run", big.to_str().unwrap(), "--dry-run", "--db", "x.db"]);
    assert!(!o.status.success() && text(&o).contains("file too large: 20971520 bytes, limit 16777216"), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(60), "refusals took {:?}", t.elapsed());
}

#[test]
fn sizes_that_overflow_deep_expressions_and_a_full_stdout_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base =
        "base:\n  model: {d_model: 64, n_layer: 2, headdim: 32}\n  train: {seq_len: 64, batch_size: 2, steps: 3, lr: 0.01, device: cpu}\n";
    let cases = [
        ("grid:\n  model.d_state: [9223372036854775807]\n", "larger than the limit"),
        ("grid:\n  model.d_model: [1000000000]\n", "larger than the limit"),
        ("grid:\n  model.n_layer: [100000000]\n", "larger than the limit"),
        ("evals:\n  - {kind: passkey, lengths: [1000000000000], depths: [0.5], n: 1}\n", "larger than the limit"),
        ("grid:\n  train.seq_len: [9223372036854775807]\n", "larger than the limit"),
        ("grid:\n  model.d_state: [null]\n", "null is not a value"),
        ("grid:\n  train.lr: [.nan]\n", "not a finite number"),
    ];
    for (extra, want) in cases {
        std::fs::write(d.join("o.yaml"), format!("name: o\n{base}{extra}")).unwrap();
        let o = stuffed(d, &["sweep", "run", "o.yaml", "--dry-run", "--db", "x.db"]);
        assert_eq!(o.status.code(), Some(1), "{extra}: {}", text(&o));
        assert!(text(&o).contains(want), "{extra}: {}", text(&o));
    }
    for expr in ["(".repeat(20_000) + "64" + &")".repeat(20_000), "-".repeat(100_000) + "64"] {
        std::fs::write(d.join("e.yaml"), format!("name: e\n{base}derived:\n  train.batch_size: \"{expr}\"\n")).unwrap();
        let o = stuffed(d, &["sweep", "run", "e.yaml", "--dry-run", "--db", "x.db"]);
        assert_eq!(o.status.code(), Some(1), "{}", &text(&o)[..text(&o).len().min(300)]);
    }
    let o = stuffed(d, &["passkey", "sample", "--len", "1000000000000"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("larger than the limit"), "{}", text(&o));
    if Path::new("/dev/full").exists() {
        common::empty_db(d, &d.join("x.db"));
        for args in [
            &["results", "export", "--db", "x.db", "--format", "dump"][..],
            &["results", "list", "--db", "x.db", "--format", "json"],
            &["sweep", "status", "--db", "x.db"],
        ] {
            let o = Command::new(common::bin())
                .args(args)
                .current_dir(d)
                .stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.code() != Some(101) && !o.status.success() && !err.contains("panicked"), "{args:?}: {:?} {err}", o.status);
        }
    } else {
        println!("SKIPPED the /dev/full part: no /dev/full here");
    }
}

#[test]
fn weaker_ones_filters_conflicts_and_files_that_are_not_configs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dbs = "w.db";
    write_json(&d.join("a.json"), &dump("a", "/tmp/runs/a", "/x.log", &[], json!("local")));
    ok(d, &["results", "import", "--db", dbs, "a.json"]);
    ok(d, &["results", "import", "--db", dbs, "a.json"]);
    let mut v = dump("a", "/tmp/runs/a", "/x.log", &[], json!("local"));
    v["jobs"][0]["last_loss"] = json!(9.0);
    write_json(&d.join("a2.json"), &v);
    let o = stuffed(d, &["results", "import", "--db", dbs, "a2.json"]);
    assert!(!o.status.success() && text(&o).contains("--replace"), "{}", text(&o));
    ok(d, &["results", "import", "--db", dbs, "--replace", "a2.json"]);
    let mut v = dump("b", "/tmp/runs/b", "/x.log", &[], json!("local"));
    v["jobs"] = json!([v["jobs"][0].clone(), v["jobs"][0].clone()]);
    write_json(&d.join("dup.json"), &v);
    let o = stuffed(d, &["results", "import", "--db", dbs, "dup.json"]);
    assert!(!o.status.success() && text(&o).contains("twice"), "{}", text(&o));
    for (w, want) in [
        ("statsu=completed", "did you mean 'status'"),
        ("status==completed", "did you mean `=`"),
        ("train.seq_len>=big", "compares numbers"),
    ] {
        let o = stuffed(d, &["results", "list", "--db", dbs, "--where", w]);
        assert!(!o.status.success() && text(&o).contains(want), "{w}: {}", text(&o));
    }
    std::fs::write(d.join("shadow"), "root:$6$verysecrethash:19000:0:99999:7:::\n").unwrap();
    std::fs::write(d.join("s.yaml"), "name: s\nbase: shadow\n").unwrap();
    let o = stuffed(d, &["sweep", "run", "s.yaml", "--dry-run", "--db", "x.db"]);
    assert!(!o.status.success() && !text(&o).contains("verysecrethash"), "{}", text(&o));
    let o = stuffed(d, &["results", "show", "--db", dbs, &"%".repeat(60_000)]);
    assert!(
        !o.status.success() && text(&o).contains("no job with id") && !text(&o).contains("too complex"),
        "{}",
        &text(&o)[..200.min(text(&o).len())]
    );
}
