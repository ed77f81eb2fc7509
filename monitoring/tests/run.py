#!/usr/bin/env python3
"""`make monitoring-test`: every check of the monitoring stack (issue #8), one PASS/FAIL line each.

1. Prometheus: `promtool check config`, `promtool check rules`, `promtool test rules` (one line
   per unit-test file), and the conventions of every alert (severity/team labels, summary,
   description, a runbook_url whose section exists in RUNBOOK.md, a unit test where it fires
   and one where it stays silent).
2. Alertmanager: `amtool check-config` on monitoring/alertmanager.yml as committed and on a
   rendered copy whose secret files exist (test values), the notification templates rendered by
   `amtool template render`, and the routing tree: `amtool config routes test` gives every alert
   the receivers of the routing policy (README).
3. End to end, on loopback with free ports and a temporary folder: a small simulated lake with a
   trained champion, `fraudlake serve`, a real Prometheus (monitoring/prometheus.yml and the real
   rule files, rendered with the test's ports, 1 s intervals and every `for:` shortened to
   E2E_FOR), a real Alertmanager (monitoring/alertmanager.yml rendered: secrets in temporary
   files, Slack and PagerDuty URLs pointing at a local webhook receiver, SMTP at a local fake
   server, group_wait 1 s). Traffic with 20% invalid requests, then:
   - every PromQL expression of the Grafana dashboard (and its variable) is evaluated by that
     Prometheus: it must parse and return data (not only NaN);
   - FraudlakeHighClientErrorRatio reaches Slack #fraudlake-alerts with its labels;
   - an alert posted to Alertmanager with team=ml reaches Slack #fraud-ml and the ML team's
     email (SMTP AUTH with the password from the secret file);
   - FraudlakeDatasetDrift reaches #fraud-ml when the lake's drift report flags drift;
   - the server is stopped: FraudlakeApiDown reaches PagerDuty (routing key from its secret file,
     severity critical) and Slack #fraudlake-oncall;
   - inhibition: a latency alert for the instance that is down is suppressed, the same alert
     for another instance is not.
4. Docker: docker-compose.yml against the Compose specification's JSON schema (vendored,
   compose-spec.schema.json) and its references (mounted files exist, secrets defined), the
   Dockerfile with hadolint and with the checks of our own rules (multi-stage, pinned bases,
   non-root USER, HEALTHCHECK, no ADD of URLs, ...).

Environment: FRAUDLAKE_BIN (default: $CARGO_TARGET_DIR or target, release/fraudlake),
MONITORING_KEEP_TMP=1 keeps the temporary folder (logs of every process) for debugging.
Exit status: 0 when every check passed. Needs PyYAML and jsonschema (requirements.txt here).
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import http.server
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
MON = HERE.parent
REPO = MON.parent

# Every `for:` of the rules becomes this in the end-to-end copy: the expressions, labels,
# routing and delivery are what the end-to-end test checks; the production `for:` durations
# are checked by the promtool unit tests.
E2E_FOR = "3s"
# The DAG the test reschedules every 5 s, so that the scheduler embedded in `serve --scheduler`
# runs it during the test (a copy in the test's folder; dags/ is not touched).
E2E_FAST_DAG = "hourly_monitoring"
# Grafana's variables, for evaluating the dashboard's queries against the test's Prometheus
# (1 s scrapes: a 1 minute window holds the whole traffic phase).
GRAFANA_VARS = {
    "${__rate_interval}": "1m",
    "$__rate_interval": "1m",
    "${__interval}": "15s",
    "$__interval": "15s",
    "${__range}": "1h",
    "$__range": "1h",
    "${instance}": ".+",
    "$instance": ".+",
}
# The routing policy (README): receivers by severity and team.
def expected_receivers(severity: str, team: str) -> str:
    if severity == "critical":
        return "oncall-pager,ml-team" if team == "ml" else "oncall-pager"
    if team == "ml":
        return "ml-team"
    if severity == "warning":
        return "slack-alerts"
    return "email-digest"


# The alerts issue #8 asks for (at least these must exist).
REQUIRED_ALERTS = {
    "FraudlakeApiDown", "FraudlakeHighErrorRatio", "FraudlakeHighLatencyP99",
    "FraudlakeDeclineRateSpike", "FraudlakeRiskScoreSpike", "FraudlakeDatasetDrift",
    "FraudlakeRetrainingStale", "FraudlakeRetrainingFailed", "FraudlakeLakeWriterLagging",
}
SECRETS_DIR = "/etc/alertmanager/secrets/"
TEST_SECRETS = {
    "pagerduty_routing_key": "e2e0test0routing0key0000000000ab",
    "smtp_password": "e2e-smtp-password",
}
ML_EMAIL = "fraud-ml@example.com"


class CheckFailed(Exception):
    pass


# --------------------------------------------------------------------------------- reporting
class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures: list[str] = []

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS  {name}", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL  {name}", flush=True)
            if detail:
                for line in detail.rstrip().splitlines()[-40:]:
                    print(f"      {line}", flush=True)
        return ok

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"SKIP  {name}: {why}", flush=True)

    def finish(self, suite: str, started: float, note: str = "") -> int:
        """The closing lines of a suite (one per make target); its exit status."""
        elapsed = time.monotonic() - started
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        print(f"\n{suite}: {self.passed} passed, {self.failed} failed{skipped}{note} in {elapsed:.0f}s")
        if self.failures:
            print("failed:\n  " + "\n  ".join(self.failures))
        # the line .ci/run adds to its total (cargo's format)
        print(f"test result: {'ok' if not self.failed else 'FAILED'}. {self.passed} passed; {self.failed} failed; "
              f"0 ignored; 0 measured; 0 filtered out ({suite.split('-')[0]})")
        return 1 if self.failed else 0

    def run(self, name: str, fn, *args) -> bool:
        """Runs fn: passes unless it raises; CheckFailed's message is the detail."""
        try:
            fn(*args)
        except CheckFailed as e:
            return self.record(name, False, str(e))
        except Exception:  # noqa: BLE001 - a crash of a check is a failed check
            return self.record(name, False, traceback.format_exc())
        return self.record(name, True)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_cmd(args, timeout: float = 120, **kw) -> tuple[int, str]:
    try:
        p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError as e:
        return 127, str(e)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout}s: {' '.join(map(str, args))}"
    return p.returncode, (p.stdout + p.stderr)


