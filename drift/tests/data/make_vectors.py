#!/usr/bin/env python3
"""Generate the drift statistics test vectors (`drift_vectors.json`) from Evidently itself.

`drift/src/stats/` reproduces Evidently 0.7's DataDriftPreset (the per-column method choice,
statistic, threshold and drifted verdict) plus Evidently's PSI. Its unit tests compare it with
the vectors written here, which come from Evidently's own code paths:

* `expected` (kind, method, statistic, threshold, drifted) comes from running a real
  `Report([DataDriftPreset(...)])` on a one-column DataFrame: the `ValueDrift` metric gives the
  method, threshold and statistic, `DriftedColumnsCount` gives the verdict, and the column kind is
  the one Evidently's `Dataset.from_pandas` infers for the current data. The same numbers are
  recomputed through the legacy stattest objects and must agree.
* `expected.psi` is Evidently's `psi_stat_test` on the same column and kind.
* `scipy` holds direct scipy results used as a cross-check of the building blocks: `ks_2samp`,
  `wasserstein_distance`, `np.std`, Evidently's binned percentages (`get_binned_data`), and
  `chisquare` / `jensenshannon` on them.
* `kstwo`, `smirnov` and `ks_exact` are grids of scipy's one-sample two-sided KS survival
  function, `scipy.special.smirnov`, and the exact two-sample p-value, so every branch of those
  algorithms is checked and not only those the samples happen to reach.

Regenerate (from the repository root) with the Python environment that has Evidently 0.7 and
scipy installed, e.g.:

    ~/.cache/fraudlake-peers/evidently/bin/python drift/tests/data/make_vectors.py

The output is deterministic (seeded generators). Sample values are rounded to at most 6 decimals,
so every input number in the file has at most 15 significant digits and parses to exactly the
same f64 in Rust (serde_json's default parser is exact for such numbers, but may be one ulp off
for 16-17 digits). Histogram edges, which must match bit for bit, are stored as u64 bit patterns.
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import pandas as pd
import scipy
from scipy import special
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare, ks_2samp, kstwo, wasserstein_distance
from scipy.stats._stats_py import _attempt_exact_2kssamp

import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests import psi_stat_test
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.calculations.stattests.utils import (
    get_binned_data,
    get_unique_not_nan_values_list_from_series,
)
from evidently.legacy.core import ColumnType
from evidently.presets import DataDriftPreset

warnings.filterwarnings("ignore")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drift_vectors.json")

# Evidently's display names (what ValueDrift reports for an auto-selected method) -> our names.
DISPLAY_TO_NAME = {
    "K-S p_value": "ks",
    "Wasserstein distance (normed)": "wasserstein",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}
NAMES = set(DISPLAY_TO_NAME.values())


def num(x):
    """JSON-safe float: non-finite values become strings."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def r6(a):
    """Round to 6 decimals (exactly parseable in Rust) and normalise -0.0."""
    return np.round(np.asarray(a, dtype=np.float64), 6) + 0.0


def data_list(a, dtype):
    a = np.asarray(a)
    if dtype == "float":
        out = [float(v) for v in a]
        for v in out:
            digits = repr(v).lstrip("-").replace(".", "").lstrip("0").split("e")[0]
            assert len(digits) <= 15 and abs(v) < 1e9, f"value {v!r} is not exactly parseable"
        return out
    if dtype == "bool":
        return [1.0 if v else 0.0 for v in a]
    return [int(v) for v in a]


def as_series(a, dtype):
    if dtype == "float":
        return pd.Series(np.asarray(a, dtype=np.float64))
    if dtype == "int":
        return pd.Series(np.asarray(a, dtype=np.int64))
    if dtype == "bool":
        return pd.Series(np.asarray(a, dtype=bool))
    raise ValueError(dtype)


