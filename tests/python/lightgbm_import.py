"""The Python side of importing a LightGBM model (cli/tests/it/lightgbm.rs, issue #18): a model
trained with Python `lightgbm` on the features of a fraudlake lake, read with the `deltalake`
package (no fraudlake code), saved as LightGBM's text model; and LightGBM's own predictions of
rows the fraudlake server scored, for the test to compare with what it served.

Usage:
  lightgbm_import.py train LAKE OUT_DIR FEATURES FROM TO
      FEATURES: the feature names, comma-separated, in the feature set's order (the model's
      columns); FROM, TO: the first and last training day (YYYY-MM-DD). Reads `features` rows
      of those days and the label of each transaction (the latest; none: not fraud), trains a
      binary model, writes OUT_DIR/model.txt (`Booster.save_model`). Prints JSON: the file,
      rows, frauds, trees, feature names, the LightGBM version.
  lightgbm_import.py predict MODEL_TXT ROWS_CSV
      ROWS_CSV: a header of feature names, then one row per line; empty cells are missing
      values. Prints JSON: per row LightGBM's probability (`predict`), raw score
      (`raw_score=True`) and contributions (`pred_contrib=True`: per feature, then the bias).

CPU: 60 trees of 15 leaves on a few thousand rows, one thread: well under a second."""
import csv
import json
import math
import os
import sys

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

PARAMS = {
    "objective": "binary",
    "num_leaves": 15,
    "learning_rate": 0.1,
    "min_data_in_leaf": 20,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
ROUNDS = 60


def training_rows(lake, names, first, last):
    """(X float64 with NaN for null, y 0/1) of the `features` rows of days first..last."""
    features = DeltaTable(f"{lake}/features").to_pyarrow_table()
    day = pc.cast(features["tx_date"], pa.string())
    keep = pc.and_(pc.greater_equal(day, first), pc.less_equal(day, last))
    features = features.filter(keep)
    labels = DeltaTable(f"{lake}/labels").to_pyarrow_table(
        columns=["tx_id", "is_fraud", "labeled_at"]
    )
    order = pc.sort_indices(labels, sort_keys=[("labeled_at", "ascending")])
    labels = labels.take(order)
    # The latest label of each transaction wins (a simulated lake has one per transaction).
    latest = dict(zip(labels["tx_id"].to_pylist(), labels["is_fraud"].to_pylist()))
    y = np.array(
        [1.0 if latest.get(t) else 0.0 for t in features["tx_id"].to_pylist()],
        dtype=np.float64,
    )
    x = np.column_stack(
        [
            pc.cast(features[name], pa.float64()).to_numpy(zero_copy_only=False)
            for name in names
        ]
    ).astype(np.float64)
    return x, y


def train(lake, out_dir, names, first, last):
    x, y = training_rows(lake.rstrip("/"), names, first, last)
    if len(y) == 0 or y.sum() == 0:
        raise SystemExit(f"no rows or no fraud in {first}..{last}: {len(y)} rows")
    data = lgb.Dataset(x, label=y, feature_name=names, free_raw_data=False)
    booster = lgb.train(PARAMS, data, num_boost_round=ROUNDS)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.txt")
    booster.save_model(path)
    return {
        "model": path,
        "rows": int(len(y)),
        "frauds": int(y.sum()),
        "trees": booster.num_trees(),
        "feature_names": booster.feature_name(),
        "lightgbm": lgb.__version__,
    }


def read_rows(path):
    """(feature names, float64 matrix with NaN for empty cells)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        values = [[float(v) if v != "" else math.nan for v in row] for row in reader if row]
    return header, np.asarray(values, dtype=np.float64).reshape(-1, len(header))


def predict(model_path, rows_path):
    names, x = read_rows(rows_path)
    booster = lgb.Booster(model_file=model_path)
    if booster.feature_name() != names:
        raise SystemExit(f"rows of {names}, a model of {booster.feature_name()}")
    return {
        "rows": int(x.shape[0]),
        "probability": booster.predict(x).tolist(),
        "raw": booster.predict(x, raw_score=True).tolist(),
        "contributions": booster.predict(x, pred_contrib=True).tolist(),
    }


def main(args):
    if len(args) == 6 and args[0] == "train":
        out = train(args[1], args[2], args[3].split(","), args[4], args[5])
    elif len(args) == 3 and args[0] == "predict":
        out = predict(args[1], args[2])
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out))
    sys.stdout.flush()


main(sys.argv[1:])
# Skip interpreter teardown: pyarrow/deltalake native thread pools sometimes abort at exit
# (as read_lake.py notes), after the work is done.
os._exit(0)
