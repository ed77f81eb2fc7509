"""Compares fraudlake's `features` table with the handbook's reference features.

    compare_handbook.py OURS.parquet REFERENCE.parquet [--json] [--json-out FILE] [--examples N]

OURS.parquet: `fraudlake sql "SELECT * FROM features" --out OURS.parquet`.
REFERENCE.parquet: the output of ../shared/peers/handbook_features.py (pandas rolling windows,
the handbook's own way of computing its 15 features).

A row matches when every count (flags and NB_TX windows) is exactly equal and every real value
(amount, average amounts, terminal risks) agrees within 1e-9 relative or 1e-12 absolute.
For the first mismatching rows it tells whether one of the two known causes applies:
  - a same-second tie: another transaction of the same customer (customer features) or
    terminal (terminal features) in the same second; ties are ordered by tx_id;
  - a transaction exactly on a window boundary, at second precision: w days earlier for the
    customer windows, 7 or 7 + w days earlier for the terminal windows (pandas windows are
    open on the left, SQL RANGE frames are closed).

A report, not a test: exits 0 whatever the match (2 when the inputs cannot be read).
Needs pyarrow and numpy (the peers' venv has both).
"""
import argparse
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

GOAL_PCT = 99.99
REL_TOL = 1e-9
ABS_TOL = 1e-12
DAY_S = 86_400
TERMINAL_DELAY_DAYS = 7

# (reference column, our column, kind, entity, window days); kind: "count" compares exactly,
# "real" within tolerance. entity/window describe the window for the cause analysis.
FEATURES = [
    ("TX_AMOUNT", "tx_amount", "real", None, None),
    ("TX_DURING_WEEKEND", "tx_during_weekend", "count", None, None),
    ("TX_DURING_NIGHT", "tx_during_night", "count", None, None),
]
for _w in (1, 7, 30):
    FEATURES += [
        (f"CUSTOMER_ID_NB_TX_{_w}DAY_WINDOW", f"customer_nb_tx_{_w}d", "count", "customer", _w),
        (f"CUSTOMER_ID_AVG_AMOUNT_{_w}DAY_WINDOW", f"customer_avg_amount_{_w}d", "real", "customer", _w),
    ]
for _w in (1, 7, 30):
    FEATURES += [
        (f"TERMINAL_ID_NB_TX_{_w}DAY_WINDOW", f"terminal_nb_tx_{_w}d", "count", "terminal", _w),
        (f"TERMINAL_ID_RISK_{_w}DAY_WINDOW", f"terminal_risk_{_w}d", "real", "terminal", _w),
    ]


def fail(msg):
    print(f"compare_handbook: {msg}", file=sys.stderr)
    sys.exit(2)


def read(path, columns):
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001 - any read problem is an input problem here
        fail(f"cannot read {path}: {e}")
    missing = [c for c in columns if c not in schema.names]
    if missing:
        fail(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(schema.names)})")
    return pq.read_table(path, columns=columns)


def as_float(col):
    """Any numeric column as float64 numpy, nulls as NaN."""
    col = pc.cast(col, pa.float64())
    return pc.fill_null(col, float("nan")).to_numpy()


def as_int(col):
    if col.null_count:
        fail(f"unexpected nulls in an id column ({col.null_count})")
    return pc.cast(col, pa.int64()).to_numpy()


def as_epoch_us(col):
    """A timestamp column (any unit, with or without zone) as int64 microseconds since epoch."""
    if not pa.types.is_timestamp(col.type):
        fail(f"expected a timestamp column, got {col.type}")
    raw = pc.cast(col, pa.int64()).to_numpy()
    unit = col.type.unit
    if unit == "s":
        return raw * 1_000_000
    if unit == "ms":
        return raw * 1_000
    if unit == "us":
        return raw
    return np.floor_divide(raw, 1_000)  # ns


def close(a, b):
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        tol = np.maximum(ABS_TOL, REL_TOL * np.maximum(np.abs(a), np.abs(b)))
        return both_nan | (a == b) | (np.abs(a - b) <= tol)


def exact(a, b):
    return (np.isnan(a) & np.isnan(b)) | (a == b)