def evidently_case(name, ref, cur, dtype, method=None, threshold=None, note=""):
    ref_s = as_series(ref, dtype)
    cur_s = as_series(cur, dtype)
    df_ref = pd.DataFrame({"x": ref_s})
    df_cur = pd.DataFrame({"x": cur_s})
    case = {
        "name": name,
        "note": note,
        "dtype": dtype,
        "method": method,
        "threshold": threshold,
        "reference": data_list(ref, dtype),
        "current": data_list(cur, dtype),
    }

    # Column kind exactly as the Report infers it (from the current dataset).
    col_type = Dataset.from_pandas(df_cur, data_definition=DataDefinition())._data_definition.get_column_type("x")
    assert col_type in (ColumnType.Numerical, ColumnType.Categorical), col_type
    kind = "numerical" if col_type == ColumnType.Numerical else "categorical"

    try:
        snap = Report([DataDriftPreset(method=method, threshold=threshold)]).run(df_cur, df_ref)
    except Exception as e:  # e.g. a method that does not apply to the column kind
        case["expected"] = {"kind": kind, "error": f"{type(e).__name__}: {e}"}
        return case
    metrics = snap.dict()["metrics"]
    (count,) = [m for m in metrics if m["config"]["type"].endswith("DriftedColumnsCount")]
    (value,) = [m for m in metrics if m["config"]["type"].endswith("ValueDrift")]
    shown = value["config"]["method"]
    method_name = shown if shown in NAMES else DISPLAY_TO_NAME[shown]
    statistic = float(value["value"])
    used_threshold = float(value["config"]["threshold"])
    drifted = bool(count["value"]["count"] == 1.0)

    # The same through the legacy stattest objects the preset uses.
    stattest = get_stattest(ref_s, cur_s, col_type, method)
    res = stattest(ref_s, cur_s, col_type, threshold)
    assert stattest.name == method_name, (stattest.name, method_name)
    same = (math.isnan(res.drift_score) and math.isnan(statistic)) or res.drift_score == statistic
    assert same, (res.drift_score, statistic)
    assert bool(res.drifted) == drifted and res.actual_threshold == used_threshold

    psi = psi_stat_test(ref_s, cur_s, col_type, None).drift_score
    case["expected"] = {
        "kind": kind,
        "method": method_name,
        "statistic": num(statistic),
        "threshold": used_threshold,
        "drifted": drifted,
        "psi": num(psi),
    }
    case["scipy"] = scipy_checks(ref_s, cur_s, col_type)
    return case


def binned(ref_s, cur_s, col_type, fill):
    """Evidently's get_binned_data, reordered by key (value path) for a stable comparison."""
    rp, cp = get_binned_data(ref_s, cur_s, col_type, 30, fill)
    if col_type == ColumnType.Numerical and ref_s.nunique() > 20:
        return "histogram", [float(v) for v in rp], [float(v) for v in cp]
    keys = get_unique_not_nan_values_list_from_series(current_data=cur_s, reference_data=ref_s)
    order = sorted(range(len(keys)), key=lambda i: float(keys[i]))
    return "values", [float(rp[i]) for i in order], [float(cp[i]) for i in order]


def scipy_checks(ref_s, cur_s, col_type):
    ks = ks_2samp(ref_s, cur_s)
    out = {
        "ks_statistic": num(ks.statistic),
        "ks_pvalue": num(ks.pvalue),
        "wasserstein": num(wasserstein_distance(ref_s, cur_s)),
        "std_reference": num(np.std(ref_s)),
    }
    path, rp, cp = binned(ref_s, cur_s, col_type, False)
    _, rpf, cpf = binned(ref_s, cur_s, col_type, True)
    out["binning"] = path
    out["ref_percents"] = rp
    out["cur_percents"] = cp
    out["ref_percents_filled"] = rpf
    out["cur_percents_filled"] = cpf
    if path == "histogram":
        combined = np.asarray(pd.concat([ref_s, cur_s], axis=0).values)
        edges = np.histogram_bin_edges(combined, bins="sturges").astype(np.float64)
        # bit patterns: the edges are compared bit for bit, and serde_json's default float
        # parser may be one ulp off for numbers with 16-17 significant digits
        out["bin_edges_bits"] = [int(b) for b in edges.view(np.uint64)]
    out["jensenshannon"] = num(jensenshannon(np.array(rp), np.array(cp)))
    # chi-square inputs exactly as Evidently's _chi_stat_test builds them (keys sorted).
    keys = sorted(get_unique_not_nan_values_list_from_series(current_data=cur_s, reference_data=ref_s), key=float)
    ref_counts = ref_s.value_counts()
    cur_counts = cur_s.value_counts()
    k_norm = cur_s.shape[0] / ref_s.shape[0]
    f_exp = [float(ref_counts.get(k, 0) * k_norm) for k in keys]
    f_obs = [float(cur_counts.get(k, 0)) for k in keys]
    stat, p = chisquare(f_obs, f_exp)
    out["chisquare_f_obs"] = f_obs
    out["chisquare_f_exp"] = f_exp
    out["chisquare_statistic"] = num(stat)
    out["chisquare_pvalue"] = num(p)
    return out


