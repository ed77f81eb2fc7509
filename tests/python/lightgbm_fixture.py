"""Fixtures for the native LightGBM evaluator (model/src/lightgbm/, cli/tests/it/lightgbm.rs):
train small binary LightGBM models, save them as text (`Booster.save_model`), and write what
LightGBM itself predicts for 10,000 awkward rows, so the Rust side can compare every number.

Usage: lightgbm_fixture.py OUT_DIR

Per model NAME, OUT_DIR gets:
  NAME.model.txt  the model as LightGBM writes it;
  NAME.csv        a header `f0..f4,raw,prob,c_f0..c_f4,c_bias`, then one line per row: the
                  feature values, LightGBM's raw score, probability and pred_contrib (the
                  per-feature SHAP values, then the bias). Floats are Python reprs (they
                  round-trip exactly); `nan`, `inf`, `-inf` as Python writes them.
Prints one JSON object: the LightGBM version and, per model, what the rows exercise (split
kinds by missing type, categorical splits, cells set exactly on a split threshold), so the test
can check that the fixture is not trivially easy.

Why these rows: the evaluator must reproduce LightGBM's `tree.h` decisions exactly, so the
rows hit every rule: NaN (missing type NaN: default direction; otherwise NaN -> 0.0), zeros and
values within 1e-35 of zero (missing type Zero; the C API also drops |x| <= 1e-35 to 0.0),
values exactly on a split threshold and one ulp either side (`x <= threshold` goes left),
negatives and +/-inf, and for categorical splits: unseen categories, negative and fractional
values, values at the 32-bit word boundaries of the bitset, and huge values.

CPU: four models of 30 trees on 3,000 rows, one thread: about a second."""
import json
import math
import os
import sys

import lightgbm as lgb
import numpy as np

NAMES = ["f0", "f1", "f2", "f3", "f4"]
CATEGORICAL = 3
TRAIN_ROWS = 3_000
TEST_ROWS = 10_000
# LightGBM's kZeroThreshold: the float 1e-35f widened to double.
K_ZERO = float(np.float32(1e-35))


def training_data(rng):
    """Five features: f0 normal with NaNs, f1 with many zeros (and a few NaNs), f2 on a
    half-integer grid, f3 a category 0..39 (with NaNs), f4 noise without NaNs in training
    (so its splits have missing type None while test rows still bring NaNs to it)."""
    n = TRAIN_ROWS
    x = np.empty((n, 5))
    x[:, 0] = rng.normal(size=n)
    x[rng.random(n) < 0.15, 0] = np.nan
    x[:, 1] = rng.normal(size=n) * 2.0
    x[rng.random(n) < 0.3, 1] = 0.0
    x[rng.random(n) < 0.05, 1] = np.nan
    x[:, 2] = np.round(rng.uniform(-5, 5, size=n) * 2) / 2
    x[:, 3] = rng.integers(0, 40, size=n)
    x[rng.random(n) < 0.05, 3] = np.nan
    x[:, 4] = rng.uniform(-1, 1, size=n)
    f0 = np.where(np.isnan(x[:, 0]), 1.2, x[:, 0])
    f1 = np.where(np.isnan(x[:, 1]), -1.0, np.where(x[:, 1] == 0.0, 1.5, x[:, 1]))
    f3 = np.where(np.isnan(x[:, 3]), 0.0, np.isin(x[:, 3], [1, 5, 7, 11, 33, 34, 38]) * 2.0)
    signal = f0 + 0.6 * f1 - 0.3 * np.abs(x[:, 2]) + f3 + 0.4 * x[:, 4]
    y = (signal + rng.normal(size=n) > 0.7).astype(np.float64)
    return x, y


def parse_splits(path):
    """Per tree node of the saved model: (feature, threshold token, decision_type), read from
    the text itself so thresholds are the exact doubles LightGBM compares with."""
    splits = []
    with open(path) as f:
        fields = {}
        for line in f:
            line = line.strip()
            if line.startswith("Tree="):
                fields = {}
            elif "=" in line:
                key, value = line.split("=", 1)
                fields[key] = value.split()
                if key == "shrinkage" and fields.get("split_feature"):
                    splits.extend(zip(
                        (int(v) for v in fields["split_feature"]),
                        (float(v) for v in fields["threshold"]),
                        (int(v) for v in fields["decision_type"]),
                    ))
            if line == "end of trees":
                break
    return splits


