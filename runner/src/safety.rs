//! Trust boundaries (docs/security.md): checks on what comes from outside this machine's user
//! (imported dumps, shared sweep files, network clients of `serve`) before stuffed acts on it.
//! Paths recorded elsewhere are resolved only inside a root; text that reaches an sbatch script
//! or a command line is checked character by character and option by option.
use std::path::{Component, Path, PathBuf};

/// A path recorded in a database (`recorded`), if it names an existing file or directory
/// strictly inside one of `roots` (canonical directories): relative paths (never with `..`)
/// are tried under each of `bases`, absolute ones as they are; the result is canonical, so a
/// symlink that leads out of the roots is refused like any other path outside.
pub fn resolve_inside(roots: &[PathBuf], bases: &[PathBuf], recorded: &str) -> Option<PathBuf> {
    if recorded.is_empty() || recorded.contains('\0') {
        return None;
    }
    let p = Path::new(recorded);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let candidates: Vec<PathBuf> = if p.is_absolute() { vec![p.to_path_buf()] } else { bases.iter().map(|b| b.join(p)).collect() };
    // Roots are resolved now, not when the server started: a sweep started after `serve`
    // creates its runs directory later.
    let roots: Vec<PathBuf> = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect();
    candidates.into_iter().filter_map(|c| std::fs::canonicalize(c).ok()).find(|real| roots.iter().any(|r| real.starts_with(r) && real != r))
}

/// The run directory of job `id` under the runs directory `root` (canonical), checked against
/// the one the database records: a dump from another machine may name any directory, and
/// stuffed must never create directories or write files outside its runs directory.
pub fn run_dir_inside(root: &Path, recorded: &str, id: &str) -> Result<PathBuf, String> {
    check_id(id)?;
    let want = root.join(id);
    let p = Path::new(recorded);
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map_err(|e| e.to_string())?.join(p) };
    let same = !p.components().any(|c| matches!(c, Component::ParentDir))
        && abs.file_name() == want.file_name()
        && abs.parent().and_then(|d| std::fs::canonicalize(d).ok()).as_deref() == Some(root);
    if !same {
        return Err(format!(
            "job {id}'s run directory {recorded} is not {} (the runs directory): refusing to write outside it (was this database imported from another machine? give --runs-dir)",
            want.display()
        ));
    }
    match std::fs::symlink_metadata(&want) {
        Ok(m) if !m.is_dir() => Err(format!("{} is not a directory (a symlink or a file): refusing to write there", want.display())),
        _ => Ok(want),
    }
}

/// A job id as stuffed makes them (hex digits), so that it is one safe path component.
pub fn check_id(id: &str) -> Result<(), String> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(format!("{:?} is not a job id (letters, digits, `-` and `_`)", short(id)))
    }
}

/// A sweep name: letters, digits, `-`, `_` and `.`, not `.` or `..` (names become file and
/// Slurm job names).
pub fn check_sweep_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid sweep name (use letters, digits, `-`, `_` and `.`, not starting with `.`; at most 128 characters)",
            short(name)
        ))
    }
}

/// At most 60 characters of `s`, control characters escaped (for messages).
pub fn short(s: &str) -> String {
    let cut: String = s.chars().take(60).collect();
    let cut = if cut.len() < s.len() { format!("{cut}...") } else { cut };
    cut.escape_debug().to_string()
}

/// Text that goes into a script or a command line: no control characters (a newline would
/// start a new shell line), not empty, at most 256 characters.
pub fn check_text(key: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 256 {
        return Err(format!("{key}: must be 1 to 256 characters, got {}", v.len()));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!("{key}: {:?} contains the control character {:?} (values reach the sbatch script)", short(v), c));
    }
    Ok(())
}

fn check_chars(key: &str, v: &str, what: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    check_text(key, v)?;
    match v.chars().find(|c| !ok(*c)) {
        None => Ok(()),
        Some(c) => Err(format!("{key}: `{}` is not {what} (unexpected {c:?})", short(v))),
    }
}

/// A Slurm name or comma-separated list (partition, account, qos).
pub fn check_slurm_name(key: &str, v: &str) -> Result<(), String> {
    check_chars(key, v, "a Slurm name (letters, digits, `_ . , : + -`)", |c| c.is_ascii_alphanumeric() || "_.,:+-".contains(c))
}