def build_cases():
    rng = np.random.default_rng(20240611)
    cases = []

    def add(*args, **kwargs):
        c = evidently_case(*args, **kwargs)
        cases.append(c)
        e = c["expected"]
        print(f"{c['name']:<34} {c['dtype']:<6} n={len(c['reference'])}/{len(c['current'])} -> "
              f"{e.get('kind')} {e.get('method', e.get('error', ''))[:60]} {e.get('statistic', '')}",
              file=sys.stderr)

    def normal(n, loc=0.0, scale=1.0):
        return r6(rng.normal(loc, scale, size=n))

    # --- numerical, small reference (<= 1000 rows): Kolmogorov-Smirnov ---------------------
    add("ks_same_distribution", normal(200), normal(250), "float")
    add("ks_shifted", normal(300), normal(280, 0.3), "float")
    add("ks_equal_sizes_shifted", normal(400), normal(400, 0.15), "float", note="n1 == n2: square path")
    add("ks_equal_sizes_same", normal(150), normal(150), "float")
    add("ks_tiny", normal(7), normal(5, 1.0), "float")
    add("ks_tiny_overlap", r6([0.1, 0.5, 0.9, 1.3, 2.0, 2.2]), r6([0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]), "float")
    add("ks_ref_exactly_1000", normal(1000), normal(1000, 0.08), "float", note="boundary: <= 1000 uses KS")
    add("ks_ties", np.round(rng.normal(0, 1, 500), 1) + 0.0, np.round(rng.normal(0.1, 1, 600), 1) + 0.0, "float",
        note="many ties")
    add("ks_coprime_sizes", normal(997), normal(4999, 0.05), "float", note="exact path, large lcm")
    add("ks_small_ref_big_current", normal(150), normal(10050, 0.1), "float",
        note="current > 10000: asymptotic kstwo.sf(d, round(147.79))")
    add("ks_six_float_values", r6(rng.choice([0.5, 1.5, 2.5, 3.5, 4.5, 5.5], 300)),
        r6(rng.choice([0.5, 1.5, 2.5, 3.5, 4.5, 5.5], 320, p=[0.1, 0.1, 0.2, 0.2, 0.2, 0.2])), "float",
        note="6 distinct values > 5: KS")
    add("ks_negative_and_zero", r6(np.concatenate([rng.normal(-5, 2, 150), np.zeros(30)])),
        r6(np.concatenate([rng.normal(-4.5, 2, 170), -np.zeros(20)])), "float", note="-0.0 and 0.0 ties")
    add("ks_lognormal_amounts", r6(np.round(rng.lognormal(3.5, 1.0, 800), 2)),
        r6(np.round(rng.lognormal(3.6, 1.0, 900), 2)), "float")
    add("int_many_values_small", rng.integers(0, 50, 400), rng.integers(3, 53, 450), "int",
        note="int with > 10 values: numerical; PSI histogram with integer data")
    add("int_eleven_values", rng.integers(0, 11, 300), rng.integers(0, 11, 300), "int",
        note="11 distinct ints in current: numerical")

    # --- numerical, large reference (> 1000 rows): normed Wasserstein --------------------------
    add("wasserstein_ref_1001", normal(1001), normal(1200, 0.05), "float", note="boundary: > 1000")
    add("wasserstein_same", normal(2000, 10, 3), normal(1500, 10, 3), "float")
    add("wasserstein_amount_scale", r6(np.round(rng.lognormal(3.5, 1.0, 2500), 2)),
        r6(np.round(rng.lognormal(3.5, 1.0, 3000) * 1.5, 2)), "float", note="drift like simulate amount-scale")
    add("wasserstein_fifteen_values", r6(rng.choice(np.arange(15) * 0.25, 1500)),
        r6(rng.choice(np.arange(15) * 0.25, 1300)), "float", note="PSI on value counts (<= 20 values)")
    add("wasserstein_int_counts", rng.poisson(30, 1800), rng.poisson(33, 2100), "int")

    # --- PSI / Jensen-Shannon binning boundaries -------------------------------------------------
    twenty = np.arange(20) * 0.5 + 0.25
    add("bins_20_reference_values", r6(rng.choice(twenty, 1200)), r6(rng.choice(np.append(twenty, 11.0), 1100)),
        "float", note="20 distinct reference values: value counts")
    add("bins_21_reference_values", r6(rng.choice(np.append(twenty, 11.0), 1200)), r6(rng.choice(twenty, 1100)),
        "float", note="21 distinct reference values: Sturges histogram")
    big_ref = np.concatenate([rng.choice(5, 10045, p=[0.4, 0.3, 0.2, 0.05, 0.05]), [7] * 4, [8]])
    big_cur = np.concatenate([rng.choice(5, 10040, p=[0.35, 0.3, 0.2, 0.1, 0.05]), [6] * 9, [9]])
    add("psi_fill_small_shares", big_ref, big_cur, "int",
        note="shares <= 1e-4 on both sides and empty bins: PSI fills with min/1e6")
    add("ks_statistic_from_negative_side", normal(300, 0.4), normal(350), "float",
        note="max(F_cur - F_ref) > max(F_ref - F_cur)")

    # --- low cardinality numerical (<= 5 values) ---------------------------------------------
    add("num_four_values_small", r6(rng.choice([0.5, 1.5, 2.5, 3.5], 300)),
        r6(rng.choice([0.5, 1.5, 2.5, 3.5], 350, p=[0.4, 0.3, 0.2, 0.1])), "float",
        note="numerical, <= 5 values, small: chi-square")
    add("num_four_values_large", r6(rng.choice([0.5, 1.5, 2.5, 3.5], 1600)),
        r6(rng.choice([0.5, 1.5, 2.5, 3.5], 1400, p=[0.3, 0.3, 0.2, 0.2])), "float",
        note="numerical, <= 5 values, large: Jensen-Shannon")
    add("num_two_values_small", r6(rng.choice([0.25, 0.75], 400)), r6(rng.choice([0.25, 0.75], 380, p=[0.6, 0.4])),
        "float", note="numerical binary: Z-test")
    add("num_constant_equal_small", r6(np.full(50, 1.5)), r6(np.full(40, 1.5)), "float",
        note="constant and equal: Z-test p = 1")
    add("num_constant_differs_small", r6(np.full(50, 1.0)), r6(np.full(60, 2.0)), "float")
    add("num_constant_large", r6(np.zeros(1200)), r6(np.zeros(1100)), "float")
    add("num_single_values", r6([3.25]), r6([3.25]), "float")
    add("num_single_values_differ", r6([3.25]), r6([4.0]), "float")

    # --- categorical (int <= 10 values in current, bool) ------------------------------------------
    add("cat_int_small", rng.integers(0, 4, 300), rng.integers(0, 4, 320), "int")
    add("cat_int_small_drift", rng.choice(4, 300), rng.choice(4, 320, p=[0.4, 0.3, 0.2, 0.1]), "int")
    add("cat_int_eight_values", rng.integers(0, 8, 500), rng.integers(0, 8, 450), "int",
        note="8 ints: categorical (float dtype would use KS)")
    add("cat_float_eight_values_as_float", r6(rng.integers(0, 8, 500).astype(float)),
        r6(rng.integers(0, 8, 450).astype(float)), "float", note="same values as float dtype: numerical, KS")
    add("cat_category_only_in_current", rng.integers(0, 6, 200), np.concatenate([rng.integers(0, 6, 200), [6] * 5]),
        "int", note="chi-square statistic is inf, p = 0")
    add("cat_category_only_in_reference", np.concatenate([rng.integers(0, 5, 300), [9] * 20]),
        rng.integers(0, 5, 280), "int")
    add("cat_large", rng.choice(7, 2000), rng.choice(7, 1800), "int", note="categorical large: Jensen-Shannon")
    add("cat_large_absent", rng.choice(7, 2000), rng.choice(5, 1800), "int")
    add("binary_int_small", rng.integers(0, 2, 300), rng.integers(0, 2, 260), "int")
    add("binary_int_small_drift", rng.choice(2, 300, p=[0.9, 0.1]), rng.choice(2, 260, p=[0.8, 0.2]), "int")
    add("binary_int_large", rng.choice(2, 1500, p=[0.97, 0.03]), rng.choice(2, 1700, p=[0.95, 0.05]), "int")
    add("bool_small", rng.integers(0, 2, 200).astype(bool), rng.integers(0, 2, 180).astype(bool), "bool")
    add("bool_constant_vs_mixed", np.zeros(100, dtype=bool), rng.integers(0, 2, 90).astype(bool), "bool")
    add("cat_negative_ints", rng.integers(-3, 3, 400), rng.integers(-3, 2, 380), "int")

    # --- explicit methods and thresholds --------------------------------------------------------
    add("explicit_psi_numerical", normal(1500), normal(1600, 0.2), "float", method="psi")
    add("explicit_psi_categorical", rng.choice(5, 600), rng.choice(5, 500, p=[0.5, 0.2, 0.1, 0.1, 0.1]), "int",
        method="psi", threshold=0.2)
    add("explicit_js_numerical_histogram", normal(800), normal(900, 0.3), "float", method="jensenshannon")
    add("explicit_ks_large", normal(1500), normal(2000, 0.05), "float", method="ks")
    add("explicit_ks_threshold", normal(300), normal(310, 0.1), "float", method="ks", threshold=0.5)
    add("explicit_wasserstein_small", normal(200), normal(220, 0.5), "float", method="wasserstein", threshold=0.05)
    add("explicit_wasserstein_constant_reference", r6(np.full(100, 2.0)), normal(120, 2.0, 0.01), "float",
        method="wasserstein", note="std(reference) = 0: norm is 0.001")
    add("explicit_chisquare_threshold", rng.choice(4, 700), rng.choice(4, 650, p=[0.28, 0.24, 0.24, 0.24]), "int",
        method="chisquare", threshold=0.01)
    add("explicit_chisquare_single_value", np.full(30, 4), np.full(20, 4), "int", method="chisquare",
        note="one category: df = 0, scipy p-value is nan")
    add("explicit_z_multi_valued", rng.choice(4, 300), rng.choice(4, 300, p=[0.1, 0.3, 0.3, 0.3]), "int",
        method="z", note="z on > 2 values: smallest value vs the rest")
    add("explicit_js_categorical_small", rng.choice(3, 100), rng.choice(3, 120), "int", method="jensenshannon")
    add("explicit_ks_on_categorical_errors", rng.integers(0, 3, 50), rng.integers(0, 3, 60), "int", method="ks")
    add("explicit_chisquare_on_numerical_errors", normal(50), normal(60), "float", method="chisquare")
    return cases


