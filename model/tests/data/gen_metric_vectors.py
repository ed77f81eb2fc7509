"""Generate the reference vectors for `model/src/metrics.rs`.

The Rust metrics must agree with scikit-learn and with the Fraud Detection Handbook's
card precision@k. This script computes the expected values once, with scikit-learn, and writes
them to `metric_vectors.json` next to it; the Rust unit tests read that file.

Run with the project's peer Python (numpy, pandas, scikit-learn):

    ~/.cache/fraudlake-peers/main/bin/python model/tests/data/gen_metric_vectors.py

The output is deterministic for a given scikit-learn/numpy version (fixed seeds).

Every score written to the JSON is chosen so that serde_json's default (non `float_roundtrip`)
float parser reads back exactly the f64 that scikit-learn saw; `serde_json_parse` below emulates
that parser and the script asserts the round trip. Without this, a score such as
0.9999999999994988 could be read one ulp off, which changes -ln(1 - p) by far more than the
tolerance of the test, or breaks a tie.
"""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

OUT = Path(__file__).with_name("metric_vectors.json")
THRESHOLD = 0.5

_NUMBER = re.compile(r"^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$")


def serde_json_parse(text: str) -> float:
    """Emulate serde_json 1.x `f64_from_parts` without the `float_roundtrip` feature."""
    m = _NUMBER.match(text)
    assert m, text
    sign, int_part, frac_part, exp_part = m.groups()
    frac_part = frac_part or ""
    digits = (int_part + frac_part).lstrip("0") or "0"
    significand = int(digits)
    assert significand < 2**64, text
    exponent = int(exp_part or "0") - len(frac_part)
    f = float(significand)  # `significand as f64`: round to nearest
    while True:
        if abs(exponent) <= 308:
            pow10 = float(f"1e{abs(exponent)}")  # the correctly rounded literal in POW10
            f = f * pow10 if exponent >= 0 else f / pow10
            break
        if f == 0.0:
            break
        assert exponent < 0, text
        f /= 1e308
        exponent += 308
    return -f if sign else f


def check_round_trip(values, what):
    for v in values:
        parsed = serde_json_parse(repr(float(v)))
        assert parsed == float(v), f"{what}: {v!r} would be read back as {parsed!r}"


def exact_decimal(x: float, decimals: int) -> float:
    """Round to `decimals` places: with at most 15 significant digits and a power of ten of at
    most 22, serde_json parses the value exactly."""
    return float(round(float(x), decimals))


