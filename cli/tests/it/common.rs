//! Shared helpers: a temp lake, running the binary, reading JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_fraudlake");

/// The workspace root (tests run with the crate folder as working directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A temporary lake folder, removed when dropped.
pub struct TempLake {
    pub dir: tempfile::TempDir,
}

impl TempLake {
    pub fn new() -> TempLake {
        TempLake {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn lake(&self) -> String {
        self.dir.path().join("lake").display().to_string()
    }

    /// Runs `fraudlake --lake <this lake> ARGS` from the repository root.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(repo_root())
            .env("FRAUDLAKE_LAKE", self.lake())
            .env_remove("FRAUDLAKE_FEATURES_SQL")
            .env("RUST_LOG", "warn")
            .args(args)
            .output()
            .expect("run fraudlake")
    }

    /// Runs with extra environment variables.
    pub fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        Command::new(BIN)
            .current_dir(repo_root())
            .env("FRAUDLAKE_LAKE", self.lake())
            .env_remove("FRAUDLAKE_FEATURES_SQL")
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .args(args)
            .output()
            .expect("run fraudlake")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "fraudlake {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a query and returns its rows as JSON objects.
    pub fn sql_json(&self, query: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["sql", query, "--format", "json"]);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("bad JSON from sql ({e}): {out}"))
    }

    /// Runs a query with time travel (`TABLE=VERSION`).
    pub fn sql_json_at(&self, query: &str, at: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["sql", query, "--format", "json", "--at", at]);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("bad JSON from sql ({e}): {out}"))
    }

    /// Simulates a small lake (fast) with the given extra flags.
    pub fn simulate_small(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["simulate", "--format", "json"];
        args.extend_from_slice(extra);
        for (flag, default) in [
            ("--customers", "300"),
            ("--terminals", "600"),
            ("--days", "60"),
            ("--seed", "7"),
        ] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, default]);
            }
        }
        let out = self.ok(&args);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("simulate JSON");
        v[0].clone()
    }
}

/// Number in a JSON row (integers may come as numbers or strings).
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    match &v[key] {
        serde_json::Value::Number(n) => n.as_f64().expect("number"),
        serde_json::Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{key}={s} is not a number")),
        other => panic!("{key} missing or not a number: {other} in {v}"),
    }
}

/// The handbook file, when this machine has it.
pub fn handbook_parquet() -> Option<PathBuf> {
    let p = repo_root().join("../shared/data/handbook/transactions.parquet");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} is absent (tests that need the handbook data skip)",
            p.display()
        );
        None
    }
}

/// Python with the `deltalake` package, for interop checks: $FRAUDLAKE_TEST_PYTHON or the
/// repository's `.venv` (made by `make test`).
pub fn python_with_deltalake() -> Option<PathBuf> {
    python_with(&["deltalake", "pyarrow"])
}

/// Python that imports every module of `modules`: $FRAUDLAKE_TEST_PYTHON or the repository's
/// `.venv` (made by `make venv`, with tests/python/requirements.txt).
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let candidate = std::env::var_os("FRAUDLAKE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Some(candidate)
    } else {
        // `make test` names the interpreter (FRAUDLAKE_TEST_PYTHON): there a missing Python is
        // a failure, never a silent skip; so it is in CI.
        if std::env::var_os("CI").is_some() || std::env::var_os("FRAUDLAKE_TEST_PYTHON").is_some() {
            panic!(
                "make test and CI must provide Python with {} ({} lacks them: run `make venv`)",
                modules.join(", "),
                candidate.display()
            );
        }
        eprintln!(
            "SKIP: no Python with {} at {} (run `make venv`)",
            modules.join(", "),
            candidate.display()
        );
        None
    }
}

/// Runs a script of `tests/python/` with `python`; asserts success; returns its JSON output.
pub fn run_python(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python JSON")
}

/// Reads tables of the lake with the Python `deltalake` package (tests/python/read_lake.py);
/// `None` when this machine has no such Python (outside CI).
pub fn read_with_python(lake: &TempLake, tables: &[&str]) -> Option<serde_json::Value> {
    let python = python_with_deltalake()?;
    let lake_dir = lake.lake();
    let mut args: Vec<&std::ffi::OsStr> = vec![lake_dir.as_ref()];
    args.extend(tables.iter().map(std::ffi::OsStr::new));
    Some(run_python(&python, "read_lake.py", &args))
}
