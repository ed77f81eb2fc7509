"""Exactly-once check (cli/tests/it/stream.rs): the Delta application transactions (`txn`
actions) of a table, as the Python `deltalake` package reads them, not fraudlake.
Usage: delta_txn.py TABLE APP_ID...   (TABLE: the table's folder)
Prints {"exists": bool, "version": the table version, "txn": {APP_ID: version or null}}."""
import json
import os
import sys

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

table, app_ids = sys.argv[1], sys.argv[2:]
try:
    dt = DeltaTable(table)
except TableNotFoundError:
    out = {"exists": False, "version": None, "txn": {app: None for app in app_ids}}
else:
    out = {"exists": True, "version": dt.version(),
           "txn": {app: dt.transaction_version(app) for app in app_ids}}
print(json.dumps(out))
sys.stdout.flush()
os._exit(0)
