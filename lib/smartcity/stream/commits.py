"""The lake's commit log: a micro-batch is staged, planned in a manifest, published, then marked done.

How each step makes the table folders exactly-once for every reader, and how a crash at any
point is recovered, is in ``docs/decisions/0001-lake-commits.md``; the layout of the lake itself
is :mod:`smartcity.stream.lake`. The log runs on the profile's store: renames on a local disk,
conditional copies on S3 (0002 §1).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smartcity.stream.lake import (
    COMMITS,
    KEEP_MARKERS,
    LAKE,
    QUARANTINE,
    RAW_STAGING,
    STAGED_MARK,
    LakeError,
    display,
    json_bytes,
    lake_state,
    partition_dir,
    visible_key,
)
from smartcity.stream.staging import convert_staged, merged_quantiles, staged_file
from smartcity.stream.store import LakeStore


@dataclass
class CommitLog:
    """The lake writer's log: staging area, manifests and done markers of the micro-batches.

    It lives on a :class:`~smartcity.stream.store.LakeStore` under key prefixes: ``lake_root`` holds the
    tables, ``root`` the log (beside the stream's checkpoint). The same code runs on a local folder
    (renames) and on S3 (conditional copies); 0002 §1 maps each step.
    """

    store: LakeStore
    lake_root: str = LAKE
    root: str = COMMITS
    writer: str = field(init=False)

    def __post_init__(self) -> None:
        ident = f"{self.root}/writer.json"
        try:
            data = self.store.get(ident)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made by another process meanwhile: theirs counts
                self.store.put(ident, json_bytes({"writer": uuid.uuid4().hex[:8]}), if_absent=True)
            data = self.store.get(ident)
        self.writer = json.loads(data)["writer"]

    def staging(self, batch: int) -> str:
        return f"{self.root}/_staging/{batch:010d}"

    def manifest_key(self, batch: int) -> str:
        return f"{self.root}/{batch:010d}.manifest.json"

    def done_key(self, batch: int) -> str:
        return f"{self.root}/{batch:010d}.done.json"

    def staged_key(self, batch: int) -> str:
        return f"{self.staging(batch)}/{STAGED_MARK}"

    def is_done(self, batch: int) -> bool:
        return self.store.head(self.done_key(batch)) is not None

    def has_manifest(self, batch: int) -> bool:
        return self.store.head(self.manifest_key(batch)) is not None

    def is_staged(self, batch: int) -> bool:
        """The stream's Spark job finished writing the batch's lines (and its metrics are kept)."""
        return self.store.head(self.staged_key(batch)) is not None

    def mark_staged(self, batch: int, metrics: Mapping[str, Any]) -> None:
        """Record that a batch's lines are complete: from here on it is finished, never staged again."""
        self.store.put(self.staged_key(batch), json_bytes(dict(metrics)))

    def finish(self, batch: int) -> dict[str, Any]:
        """Everything after Spark: the manifest from the staged files' rows, the move into the lake. Idempotent."""
        if self.is_done(batch):
            return json.loads(self.store.get(self.done_key(batch)))
        if not self.has_manifest(batch):
            metrics = json.loads(self.store.get(self.staged_key(batch)))
            files = metrics.pop("files", None)
            if files is None:  # staged as text lines by an earlier version of the lab: converted here
                started = time.time()
                convert_staged(self.store, self.staging(batch))
                metrics["arrow_seconds"] = round(time.time() - started, 3)
            self.plan(batch, metrics, files)
        return self.publish(batch)

    def start(self, batch: int) -> str:
        """A clean staging prefix for a batch (what a crashed attempt left there is discarded)."""
        staging = self.staging(batch)
        self.store.delete_prefix(staging)
        return staging

    def plan(
        self, batch: int, metrics: Mapping[str, Any] | None = None, files: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Fix where each staged file goes, in a manifest written atomically: from here the batch rolls forward.

        ``files`` are the rows the stream's tasks returned for the files they staged (table, partition
        folder, key, rows, bytes, a sketch of the Kafka timestamps: :class:`~smartcity.stream.staging.StageTask`),
        so the plan reads no event: the batch's figures (messages, quarantined, quantiles of the Kafka
        timestamps) come from them. Without them (a batch staged otherwise), the staged files are listed
        and read. Each move records the file's rows and bytes; the bytes let a publish retried on S3
        tell its own copy from anything else under the same key.
        """
        files = self._read_staged(batch) if files is None else files
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for file in sorted(files, key=lambda f: f["key"]):
            groups.setdefault((file["table"], file["partition"]), []).append(file)
        moves: list[dict[str, Any]] = []
        rows: dict[str, int] = {}
        for (table, part), group in sorted(groups.items()):
            for n, file in enumerate(group):
                dst = "/".join(p for p in (table, part, f"part-{batch:010d}-{n:03d}-{self.writer}.parquet") if p)
                moves.append({"src": file["key"], "dst": dst, "rows": file["rows"], "bytes": file["bytes"]})
                rows[table] = rows.get(table, 0) + file["rows"]
        figures = {
            "messages": sum(rows.values()),
            "quarantined": rows.get(QUARANTINE, 0),
            "produced_quantiles": merged_quantiles(files),
        }
        manifest = {
            "batch": batch,
            "writer": self.writer,
            "rows": rows,
            "files": moves,
            "metrics": {**dict(metrics or {}), **figures},
        }
        self.store.put(self.manifest_key(batch), json_bytes(manifest))
        return manifest

    def _read_staged(self, batch: int) -> list[dict[str, Any]]:
        """The staged files' rows as the stream's tasks return them, from a listing and a read of each file
        (for a batch whose lines were converted here: every timestamp, so its quantiles are exact)."""
        staging = self.staging(batch)
        files = []
        for obj in self.store.list(staging):  # the tables the conversion wrote, what a glob of each sees
            table, _, inner = obj.key[len(staging) + 1 :].partition("/")
            if inner and table != RAW_STAGING and visible_key(inner):
                count, stamps = staged_file(self.store, obj.key)
                key, part = obj.key[len(staging) + 1 :], partition_dir(inner)
                size, every = obj.size, stamps.tolist()  # every timestamp: the quantiles are exact
                files.append(
                    {"table": table, "partition": part, "key": key, "rows": count, "bytes": size, "stamps": every}
                )
        return files

    def publish(self, batch: int) -> dict[str, Any]:
        """Move a planned batch's files into the lake (idempotent), then mark it done."""
        manifest = json.loads(self.store.get(self.manifest_key(batch)))
        staging = self.staging(batch)
        for move in manifest["files"]:
            try:  # a manifest written before moves recorded bytes: -1, no size to check
                self.store.publish(f"{staging}/{move['src']}", f"{self.lake_root}/{move['dst']}", move.get("bytes", -1))
            except FileNotFoundError:
                raise LakeError(
                    f"batch {batch}: {move['src']} is neither staged nor in the lake as {move['dst']}; "
                    f"the lake under {display(self.store, self.lake_root)} was changed by hand: reset the run"
                ) from None
            except FileExistsError as exc:
                raise LakeError(
                    f"batch {batch}: {move['dst']} is already in the lake with other content ({exc}); "
                    f"the lake under {display(self.store, self.lake_root)} was written by someone else: reset the run"
                ) from None
        manifest["published_at"] = time.time()
        self.store.put(self.done_key(batch), json_bytes(manifest))
        self.store.delete(self.manifest_key(batch))
        self.store.delete_prefix(staging)
        return manifest

    def _markers(self, suffix: str) -> list[tuple[int, str]]:
        return _markers(self.store, self.root, suffix)

    def recover(self) -> list[int]:
        """After a crash: finish every batch Spark completed, in order; delete the rest; prune old markers.

        A batch with a manifest, or whose lines Spark finished writing, may already be committed
        in Spark's own log, so it will not come again: it is rolled forward. Anything else was cut
        off mid-write and Spark replays it.
        """
        planned = {batch for batch, _ in self._markers("manifest.json")}
        folders: dict[int, str] = {}
        for obj in self.store.list(f"{self.root}/_staging", delimiter="/"):
            name = obj.key.rstrip("/").rsplit("/", 1)[-1]
            if obj.key.endswith("/") and name.isdigit():
                folders[int(name)] = obj.key
        complete = {b for b in folders if self.is_staged(b)}
        rolled = sorted(planned | complete)
        for batch in rolled:
            self.finish(batch)
        for batch, leftover in folders.items():
            if batch not in complete | planned:
                self.store.delete_prefix(leftover)
        markers = self._markers("done.json")
        for _, old in markers[:-KEEP_MARKERS]:
            self.store.delete(old)
        return rolled

    def batches(self) -> list[dict[str, Any]]:
        """The kept done markers, oldest first: rows per table, timings and freshness of each batch."""
        return [json.loads(self.store.get(key)) for _, key in self._markers("done.json")]


def _markers(store: LakeStore, root: str, suffix: str) -> list[tuple[int, str]]:
    """(batch, key) of a commit log's files named ``<batch>.<suffix>``, in batch order."""
    found: list[tuple[int, str]] = []
    for obj in store.list(root, delimiter="/"):
        name = obj.key.rsplit("/", 1)[-1]
        number, dot, rest = name.partition(".")
        if dot and rest == suffix and number.isdigit():
            found.append((int(number), obj.key))
    return sorted(found)


def writer_progress(store: LakeStore, root: str = COMMITS) -> tuple[str | None, int | None]:
    """The lake writer's id and its last done batch (None, None before any), read without creating the
    log: a loader uses them to leave out the files of a batch still being published."""
    try:
        writer = json.loads(store.get(f"{root}/writer.json"))["writer"]
    except FileNotFoundError:
        return None, None
    done = _markers(store, root, "done.json")
    return writer, done[-1][0] if done else None


def commit_log(store: LakeStore) -> CommitLog:
    """The profile's commit log, on its store; refuses a lake whose reset did not finish."""
    lake_state(store)
    return CommitLog(store)