/// sbatch `--time`: minutes, `[days-]hours[:minutes[:seconds]]` and the like, or UNLIMITED.
pub fn check_slurm_time(key: &str, v: &str) -> Result<(), String> {
    if matches!(v, "UNLIMITED" | "INFINITE" | "unlimited" | "infinite") {
        return Ok(());
    }
    check_chars(key, v, "a Slurm time such as 04:00:00 or 1-12:00:00", |c| c.is_ascii_digit() || c == ':' || c == '-')?;
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{key}: `{}` is not a Slurm time such as 04:00:00 or 1-12:00:00", short(v)));
    }
    Ok(())
}

/// sbatch `--mem`: a number with an optional unit (K, M, G, T).
pub fn check_slurm_mem(key: &str, v: &str) -> Result<(), String> {
    let digits = v.trim_end_matches(|c: char| "KMGTkmgtBb".contains(c));
    let unit = &v[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || unit.len() > 2 {
        return Err(format!("{key}: `{}` is not a Slurm memory size such as 32G or 64000M", short(v)));
    }
    Ok(())
}

/// sbatch `--gres`: `name[:type]:count[,...]`.
pub fn check_gres(key: &str, v: &str) -> Result<(), String> {
    check_chars(key, v, "a Slurm gres such as gpu:1 or gpu:a100:2", |c| c.is_ascii_alphanumeric() || "_.,:-".contains(c))
}

/// The sbatch options an `extra_sbatch` line may set. Everything stuffed sets itself (output,
/// array, job name, ...) and everything that runs or redirects something (`--wrap`, `--chdir`,
/// `--export`, `--output`) is left out.
pub const EXTRA_SBATCH: &[&str] = &[
    "begin",
    "comment",
    "constraint",
    "contiguous",
    "cores-per-socket",
    "cpus-per-gpu",
    "deadline",
    "dependency",
    "distribution",
    "exclude",
    "exclusive",
    "gpu-bind",
    "gpus",
    "gpus-per-node",
    "gpus-per-socket",
    "gpus-per-task",
    "gres-flags",
    "hint",
    "licenses",
    "mail-type",
    "mail-user",
    "mem-bind",
    "mem-per-cpu",
    "mem-per-gpu",
    "mincpus",
    "nice",
    "no-requeue",
    "nodelist",
    "nodes",
    "ntasks",
    "ntasks-per-core",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "ntasks-per-socket",
    "overcommit",
    "prefer",
    "priority",
    "requeue",
    "reservation",
    "signal",
    "sockets-per-node",
    "spread-job",
    "switches",
    "threads-per-core",
    "time-min",
    "tmp",
    "wckey",
];

/// One `extra_sbatch` entry: `--option` or `--option=value`, the option from EXTRA_SBATCH,
/// the value without spaces, quotes or shell characters.
pub fn check_extra_sbatch(key: &str, v: &str) -> Result<(), String> {
    check_text(key, v)?;
    let v = v.trim();
    let Some(body) = v.strip_prefix("--") else {
        return Err(format!("{key}: `{}` must be a long option, `--name=value` (e.g. --constraint=a100)", short(v)));
    };
    let (name, value) = body.split_once('=').unwrap_or((body, ""));
    if !EXTRA_SBATCH.contains(&name) {
        return Err(format!(
            "{key}: `--{}` is not an sbatch option stuffed passes through (allowed: {}; stuffed sets output, array and job name itself)",
            short(name),
            EXTRA_SBATCH.join(", ")
        ));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic() || "'\"`$\\;<>".contains(*c)) {
        return Err(format!("{key}: the value of --{name} contains {c:?} (no spaces, quotes or shell characters)"));
    }
    Ok(())
}

/// Every value of a Slurm backend that reaches the sbatch script (from a sweep file or a spec
/// stored in the database, imported or not).
pub fn check_slurm_backend(c: &crate::sweep::SlurmBackend) -> Result<(), String> {
    for (key, v) in [("partition", &c.partition), ("account", &c.account), ("qos", &c.qos)] {
        if let Some(v) = v {
            check_slurm_name(key, v)?;
        }
    }
    if let Some(t) = &c.time {
        check_slurm_time("time", t)?;
    }
    if let Some(m) = &c.mem {
        check_slurm_mem("mem", m)?;
    }
    if !c.gres.trim().is_empty() {
        check_gres("gres", c.gres.trim())?;
    }
    for (i, e) in c.extra_sbatch.iter().enumerate() {
        check_extra_sbatch(&format!("extra_sbatch[{i}]"), e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_names_are_a_safe_charset() {
        for ok in ["grid", "a.b-c_1", "x..y"] {
            assert!(check_sweep_name(ok).is_ok(), "{ok}");
        }
        for bad in [".", "..", ".hidden", "", "a/b", "a b", "a\nb", &"x".repeat(129)] {
            assert!(check_sweep_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_reaching_sbatch_refuse_control_characters_and_unknown_options() {
        for (k, v) in
            [("partition", "gpu\necho pwned"), ("time", "1:00:00\n"), ("partition", ""), ("partition", "a b"), ("account", "x;rm")]
        {
            let r = if k == "time" { check_slurm_time(k, v) } else { check_slurm_name(k, v) };
            assert!(r.is_err(), "{k}={v:?}");
        }
        assert!(check_slurm_name("partition", "gpu,gpu-long").is_ok());
        assert!(check_slurm_time("time", "1-12:00:00").is_ok() && check_slurm_time("time", "90").is_ok());
        assert!(check_slurm_mem("mem", "32G").is_ok() && check_slurm_mem("mem", "32G;x").is_err() && check_slurm_mem("mem", "G").is_err());
        assert!(check_gres("gres", "gpu:a100:2").is_ok() && check_gres("gres", "gpu:1\n#SBATCH --wrap=x").is_err());
        assert!(check_extra_sbatch("extra_sbatch[0]", "--constraint=a100&h100").is_ok());
        assert!(check_extra_sbatch("extra_sbatch[0]", "--exclusive").is_ok());
        for bad in [
            "--wrap=rm -rf /",
            "--output=/etc/x",
            "--chdir=/",
            "-C a100",
            "--constraint=a100\nrm -rf ~",
            "--comment=$(id)",
            "--constraint=a b",
        ] {
            assert!(check_extra_sbatch("extra_sbatch[0]", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recorded_paths_resolve_only_inside_the_roots() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("runs");
        std::fs::create_dir_all(root.join("job1")).unwrap();
        std::fs::write(root.join("job1/worker.log"), "ok").unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("job1/link")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
        let roots = vec![std::fs::canonicalize(&root).unwrap()];
        let bases = vec![d.path().to_path_buf()];
        let inside = |p: &str| resolve_inside(&roots, &bases, p);
        assert!(inside("runs/job1/worker.log").is_some());
        assert!(inside(root.join("job1/worker.log").to_str().unwrap()).is_some());
        for bad in [
            "secret",
            "runs/../secret",
            "runs/job1/../../secret",
            "runs/job1/link",
            "runs/up/secret",
            "/etc/passwd",
            "/etc",
            "runs",
            "",
            "runs/job1/missing",
        ] {
            assert_eq!(inside(bad), None, "{bad}");
        }
        assert_eq!(inside(d.path().join("secret").to_str().unwrap()), None);
    }

    #[test]
    fn run_dirs_from_a_database_stay_in_the_runs_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap().join("runs");
        std::fs::create_dir_all(&root).unwrap();
        let ok = root.join("abc123");
        assert_eq!(run_dir_inside(&root, ok.to_str().unwrap(), "abc123").unwrap(), ok);
        for bad in ["/etc/abc123", "/tmp/x/abc123", &format!("{}/../abc123", root.display()), &format!("{}/other", root.display())] {
            assert!(run_dir_inside(&root, bad, "abc123").is_err(), "{bad}");
        }
        assert!(run_dir_inside(&root, &format!("{}/../x", root.display()), "../x").is_err());
        std::os::unix::fs::symlink("/tmp", root.join("linked")).unwrap();
        assert!(run_dir_inside(&root, root.join("linked").to_str().unwrap(), "linked").is_err());
    }
}
