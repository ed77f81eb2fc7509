"""Compares fraudlake's drift JSON with Evidently's printed per-column results on the same
data: method, value and verdict per column. Usage:
    drift_compare.py EVIDENTLY_STDOUT FRAUDLAKE_JSON
Prints one JSON object: columns compared, max absolute difference, methods and verdicts equal."""
import json
import re
import sys

# Evidently's method names -> fraudlake's; handbook column names -> the lake's.
METHODS = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon",
           "K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z", "PSI": "psi"}
P_VALUE = {"ks", "chisquare", "z"}


def lake_name(col):
    m = re.fullmatch(r"(CUSTOMER|TERMINAL)_ID_(NB_TX|AVG_AMOUNT|RISK)_(\d+)DAY_WINDOW", col)
    if m:
        return f"{m[1].lower()}_{m[2].lower()}_{m[3]}d"
    return col.lower()


peer = {}
for line in open(sys.argv[1]):
    m = re.match(r"ValueDrift\(column=([^,]+),method=([^,]+),threshold=([^)]+)\) (\S+)", line)
    if m:
        method = METHODS.get(m[2], m[2])
        value, threshold = float(m[4]), float(m[3])
        drifted = value <= threshold if method == "ks" else (
            value < threshold if method in P_VALUE else value >= threshold)
        peer[lake_name(m[1])] = (method, value, drifted)
ours = {c["name"]: c for c in json.load(open(sys.argv[2]))["columns"]}
diffs, methods_equal, verdicts_equal, missing = [], True, True, []
for name, (method, value, drifted) in peer.items():
    c = ours.get(name)
    if c is None:
        missing.append(name)
        continue
    methods_equal &= c["method"] == method
    verdicts_equal &= bool(c["drifted"]) == drifted
    diffs.append(abs(float(c["statistic"]) - value))
print(json.dumps({"columns": len(diffs), "missing": missing, "max_abs_diff": max(diffs) if diffs else None,
                  "methods_equal": methods_equal, "verdicts_equal": verdicts_equal}))