def special_values(splits, feature, categorical):
    """The awkward values for one feature of one model."""
    common = [math.nan, 0.0, -0.0, 1e-36, -1e-36, K_ZERO, -K_ZERO, 1e-35, -1e-35, 1e-300,
              math.inf, -math.inf, -1.0, -3.5]
    if categorical:
        return common + [0.0, 1.0, 5.0, 7.0, 31.0, 31.7, 32.0, 33.0, 39.0, 40.0, 63.0, 64.0,
                         1000.0, 1e10, -0.5, -0.99, 0.99, 5.5, -1e10, 2.0**31]
    values = list(common)
    for f, threshold, decision_type in splits:
        if f == feature and not decision_type & 1:
            values += [threshold, np.nextafter(threshold, math.inf),
                       np.nextafter(threshold, -math.inf)]
    return values


def test_rows(rng, splits, categorical_model):
    """Fresh rows from the training distribution with about a third of the cells replaced by
    a special value of that feature; returns the rows and how many cells sit exactly on a
    numerical split threshold."""
    x, _ = training_data(rng)
    while x.shape[0] < TEST_ROWS:
        x = np.vstack([x, training_data(rng)[0]])
    x = x[:TEST_ROWS].copy()
    on_threshold = 0
    thresholds = {(f, t) for f, t, d in splits if not d & 1}
    for feature in range(len(NAMES)):
        pool = special_values(splits, feature, categorical_model and feature == CATEGORICAL)
        pick = rng.random(TEST_ROWS) < 0.35
        x[pick, feature] = rng.choice(np.asarray(pool, dtype=np.float64), size=int(pick.sum()))
        on_threshold += sum((feature, float(v)) in thresholds for v in x[pick, feature])
    return x, on_threshold


def describe(splits):
    kinds = {"none": 0, "zero": 0, "nan": 0, "categorical": 0, "default_left": 0}
    for _, _, d in splits:
        if d & 1:
            kinds["categorical"] += 1
        else:
            kinds[("none", "zero", "nan", "none")[(d >> 2) & 3]] += 1
        kinds["default_left"] += bool(d & 2)
    return kinds


def write_rows(path, x, raw, prob, contrib):
    header = NAMES + ["raw", "prob"] + [f"c_{n}" for n in NAMES] + ["c_bias"]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for i in range(x.shape[0]):
            cells = [*x[i], raw[i], prob[i], *contrib[i]]
            f.write(",".join(repr(float(v)) for v in cells) + "\n")


MODELS = {
    # LightGBM's defaults for missing values: NaN is missing where training saw NaNs.
    "default": ({}, []),
    # Zeros (|x| <= 1e-35) are the missing values; NaN becomes 0.0 and so goes with them.
    "zero_as_missing": ({"zero_as_missing": True}, []),
    # No missing-value handling: NaN becomes 0.0 and is compared with the threshold.
    "no_missing": ({"use_missing": False}, []),
    # f3 as a categorical feature: many-vs-many bitset splits (more than 4 categories).
    "categorical": ({"cat_smooth": 1.0, "min_data_per_group": 10, "cat_l2": 1.0,
                     "max_cat_threshold": 16}, [CATEGORICAL]),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    report = {"lightgbm": lgb.__version__, "rows": TEST_ROWS, "models": {}}
    for index, (name, (extra, categorical)) in enumerate(MODELS.items()):
        rng = np.random.default_rng(20180401 + index)
        x, y = training_data(rng)
        params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.2,
                  "min_data_in_leaf": 10, "num_threads": 1, "deterministic": True,
                  "seed": 7, "verbose": -1, **extra}
        data = lgb.Dataset(x, y, feature_name=NAMES, categorical_feature=categorical,
                           params=params)
        model_path = os.path.join(out, f"{name}.model.txt")
        lgb.train(params, data, num_boost_round=30).save_model(model_path)

        # Predict with the saved file, exactly what the native evaluator reads.
        booster = lgb.Booster(model_file=model_path)
        splits = parse_splits(model_path)
        rows, on_threshold = test_rows(rng, splits, bool(categorical))
        raw = booster.predict(rows, raw_score=True)
        prob = booster.predict(rows)
        contrib = booster.predict(rows, pred_contrib=True)
        write_rows(os.path.join(out, f"{name}.csv"), rows, raw, prob, contrib)
        report["models"][name] = {
            "model": f"{name}.model.txt",
            "rows": f"{name}.csv",
            "trees": booster.num_trees(),
            "splits": describe(splits),
            "cells_on_threshold": on_threshold,
            "nan_cells": int(np.isnan(rows).sum()),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
