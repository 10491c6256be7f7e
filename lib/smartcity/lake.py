"""The Parquet lake: one folder per topic, partitioned by event date, written by Spark's file sink.

Spark's streaming file sink records every committed file in ``<table>/_spark_metadata``. Files
of a micro-batch that failed before its commit are on disk but not in that log, so readers other
than Spark (DuckDB, Arrow, the warehouse loader) must list files from the log, not from a glob:
:func:`committed_files` does that, and every non-Spark reader of the lake goes through it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from smartcity.config import TOPICS, Params

QUARANTINE = "_quarantine"
SINK_LOG = "_spark_metadata"


def table_path(cfg: Params, table: str) -> Path:
    return cfg.lake_path / table


def _log_entries(log_file: Path) -> list[dict[str, object]]:
    lines = log_file.read_text().splitlines()
    if not lines or not lines[0].startswith("v"):
        raise ValueError(f"{log_file}: not a Spark file-sink log")
    return [json.loads(line) for line in lines[1:] if line.strip()]


def _batch_number(name: str) -> int | None:
    stem = name.removesuffix(".compact")
    return int(stem) if stem.isdigit() else None


def committed_files(table_dir: Path) -> list[Path]:
    """Parquet files the sink committed, in path order; falls back to a glob for batch-written tables."""
    log_dir = table_dir / SINK_LOG
    if not log_dir.is_dir():
        return sorted(p for p in table_dir.rglob("*.parquet") if not any(s.startswith(("_", ".")) for s in p.relative_to(table_dir).parts))
    batches = {n: p for p in log_dir.iterdir() if (n := _batch_number(p.name)) is not None}
    compacts = [n for n, p in batches.items() if p.name.endswith(".compact")]
    start = max(compacts) if compacts else 0
    files: dict[str, bool] = {}
    for n in sorted(k for k in batches if k >= start):
        for entry in _log_entries(batches[n]):
            path = unquote(urlparse(str(entry["path"])).path)
            if entry.get("action") == "delete":
                files.pop(path, None)
            else:
                files[path] = True
    return sorted(Path(p) for p in files)


def tables(cfg: Params) -> list[str]:
    """Lake tables that exist, topics first in pipeline order, then quarantine."""
    present = [t for t in (*TOPICS, QUARANTINE) if table_path(cfg, t).is_dir()]
    return present


def partition_of(path: Path) -> dict[str, str]:
    """Hive partition values in a file path: {'event_date': '2026-01-05'}."""
    return dict(part.split("=", 1) for part in path.parent.parts if "=" in part)


def count_rows(files: list[Path]) -> int:
    """Rows in Parquet files from their footers, without reading data."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def partitions(files: list[Path]) -> dict[str, list[Path]]:
    """Committed files grouped by Hive partition ('event_date=2026-01-05'), partitions sorted."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault("/".join(f"{k}={v}" for k, v in partition_of(f).items()), []).append(f)
    return dict(sorted(groups.items()))


def describe(cfg: Params) -> pd.DataFrame:
    """Every lake table and partition with its committed files and rows (from Parquet footers)."""
    rows = [
        {"table": table, "partition": part, "files": len(fs), "rows": count_rows(fs)}
        for table in tables(cfg)
        for part, fs in partitions(committed_files(table_path(cfg, table))).items()
    ]
    return pd.DataFrame(rows, columns=["table", "partition", "files", "rows"]).set_index(["table", "partition"])


def read_table(cfg: Params, table: str, columns: list[str] | None = None) -> pa.Table:
    """A lake table as Arrow, committed files only, partition columns included."""
    files = committed_files(table_path(cfg, table))
    if not files:
        return pa.table({})
    dataset = ds.dataset([str(f) for f in files], format="parquet", partitioning="hive",
                         partition_base_dir=str(table_path(cfg, table)))
    return dataset.to_table(columns=columns)


def reset(cfg: Params) -> None:
    """Forget a previous run: lake and stream checkpoints (the topics are recreated by the caller)."""
    for path in (cfg.lake_path, cfg.checkpoint_path):
        shutil.rmtree(path, ignore_errors=True)
