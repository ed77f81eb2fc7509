"""MLflow interop check: read what `fraudlake models sync` logged through MLflow's own client
(no fraudlake code), and load the champion with `mlflow.pyfunc`.

Usage: mlflow_check.py TRACKING_URI EXPECT_JSON
EXPECT_JSON: {"registered_model", "experiment", "versions": `models list --format json`,
              "champion": N, "challenger": N,
              "loads": [{"alias": "champion" | "version": N, "rows": ROWS_CSV}, ...]}
Each load is loaded with `mlflow.pyfunc.load_model` through the registry
(`models:/NAME@ALIAS`, or `models:/NAME/MV` for the model version that mirrors fraudlake's
version N) and with its own flavor (`mlflow.xgboost` / `mlflow.lightgbm`); ROWS_CSV is a header
of feature names plus `native` (fraudlake's probability for that version); empty cells are
missing values.

Prints one JSON object; `problems` lists every mismatch found (empty when all is well)."""
import json
import os
import sys

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model
from mlflow.tracking import MlflowClient

import native_rows

uri, expect_path = sys.argv[1], sys.argv[2]
with open(expect_path) as f:
    expect = json.load(f)
mlflow.set_tracking_uri(uri)
client = MlflowClient()
problems = []
name = expect["registered_model"]
lake_versions = {v["version"]: v for v in expect["versions"]}

def same_param(logged, value):
    """Whether MLflow's parameter string is the record's value: a string as it is, anything
    else as the JSON text fraudlake logs (`true`, `0.1`, `1e-7`, an object), compared as
    values so that number formatting does not matter."""
    if logged is None:
        return False
    if isinstance(value, str):
        return logged == value
    try:
        return json.loads(logged) == value
    except ValueError:
        return False


# Runs: one per fraudlake version, finished, with its metrics, params and lineage tags.
experiment = client.get_experiment_by_name(expect["experiment"])
runs = client.search_runs([experiment.experiment_id], max_results=1000)
by_version = {}
for run in runs:
    v = run.data.tags.get("fraudlake.version")
    if v is None:
        problems.append(f"run {run.info.run_id} has no fraudlake.version tag")
        continue
    if int(v) in by_version:
        problems.append(f"two runs for fraudlake version {v}")
    by_version[int(v)] = run
if sorted(by_version) != sorted(lake_versions):
    problems.append(f"runs for {sorted(by_version)}, lake has {sorted(lake_versions)}")
for v, run in by_version.items():
    lake = lake_versions.get(v)
    if lake is None:
        continue
    if run.info.status != "FINISHED":
        problems.append(f"run of v{v} is {run.info.status}")
    for metric, value in lake["metric_values"].items():
        got = run.data.metrics.get(metric)
        if value is None:
            if got is not None:
                problems.append(f"v{v} {metric}: MLflow {got}, lake has none")
        elif got is None or abs(got - value) > 1e-12:
            problems.append(f"v{v} {metric}: MLflow {got}, lake {value}")
    for key in ("train_rows", "train_frauds"):
        if run.data.metrics.get(key) != lake["lineage"][key]:
            problems.append(f"v{v} {key}: {run.data.metrics.get(key)} vs {lake['lineage'][key]}")
    if not any(k.startswith("importance.") for k in run.data.metrics):
        problems.append(f"v{v}: no importance metrics")
    for param, value in lake["params"].items():
        if not same_param(run.data.params.get(param), value):
            problems.append(f"v{v} param {param}: {run.data.params.get(param)} vs {value}")
    tags = run.data.tags
    if tags.get("fraudlake.feature_set_sha256") != lake["feature_set"]:
        problems.append(f"v{v}: feature set tag {tags.get('fraudlake.feature_set_sha256')}")
    for t in lake["lineage"]["tables"]:
        if tags.get(f"fraudlake.lineage.{t['table']}") != str(t["version"]):
            problems.append(f"v{v}: lineage of {t['table']}: {tags.get('fraudlake.lineage.' + t['table'])}")
    status = "archived" if lake["archived"] else "active"
    if tags.get("fraudlake.status") != status:
        problems.append(f"v{v}: run status tag {tags.get('fraudlake.status')}, lake {status}")
    # The model directory is what `mlflow.<family>.save_model` writes for a Booster.
    family = lake.get("model_family", "xgboost")
    model_file = {"xgboost": "model.json", "lightgbm": "model.lgb"}.get(family)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, "model_card")}
    for needed in ("model/MLmodel", f"model/{model_file}", "model/requirements.txt",
                   "model/python_env.yaml", "model/conda.yaml", "model_card/card.html"):
        if needed not in artifacts:
            problems.append(f"v{v}: artifact {needed} missing ({sorted(artifacts)})")
    mlmodel = Model.load(f"runs:/{run.info.run_id}/model")
    if sorted(mlmodel.flavors) != sorted([family, "python_function"]):
        problems.append(f"v{v} ({family}): MLmodel flavors {sorted(mlmodel.flavors)}")
    pyfunc_conf = mlmodel.flavors.get("python_function", {})
    if pyfunc_conf.get("loader_module") != f"mlflow.{family}":
        problems.append(f"v{v}: python_function loader {pyfunc_conf.get('loader_module')}")
    if pyfunc_conf.get("data") != model_file or \
            mlmodel.flavors.get(family, {}).get("data") != model_file:
        problems.append(f"v{v}: MLmodel data is not {model_file}: {mlmodel.flavors}")

