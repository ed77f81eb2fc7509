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
   to the lake); any cell that raises fails the notebook, with the cell's error. Two more
   runs: 02_features on the copy without predictions (must print its note, not fail), and
   01 on an empty lake (must stop with lakeio.MissingTable naming the table).

One PASS/FAIL line per check, then cargo's summary line (`.ci/run` adds those up).
Environment: FRAUDLAKE_BIN (default $CARGO_TARGET_DIR or ~/.cache/fraudlake-target, then
target/, release/fraudlake); NOTEBOOKS_KEEP_TMP=1 keeps the temporary folder (lake, server and
kernel logs, executed notebooks with their outputs).
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


def binary_env() -> dict:
    env = {**os.environ, "FRAUDLAKE_QUIET": "true", "FRAUDLAKE_LOG_FORMAT": "text", "NO_COLOR": "1",
           "FRAUDLAKE_FEATURES_SQL": str(REPO / "sql/features.sql")}
    for k in ("FRAUDLAKE_LAKE", "FRAUDLAKE_CONFIG", "FRAUDLAKE_ADDR", "FRAUDLAKE_SCHEDULER",
              "FRAUDLAKE_DAGS", "FRAUDLAKE_FLUSH_ROWS", "FRAUDLAKE_FLUSH_MS"):
        env.pop(k, None)
    return env


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


def fraudlake(bin_: Path, lake: Path, work: Path, *args: str, timeout: float = 300) -> str:
    p = spawn([bin_, "--lake", lake, *args], cwd=work, env=binary_env(), stdout=subprocess.PIPE,
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


def build_lake(bin_: Path, tmp: Path) -> tuple[Path, Path]:
    """The lake with predictions, and a copy made before serving (no `predictions`)."""
    work = tmp / "work"  # the binaries' folder: no fraudlake.toml, no dags/
    work.mkdir()
    lake = tmp / "lake"
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
        fraudlake(bin_, lake, work, *args)
    before_serve = tmp / "lake-before-serve"
    shutil.copytree(lake, before_serve)
    t1 = time.monotonic()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        server = spawn([bin_, "--lake", lake, "serve", "--addr", f"127.0.0.1:{port}", "--flush-ms", "200",
                       "--insecure-no-auth"],
                       cwd=work, env=binary_env(), stdout=log, stderr=subprocess.STDOUT,
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
    fraudlake(bin_, lake, work, "features", "build")

    from deltalake import DeltaTable

    served = DeltaTable(str(lake / "predictions")).to_pyarrow_table(columns=["tx_id"]).num_rows
    if served != SERVED_TX:
        raise CheckFailed(f"predictions has {served} rows after shutdown, expected {SERVED_TX}\n"
                          f"{tail(log_path)}")
    print(f"INFO  lake built in {t1 - t0:.1f}s (simulate, features, 2 x train, 2 x drift); serve: "
          f"{SERVED_TX} scored {dict(sorted(decisions.items()))}, {len(labels)} labels, "
          f"{t2 - t1:.1f}s; features rebuilt in {time.monotonic() - t2:.1f}s", flush=True)
    return lake, before_serve


# ------------------------------------------------------------------ 3. the notebooks
def execute(path: Path, lake: Path, out_dir: Path):
    """Runs a notebook in a fresh python3 kernel with FRAUDLAKE_LAKE=lake; returns the executed
    notebook and the seconds it took; raises nbclient's CellExecutionError on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["FRAUDLAKE_LAKE"] = str(lake)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=120,
                            resources={"metadata": {"path": str(HERE)}})
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(out_dir / f"{path.stem}.kernel.log", "wb") as kernel_log:
        try:
            client.execute(stderr=kernel_log)
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


def run_notebook(res: Results, path: Path, lake: Path, out_dir: Path, timings: dict) -> None:
    from nbclient.exceptions import CellExecutionError

    try:
        nb, seconds = execute(path, lake, out_dir)
    except CellExecutionError as e:
        log = [l for l in tail(out_dir / f"{path.stem}.kernel.log", 20).splitlines()
               if "without encryption" not in l]  # ipykernel's notice on every start
        res.record(path.name, False, str(e) + ("\nkernel log:\n" + "\n".join(log) if log else ""))
        return
    except Exception:  # noqa: BLE001
        res.record(path.name, False, traceback.format_exc())
        return
    timings[path.name] = seconds
    res.record(f"{path.name} ({seconds:.1f}s)", True)
    if seconds > SLOW_SECONDS:
        print(f"WARN  {path.name} took {seconds:.1f}s (budget {SLOW_SECONDS}s on this lake)", flush=True)
    if path.name.startswith("02_"):
        out = text_of(nb)
        verdict = next((l for l in out.splitlines() if l.startswith(("OK:", "MISMATCH:", "NOTE:"))), "")
        print(f"INFO  02 offline vs served: {verdict or '(no verdict printed)'}", flush=True)
        # The lake was built so that every served transaction has its offline row: the
        # notebook's comparison must find them equal, not merely print what it found.
        res.record("02_features: served features = offline features", verdict.startswith("OK:"),
                   verdict or "no verdict printed")


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
        try:
            lake, before_serve = build_lake(bin_, tmp)
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
        if timings:
            print("INFO  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()), flush=True)
    finally:
        os.environ.pop("FRAUDLAKE_LAKE", None)
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
