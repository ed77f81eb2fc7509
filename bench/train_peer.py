"""The training peer: Python XGBoost (XGBClassifier, the handbook baseline's settings:
100 rounds, depth 6, learning rate 0.3, hist) fit on a training set exported from the lake.
Usage: train_peer.py TRAIN.parquet [--threads N] [--repeat N] [--json]
TRAIN.parquet: the feature columns and `is_fraud`, in time order (bench/run.sh section g)."""
import argparse
import json
import statistics
import time

import pandas as pd
import xgboost as xgb

ap = argparse.ArgumentParser()
ap.add_argument("train")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--json", action="store_true")
a = ap.parse_args()

df = pd.read_parquet(a.train)
y = df.pop("is_fraud").astype(int)
x = df.astype("float32")
times = []
for _ in range(max(1, a.repeat)):
    clf = xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.3, tree_method="hist",
                            random_state=0, n_jobs=a.threads)
    t0 = time.perf_counter()
    clf.fit(x, y)
    times.append(time.perf_counter() - t0)
out = {"rows": int(x.shape[0]), "features": int(x.shape[1]), "frauds": int(y.sum()),
       "fit_median_seconds": statistics.median(times), "fit_min_seconds": min(times),
       "xgboost": xgb.__version__}
print(json.dumps(out) if a.json else out)