# Registered model versions: one per fraudlake version, archive status as tags; aliases.
model_versions = client.search_model_versions(f"name = '{name}'")
mv_of = {}
for mv in model_versions:
    v = int(mv.tags.get("fraudlake.version", "-1"))
    if v in mv_of:
        problems.append(f"two model versions for fraudlake version {v}")
    mv_of[v] = mv
    lake = lake_versions.get(v)
    if lake is None:
        problems.append(f"model version {mv.version} mirrors no lake version ({v})")
        continue
    status = "archived" if lake["archived"] else "active"
    if mv.tags.get("fraudlake.status") != status:
        problems.append(f"v{v}: model version status tag {mv.tags.get('fraudlake.status')}")
    run = by_version.get(v)
    if run is None or mv.run_id != run.info.run_id:
        problems.append(f"v{v}: model version {mv.version} points at run {mv.run_id}")
registered = client.get_registered_model(name)
aliases = {a: int(client.get_model_version(name, mv).tags["fraudlake.version"])
           for a, mv in registered.aliases.items()}
wanted = {a: expect[a] for a in ("champion", "challenger") if expect.get(a) is not None}
if aliases != wanted:
    problems.append(f"aliases {aliases}, lake {wanted}")
champion_mv = client.get_model_version_by_alias(name, "champion")


def check_load(load):
    """One model as MLflow users load it: pyfunc through the registry (an alias, or the model
    version mirroring a fraudlake version), then the flavor's own loader."""
    if "alias" in load:
        model_uri = f"models:/{name}@{load['alias']}"
        mv = client.get_model_version_by_alias(name, load["alias"])
    else:
        mv = mv_of.get(load["version"])
        if mv is None:
            problems.append(f"no model version for fraudlake version {load['version']}")
            return None
        model_uri = f"models:/{name}/{mv.version}"
    version = int(mv.tags["fraudlake.version"])
    family = lake_versions[version].get("model_family", "xgboost")
    names, values, native = native_rows.read(load["rows"])
    frame = pd.DataFrame(values, columns=names)
    model = mlflow.pyfunc.load_model(model_uri)
    schema_names = model.metadata.get_input_schema().input_names()
    if schema_names != names:
        problems.append(f"{model_uri}: signature names {schema_names} != feature names {names}")
    loader = model.metadata.flavors["python_function"]["loader_module"]
    if loader != f"mlflow.{family}":
        problems.append(f"{model_uri}: pyfunc loader {loader}, fraudlake family {family}")
    pred = np.asarray(model.predict(frame), dtype=np.float64).reshape(-1)
    diff = np.abs(pred - native)
    if not ((pred >= 0).all() and (pred <= 1).all()):
        problems.append(f"{model_uri}: pyfunc predictions are not probabilities")
    # The native flavor too: mlflow.xgboost / mlflow.lightgbm give the Booster.
    booster = getattr(mlflow, family).load_model(model_uri)
    return {
        "uri": model_uri,
        "version": version,
        "family": family,
        "rows": int(frame.shape[0]),
        "missing_values": int(frame.isna().sum().sum()),
        "max_abs_diff": float(diff.max()),
        "rows_over_1e-6": int((diff > 1e-6).sum()),
        "flavor_class": f"{type(booster).__module__}.{type(booster).__name__}",
    }


loads = [check_load(load) for load in expect["loads"]]
print(json.dumps({
    "runs": len(runs),
    "model_versions": len(model_versions),
    "aliases": aliases,
    "champion_model_version": champion_mv.version,
    "loads": loads,
    "mlflow": mlflow.__version__,
    "problems": problems,
}))
sys.stdout.flush()
os._exit(0)