def sklearn_metrics(labels, scores):
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= THRESHOLD).astype(np.int64)
    return {
        "auc_roc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "log_loss": float(log_loss(y, s)),
        "brier": float(brier_score_loss(y, s)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
    }


# ---------------------------------------------------------------------------------------------
# Card precision@k


def card_precision_top_k_handbook(days, cards, labels, scores, k):
    """The handbook's function, verbatim apart from the column plumbing (pandas sort: ties
    in any order)."""
    t = pd.DataFrame(
        {"TX_TIME_DAYS": days, "CUSTOMER_ID": cards, "TX_FRAUD": labels, "pred": scores}
    )
    detected, cps = set(), []
    for day in sorted(t.TX_TIME_DAYS.unique()):
        d = t[(t.TX_TIME_DAYS == day) & ~t.CUSTOMER_ID.isin(detected)]
        g = d.groupby("CUSTOMER_ID").agg(pred=("pred", "max"), fraud=("TX_FRAUD", "max"))
        top = g.sort_values("pred", ascending=False).head(k)
        cps.append(top.fraud.sum() / k)
        detected |= set(top[top.fraud == 1].index)
    return float(np.mean(cps))


def card_precision_top_k_tie_rule(days, cards, labels, scores, k):
    """The handbook's function with fraudlake's tie rule: equal max scores are ordered by card
    id ascending. Returns (mean, [(day, precision), ...])."""
    t = pd.DataFrame(
        {"TX_TIME_DAYS": days, "CUSTOMER_ID": cards, "TX_FRAUD": labels, "pred": scores}
    )
    detected, per_day = set(), []
    for day in sorted(t.TX_TIME_DAYS.unique()):
        d = t[(t.TX_TIME_DAYS == day) & ~t.CUSTOMER_ID.isin(detected)]
        g = (
            d.groupby("CUSTOMER_ID")
            .agg(pred=("pred", "max"), fraud=("TX_FRAUD", "max"))
            .reset_index()
        )
        top = g.sort_values(["pred", "CUSTOMER_ID"], ascending=[False, True]).head(k)
        per_day.append((int(day), float(top.fraud.sum() / k)))
        detected |= set(top.loc[top.fraud == 1, "CUSTOMER_ID"])
    return float(np.mean([v for _, v in per_day])), per_day


def card_precision_plain(days, cards, labels, scores, k, card_id_descending=False):
    """Independent pure-Python version of the tie-rule function (cross-check of the pandas one).
    `card_id_descending` flips the tie rule, to check that a case really exercises it."""
    sign = -1 if card_id_descending else 1
    detected, per_day = set(), []
    for day in sorted(set(days)):
        agg = {}
        for dd, c, y, s in zip(days, cards, labels, scores):
            if dd != day or c in detected:
                continue
            m, f = agg.get(c, (-math.inf, 0))
            agg[c] = (max(m, s), max(f, y))
        ranked = sorted(agg.items(), key=lambda kv: (-kv[1][0], sign * kv[0]))[:k]
        per_day.append((day, sum(f for _, (_, f) in ranked) / k))
        detected |= {c for c, (_, f) in ranked if f == 1}
    return sum(v for _, v in per_day) / len(per_day), per_day


def max_scores_have_ties(days, cards, scores):
    df = pd.DataFrame({"d": days, "c": cards, "s": scores})
    g = df.groupby(["d", "c"]).s.max().reset_index()
    return bool(g.duplicated(["d", "s"]).any())


def card_transactions(rng, n_days, n_cards, first_day, tx_per_card_day, compromised_share,
                      decimals):
    """Synthetic transactions: compromised cards start producing frauds on a random day and
    keep doing so (so the "already detected" rule matters)."""
    card_ids = np.unique(rng.integers(10**9, 10**11, size=2 * n_cards))[:n_cards]
    assert len(card_ids) == n_cards
    compromised = rng.random(n_cards) < compromised_share
    start = rng.integers(0, n_days, size=n_cards)
    rows = []
    for day in range(n_days):
        for ci, card in enumerate(card_ids):
            for _ in range(rng.poisson(tx_per_card_day)):
                fraud = bool(compromised[ci] and day >= start[ci] and rng.random() < 0.7)
                score = rng.beta(4, 2) if fraud else rng.beta(1, 6)
                rows.append((first_day + day, int(card), int(fraud), exact_decimal(score, decimals)))
    order = rng.permutation(len(rows))  # rows not grouped by day or card
    rows = [rows[i] for i in order]
    days = [r[0] for r in rows]
    cards = [r[1] for r in rows]
    labels = [r[2] for r in rows]
    scores = [r[3] for r in rows]
    return days, cards, labels, scores


# ---------------------------------------------------------------------------------------------
# Cases


def case(name, labels, scores, card=None):
    labels = [int(v) for v in labels]
    scores = [float(v) for v in scores]
    assert len(labels) == len(scores)
    assert 0 < sum(labels) < len(labels), name
    check_round_trip(scores, name)
    out = {
        "name": name,
        "labels": labels,
        "scores": scores,
        "threshold": THRESHOLD,
        "expected": sklearn_metrics(labels, scores),
        "card": None,
    }
    if card is not None:
        days, cards, k, allow_ties = card
        mean, per_day = card_precision_top_k_tie_rule(days, cards, labels, scores, k)
        plain_mean, plain_per_day = card_precision_plain(days, cards, labels, scores, k)
        assert per_day == plain_per_day, name
        assert mean == plain_mean or abs(mean - plain_mean) < 1e-15, name
        ties = max_scores_have_ties(days, cards, scores)
        if allow_ties:
            assert ties, f"{name}: meant to exercise the tie rule"
            flipped, _ = card_precision_plain(days, cards, labels, scores, k, True)
            assert flipped != mean, f"{name}: the tie rule does not change the result"
        else:
            assert not ties, f"{name}: tied max scores"
            assert card_precision_top_k_handbook(days, cards, labels, scores, k) == mean, name
        out["card"] = {
            "days": [int(d) for d in days],
            "cards": [int(c) for c in cards],
            "k": int(k),
            "expected_mean": mean,
            "expected_per_day": [[d, v] for d, v in per_day],
        }
    return out


def build_cases():
    cases = []

    # 1. Small hand-made case: ties across classes, ties at the threshold, a zero score.
    cases.append(
        case(
            "small_ties",
            [1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0],
            [0.9, 0.9, 0.8, 0.5, 0.5, 0.5, 0.3, 0.3, 0.1, 0.1, 0.1, 0.0],
        )
    )

    # 2. ~2,000 rows, ~1% positives, scores rounded to 2 decimals (many ties).
    rng = np.random.default_rng(20240601)
    n = 2000
    labels = rng.random(n) < 0.01
    labels[[17, 1234]] = True  # at least a few positives whatever the seed
    scores = np.where(labels, rng.beta(3, 2, n), rng.beta(1, 8, n))
    scores = [exact_decimal(s, 2) for s in scores]
    assert len(set(scores)) < n // 10
    cases.append(case("imbalanced_ties_2000", labels, scores))

    # 3. All scores distinct.
    rng = np.random.default_rng(7)
    n = 600
    labels = rng.random(n) < 0.1
    logits = rng.normal(-2.0, 1.5, n) + 2.0 * labels
    scores = [exact_decimal(1.0 / (1.0 + math.exp(-z)), 12) for z in logits]
    assert len(set(scores)) == n
    cases.append(case("distinct_scores", labels, scores))

    # 4. Probabilities near 0 and 1, confident right and confident wrong: exercises clipping
    #    (eps = 2.220446049250313e-16) and the cancellation in 1 - p.
    rng = np.random.default_rng(99)
    n = 400
    labels = rng.random(n) < 0.3
    scores = []
    for y in labels:
        right = rng.random() < 0.85
        toward_one = bool(y) == right
        e = rng.uniform(1.0, 14.0)
        if toward_one:
            scores.append(exact_decimal(1.0 - 10.0**-e, 15))
        else:
            scores.append(float(f"{10.0**-e:.6e}"))
    # Exactly at, inside and beyond the clipping bounds.
    specials = [0.0, 1.0, 1e-300, 5e-324, 1e-17, 2.220446049250313e-16, 1e-15,
                0.9999999999999998, 0.999999999999999, 0.5]
    for i, s in enumerate(specials):
        scores[2 * i] = s  # labels at even indices are mixed
        scores[2 * i + 1] = s
        labels[2 * i], labels[2 * i + 1] = True, False
    cases.append(case("extreme_probabilities", labels, scores))

    # 5. Card precision: 5 days, ~300 cards, k = 10, no tied card max scores.
    rng = np.random.default_rng(2018)
    days, cards, labels, scores = card_transactions(
        rng, n_days=5, n_cards=300, first_day=153, tx_per_card_day=1.2,
        compromised_share=0.08, decimals=9,
    )
    cases.append(case("card_precision_k10", labels, scores, card=(days, cards, 10, False)))

    # 6. Card precision with k larger than the number of cards on any day.
    rng = np.random.default_rng(31)
    days, cards, labels, scores = card_transactions(
        rng, n_days=5, n_cards=40, first_day=0, tx_per_card_day=0.6,
        compromised_share=0.3, decimals=9,
    )
    per_day_cards = pd.DataFrame({"d": days, "c": cards}).groupby("d").c.nunique()
    assert per_day_cards.max() < 50
    cases.append(case("card_precision_k_exceeds_cards", labels, scores,
                      card=(days, cards, 50, False)))

    # 7. Card precision with tied max scores (1 decimal): the tie rule (card id ascending) decides.
    #    The first seed from 5 on whose result changes if ties went by card id descending.
    for seed in range(5, 200):
        rng = np.random.default_rng(seed)
        days, cards, labels, scores = card_transactions(
            rng, n_days=4, n_cards=60, first_day=10, tx_per_card_day=1.0,
            compromised_share=0.25, decimals=1,
        )
        mean, _ = card_precision_plain(days, cards, labels, scores, 5)
        if mean != card_precision_plain(days, cards, labels, scores, 5, True)[0]:
            break
    else:
        raise AssertionError("no seed exercises the tie rule")
    cases.append(case("card_precision_ties_k5", labels, scores, card=(days, cards, 5, True)))

    return cases


def main():
    cases = build_cases()
    doc = {
        "generator": "model/tests/data/gen_metric_vectors.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "threshold": THRESHOLD,
        "cases": cases,
    }
    text = json.dumps(doc, separators=(",", ":"))
    OUT.write_text(text + "\n")
    print(f"wrote {OUT} ({len(text)} bytes, {len(cases)} cases)", file=sys.stderr)
    for c in cases:
        extra = ""
        if c["card"]:
            extra = f" card_mean={c['card']['expected_mean']!r} k={c['card']['k']}"
        print(f"  {c['name']}: n={len(c['labels'])} pos={sum(c['labels'])} "
              f"{c['expected']}{extra}", file=sys.stderr)


if __name__ == "__main__":
    main()
