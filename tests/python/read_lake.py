"""Interop check: read fraudlake's Delta tables with the Python `deltalake` package (no
fraudlake code involved) and print row counts and checksums as JSON.
Usage: read_lake.py LAKE [--storage-options JSON] [TABLE...]   (default tables: transactions
labels). LAKE is a folder or a URL (s3://bucket/prefix); the JSON object holds deltalake
storage options for it (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""
import json
import os
import sys

import pyarrow.compute as pc
from deltalake import DeltaTable

args = sys.argv[1:]
storage_options = None
if "--storage-options" in args:
    at = args.index("--storage-options")
    storage_options = json.loads(args[at + 1])
    del args[at:at + 2]
lake = args[0].rstrip("/")
out = {}
for name in args[1:] or ("transactions", "labels"):
    dt = DeltaTable(f"{lake}/{name}", storage_options=storage_options)
    table = dt.to_pyarrow_table()
    info = {"rows": table.num_rows, "version": dt.version(),
            "partition_columns": dt.metadata().partition_columns}
    if name == "transactions":
        info["amount_sum"] = pc.sum(table["amount"]).as_py()
        info["tx_id_sum"] = pc.sum(table["tx_id"]).as_py()
        info["tx_ts_type"] = str(table.schema.field("tx_ts").type)
    info["columns"] = table.column_names
    out[name] = info
print(json.dumps(out))
sys.stdout.flush()
# Skip interpreter teardown: pyarrow/deltalake native thread pools sometimes abort at exit
# ("terminate called without an active exception", seen in CI), after the work is done.
os._exit(0)
