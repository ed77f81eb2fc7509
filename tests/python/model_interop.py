"""Interop check: load a fraudlake model artifact with Python XGBoost (no fraudlake code),
predict the rows fraudlake scored natively, and report the largest difference. Also reads
the registry table with the Python `deltalake` package.
Usage: model_interop.py LAKE_DIR MODEL_JSON ROWS_CSV
ROWS_CSV: a header of feature names plus `native`; empty cells are missing values."""
import json
import os
import sys

import numpy as np
import xgboost as xgb
from deltalake import DeltaTable

import native_rows

lake, model_path, rows_path = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
booster = xgb.Booster()
booster.load_model(model_path)

names, x, native = native_rows.read(rows_path)
pred = booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=names))
diff = np.abs(pred.astype(np.float64) - native)

registry = DeltaTable(f"{lake}/model_versions").to_pyarrow_table()
print(json.dumps({
    "rows": int(x.shape[0]),
    "missing_values": int(np.isnan(x).sum()),
    "max_abs_diff": float(diff.max()),
    "rows_over_1e-6": int((diff > 1e-6).sum()),
    "feature_names": booster.feature_names,
    "registry_versions": sorted(registry.column("version").to_pylist()),
    "xgboost": xgb.__version__,
}))
sys.stdout.flush()
os._exit(0)
