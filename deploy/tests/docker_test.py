#!/usr/bin/env python3
"""`make docker-test` (issue #20): the images built and the compose stack run for real.

What it does is the README's "Run it with Docker", step by step, one PASS/FAIL line each:

1. A Docker engine: the one DOCKER_HOST or the default socket answers on, else a `dockerd` this
   test starts (`--iptables=false --bridge=none`, its own socket and exec root in a temporary
   folder, its image store in ~/.cache/fraudlake-docker/engine so that images persist between
   runs) and stops by its PID at the end. When dockerd is installed but cannot start on this
   machine, the test prints why and exits 0 (SKIP); a missing dockerd is a failure.
2. deploy/docker/images.sh FRAUDLAKE_BIN: the debootstrap base (cached in the image store), the
   fraudlake image from the binary built outside (nothing compiles in Docker), Prometheus,
   Alertmanager, Redis and HAProxy from Debian's packages.
3. docker-compose.yml + deploy/docker/compose.debian.yml, project `fraudlake-test-<pid>`, secrets
   as files in the temporary folder, published ports picked free: `run --rm lake-seed` (a small
   lake, a champion, an API key), `up -d`, then
   - POST /score through HAProxy with the key: every answer 200, both replicas answer;
   - Prometheus scrapes both replicas, the scheduler, Alertmanager and itself, and its counters
     hold the traffic;
   - one replica stopped: scoring goes on through the other, and FraudlakeApiDown (the real
     rule, its real `for: 1m`) reaches Alertmanager for that instance;
   - `down`; the lake volume (copied out through a container) holds every answered transaction
     in `transactions` and `predictions`, each once (read with Python `deltalake`).
4. Teardown in any case: `down -v` (the test's volumes), the engine stopped if the test started
   it. Images stay (the cache).

Also checks that deploy/haproxy/compose.cfg keeps the `defaults` of deploy/haproxy/haproxy.cfg.

Environment: FRAUDLAKE_BIN (default $CARGO_TARGET_DIR or target, release/fraudlake),
DOCKER_TEST_KEEP=1 keeps the stack up and the temporary folder (debugging).
Exit status 0 when every check passed (or the engine cannot start: SKIP).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "monitoring" / "tests"))
# The monitoring test's reporting and HTTP helpers: one PASS/FAIL format for make test.
from run import CheckFailed, Results, fetch, free_ports, section, wait_until  # noqa: E402

CACHE = Path(os.environ.get("FRAUDLAKE_DOCKER_CACHE", Path.home() / ".cache" / "fraudlake-docker"))
COMPOSE_FILES = ["docker-compose.yml", "deploy/docker/compose.debian.yml"]
# The test lake: 35 days of 300 customers, drift in the last week (as monitoring/tests/run.py).
SEED_SIMULATE = "--days 35 --customers 300 --terminals 600 --seed 7 --drift-from 2018-04-29 --drift-kind amount-scale"
SEED_TRAIN = "--train-start 2018-04-01 --n-estimators 20"
N_SCORE = 400  # transactions through the balancer with both replicas up
N_AFTER_STOP = 100  # and with one stopped
SECRETS = ["slack_oncall_webhook_url", "slack_alerts_webhook_url", "slack_ml_webhook_url",
           "pagerduty_routing_key", "smtp_password", "grafana_admin_password"]


def sh(args, timeout: float = 600, env=None, check: bool = True, **kw) -> str:
    """Runs a command; its output, or CheckFailed with the output's tail."""
    try:
        p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                           env=env, cwd=str(REPO), **kw)
    except FileNotFoundError as e:
        raise CheckFailed(str(e)) from e
    except subprocess.TimeoutExpired as e:
        raise CheckFailed(f"timed out after {timeout}s: {' '.join(map(str, args))}") from e
    out = p.stdout + p.stderr
    if check and p.returncode != 0:
        raise CheckFailed(f"exit {p.returncode}: {' '.join(map(str, args))}\n" + "\n".join(out.splitlines()[-40:]))
    return out