def need_tool(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    raise SystemExit(f"FAIL  {names[0]} is not installed (make deps installs prometheus and prometheus-alertmanager)")


# --------------------------------------------------------------------------------- rules
def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rule_files() -> list[Path]:
    return sorted(MON.glob("alerts/*.yml"))


def all_alert_rules() -> list[dict]:
    rules = []
    for f in rule_files():
        for g in load_yaml(f).get("groups", []):
            for r in g.get("rules", []):
                if "alert" in r:
                    rules.append({**r, "_file": f.name})
    return rules


def github_anchor(heading: str) -> str:
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def unit_test_coverage() -> tuple[set, set]:
    """(alertname, severity) pairs that fire in a unit test, alertnames silent in one."""
    fires, silent = set(), set()
    for f in sorted(MON.glob("alerts/tests/*.yml")):
        for t in load_yaml(f).get("tests", []):
            for art in t.get("alert_rule_test", []):
                exp = art.get("exp_alerts") or []
                if exp:
                    for e in exp:
                        fires.add((art["alertname"], (e.get("exp_labels") or {}).get("severity")))
                else:
                    silent.add(art["alertname"])
    return fires, silent


def check_prometheus(res: Results, promtool: str) -> None:
    section("Prometheus: promtool")
    rc, out = run_cmd([promtool, "check", "config", MON / "prometheus.yml"])
    res.record("promtool check config monitoring/prometheus.yml", rc == 0, out if rc else "")
    files = rule_files()
    rc, out = run_cmd([promtool, "check", "rules", *files])
    res.record(f"promtool check rules monitoring/alerts/*.yml ({len(files)} files)", rc == 0, out if rc else "")
    for t in sorted(MON.glob("alerts/tests/*.yml")):
        rc, out = run_cmd([promtool, "test", "rules", t])
        res.record(f"promtool test rules alerts/tests/{t.name}", rc == 0, out if rc else "")

    section("Prometheus: alert conventions (labels, annotations, runbook, unit tests)")
    runbook = (MON / "RUNBOOK.md").read_text(encoding="utf-8")
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", runbook, re.M)}
    fires, silent = unit_test_coverage()
    rules = all_alert_rules()
    names = {r["alert"] for r in rules}
    missing = REQUIRED_ALERTS - names
    res.record("the alerts of issue #8 exist", not missing, f"missing: {sorted(missing)}")
    for r in rules:
        name, labels, ann = r["alert"], r.get("labels") or {}, r.get("annotations") or {}
        sev, team = labels.get("severity"), labels.get("team")
        problems = []
        if sev not in ("critical", "warning", "info"):
            problems.append(f"severity label {sev!r} is not critical|warning|info")
        if team not in ("platform", "fraud", "ml"):
            problems.append(f"team label {team!r} is not platform|fraud|ml")
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                problems.append(f"annotation {key} missing")
        url = str(ann.get("runbook_url", ""))
        if url != f"monitoring/RUNBOOK.md#{name.lower()}":
            problems.append(f"runbook_url {url!r} is not monitoring/RUNBOOK.md#{name.lower()}")
        if name.lower() not in anchors:
            problems.append(f"RUNBOOK.md has no section '## {name}'")
        if (name, sev) not in fires:
            problems.append(f"no unit test where {name} ({sev}) fires")
        if name not in silent:
            problems.append(f"no unit test where {name} stays silent")
        res.record(f"rule {name} ({sev}, {r['_file']})", not problems, "\n".join(problems))


# --------------------------------------------------------------------------------- alertmanager
def render_alertmanager(dest: Path, webhook_base: str, smtp_addr: str) -> tuple[Path, dict]:
    """A copy of monitoring/alertmanager.yml for tests: secret files in dest/secrets (Slack URLs
    pointing at webhook_base/slack/<secret name>), PagerDuty at webhook_base/pagerduty, SMTP at
    smtp_addr without TLS, the repo's templates, group_wait 1 s and group_interval 2 s."""
    cfg = load_yaml(MON / "alertmanager.yml")
    secrets = dest / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    values: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node.startswith(SECRETS_DIR):
            name = node[len(SECRETS_DIR):]
            if name.startswith("slack_"):
                value = f"{webhook_base}/slack/{name}"
            elif name in TEST_SECRETS:
                value = TEST_SECRETS[name]
            else:
                raise CheckFailed(f"alertmanager.yml reads secret {name!r}, which the test does not know")
            path = secrets / name
            # No trailing newline: Alertmanager 0.25 trims the Slack URL and the PagerDuty key
            # files but sends the SMTP password file byte for byte (secrets/README.md).
            path.write_text(value, encoding="utf-8")
            path.chmod(0o600)
            values[name] = value
            return str(path)
        return node

    cfg = walk(cfg)
    if cfg.get("templates") != ["/etc/alertmanager/templates/*.tmpl"]:
        raise CheckFailed(f"templates: expected /etc/alertmanager/templates/*.tmpl, got {cfg.get('templates')}")
    cfg["templates"] = [str(MON / "alertmanager" / "templates" / "*.tmpl")]
    g = cfg.setdefault("global", {})
    g["smtp_smarthost"] = smtp_addr
    g["smtp_require_tls"] = False
    for r in cfg.get("receivers", []):
        for pd in r.get("pagerduty_configs", []) or []:
            pd["url"] = f"{webhook_base}/pagerduty"

    def fast(route: dict, root: bool) -> None:
        for key, value in (("group_wait", "1s"), ("group_interval", "2s")):
            if root or key in route:
                route[key] = value
        for child in route.get("routes", []) or []:
            fast(child, False)

    fast(cfg["route"], True)
    path = dest / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path, values


def check_alertmanager(res: Results, amtool: str, tmp: Path) -> None:
    section("Alertmanager: amtool")
    rc, out = run_cmd([amtool, "check-config", MON / "alertmanager.yml"])
    res.record("amtool check-config monitoring/alertmanager.yml (as committed)", rc == 0, out if rc else "")
    try:
        rendered, _ = render_alertmanager(tmp / "am-static", "http://127.0.0.1:9", "127.0.0.1:25")
        rc, out = run_cmd([amtool, "check-config", rendered])
        ok = rc == 0 and re.search(r"- [1-9]\d* templates", out) is not None
        res.record("amtool check-config on the rendered copy (secret files present, templates loaded)", ok, out)
    except CheckFailed as e:
        res.record("amtool check-config on the rendered copy", False, str(e))
    rc, out = run_cmd([amtool, "template", "render",
                       f"--template.glob={MON / 'alertmanager' / 'templates' / '*.tmpl'}",
                       '--template.text={{ template "fraudlake.title" . }}|{{ template "fraudlake.color" . }}|{{ template "fraudlake.text" . }}'])
    res.record("amtool template render: fraudlake.title, fraudlake.color, fraudlake.text",
               rc == 0 and "Labels:" in out and "Runbook:" in out, out)

    section("Alertmanager: routing of every alert (amtool config routes test)")
    seen = set()
    for r in all_alert_rules():
        labels = r.get("labels") or {}
        key = (r["alert"], labels.get("severity"), labels.get("team"))
        if key in seen:
            continue
        seen.add(key)
        want = expected_receivers(labels.get("severity", ""), labels.get("team", ""))
        rc, out = run_cmd([amtool, "config", "routes", "test", f"--config.file={MON / 'alertmanager.yml'}",
                           f"--verify.receivers={want}", f"alertname={key[0]}", f"severity={key[1]}",
                           f"team={key[2]}", "job=fraudlake"])
        res.record(f"route {key[0]} severity={key[1]} team={key[2]} -> {want}", rc == 0, out)
    # Labels nobody routes explicitly still reach a human.
    rc, out = run_cmd([amtool, "config", "routes", "test", f"--config.file={MON / 'alertmanager.yml'}",
                       "--verify.receivers=slack-alerts", "alertname=Unlabelled"])
    res.record("route of an alert without severity/team -> slack-alerts (default)", rc == 0, out)


# --------------------------------------------------------------------------------- grafana
def dashboard_files() -> list[Path]:
    return sorted(MON.glob("grafana/dashboards/*.json"))


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []) or [])


