"""What the notebooks share: where the lake is, its Delta tables as polars frames, the latest
label of each transaction, and the model registry (versions with their JSON record, aliases).

Reads the lake with the `deltalake` package only (and pyarrow for the model artifacts): no
fraudlake code is involved. The lake root is env FRAUDLAKE_LAKE, else `../lake` from the
notebook's folder (the repo's lake/). Accepted: a local folder, a file:// URL, or an s3:// URL
(s3://bucket/prefix, e.g. a lake fraudlake wrote to S3 or to an S3-compatible server).

For s3:// lakes the connection is given explicitly, built from the standard environment
variables (`s3_settings`): AWS_ENDPOINT_URL (an S3-compatible server, e.g.
http://127.0.0.1:8333; unset for AWS itself), AWS_ALLOW_HTTP (true for a plain-http endpoint),
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (temporary keys) and AWS_REGION.
Every deltalake call gets them as `storage_options`; `read_bytes` opens a
pyarrow.fs.S3FileSystem with the same endpoint, scheme, keys and region (pyarrow's
`FileSystem.from_uri` does not reliably honour AWS_ENDPOINT_URL). Variables that are unset are
left out (deltalake and pyarrow then fall back to their own defaults, e.g. ~/.aws for the
keys). Other object-store URLs (gs://, az://, ...) are handed to deltalake as they are, with
no explicit options. Nothing here prints the keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pyarrow.fs as pafs
from deltalake import DeltaTable

# Who writes each table (lake/README.md): what to run when one is missing.
WRITERS = {
    "transactions": "`fraudlake simulate` or `fraudlake ingest`",
    "labels": "`fraudlake simulate` or `fraudlake ingest`",
    "features": "`fraudlake features build`",
    "model_versions": "`fraudlake train`",
    "model_events": "`fraudlake train`",
    "predictions": "`fraudlake serve` (every scored transaction is written to the lake)",
    "drift_reports": "`fraudlake drift`",
    "dag_runs": "the DAG runner (`fraudlake dag run` or `fraudlake scheduler`)",
    "task_runs": "the DAG runner (`fraudlake dag run` or `fraudlake scheduler`)",
}

# Columns of `features` that are keys or bookkeeping, not model inputs.
FEATURE_KEYS = ("tx_id", "tx_ts", "customer_id", "terminal_id", "feature_set", "tx_date", "built_at")


class MissingTable(RuntimeError):
    """A table the notebook needs is not in the lake."""


def lake_root() -> str:
    """The lake root: env FRAUDLAKE_LAKE, else ../lake (relative to the notebook's folder)."""
    root = os.environ.get("FRAUDLAKE_LAKE") or str(Path("..") / "lake")
    if root.startswith("file://"):
        root = root[len("file://"):]
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def table_uri(name: str) -> str:
    return f"{lake_root()}/{name}"


# The environment variables an s3:// lake is read with; each is passed on only when set.
S3_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_REGION")


def is_s3(root: str) -> bool:
    """s3:// or s3a:// (the CLI takes both; deltalake reads both)."""
    return root.startswith(("s3://", "s3a://"))


def s3_settings(environ=None) -> dict[str, str]:
    """The S3 connection from the environment (`environ`, default os.environ): the variables of
    S3_VARIABLES that are set, under their own names, which are also deltalake's storage
    option keys. It holds the secret key: do not print it."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in S3_VARIABLES if environ.get(k)}


def storage_options() -> dict[str, str] | None:
    """What every deltalake call gets as `storage_options`: the S3 settings for an s3:// lake,
    None for a local one (and for other object stores, which deltalake configures itself)."""
    return s3_settings() if is_s3(lake_root()) else None


def delta_table(name: str, version: int | None = None) -> DeltaTable:
    """Table `name` of the lake as a deltalake DeltaTable (at Delta version `version`)."""
    return DeltaTable(table_uri(name), version=version, storage_options=storage_options())


def has_table(name: str) -> bool:
    return DeltaTable.is_deltatable(table_uri(name), storage_options=storage_options())


def read(name: str, columns: list[str] | None = None, required: bool = True,
         version: int | None = None) -> pl.DataFrame | None:
    """Table `name` as a polars DataFrame: its current version, or Delta version `version`
    (time travel, e.g. the versions a model was trained on, from its record's lineage).

    A missing table raises MissingTable saying what writes it, or returns None when
    `required=False` (for tables that are legitimately absent, like `predictions` before the
    server has scored anything)."""
    uri = table_uri(name)
    if not has_table(name):
        if not required:
            return None
        hint = WRITERS.get(name, "fraudlake")
        raise MissingTable(
            f"the lake has no `{name}` table ({uri} is not a Delta table). It is written by "
            f"{hint}. Lake root: {lake_root()} (set FRAUDLAKE_LAKE to read another lake; the "
            "default is ../lake from notebooks/)."
        )
    return pl.from_arrow(delta_table(name, version=version).to_pyarrow_table(columns=columns))


def table_summary() -> pl.DataFrame:
    """Every known table: present or not, Delta version, rows, partition columns."""
    rows = []
    for name in WRITERS:
        if has_table(name):
            dt = delta_table(name)
            n = dt.to_pyarrow_dataset().count_rows()
            rows.append({"table": name, "version": dt.version(), "rows": n,
                         "partitioned_by": ", ".join(dt.metadata().partition_columns)})
        else:
            rows.append({"table": name, "version": None, "rows": None, "partitioned_by": "(missing)"})
    return pl.DataFrame(rows, schema={"table": pl.String, "version": pl.Int64, "rows": pl.Int64,
                                      "partitioned_by": pl.String})


def latest_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """One label per tx_id: the latest `labeled_at` wins; on a tie, fraud wins (as fraudlake's
    training SQL does). Columns: tx_id, is_fraud, fraud_scenario, labeled_at, source."""
    return (labels.sort(["labeled_at", "is_fraud"])
            .unique("tx_id", keep="last", maintain_order=True)
            .sort("tx_id"))


def with_labels(df: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """`df` left-joined with the latest labels on tx_id (is_fraud is null where no label has
    arrived yet)."""
    latest = latest_labels(labels).select("tx_id", "is_fraud", "fraud_scenario")
    return df.join(latest, on="tx_id", how="left")


def feature_columns(features: pl.DataFrame) -> list[str]:
    """The numeric feature columns of a `features` frame, in table order."""
    return [c for c, t in features.schema.items() if c not in FEATURE_KEYS and t.is_numeric()]


def aliases(events: pl.DataFrame | None) -> dict:
    """Replays `model_events` in `seq` order, as the registry does: champion, challenger,
    champion history and archived versions."""
    state = {"champion": None, "challenger": None, "history": [], "archived": set()}
    if events is None:
        return state
    for e in events.sort("seq").iter_rows(named=True):
        action, alias, version = e["action"], e["alias"], e["version"]
        if action == "promote" and alias == "champion":
            if state["champion"] is not None:
                state["history"].append(state["champion"])
            state["champion"] = version
            if state["challenger"] == version:
                state["challenger"] = None
        elif action == "rollback" and alias == "champion":
            if state["history"]:
                state["history"].pop()
            state["champion"] = version
        elif action == "promote" and alias == "challenger":
            state["challenger"] = version
        elif action == "archive" and version is not None:
            state["archived"].add(version)
            if state["challenger"] == version:
                state["challenger"] = None
    return state


def registry() -> tuple[pl.DataFrame, dict]:
    """`model_versions` sorted by version, with an `alias` column, and the alias state.
    The JSON `record` column stays a string: `record(versions, v)` parses one.
    `model_family` (xgboost, lightgbm) is filled in as fraudlake reads it: `xgboost` for the
    rows of a registry made before the column existed (null there, or no column at all)."""
    versions = read("model_versions").sort("version")
    if "model_family" not in versions.columns:
        versions = versions.with_columns(pl.lit(None, dtype=pl.String).alias("model_family"))
    versions = versions.with_columns(pl.col("model_family").fill_null("xgboost"))
    events = read("model_events", required=False)
    state = aliases(events)
    names = {state["champion"]: "champion", state["challenger"]: "challenger"}
    alias = [names.get(v, "archived" if v in state["archived"] else "") for v in versions["version"]]
    return versions.with_columns(pl.Series("alias", alias, dtype=pl.String)), state


def record(versions: pl.DataFrame, version: int) -> dict:
    """The parsed JSON record of one model version (feature names, params, metrics, lineage)."""
    row = versions.filter(pl.col("version") == version)
    if row.height != 1:
        raise KeyError(f"model version {version} is not in model_versions")
    return json.loads(row["record"][0])


def read_bytes(relative: str) -> bytes:
    """A file under the lake root (e.g. a model artifact, `models/artifacts/<sha256>.json`),
    read with pyarrow.fs: for an s3:// lake an S3FileSystem built from `s3_settings()`."""
    root = lake_root()
    if is_s3(root):
        fs, path = s3_filesystem(s3_settings()), f"{root.split('://', 1)[1]}/{relative}"
    else:
        fs, path = pafs.FileSystem.from_uri(f"{root}/{relative}")
    with fs.open_input_stream(path) as f:
        return f.read()


def s3_filesystem(settings: dict[str, str]) -> pafs.S3FileSystem:
    """A pyarrow S3FileSystem for these settings: AWS_ENDPOINT_URL's host:port and scheme as
    endpoint_override and scheme (unset: AWS itself, https), the keys and the region."""
    kwargs: dict = {}
    endpoint = settings.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme
    if settings.get("AWS_ACCESS_KEY_ID") and settings.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = settings["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = settings["AWS_SECRET_ACCESS_KEY"]
        if settings.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = settings["AWS_SESSION_TOKEN"]
    if settings.get("AWS_REGION"):
        kwargs["region"] = settings["AWS_REGION"]
    return pafs.S3FileSystem(**kwargs)