# --------------------------------------------------------------------------------- the engine
class Engine:
    """The Docker engine the test talks to: an answering one, or a dockerd started here."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None
        self.lock = None
        self.env = dict(os.environ)
        # the client on PATH talks to any engine; builds use images.sh's choice of client
        self.docker = shutil.which("docker") or "/usr/bin/docker"

    def answers(self) -> bool:
        try:
            p = subprocess.run([self.docker, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                               text=True, timeout=15, env=self.env)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return p.returncode == 0 and bool(p.stdout.strip())

    def start(self) -> str | None:
        """None when an engine answers (found or started), else why not (the SKIP reason)."""
        if self.answers():
            return None
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise CheckFailed("dockerd is not installed (make deps installs docker.io)")
        if os.geteuid() != 0:
            return "dockerd needs root and this test is not running as root"
        CACHE.mkdir(parents=True, exist_ok=True)
        # One dockerd per image store: a concurrent run waits for this one's to stop.
        self.lock = open(CACHE / "engine.lock", "w")  # noqa: SIM115 - held until stop()
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        sock = self.tmp / "docker.sock"
        log = open(self.tmp / "dockerd.log", "w")  # noqa: SIM115 - the child's log
        self.proc = subprocess.Popen(
            [dockerd, "--iptables=false", "--bridge=none", "--data-root", CACHE / "engine",
             "--exec-root", self.tmp / "exec", "-H", f"unix://{sock}", "--pidfile", self.tmp / "dockerd.pid"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.env["DOCKER_HOST"] = f"unix://{sock}"
        if wait_until(lambda: self.proc.poll() is not None or self.answers(), 60, 0.5) and self.proc.poll() is None:
            return None
        tail = "\n".join((self.tmp / "dockerd.log").read_text(errors="replace").splitlines()[-8:])
        self.stop()
        return f"dockerd did not start: {tail}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # by its PID: it stops the containerd it started
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None


# --------------------------------------------------------------------------------- the stack
class Stack:
    def __init__(self, res: Results, engine: Engine, tmp: Path, fl_bin: Path) -> None:
        self.res, self.engine, self.tmp, self.fl_bin = res, engine, tmp, fl_bin
        self.project = f"fraudlake-test-{os.getpid()}"
        http, prom, am = free_ports(3)
        self.http, self.prom, self.am = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{prom}", f"http://127.0.0.1:{am}"
        secrets = tmp / "secrets"
        secrets.mkdir()
        for name in SECRETS:
            # Nothing listens there: the test checks that alerts reach Alertmanager, not Slack.
            value = "http://127.0.0.1:9/unused" if name.startswith("slack_") else f"test-{name}"
            (secrets / name).write_text(value, encoding="utf-8")
            (secrets / name).chmod(0o644)  # read by Alertmanager's user (nobody) in the container
        self.env = {**engine.env, "COMPOSE_PROJECT_NAME": self.project, "FRAUDLAKE_SECRETS_DIR": str(secrets),
                    "FRAUDLAKE_HTTP_PORT": str(http), "FRAUDLAKE_PROMETHEUS_PORT": str(prom),
                    "FRAUDLAKE_ALERTMANAGER_PORT": str(am), "FRAUDLAKE_SEED_SIMULATE_ARGS": SEED_SIMULATE,
                    "FRAUDLAKE_SEED_TRAIN_ARGS": SEED_TRAIN}
        self.compose = self.compose_command()
        self.token = ""
        self.up = False
        self.answered: dict[int, str] = {}  # tx_id -> the replica that answered
        self.timings: dict[str, float] = {}

    def compose_command(self) -> list[str]:
        """`docker compose` (v2) when the client has it, else Debian's docker-compose (v1)."""
        docker = self.engine.docker
        if subprocess.run([docker, "compose", "version"], capture_output=True, env=self.env).returncode == 0:
            base = [docker, "compose"]
        elif shutil.which("docker-compose"):
            base = ["docker-compose"]
        else:
            raise CheckFailed("neither `docker compose` nor docker-compose is installed (make deps installs docker-compose)")
        for f in COMPOSE_FILES:
            base += ["-f", f]
        return base

    def dc(self, *args, timeout: float = 300, check: bool = True) -> str:
        return sh([*self.compose, *args], timeout=timeout, env=self.env, check=check)

    def timed(self, short: str, name: str, fn):
        t0 = time.monotonic()
        try:
            return self.res.run(name, fn)
        finally:
            self.timings[short] = time.monotonic() - t0

    # ---- steps
    def images(self) -> None:
        out = sh([REPO / "deploy/docker/images.sh", self.fl_bin], timeout=900, env=self.engine.env)
        for line in out.splitlines():
            print(f"      {line}", flush=True)

    def config(self) -> None:
        out = self.dc("config", "--services")
        services = set(out.split())
        want = {"fraudlake-1", "fraudlake-2", "scheduler", "redis", "haproxy", "prometheus", "alertmanager"}
        if not want <= services:
            raise CheckFailed(f"services {sorted(want - services)} missing from `config --services`: {sorted(services)}")

    def seed(self) -> None:
        out = self.dc("run", "--rm", "lake-seed", timeout=600)
        m = re.findall(r"flk_[0-9a-f]+_[0-9a-f]+", out)
        if not m:
            raise CheckFailed("lake-seed printed no API token:\n" + out[-2000:])
        self.token = m[-1]

    def start(self) -> None:
        self.up = True
        self.dc("up", "-d", "--no-build")

        def ready():
            status, _ = fetch("GET", f"{self.http}/ready", timeout=2)
            return status == 200

        if not wait_until(ready, 180, 1):
            raise CheckFailed(f"GET /ready through HAProxy never answered 200\n{self.dc('ps', check=False)}\n"
                              + self.dc("logs", "--no-color", "--tail", "15", check=False)[-4000:])
        # HAProxy adds a replica after its first good check: wait until both answer.
        served = set()

        def both():
            served.add(self.score_one(1, 0)[1])
            return {"replica1", "replica2"} <= served

        if not wait_until(both, 60, 0.2):
            raise CheckFailed(f"only {sorted(served)} answered through HAProxy")

    def score_one(self, i: int, base: int) -> tuple[int, str]:
        """POST /score of transaction base+i; (status, X-Served-By)."""
        # One second apart from the day after the test lake's last: within the servers' 1 h
        # event-time skew of the watermark (the lake's newest transaction) all along.
        start = dt.datetime(2018, 5, 6, tzinfo=dt.timezone.utc)
        tx_id = 80_000_000 + base + i
        body = {"tx_id": tx_id, "tx_ts": (start + dt.timedelta(seconds=base + i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "customer_id": (base + i) * 7 % 300, "terminal_id": (base + i) * 13 % 600,
                "amount": round(5 + (base + i) * 3.7 % 400, 2)}
        req = urllib.request.Request(f"{self.http}/score", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answer = json.loads(r.read())
                served = r.headers.get("X-Served-By", "")
                if r.status == 200 and answer.get("tx_id") == tx_id and "risk_score" in answer:
                    self.answered[tx_id] = served
                return r.status, served
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("X-Served-By", "")
        except OSError:
            return 0, ""

    def traffic(self, n: int, base: int) -> tuple[dict, dict]:
        """n transactions, 4 at a time: counts by status and by replica."""
        statuses: dict[int, int] = {}
        by: dict[str, int] = {}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for status, served in pool.map(lambda i: self.score_one(i, base), range(n)):
                statuses[status] = statuses.get(status, 0) + 1
                by[served] = by.get(served, 0) + 1
        return statuses, by

    def score(self) -> None:
        t0 = time.monotonic()
        statuses, by = self.traffic(N_SCORE, 1000)
        took = time.monotonic() - t0
        if statuses != {200: N_SCORE} or set(by) != {"replica1", "replica2"}:
            raise CheckFailed(f"statuses {statuses}, served by {by}")
        print(f"      {N_SCORE} answered in {took:.1f}s, by replica: {by}", flush=True)

    def prom_query(self, expr: str) -> list:
        q = urllib.parse.urlencode({"query": expr})
        status, body = fetch("GET", f"{self.prom}/api/v1/query?{q}")
        if status != 200:
            return []
        return json.loads(body)["data"]["result"]

    def scrapes(self) -> None:
        want = {("fraudlake", "fraudlake-1:8080"), ("fraudlake", "fraudlake-2:8080"),
                ("fraudlake-scheduler", "scheduler:9091"), ("alertmanager", "alertmanager:9093"),
                ("prometheus", "localhost:9090")}

        def targets_up():
            up = {(r["metric"]["job"], r["metric"]["instance"]) for r in self.prom_query("up == 1")}
            return want <= up

        if not wait_until(targets_up, 60, 1):
            status, body = fetch("GET", f"{self.prom}/api/v1/targets")
            raise CheckFailed(f"not every target is up: {body.decode(errors='replace')[:3000]}")
        expected = len(self.answered)

        def counted():
            rows = self.prom_query('sum(fraud_requests_total{job="fraudlake", endpoint="/score", status="200"})')
            return rows and float(rows[0]["value"][1]) >= expected

        if not wait_until(counted, 60, 1):
            raise CheckFailed(f"Prometheus does not count the {expected} scored requests: "
                              f"{self.prom_query('sum by (instance, status) (fraud_requests_total)')}")

    def replica_down(self) -> None:
        t0 = time.monotonic()
        self.dc("stop", "fraudlake-2", timeout=120)
        statuses, by = self.traffic(N_AFTER_STOP, 2000)
        if statuses != {200: N_AFTER_STOP} or set(by) != {"replica1"}:
            raise CheckFailed(f"with fraudlake-2 stopped: statuses {statuses}, served by {by}")

        def alert():
            q = urllib.parse.urlencode({"filter": 'alertname="FraudlakeApiDown"'})
            status, body = fetch("GET", f"{self.am}/api/v2/alerts?{q}")
            if status != 200:
                return None
            return [a for a in json.loads(body) if a["labels"].get("instance") == "fraudlake-2:8080"
                    and a["labels"].get("severity") == "critical"]

        got = wait_until(alert, 240, 2)
        if not got:
            raise CheckFailed(f"FraudlakeApiDown for fraudlake-2:8080 did not reach Alertmanager in 240 s; "
                              f"Prometheus alerts: {fetch('GET', f'{self.prom}/api/v1/alerts')[1][:2000]!r}")
        print(f"      FraudlakeApiDown (instance fraudlake-2:8080, critical) in Alertmanager "
              f"{time.monotonic() - t0:.0f}s after the stop", flush=True)

    def down_and_read_lake(self) -> None:
        self.dc("down", timeout=300)
        self.up = False
        # Copied out through a container: the volume's folder belongs to the engine (and to uid
        # 10001), which need not be this machine's filesystem.
        lake = self.tmp / "lake"
        lake.mkdir()
        volume = f"{self.project}_lake"
        docker = subprocess.Popen([self.engine.docker, "run", "--rm", "--network", "none", "-v", f"{volume}:/lake:ro",
                                   "fraudlake:local", "tar", "-C", "/lake", "-cf", "-", "transactions", "predictions"],
                                  stdout=subprocess.PIPE, env=self.engine.env)
        untar = subprocess.run(["tar", "-x", "-C", lake], stdin=docker.stdout, capture_output=True, text=True)
        docker.stdout.close()
        if docker.wait(120) != 0 or untar.returncode != 0:
            raise CheckFailed(f"could not copy the lake out of volume {volume}: {untar.stderr}")
        from deltalake import DeltaTable  # the venv's (tests/python/requirements.txt)

        problems = []
        for table in ("transactions", "predictions"):
            ids = DeltaTable(str(lake / table)).to_pyarrow_table(columns=["tx_id"]).column("tx_id").to_pylist()
            counts: dict[int, int] = {}
            for t in ids:
                counts[t] = counts.get(t, 0) + 1
            missing = [t for t in self.answered if t not in counts]
            twice = [t for t in self.answered if counts.get(t, 0) > 1]
            if missing or twice:
                problems.append(f"{table}: {len(missing)} answered transactions missing (e.g. {missing[:5]}), "
                                f"{len(twice)} stored more than once (e.g. {twice[:5]})")
        if problems:
            raise CheckFailed("\n".join(problems))
        print(f"      {len(self.answered)} answered transactions, each once in transactions and predictions",
              flush=True)

    def teardown(self) -> None:
        if os.environ.get("DOCKER_TEST_KEEP") == "1":
            print(f"\nkept: the stack (project {self.project}, {self.http}) and {self.tmp}")
            return
        # the test's volumes too; the images stay (the cache)
        self.dc("down", "-v", "--remove-orphans", timeout=300, check=False)


def check_haproxy_defaults(res: Results) -> None:
    def defaults(path: Path) -> str:
        text = path.read_text(encoding="utf-8")
        m = re.search(r"^defaults\n(.*?)(?=^\S)", text, re.M | re.S)
        if not m:
            raise CheckFailed(f"{path.name} has no defaults section")
        return "\n".join(l for l in m.group(1).splitlines() if l.strip() and not l.strip().startswith("#"))

    def same():
        a, b = defaults(REPO / "deploy/haproxy/haproxy.cfg"), defaults(REPO / "deploy/haproxy/compose.cfg")
        if a != b:
            raise CheckFailed(f"haproxy.cfg:\n{a}\ncompose.cfg:\n{b}")

    res.run("deploy/haproxy/compose.cfg keeps the defaults section of haproxy.cfg", same)


def fraudlake_binary() -> Path:
    if os.environ.get("FRAUDLAKE_BIN"):
        return Path(os.environ["FRAUDLAKE_BIN"])
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "fraudlake"


def main() -> int:
    started = time.monotonic()
    res = Results()
    tmp = Path(tempfile.mkdtemp(prefix="fraudlake-docker-"))
    engine = Engine(tmp)
    stack = None
    skipped = ""

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        section("Static")
        check_haproxy_defaults(res)
        section("Docker engine")
        t0 = time.monotonic()
        why = engine.start()
        if why:
            skipped = why
        else:
            version = sh([engine.docker, "version", "--format", "{{.Server.Version}}"], env=engine.env).strip()
            res.record(f"Docker engine {version} answers ({'started here' if engine.proc else 'already running'}, "
                       f"{time.monotonic() - t0:.1f}s)", True)
            fl_bin = fraudlake_binary()
            if not fl_bin.exists():
                raise CheckFailed(f"{fl_bin} does not exist (make build)")
            stack = Stack(res, engine, tmp, fl_bin)
            flavour = "docker-compose (v1)" if stack.compose[0] == "docker-compose" else "docker compose (v2)"
            section(f"The stack ({flavour}, project {stack.project})")
            steps = [
                ("images", "images: debootstrap base, fraudlake from the prebuilt binary, Debian's Prometheus, "
                 "Alertmanager, Redis, HAProxy (deploy/docker/images.sh)", stack.images),
                ("config", "compose config: docker-compose.yml + deploy/docker/compose.debian.yml", stack.config),
                ("seed", "compose run --rm lake-seed: simulated lake, champion, API key", stack.seed),
                ("up", "compose up -d: /ready through HAProxy, both replicas in rotation", stack.start),
                ("score", f"{N_SCORE} x POST /score through HAProxy with the API key: all 200, both replicas",
                 stack.score),
                ("scrapes", "Prometheus scrapes both replicas, the scheduler, Alertmanager, itself; counts the "
                 "traffic", stack.scrapes),
                ("alert", f"fraudlake-2 stopped: {N_AFTER_STOP} more scored by fraudlake-1; FraudlakeApiDown "
                 "reaches Alertmanager", stack.replica_down),
                ("down+lake", "compose down: the lake volume has every answered transaction, once",
                 stack.down_and_read_lake),
            ]
            for short, name, fn in steps:
                if not stack.timed(short, name, fn):
                    break
    except CheckFailed as e:
        res.record("docker-test", False, str(e))
    except KeyboardInterrupt as e:
        res.record("interrupted", False, str(e))
    finally:
        try:
            if stack is not None:
                if res.failed and stack.up:
                    print(stack.dc("logs", "--no-color", "--tail", "20", check=False)[-6000:])
                stack.teardown()
        except CheckFailed as e:  # the engine is stopped all the same
            res.record("teardown (compose down -v)", False, str(e))
        if os.environ.get("DOCKER_TEST_KEEP") != "1":
            engine.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    if skipped:
        print(f"\nSKIP  docker-test: the Docker engine cannot start on this machine: {skipped}")
    if stack is not None and stack.timings:
        print("\ntimes: " + ", ".join(f"{name} {t:.0f}s" for name, t in stack.timings.items()))
    return res.finish("docker-test", started, " (skipped: no Docker engine)" if skipped else "")


if __name__ == "__main__":
    sys.exit(main())