def dashboard_queries(dash: dict):
    for p in iter_panels(dash.get("panels", [])):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                yield p.get("title", "?"), t.get("refId", "?"), t["expr"]


def substitute(expr: str) -> str:
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    left = re.findall(r"\$\{?\w+", expr)
    if left:
        raise CheckFailed(f"unknown Grafana variable(s) {left} in: {expr}")
    return expr


def check_grafana_static(res: Results) -> None:
    section("Grafana: provisioning and dashboard JSON")
    ds = load_yaml(MON / "grafana/provisioning/datasources/prometheus.yml")
    uids = {d.get("uid") for d in ds.get("datasources", []) if d.get("type") == "prometheus"}
    prov = load_yaml(MON / "grafana/provisioning/dashboards/fraudlake.yml")
    paths = {p.get("options", {}).get("path") for p in prov.get("providers", [])}
    compose = load_yaml(REPO / "docker-compose.yml")
    mounts = compose["services"]["grafana"].get("volumes", [])

    def check():
        problems = []
        if not uids:
            problems.append("no prometheus datasource provisioned")
        if not any(m.split(":")[1] in paths for m in mounts if m.startswith("./monitoring/grafana/dashboards:")):
            problems.append(f"the dashboards provider path {paths} is not where docker-compose.yml mounts monitoring/grafana/dashboards")
        files = dashboard_files()
        if not files:
            problems.append("no dashboard JSON")
        for f in files:
            dash = json.loads(f.read_text(encoding="utf-8"))
            ids = [p.get("id") for p in iter_panels(dash.get("panels", []))]
            if len(ids) != len(set(ids)):
                problems.append(f"{f.name}: duplicate panel ids")
            var = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
            if var.get("datasource", {}).get("current", {}).get("value") not in uids:
                problems.append(f"{f.name}: the datasource variable does not default to a provisioned uid {uids}")
            for p in iter_panels(dash.get("panels", [])):
                if p.get("type") == "row":
                    continue
                if not p.get("gridPos"):
                    problems.append(f"{f.name}: panel {p.get('title')!r} has no gridPos")
                if not p.get("targets"):
                    problems.append(f"{f.name}: panel {p.get('title')!r} has no query")
                for t in p.get("targets", []):
                    if (t.get("datasource") or p.get("datasource") or {}).get("uid") != "${datasource}":
                        problems.append(f"{f.name}: panel {p.get('title')!r} does not use ${{datasource}}")
                    substitute(t.get("expr", ""))
        if problems:
            raise CheckFailed("\n".join(problems))

    res.run("grafana: datasource and dashboard provisioning match docker-compose.yml; panels well-formed", check)


