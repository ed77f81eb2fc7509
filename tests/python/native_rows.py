"""Reads the CSV the Rust tests write of feature rows and fraudlake's native predictions
(`native_predictions_csv` in cli/tests/it/models.rs): a header of feature names plus `native`;
empty cells are missing values. Shared by model_interop.py and mlflow_check.py."""
import csv
import math

import numpy as np


def read(path):
    """(feature names, float64 matrix with NaN for missing, native predictions)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        values, native = [], []
        for row in reader:
            values.append([float(v) if v != "" else math.nan for v in row[:-1]])
            native.append(float(row[-1]))
    return header[:-1], np.asarray(values, dtype=np.float64), np.asarray(native)