def fmt_value(v):
    if isinstance(v, float) and np.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ours", help="fraudlake features exported to Parquet")
    ap.add_argument("reference", help="output of peers/handbook_features.py")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON only")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON summary to FILE")
    ap.add_argument("--examples", type=int, default=10, help="mismatching rows to show (default 10)")
    args = ap.parse_args()

    ref_cols = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID"] + [f[0] for f in FEATURES]
    our_cols = ["tx_id", "tx_ts"] + [f[1] for f in FEATURES]
    ref = read(args.reference, ref_cols)
    ours = read(args.ours, our_cols)

    ref_id = as_int(ref.column("TRANSACTION_ID"))
    our_id = as_int(ours.column("tx_id"))
    dup_ours = int(our_id.size - np.unique(our_id).size)
    dup_ref = int(ref_id.size - np.unique(ref_id).size)

    # Align on the transaction id (first occurrence when an id repeats).
    common, ri, oi = np.intersect1d(ref_id, our_id, assume_unique=False, return_indices=True)
    n = int(common.size)
    only_ref = int(np.setdiff1d(ref_id, our_id).size)
    only_ours = int(np.setdiff1d(our_id, ref_id).size)

    ref_us = as_epoch_us(ref.column("TX_DATETIME"))
    our_us = as_epoch_us(ours.column("tx_ts"))
    ts_mismatch = int(np.count_nonzero(ref_us[ri] != our_us[oi]))

    row_ok = np.ones(n, dtype=bool)
    per_feature = {}
    bad_masks = {}
    max_abs = {}
    for ref_name, our_name, kind, _entity, _w in FEATURES:
        a = as_float(ours.column(our_name))[oi]
        b = as_float(ref.column(ref_name))[ri]
        ok = exact(a, b) if kind == "count" else close(a, b)
        bad = ~ok
        nbad = int(np.count_nonzero(bad))
        per_feature[our_name] = nbad
        if nbad:
            bad_masks[our_name] = (bad, a, b)
            with np.errstate(invalid="ignore"):
                d = np.abs(a[bad] - b[bad])
            max_abs[our_name] = float(np.nanmax(d)) if np.any(~np.isnan(d)) else float("nan")
        row_ok &= ok
    matching = int(np.count_nonzero(row_ok))
    pct = 100.0 * matching / n if n else 0.0

    # Cause analysis for the first mismatching rows (by tx_id).
    examples = []
    bad_rows = np.flatnonzero(~row_ok)[: max(args.examples, 0)]
    if bad_rows.size:
        ref_sec = np.floor_divide(ref_us, 1_000_000)
        cust = as_int(ref.column("CUSTOMER_ID"))
        term = as_int(ref.column("TERMINAL_ID"))
        entity_cols = {"customer": cust, "terminal": term}
        cache = {}

        def others_at(entity, key, sec, tx_id):
            """How many other transactions of this entity fall in second `sec`."""
            k = (entity, key, sec, tx_id)
            if k not in cache:
                m = (entity_cols[entity] == key) & (ref_sec == sec) & (ref_id != tx_id)
                cache[k] = int(np.count_nonzero(m))
            return cache[k]

        for r in bad_rows:
            j = ri[r]  # row in the reference table
            tx_id = int(ref_id[j])
            sec = int(ref_sec[j])
            for ref_name, our_name, _kind, entity, w in FEATURES:
                if our_name not in bad_masks or not bad_masks[our_name][0][r]:
                    continue
                _, a, b = bad_masks[our_name]
                ex = {
                    "tx_id": tx_id,
                    "feature": our_name,
                    "ours": None if np.isnan(a[r]) else float(a[r]),
                    "reference": None if np.isnan(b[r]) else float(b[r]),
                }
                if entity is not None:
                    key = int(entity_cols[entity][j])
                    ex["entity"] = f"{entity} {key}"
                    ex["same_second_tie"] = others_at(entity, key, sec, tx_id) > 0
                    if entity == "customer":
                        ex[f"tx_exactly_{w}d_earlier"] = others_at(entity, key, sec - w * DAY_S, tx_id) > 0
                    else:
                        d1, d2 = TERMINAL_DELAY_DAYS, TERMINAL_DELAY_DAYS + w
                        ex[f"tx_exactly_{d1}d_earlier"] = others_at(entity, key, sec - d1 * DAY_S, tx_id) > 0
                        ex[f"tx_exactly_{d2}d_earlier"] = others_at(entity, key, sec - d2 * DAY_S, tx_id) > 0
                examples.append(ex)

    summary = {
        "ours": args.ours,
        "reference": args.reference,
        "reference_rows": int(ref_id.size),
        "ours_rows": int(our_id.size),
        "compared_rows": n,
        "matching_rows": matching,
        "match_pct": pct,
        "goal_pct": GOAL_PCT,
        "goal_met": bool(pct >= GOAL_PCT and only_ref == 0 and only_ours == 0),
        "only_in_reference": only_ref,
        "only_in_ours": only_ours,
        "duplicate_ids_ours": dup_ours,
        "duplicate_ids_reference": dup_ref,
        "timestamp_mismatches": ts_mismatch,
        "feature_mismatches": per_feature,
        "max_abs_diff": max_abs,
        "examples": examples,
        "tolerance": {"counts": "exact", "real_rel": REL_TOL, "real_abs": ABS_TOL},
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)
    if args.json:
        print(json.dumps(summary, indent=2))
        return

    print(f"ours:      {args.ours} ({our_id.size} rows)")
    print(f"reference: {args.reference} ({ref_id.size} rows)")
    print(f"rows compared:  {n}  (only in reference {only_ref}, only in ours {only_ours}, "
          f"duplicate ids ours {dup_ours} / reference {dup_ref})")
    goal = "met" if summary["goal_met"] else "missed"
    print(f"rows matching:  {matching}  ({pct:.4f} %; goal >= {GOAL_PCT} % with no missing rows: {goal})")
    print(f"tx_ts differing from TX_DATETIME (microseconds): {ts_mismatch}")
    print("mismatches per feature (counts exact, reals within 1e-9 rel / 1e-12 abs):")
    width = max(len(f[1]) for f in FEATURES)
    for _r, our_name, kind, _e, _w in FEATURES:
        extra = f"  max |diff| {max_abs[our_name]:.3g}" if our_name in max_abs else ""
        print(f"  {our_name:<{width}}  {per_feature[our_name]:>8}  ({kind}){extra}")
    if examples:
        print(f"first mismatching rows (up to {args.examples}):")
        for ex in examples:
            ours_v = "null" if ex["ours"] is None else fmt_value(ex["ours"])
            ref_v = "null" if ex["reference"] is None else fmt_value(ex["reference"])
            causes = [k for k, v in ex.items() if isinstance(v, bool) and v]
            cause = ", ".join(causes) if causes else "no known cause found"
            where = f" [{ex['entity']}]" if "entity" in ex else ""
            print(f"  tx_id {ex['tx_id']}{where} {ex['feature']}: ours {ours_v}, reference {ref_v}; {cause}")


if __name__ == "__main__":
    main()