# --------------------------------------------------------------------------------- docker
def check_docker(res: Results) -> None:
    # Static checks only; `make docker-test` (deploy/tests/docker_test.py) builds and runs them.
    section("Docker: compose schema, Dockerfile lint")
    schema = json.loads((HERE / "compose-spec.schema.json").read_text(encoding="utf-8"))
    compose = load_yaml(REPO / "docker-compose.yml")

    def schema_check():
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
        if errors:
            raise CheckFailed("\n".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:20]))

    res.run("docker-compose.yml validates against the Compose specification JSON schema", schema_check)

    def references():
        problems = []
        services = compose.get("services", {})
        for want in ("fraudlake-1", "fraudlake-2", "scheduler", "redis", "haproxy", "prometheus", "alertmanager",
                     "grafana"):
            if want not in services:
                problems.append(f"service {want} missing")
        defined = set((compose.get("secrets") or {}).keys())
        for name, svc in services.items():
            for v in svc.get("volumes", []) or []:
                src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
                if src.startswith("."):
                    if not (REPO / src).exists():
                        problems.append(f"{name}: mounts {src}, which does not exist")
                elif src and src not in (compose.get("volumes") or {}):
                    problems.append(f"{name}: named volume {src} is not declared")
            for s in svc.get("secrets", []) or []:
                sname = s if isinstance(s, str) else s.get("source")
                if sname not in defined:
                    problems.append(f"{name}: secret {sname} is not defined")
            for d in svc.get("depends_on", []) or []:
                if d not in services:
                    problems.append(f"{name}: depends on unknown service {d}")
        for name in ("fraudlake-1", "fraudlake-2", "scheduler", "lake-seed"):
            if not [v for v in services.get(name, {}).get("volumes", []) if str(v) == "lake:/lake"]:
                problems.append(f"{name}: the lake volume is not at /lake")
        # Every secret file alertmanager.yml reads is mounted by compose.
        am = (MON / "alertmanager.yml").read_text(encoding="utf-8")
        needed = set(re.findall(re.escape(SECRETS_DIR) + r"(\w+)", am))
        targets = {s.get("target") for s in services.get("alertmanager", {}).get("secrets", []) if isinstance(s, dict)}
        for n in sorted(needed):
            if SECRETS_DIR + n not in targets:
                problems.append(f"alertmanager: secret file {SECRETS_DIR}{n} is not mounted")
        if problems:
            raise CheckFailed("\n".join(problems))

    res.run("docker-compose.yml: the services, lake volume, mounted files exist, every Alertmanager secret mounted",
            references)

    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        res.record("hadolint Dockerfile", False, "hadolint not installed (pip install -r monitoring/tests/requirements.txt)")
    else:
        version = run_cmd([hadolint, "--version"])[1].strip()
        for f in [REPO / "Dockerfile", *sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))]:
            rc, out = run_cmd([hadolint, "--no-color", "--failure-threshold", "style", "--trusted-registry", "docker.io",
                               f], cwd=str(REPO))
            res.record(f"hadolint {f.relative_to(REPO)}, every level fails ({version})", rc == 0, out)

    def dockerfile_rules():
        text = (REPO / "Dockerfile").read_text(encoding="utf-8")
        joined = re.sub(r"\\\n", " ", text)
        lines = [l.strip() for l in joined.splitlines() if l.strip() and not l.strip().startswith("#")]
        froms = [l for l in lines if l.upper().startswith("FROM ")]
        # Global ARGs (before the first FROM) with their defaults: the bases a plain build uses.
        args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", joined[:joined.upper().find("\nFROM ")], re.M))
        stages = {f.split()[-1] for f in froms if " AS " in f.upper()}
        problems = []
        if len(froms) < 2:
            problems.append("not multi-stage (one FROM)")
        for f in froms:
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), f.split()[1])
            if image.lower() == "scratch" or image in stages:  # binary-${FRAUDLAKE_BINARY}: a stage
                continue
            if ":" not in image or image.endswith(":latest"):
                problems.append(f"base image not pinned to a version: {image}")
        last = joined[joined.upper().rfind("\nFROM "):]
        base = re.match(r"FROM\s+\$\{(\w+)\}", last.strip())
        if not (base and args.get(base.group(1)) == "debian:bookworm-slim"):
            problems.append("the runtime stage is not debian:bookworm-slim by default")
        if not re.search(r"^FROM\s+\S+\s+AS\s+runtime\s*$", last.strip(), re.I | re.M):
            problems.append("the last stage is not named runtime (docker build --target runtime)")
        users = re.findall(r"^USER\s+(\S+)", last, re.M)
        if not users or users[-1].split(":")[0] in ("root", "0"):
            problems.append("the runtime stage does not switch to a non-root USER")
        if not re.search(r"^HEALTHCHECK\s.*?/health", last, re.M | re.S):
            problems.append("no HEALTHCHECK on /health")
        if not re.search(r"^EXPOSE\s+8080\b", last, re.M):
            problems.append("no EXPOSE 8080")
        if not re.search(r'^VOLUME\s+\[?"?/lake', last, re.M):
            problems.append("no VOLUME /lake")
        if re.search(r"^ADD\s+(--\S+\s+)*https?://", joined, re.M | re.I):
            problems.append("ADD of a URL")
        if "/out/lib" not in last:
            problems.append("libxgboost is not copied into the runtime stage")
        cmd = re.search(r"^CMD\s+(\[.*\])", last, re.M)
        want = ["fraudlake", "--lake", "/lake", "serve", "--addr", "0.0.0.0:8080", "--scheduler"]
        if not cmd or json.loads(cmd.group(1)) != want:
            problems.append(f"CMD is not {want}")
        if problems:
            raise CheckFailed("\n".join(problems))

    res.run("Dockerfile: multi-stage, pinned bases, slim runtime, non-root USER, HEALTHCHECK /health, "
            "EXPOSE 8080, VOLUME /lake, libxgboost copied, no ADD of URLs", dockerfile_rules)

    def dockerignore():
        ignored = {l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
        problems = [p for p in ("target", ".git", ".venv", "lake") if p not in ignored]
        # what the build needs must not be ignored
        problems += [f"{p} is needed by the build" for p in ("sql", "dags", ".cargo", "build-support", "Cargo.lock") if p in ignored]
        if problems:
            raise CheckFailed("\n".join(problems))

    res.run(".dockerignore: no target/.git/.venv/lake in the context, the build's inputs kept", dockerignore)


# --------------------------------------------------------------------------------- e2e helpers
def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def fetch(method: str, url: str, body=None, timeout: float = 5.0, content_type="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as e:
        return 0, str(e).encode()


def wait_until(fn, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Processes:
    """Every process the test starts, each in its own process group; stop_all ends them by pid."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args, **kw) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        p = subprocess.Popen([str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        log.close()
        self.procs.append((name, p))
        return p

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def stop(p: subprocess.Popen, timeout: float = 15) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def stop_all(self) -> None:
        for _, p in reversed(self.procs):
            self.stop(p, timeout=10)


class Inbox:
    """What the fake Slack/PagerDuty webhook and the fake SMTP server received."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[dict] = []

    def add(self, item: dict) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, pred, timeout: float):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for it in self.items:
                    try:
                        if pred(it):
                            return it
                    except (KeyError, TypeError, IndexError, AttributeError):
                        pass
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def summary(self) -> str:
        with self.cond:
            out = []
            for it in self.items:
                if it["kind"] == "http":
                    out.append(f"{it['path']}: {it['raw'][:300]}")
                else:
                    out.append(f"smtp to {it['to']}: {it['subject']}")
            return "\n".join(out) or "(nothing received)"


def webhook_server(inbox: Inbox, port: int) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            inbox.add({"kind": "http", "path": self.path, "body": body, "raw": raw.decode("utf-8", "replace"),
                       "at": time.time()})
            if self.path.startswith("/pagerduty"):
                payload = json.dumps({"status": "success", "message": "Event processed",
                                      "dedup_key": (body or {}).get("dedup_key", "")}).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
            else:
                payload = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _SMTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def smtp_server(inbox: Inbox, port: int) -> socketserver.TCPServer:
    """Just enough ESMTP for Alertmanager: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            def send(line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            send("220 127.0.0.1 fraudlake-monitoring-test ESMTP")
            auth = None
            mail = {"from": None, "to": []}
            while True:
                raw = self.rfile.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.wfile.write(b"250-127.0.0.1\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 10485760\r\n")
                    self.wfile.flush()
                elif verb == "HELO":
                    send("250 127.0.0.1")
                elif verb == "AUTH":
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].upper() == "PLAIN":
                        token = parts[2] if len(parts) > 2 else None
                        if token is None:
                            send("334 ")
                            token = self.rfile.readline().decode().strip()
                        fields = base64.b64decode(token).split(b"\0")
                        auth = (fields[1].decode(), fields[2].decode()) if len(fields) == 3 else None
                        send("235 2.7.0 Authentication successful")
                    else:
                        send("504 5.5.4 only PLAIN")
                elif verb == "MAIL":
                    mail = {"from": line.split(":", 1)[1].strip(" <>"), "to": []}
                    send("250 2.1.0 OK")
                elif verb == "RCPT":
                    mail["to"].append(line.split(":", 1)[1].strip(" <>"))
                    send("250 2.1.5 OK")
                elif verb == "DATA":
                    send("354 End data with <CR><LF>.<CR><LF>")
                    body = []
                    while True:
                        l2 = self.rfile.readline()
                        if not l2 or l2 in (b".\r\n", b".\n"):
                            break
                        if l2.startswith(b".."):
                            l2 = l2[1:]
                        body.append(l2)
                    data = b"".join(body).decode("utf-8", "replace")
                    msg = email.message_from_string(data)
                    text = []
                    for part in msg.walk():
                        if part.get_content_maintype() == "text":
                            payload = part.get_payload(decode=True)
                            if payload:
                                text.append(payload.decode("utf-8", "replace"))
                    inbox.add({"kind": "smtp", "from": mail["from"], "to": list(mail["to"]), "auth": auth,
                               "subject": str(msg.get("Subject", "")), "text": "\n".join(text), "at": time.time()})
                    send("250 2.0.0 OK queued")
                elif verb in ("RSET", "NOOP"):
                    send("250 2.0.0 OK")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 not implemented")

    server = _SMTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def render_prometheus(dest: Path, fl_addr: str, prom_addr: str, am_addr: str) -> Path:
    cfg = load_yaml(MON / "prometheus.yml")
    cfg["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    cfg["global"].setdefault("external_labels", {})["environment"] = "e2e-test"
    rules_dir = dest / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for pattern in cfg.get("rule_files", []):
        for f in sorted(MON.glob(pattern)):
            doc = load_yaml(f)
            for g in doc.get("groups", []):
                for r in g.get("rules", []):
                    if "for" in r:
                        r["for"] = E2E_FOR
            (rules_dir / f.name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            n += 1
    if n == 0:
        raise CheckFailed("prometheus.yml's rule_files match no file")
    cfg["rule_files"] = [str(rules_dir / "*.yml")]
    targets = {"fraudlake": fl_addr, "prometheus": prom_addr, "alertmanager": am_addr}
    jobs = []
    for sc in cfg.get("scrape_configs", []):
        if sc["job_name"] in targets:
            sc["static_configs"] = [{"targets": [targets[sc["job_name"]]]}]
            jobs.append(sc)
    if "fraudlake" not in {j["job_name"] for j in jobs}:
        raise CheckFailed("prometheus.yml has no scrape job 'fraudlake'")
    cfg["scrape_configs"] = jobs
    cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am_addr]}]}]}
    path = dest / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def prom_query(prom: str, expr: str) -> dict:
    status, body = fetch("GET", f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
    try:
        doc = json.loads(body)
    except ValueError:
        return {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}
    return doc


def wait_for_scrapes(prom: str, job: str, after: float, scrapes: int, timeout: float) -> bool:
    """Waits until Prometheus has scraped `job` `scrapes` times after the Unix time `after`
    (the time of its latest scrape, `timestamp(up)`, moved past `after` and then past each
    scrape seen); False once `timeout` seconds passed."""
    seen = after
    deadline = time.monotonic() + timeout
    for _ in range(scrapes):
        def newer() -> bool:
            values = result_values(prom_query(prom, f'timestamp(up{{job="{job}"}})'))
            return bool(values) and values[0] > seen
        if not wait_until(newer, max(0.0, deadline - time.monotonic()), 0.2):
            return False
        seen = result_values(prom_query(prom, f'timestamp(up{{job="{job}"}})'))[0]
    return True


def result_values(doc: dict) -> list[float]:
    data = doc.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [float(result[1])]
    if kind == "vector":
        return [float(s["value"][1]) for s in result]
    if kind == "matrix":
        return [float(v[1]) for s in result for v in s["values"]]
    return []


def fraudlake_binary() -> Path:
    env = os.environ.get("FRAUDLAKE_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return Path(target) / "release" / "fraudlake"


def has_command(fl: Path, *words: str) -> bool:
    rc, _ = run_cmd([fl, *words, "--help"], timeout=30)
    return rc == 0


# --------------------------------------------------------------------------------- e2e
class E2E:
    def __init__(self, res: Results, tmp: Path, prometheus: str, alertmanager: str) -> None:
        self.res = res
        self.tmp = tmp
        self.prometheus_bin = prometheus
        self.alertmanager_bin = alertmanager
        self.procs = Processes(tmp)
        self.inbox = Inbox()
        self.servers = []
        self.fl = fraudlake_binary()

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.procs.stop_all()
            for s in self.servers:
                s.shutdown()
                s.server_close()

    def fail(self, name: str, detail: str) -> None:
        self.res.record(name, False, detail)
        raise _Abort()

    def _run(self) -> None:
        res, tmp = self.res, self.tmp
        section("End to end: fraudlake serve -> Prometheus -> Alertmanager -> Slack/PagerDuty/email")
        if not wait_until(lambda: self.fl.exists() and os.access(self.fl, os.X_OK), timeout=180, interval=2):
            self.fail("fraudlake binary present", f"{self.fl} missing (set FRAUDLAKE_BIN or run make build)")
        fl_port, prom_port, am_port, hook_port, smtp_port = free_ports(5)
        fl_addr, prom_addr, am_addr = f"127.0.0.1:{fl_port}", f"127.0.0.1:{prom_port}", f"127.0.0.1:{am_port}"
        prom, am, fl_url = f"http://{prom_addr}", f"http://{am_addr}", f"http://{fl_addr}"
        self.servers.append(webhook_server(self.inbox, hook_port))
        self.servers.append(smtp_server(self.inbox, smtp_port))

        # ---- the lake: simulated, features, a champion; drift report and DAG run when the
        # binary has those commands.
        work = tmp / "work"
        work.mkdir()
        (work / "sql").symlink_to(REPO / "sql")
        fast_dag = self.copy_dags(work / "dags")
        lake = tmp / "lake"
        env = {**os.environ, "FRAUDLAKE_QUIET": "true", "FRAUDLAKE_FEATURES_SQL": str(REPO / "sql/features.sql"),
               "FRAUDLAKE_LOG_FORMAT": "text", "NO_COLOR": "1",
               "FRAUDLAKE_NOTIFY_WEBHOOK": f"http://127.0.0.1:{hook_port}/notify"}
        for k in ("FRAUDLAKE_LAKE", "FRAUDLAKE_CONFIG", "FRAUDLAKE_DAGS", "FRAUDLAKE_ADDR", "FRAUDLAKE_SCHEDULER"):
            env.pop(k, None)
        steps = [
            ("simulate", ["simulate", "--days", "35", "--customers", "300", "--terminals", "600", "--seed", "7",
                          "--drift-from", "2018-04-29", "--drift-kind", "amount-scale"]),
            ("features build", ["features", "build"]),
            ("train", ["train", "--train-start", "2018-04-01", "--n-estimators", "20"]),
        ]
        optional = [
            (("drift",), "drift", ["drift"]),
            (("dag", "run"), "dag run daily_retrain", ["dag", "run", "daily_retrain", "--date", "2018-05-05"]),
        ]
        for words, name, args in optional:
            if has_command(self.fl, *words):
                steps.append((name, args))
            else:
                res.skip(f"lake: fraudlake {name}", f"this fraudlake has no `{' '.join(words)}` command yet "
                         "(its metrics will be missing from the dashboard check)")
        t0 = time.monotonic()
        for name, args in steps:
            rc, out = run_cmd([self.fl, "--lake", lake, *args], timeout=300, cwd=str(work), env=env)
            if rc != 0:
                self.fail(f"lake: fraudlake {name}", out)
        res.record(f"lake: {', '.join(n for n, _ in steps)} ({time.monotonic() - t0:.1f}s)", True)

        # ---- fraudlake serve
        serve_help = run_cmd([self.fl, "serve", "--help"])[1]
        serve = [self.fl, "--lake", lake, "serve", "--addr", fl_addr, "--flush-ms", "500", "--reload-secs", "1"]
        if "--insecure-no-auth" in serve_help:
            # Loopback, and who may call the API is not what this test checks.
            serve.append("--insecure-no-auth")
        if "--scheduler" in serve_help:
            serve.append("--scheduler")
            if fast_dag:
                print(f"INFO  dags: a copy of {fast_dag} runs every 5 s in the embedded scheduler "
                      "(fraud_dag_runs_total and task durations count this process's runs)", flush=True)
        else:
            res.skip("serve --scheduler", "this fraudlake's serve has no --scheduler flag yet (no fraud_dag_* series)")
        server = self.procs.start("fraudlake", serve, cwd=str(work), env=env)
        ready = wait_until(lambda: server.poll() is not None or fetch("GET", f"{fl_url}/ready", timeout=2)[0] == 200,
                           timeout=90, interval=0.3)
        if not ready or server.poll() is not None:
            self.fail("fraudlake serve ready", self.procs.log_tail("fraudlake"))
        res.record(f"fraudlake serve ready on {fl_addr}", True)

        # ---- Alertmanager, real config rendered for the test
        am_dir = tmp / "alertmanager"
        am_cfg, secret_values = render_alertmanager(am_dir, f"http://127.0.0.1:{hook_port}", f"127.0.0.1:{smtp_port}")
        am_proc = self.procs.start("alertmanager", [
            self.alertmanager_bin, f"--config.file={am_cfg}", f"--storage.path={am_dir / 'data'}",
            f"--web.listen-address={am_addr}", "--cluster.listen-address=", f"--web.external-url={am}"])
        if not wait_until(lambda: am_proc.poll() is not None or fetch("GET", f"{am}/-/ready", timeout=2)[0] == 200, 60) \
                or am_proc.poll() is not None:
            self.fail("alertmanager ready", self.procs.log_tail("alertmanager"))

        # ---- Prometheus, real config and rules rendered for the test
        prom_dir = tmp / "prometheus"
        prom_cfg = render_prometheus(prom_dir, fl_addr, prom_addr, am_addr)
        prom_proc = self.procs.start("prometheus", [
            self.prometheus_bin, f"--config.file={prom_cfg}", f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address={prom_addr}", f"--web.console.templates={prom_dir}",
            f"--web.console.libraries={prom_dir}"])
        if not wait_until(lambda: prom_proc.poll() is not None or fetch("GET", f"{prom}/-/ready", timeout=2)[0] == 200, 60) \
                or prom_proc.poll() is not None:
            self.fail("prometheus ready", self.procs.log_tail("prometheus"))

        def target_up():
            doc = prom_query(prom, 'up{job="fraudlake"} == 1')
            return doc.get("status") == "success" and doc["data"]["result"]

        if not wait_until(target_up, 30):
            self.fail("prometheus scrapes fraudlake", json.dumps(prom_query(prom, "up")) + "\n" + self.procs.log_tail("prometheus"))
        rules_ok, rules_body = fetch("GET", f"{prom}/api/v1/rules")
        groups = json.loads(rules_body)["data"]["groups"] if rules_ok == 200 else []
        res.record(f"prometheus {prom_addr} scrapes fraudlake, alertmanager {am_addr}, "
                   f"{sum(len(g['rules']) for g in groups)} rules loaded", bool(groups))

        # ---- traffic: 80% valid transactions (some large: declines), 20% invalid requests
        t0 = time.monotonic()
        counts = self.traffic(fl_url, n=320, seconds=8.0)
        res.record(f"traffic: {counts} in {time.monotonic() - t0:.1f}s", counts.get("score_200", 0) > 0
                   and counts.get("score_4xx", 0) > 0)
        # A few more scrapes of the server after the traffic (each dashboard query below is run
        # once): waited for as a condition, since a loaded machine delays scrapes past any pause.
        if not wait_for_scrapes(prom, "fraudlake", after=time.time(), scrapes=3, timeout=120):
            res.record("prometheus scraped fraudlake 3 times after the traffic (120 s)", False,
                       json.dumps(prom_query(prom, 'timestamp(up{job="fraudlake"})'))[:500])

        # ---- every dashboard query returns data
        section("Dashboard queries against the e2e Prometheus (after traffic)")
        self.check_dashboards(prom)

        # ---- alerts
        section("Alert delivery")

        def slack(secret: str, alertname: str, severity: str):
            def pred(it):
                if it["kind"] != "http" or it["path"] != f"/slack/{secret}":
                    return False
                att = it["body"]["attachments"][0]
                fields = {f["title"]: f["value"] for f in att.get("fields", [])}
                return (fields.get("alertname") == alertname and fields.get("severity") == severity
                        and att["title"].startswith("[FIRING") and f"{alertname} ({severity})" in att["title"])
            return pred

        # 1. FraudlakeHighClientErrorRatio, from Prometheus, to Slack #fraudlake-alerts
        got = self.inbox.wait(slack("slack_alerts_webhook_url", "FraudlakeHighClientErrorRatio", "warning"), 90)
        ok = bool(got) and f"instance={fl_addr}" in got["body"]["attachments"][0]["text"] \
            and "team=platform" in got["body"]["attachments"][0]["text"]
        res.record("FraudlakeHighClientErrorRatio (20% invalid requests) -> Slack #fraudlake-alerts with "
                   "alertname, severity=warning, team=platform, instance labels", ok,
                   (json.dumps(got["body"], indent=1) if got else "") + "\n" + self.inbox.summary())

        # 2. team=ml: Slack #fraud-ml and email to the ML team (SMTP AUTH with the secret's password)
        now = dt.datetime.now(dt.timezone.utc)
        injected = [{"labels": {"alertname": "FraudlakeE2ETestAlert", "severity": "warning", "team": "ml",
                                "job": "fraudlake", "e2e": "injected"},
                     "annotations": {"summary": "injected by monitoring/tests/run.py",
                                     "description": "checks the ml-team route", "runbook_url": "monitoring/RUNBOOK.md"},
                     "startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(minutes=10)).isoformat()}]
        status, body = fetch("POST", f"{am}/api/v2/alerts", injected)
        if status != 200:
            self.fail("post an alert to Alertmanager", f"HTTP {status}: {body[:300]!r}")
        mail = self.inbox.wait(lambda it: it["kind"] == "smtp" and ML_EMAIL in it["to"]
                               and "FraudlakeE2ETestAlert (warning)" in it["subject"], 60)
        ok = bool(mail) and mail["auth"] == ("fraudlake-alerts@example.com", TEST_SECRETS["smtp_password"]) \
            and "team=ml" in mail["text"] and "severity=warning" in mail["text"]
        res.record(f"team=ml warning -> email to {ML_EMAIL} (SMTP AUTH PLAIN with the password file), labels in the body",
                   ok, (repr({k: mail[k] for k in ('to', 'auth', 'subject')}) + "\n" + mail["text"][:800] if mail else "")
                   + "\n" + self.inbox.summary())
        got = self.inbox.wait(slack("slack_ml_webhook_url", "FraudlakeE2ETestAlert", "warning"), 30)
        res.record("team=ml warning -> Slack #fraud-ml", bool(got), self.inbox.summary())

        # 3. FraudlakeDatasetDrift, when the lake's drift report flags it
        doc = prom_query(prom, 'max(fraud_dataset_drift{job="fraudlake"})')
        values = result_values(doc) if doc.get("status") == "success" else []
        if not values:
            res.skip("FraudlakeDatasetDrift -> Slack #fraud-ml", "fraud_dataset_drift is not exposed by this fraudlake")
        elif values[0] < 1:
            res.skip("FraudlakeDatasetDrift -> Slack #fraud-ml", "the test lake's drift report flags no dataset drift")
        else:
            got = self.inbox.wait(slack("slack_ml_webhook_url", "FraudlakeDatasetDrift", "warning"), 60)
            res.record("FraudlakeDatasetDrift (drift report of the test lake) -> Slack #fraud-ml", bool(got),
                       self.inbox.summary())

        # 4. the server stops: FraudlakeApiDown -> PagerDuty + Slack #fraudlake-oncall
        t0 = time.monotonic()
        self.procs.stop(server)

        def pagerduty(it):
            if it["kind"] != "http" or it["path"] != "/pagerduty":
                return False
            b = it["body"]
            d = b["payload"]["custom_details"]
            return d["alertname"] == "FraudlakeApiDown" and b["event_action"] == "trigger"

        got = self.inbox.wait(pagerduty, 90)
        took = time.monotonic() - t0
        ok = bool(got)
        detail = self.inbox.summary()
        if got:
            b = got["body"]
            checks = {
                "routing_key from the secret file": b.get("routing_key") == TEST_SECRETS["pagerduty_routing_key"],
                "payload.severity == critical": b["payload"].get("severity") == "critical",
                "custom_details.severity == critical": b["payload"]["custom_details"].get("severity") == "critical",
                "custom_details.team == platform": b["payload"]["custom_details"].get("team") == "platform",
                "summary names the instance": fl_addr in b["payload"]["custom_details"].get("summary", ""),
            }
            ok = all(checks.values())
            detail = json.dumps(b, indent=1) + "\n" + "\n".join(f"{k}: {v}" for k, v in checks.items())
        res.record(f"server stopped -> FraudlakeApiDown -> PagerDuty (routing key, severity=critical, team=platform) "
                   f"in {took:.1f}s", ok, detail)
        got = self.inbox.wait(slack("slack_oncall_webhook_url", "FraudlakeApiDown", "critical"), 30)
        ok = bool(got) and f"instance={fl_addr}" in got["body"]["attachments"][0]["text"]
        res.record("FraudlakeApiDown -> Slack #fraudlake-oncall with alertname, severity=critical, instance", ok,
                   self.inbox.summary())

        # 5. inhibition: FraudlakeApiDown silences the latency alert of the same instance only
        now = dt.datetime.now(dt.timezone.utc)
        latency = [{"labels": {"alertname": "FraudlakeHighLatencyP99", "severity": "critical", "team": "platform",
                               "job": "fraudlake", "instance": inst, "e2e": "injected"},
                    "annotations": {"summary": "injected", "description": "inhibition check",
                                    "runbook_url": "monitoring/RUNBOOK.md#fraudlakehighlatencyp99"},
                    "startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(minutes=10)).isoformat()}
                   for inst in (fl_addr, "127.0.0.1:1")]
        status, body = fetch("POST", f"{am}/api/v2/alerts", latency)
        if status != 200:
            self.fail("post latency alerts to Alertmanager", f"HTTP {status}: {body[:300]!r}")

        def states():
            q = urllib.parse.urlencode([("filter", 'alertname="FraudlakeHighLatencyP99"'), ("filter", 'e2e="injected"')])
            st, b = fetch("GET", f"{am}/api/v2/alerts?{q}")
            if st != 200:
                return None
            by = {a["labels"]["instance"]: a["status"] for a in json.loads(b)}
            down, other = by.get(fl_addr), by.get("127.0.0.1:1")
            if down and other and down["state"] == "suppressed" and down["inhibitedBy"] and other["state"] == "active":
                return by
            return None

        by = wait_until(states, 20, 0.5)
        res.record("inhibition: FraudlakeApiDown suppresses FraudlakeHighLatencyP99 of the same instance, "
                   "not of another instance", bool(by), json.dumps(by) if by else
                   fetch("GET", f"{am}/api/v2/alerts")[1].decode()[:2000])

    @staticmethod
    def copy_dags(dest: Path) -> str | None:
        """The repo's DAG files for the test: retry backoffs of 1 s (a failing task must not stall
        the test for minutes), and E2E_FAST_DAG every 5 s so that `serve --scheduler` runs it
        while the test watches (fraud_dag_runs_total and task durations count in-process runs;
        the last success and failure come from the lake's history). Returns the fast DAG."""
        dest.mkdir()
        fast = None
        for f in sorted((REPO / "dags").glob("*.toml")):
            text = f.read_text(encoding="utf-8")
            text = re.sub(r"(?m)^(\s*retry_backoff_secs\s*=\s*)\d+", r"\g<1>1", text)
            if f.stem == E2E_FAST_DAG:
                text, n = re.subn(r'(?m)^schedule\s*=\s*"[^"]*"', 'schedule = "*/5 * * * * *"', text)
                fast = f.stem if n == 1 else None
            (dest / f.name).write_text(text, encoding="utf-8")
        return fast

    def traffic(self, base: str, n: int, seconds: float) -> dict:
        rng = random.Random(7)
        counts: dict[str, int] = {}
        start_ts = dt.datetime(2018, 5, 6, tzinfo=dt.timezone.utc)
        t0 = time.monotonic()
        scored: list[int] = []

        def count(key: str, status: int) -> None:
            k = f"{key}_{status}" if status == 200 else f"{key}_{status // 100}xx"
            counts[k] = counts.get(k, 0) + 1

        def tx(i: int, amount: float) -> dict:
            return {"tx_id": 70_000_000 + i, "tx_ts": (start_ts + dt.timedelta(seconds=30 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "customer_id": rng.randrange(300), "terminal_id": rng.randrange(600), "amount": round(amount, 2)}

        for i in range(n):
            kind = i % 10
            if kind == 0:
                status, _ = fetch("POST", f"{base}/score", b'{"tx_id": 1, "amount": ')  # invalid JSON: 400
            elif kind == 1:
                status, _ = fetch("POST", f"{base}/score", {**tx(i, 10.0), "amount": -5})  # invalid field: 422
            else:
                amount = rng.uniform(300, 2000) if kind == 2 else rng.uniform(5, 150)
                status, _ = fetch("POST", f"{base}/score", tx(i, amount))
                if status == 200:
                    scored.append(70_000_000 + i)
            count("score", status)
            if i % 40 == 20:
                batch = {"transactions": [tx(n + i * 10 + j, rng.uniform(5, 150)) for j in range(5)]}
                count("batch", fetch("POST", f"{base}/score/batch", batch)[0])
            if i % 40 == 39 and scored:
                labels = [{"tx_id": t, "is_fraud": rng.random() < 0.2} for t in scored[-5:]]
                count("labels", fetch("POST", f"{base}/labels", labels)[0])
            # spread over `seconds`: several scrapes see the counters move
            lag = t0 + seconds * (i + 1) / n - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        count("models_current", fetch("GET", f"{base}/models/current")[0])
        return counts

    def check_dashboards(self, prom: str) -> None:
        res = self.res
        for f in dashboard_files():
            dash = json.loads(f.read_text(encoding="utf-8"))
            for v in dash.get("templating", {}).get("list", []):
                if v.get("type") != "query":
                    continue
                q = v.get("definition") or (v.get("query") or {}).get("query", "")
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
                if not m:
                    res.record(f"{f.name} variable ${v['name']}: {q}", False, "not a label_values(selector, label) query")
                    continue
                qs = urllib.parse.urlencode({"match[]": m.group(1)})
                st, body = fetch("GET", f"{prom}/api/v1/label/{m.group(2)}/values?{qs}")
                values = json.loads(body).get("data", []) if st == 200 else []
                res.record(f"{f.name} variable ${v['name']}: {q} -> {values}", bool(values), body.decode()[:500])
            for title, ref, expr in dashboard_queries(dash):
                name = f"{f.name} [{title}] {ref}"
                try:
                    q = substitute(expr)
                except CheckFailed as e:
                    res.record(name, False, str(e))
                    continue
                doc = prom_query(prom, q)
                if doc.get("status") != "success":
                    res.record(name, False, f"query: {q}\nerror: {doc.get('errorType')}: {doc.get('error')}")
                    continue
                values = result_values(doc)
                real = [x for x in values if not math.isnan(x)]
                if not values:
                    res.record(name, False, f"query: {q}\nparses, but returned no data")
                elif not real:
                    res.record(name, False, f"query: {q}\nreturned only NaN")
                else:
                    res.record(f"{name}: {len(values)} series", True)


class _Abort(Exception):
    """A step the rest of the end-to-end test depends on failed (already recorded)."""


# --------------------------------------------------------------------------------- main
def main() -> int:
    started = time.monotonic()
    res = Results()
    promtool = need_tool("promtool")
    amtool = need_tool("amtool")
    prometheus = need_tool("prometheus")
    alertmanager = need_tool("prometheus-alertmanager", "alertmanager")
    print(f"monitoring-test: {run_cmd([prometheus, '--version'])[1].splitlines()[0]}; "
          f"{run_cmd([alertmanager, '--version'])[1].splitlines()[0]}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="fraudlake-monitoring-"))
    keep = os.environ.get("MONITORING_KEEP_TMP") == "1"
    e2e = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        check_prometheus(res, promtool)
        check_alertmanager(res, amtool, tmp)
        check_grafana_static(res)
        check_docker(res)
        e2e = E2E(res, tmp, prometheus, alertmanager)
        try:
            e2e.run()
        except _Abort:
            pass
        except Exception:  # noqa: BLE001
            res.record("end-to-end test", False, traceback.format_exc())
    except KeyboardInterrupt as e:
        res.record("interrupted", False, str(e))
    finally:
        if e2e is not None:
            e2e.procs.stop_all()
        if res.failed and e2e is not None:
            for name in ("fraudlake", "prometheus", "alertmanager"):
                tail = e2e.procs.log_tail(name, 15)
                if tail:
                    print(f"\n-- last lines of {name}.log\n{tail}")
        if keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    return res.finish("monitoring-test", started)


if __name__ == "__main__":
    sys.exit(main())
