"""The advice as a lake table: ``lake/route_advice/event_date=<day>/part-advice-<batch>.parquet``.

Beside the sensor tables and read the same way (a glob of the folder with DuckDB or pyarrow), with the
``route_advice`` contract's fields as columns and ``advice_batch``, the advice query's micro-batch that
wrote the row. Exactly once by name: each micro-batch writes its refreshed advice as one file per event
date of its windows, named by the query's batch id, whole (a local file is written aside and renamed, an
S3 object is one PutObject), before the batch returns. Spark runs a batch again only if it did not record
it done, under the same id and offsets, from the state the batch started with, so a replay updates the same
windows and replaces its own files (their advice may differ: the advisor's memory of earlier batches is gone
after a restart): a reader sees each batch's advice once and never half a file. The topic, produced at least once, may hold a replayed batch's messages twice;
the table never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from smartcity.advice.contract import ADVICE_FIELDS, ADVICE_TOPIC
from smartcity.fleet.contracts import arrow_schema_of
from smartcity.stream.lake import LAKE
from smartcity.stream.store import LakeStore

TABLE = ADVICE_TOPIC
#: The lake table's columns: the contract's fields, then the batch that wrote each row.
SCHEMA = arrow_schema_of(ADVICE_FIELDS, [("advice_batch", "long")])
_TIMESTAMPS = [f.name for f in ADVICE_FIELDS if f.type == "timestamp"]


def batch_key(day: str, batch_id: int) -> str:
    """Where one batch's advice for one event date goes (the date of its windows' start)."""
    return f"{LAKE}/{TABLE}/event_date={day}/part-advice-{batch_id:010d}.parquet"


def write_batch(store: LakeStore, batch_id: int, messages: Sequence[dict[str, Any]]) -> list[str]:
    """Write one micro-batch's advice messages into the table (a file per event date); returns the keys."""
    frame = pd.DataFrame(list(messages), columns=[f.name for f in ADVICE_FIELDS])
    for name in _TIMESTAMPS:
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    frame["advice_batch"] = batch_id
    days = frame["windowStart"].dt.strftime("%Y-%m-%d")
    written = []
    for day in sorted(days.unique()):
        rows = pa.Table.from_pandas(frame[days == day], schema=SCHEMA, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        key = batch_key(day, batch_id)
        store.put(key, sink.getvalue().to_pybytes())
        written.append(key)
    return written


def read_table(store: LakeStore) -> pd.DataFrame:
    """Every advice row of the table (empty if none yet), in batch and window order."""
    filesystem, root = store.arrow()
    folder = f"{root.rstrip('/')}/{LAKE}/{TABLE}"
    if not store.list(f"{LAKE}/{TABLE}/"):
        return SCHEMA.empty_table().to_pandas()
    frame = ds.dataset(folder, filesystem=filesystem, format="parquet", partitioning="hive").to_table().to_pandas()
    return frame.sort_values(["advice_batch", "windowStart", "origin", "destination"], ignore_index=True)