def grids():
    """Direct grids of scipy's KS distribution functions."""
    kstwo_rows = []
    for n in [1, 2, 3, 5, 10, 37, 100, 140, 141, 200, 500, 909, 1000, 5000, 33540, 100000, 100001, 250000]:
        xs = {0.4 / n, 0.5 / n, 0.51 / n, 0.75 / n, 0.99 / n, 1.0 / n, 1.5 / n, 3.0 / n, 1 - 1.0 / n, 1 - 0.5 / n, 1.0}
        xs |= {0.001, 0.003, 0.005, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.13, 0.2, 0.25, 0.3, 0.4,
               0.45, 0.49, 0.5, 0.55, 0.7, 0.9, 0.99}
        # around the branch cutoffs of scipy's _kolmogn (n*x^2 and n*x^1.5)
        for c in (0.754693, 2.2, 4.0, 18.0, 370.0):
            xs.add(math.sqrt(c / n) * 0.999)
            xs.add(math.sqrt(c / n) * 1.001)
        xs.add((1.4 / n) ** (2 / 3) * 0.999)
        xs.add((1.4 / n) ** (2 / 3) * 1.001)
        for x in sorted(xs):
            if 0 < x <= 1.0:
                kstwo_rows.append([n, x, num(kstwo.sf(x, n))])
    smirnov_rows = []
    for n in [1, 2, 5, 10, 11, 50, 140, 1000, 33540, 1000001]:
        for x in [0.0, 0.5 / n, 1.0 / n, 2.0 / n, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 1 - 1.0 / n, 0.999, 1.0]:
            if 0 <= x <= 1:
                smirnov_rows.append([n, x, num(special.smirnov(n, x))])
    exact_rows = []
    for n1, n2 in [(1, 1), (1, 7), (3, 3), (5, 8), (10, 10), (20, 30), (37, 41), (100, 100), (150, 1000),
                   (997, 1000), (1000, 1000), (999, 9973), (1000, 10000), (7, 10000)]:
        g = math.gcd(n1, n2)
        lcm = n1 // g * n2
        for frac in [0.0, 0.01, 0.03, 0.05, 0.08, 0.1, 0.2, 0.35, 0.5, 0.75, 0.9, 1.0]:
            # d must be a possible KS statistic: a multiple of 1/lcm
            d = round(frac * lcm) / lcm
            ok, dd, p = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
            exact_rows.append([n1, n2, d, bool(ok), num(p)])
    return {"kstwo": kstwo_rows, "smirnov": smirnov_rows, "ks_exact": exact_rows}


def main():
    cases = build_cases()
    doc = {
        "generator": "drift/tests/data/make_vectors.py",
        "evidently": evidently.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "cases": cases,
    }
    doc.update(grids())
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, {os.path.getsize(OUT) / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
