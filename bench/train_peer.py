"""The training peers, fit on a training set exported from the lake (bench/run.sh section g).

--model xgboost (default): Python XGBoost (XGBClassifier, the handbook baseline's settings:
100 rounds, depth 6, learning rate 0.3, hist).
--model lightgbm: Python LightGBM (`lgb.train` on a `lgb.Dataset`) with the parameters
`fraudlake bench train --model lightgbm --format json` printed under `params` (--params FILE:
that object as JSON), so that both fit the same model on the same rows. The thread count is
this script's --threads (fraudlake's is the same flag of its run); the rounds come from
whichever LightGBM alias of num_iterations fraudlake printed (default 100); keys LightGBM does
not know, and values that are not numbers, strings or booleans, are left out and listed
under `ignored`. The timed fit is the Dataset construction (binning) plus the boosting, as a
fit from a float matrix through LightGBM's C API is.

Usage: train_peer.py TRAIN.parquet [--model xgboost|lightgbm] [--params FILE] [--threads N]
                     [--repeat N] [--json]
TRAIN.parquet: the feature columns and `is_fraud`, in time order."""
import argparse
import json
import statistics
import time

import pandas as pd

ap = argparse.ArgumentParser()
ap.add_argument("train")
ap.add_argument("--model", choices=("xgboost", "lightgbm"), default="xgboost")
ap.add_argument("--params", help="lightgbm: a JSON file of fraudlake's LightGBM parameters")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--json", action="store_true")
a = ap.parse_args()

df = pd.read_parquet(a.train)
y = df.pop("is_fraud").astype(int)


def fit_xgboost():
    import xgboost as xgb

    x = df.astype("float32")
    times = []
    for _ in range(max(1, a.repeat)):
        clf = xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.3, tree_method="hist",
                                random_state=0, n_jobs=a.threads)
        t0 = time.perf_counter()
        clf.fit(x, y)
        times.append(time.perf_counter() - t0)
    return times, {"xgboost": xgb.__version__}


def lightgbm_params(given):
    """fraudlake's parameters as `lgb.train` takes them: (params, rounds, ignored keys)."""
    import lightgbm as lgb

    aliases = lgb.basic._ConfigAliases._get_all_param_aliases()
    known = {name for names in aliases.values() for name in names} | set(aliases)
    params, ignored = {}, []
    # fraudlake's name for the thread count, if it printed one: --threads is used instead.
    given = {k: v for k, v in given.items() if k != "threads"}
    for key, value in given.items():
        if key not in known or not isinstance(value, (bool, int, float, str)):
            ignored.append(key)
        else:
            params[key] = value
    # LightGBM's own precedence: the main name, then its aliases in LightGBM's order.
    found = [key for key in aliases["num_iterations"] if key in params]
    rounds = int(params[found[0]]) if found else 100
    for key in found:
        params.pop(key)
    for key in aliases["num_threads"]:
        params.pop(key, None)
    params["num_threads"] = a.threads
    params.setdefault("objective", "binary")
    # Quiet: LightGBM's log lines ("[LightGBM] ...") would come before the JSON on stdout.
    for key in aliases["verbosity"]:
        params.pop(key, None)
    params["verbosity"] = -1
    return params, rounds, sorted(ignored)


def fit_lightgbm():
    import lightgbm as lgb

    given = {}
    if a.params:
        with open(a.params) as f:
            given = json.load(f)
    params, rounds, ignored = lightgbm_params(given)
    x = df.to_numpy(dtype="float64")
    names = list(df.columns)
    times, trees = [], 0
    for _ in range(max(1, a.repeat)):
        t0 = time.perf_counter()
        data = lgb.Dataset(x, label=y.to_numpy(), feature_name=names, params=params)
        booster = lgb.train(params, data, num_boost_round=rounds)
        times.append(time.perf_counter() - t0)
        trees = booster.num_trees()
    return times, {"lightgbm": lgb.__version__, "trees": trees, "rounds": rounds, "params": params,
                   "ignored": ignored}


times, extra = fit_lightgbm() if a.model == "lightgbm" else fit_xgboost()
out = {"model": a.model, "rows": int(df.shape[0]), "features": int(df.shape[1]),
       "frauds": int(y.sum()), "fit_median_seconds": statistics.median(times),
       "fit_min_seconds": min(times), **extra}
print(json.dumps(out) if a.json else out)
