"""Online feature peer: the seed's in-memory feature code (../shared/peers/fastapi_seed/app.py,
the part of POST /score between parsing and the model) replayed over a transactions file.

    online_peer.py TRANSACTIONS.parquet [--limit N] [--json]

Replays the transactions in time order (TX_DATETIME, TRANSACTION_ID), computing the handbook's
15 features per transaction exactly as the seed does (deques of (ts, amount) per customer and
(ts, fraud) per terminal, list comprehensions per window), and times each transaction with
perf_counter_ns. No HTTP, no pydantic, no model: only the feature work, so the figure is the
peer's best case. One change in the peer's favour: the terminal deques are pruned at 37 days
(the seed never prunes them, so its cost grows with history).

Prints "replayed N transactions in X s; per transaction p50 A us, p99 B us", or JSON with --json.
Needs pyarrow and numpy (the peers' venv has both).
"""
import argparse
import json
import sys
import time
from collections import defaultdict, deque
from datetime import datetime, timezone

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

DAY = 86400.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("transactions", help="handbook-shaped Parquet (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, ...)")
    ap.add_argument("--limit", type=int, default=0, help="replay only the first N transactions (0 = all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cols = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]
    try:
        t = pq.read_table(args.transactions, columns=cols)
    except Exception as e:  # noqa: BLE001
        print(f"online_peer: cannot read {args.transactions}: {e}", file=sys.stderr)
        sys.exit(2)
    t = t.sort_by([("TX_DATETIME", "ascending"), ("TRANSACTION_ID", "ascending")])
    if args.limit > 0:
        t = t.slice(0, args.limit)
    # Epoch seconds (float) as the seed gets them from tx.ts.timestamp(); the timestamps are
    # naive UTC in the handbook file.
    ts_col = t.column("TX_DATETIME")
    unit_div = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[ts_col.type.unit]
    secs = (pc.cast(ts_col, "int64").to_numpy() / unit_div).tolist()
    custs = t.column("CUSTOMER_ID").to_pylist()
    terms = t.column("TERMINAL_ID").to_pylist()
    amounts = t.column("TX_AMOUNT").to_pylist()
    n = len(secs)

    cust = defaultdict(deque)  # customer -> deque[(ts, amount)]
    term = defaultdict(deque)  # terminal -> deque[(ts, fraud)]
    lat_ns = np.empty(n, dtype=np.int64)
    sink = 0.0
    utc = timezone.utc
    perf = time.perf_counter_ns
    started = time.perf_counter()
    for i in range(n):
        ts = datetime.fromtimestamp(secs[i], tz=utc)  # what pydantic hands the seed
        amount = amounts[i]
        t0 = perf()
        # --- the seed's feature code (app.py), unchanged but for the terminal pruning ---
        tt = ts.timestamp()
        c = cust[custs[i]]
        c.append((tt, amount))
        while c and c[0][0] <= tt - 30 * DAY:
            c.popleft()
        f = [amount, float(ts.weekday() >= 5), float(ts.hour <= 6)]
        for w in (1, 7, 30):
            xs = [a for (s, a) in c if s > tt - w * DAY]
            f += [len(xs), sum(xs) / len(xs)]
        q = term[terms[i]]
        while q and q[0][0] <= tt - 37 * DAY:
            q.popleft()
        for w in (1, 7, 30):
            xs = [fr for (s, fr) in q if tt - (7 + w) * DAY < s <= tt - 7 * DAY]
            f += [len(xs), (sum(xs) / len(xs)) if xs else 0.0]
        q.append((tt, 0))
        # ---
        lat_ns[i] = perf() - t0
        sink += f[-1]
    replay_s = time.perf_counter() - started
    lat_us = np.sort(lat_ns) / 1e3
    feature_s = float(lat_ns.sum()) / 1e9
    out = {
        "transactions": n,
        "replay_seconds": replay_s,
        "feature_seconds": feature_s,
        "replay_tx_per_s": n / replay_s if replay_s > 0 else None,
        "p50_us": float(np.percentile(lat_us, 50)) if n else None,
        "p99_us": float(np.percentile(lat_us, 99)) if n else None,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"replayed {n} transactions in {replay_s:.1f} s ({feature_s:.1f} s in the feature code); "
              f"per transaction p50 {out['p50_us']:.1f} us, p99 {out['p99_us']:.1f} us")


if __name__ == "__main__":
    main()
