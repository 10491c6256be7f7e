"""The count ledger: how many events of each topic every stage holds after a run.

Each stage's step records its counts (produced to Kafka, in the lake, in the catalog, in the
warehouse) as ``<stage>.json`` in the profile's ``outputs/<profile>/counts/``; the report
reconciles them: every produced event should be in every later stage exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

STAGES = ("produced", "lake", "catalog", "warehouse")


@dataclass(frozen=True)
class Ledger:
    """The counts of one profile's run: a folder of one JSON file per stage, over the given topics."""

    folder: Path
    topics: Sequence[str]

    def _file(self, stage: str) -> Path:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        return self.folder / f"{stage}.json"

    def record(self, stage: str, counts: Mapping[str, int]) -> None:
        """Remember how many events of each topic a stage holds after this run."""
        path = self._file(stage)
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {t: int(counts.get(t, 0)) for t in self.topics}
        path.write_text(json.dumps(data, indent=2) + "\n")

    def clear(self) -> None:
        for stage in STAGES:
            self._file(stage).unlink(missing_ok=True)

    def table(self) -> pd.DataFrame:
        """Topics x stages: events per topic at each stage that has recorded its counts."""
        columns = {stage: json.loads(self._file(stage).read_text()) for stage in STAGES if self._file(stage).exists()}
        return pd.DataFrame(columns, index=list(self.topics)).rename_axis("topic").astype("Int64")

    def reconcile(self) -> tuple[pd.DataFrame, list[str]]:
        """The counts table plus one message per topic and stage that disagrees with what was produced."""
        frame = self.table()
        problems = []
        missing = [s for s in STAGES if s not in frame.columns]
        if missing:
            problems.append(f"stages without recorded counts: {', '.join(missing)}")
        if "produced" in frame.columns:
            for stage in frame.columns.drop("produced"):
                for topic in frame.index:
                    if frame.at[topic, stage] != frame.at[topic, "produced"]:
                        problems.append(
                            f"{topic}: {frame.at[topic, 'produced']} produced but {frame.at[topic, stage]} in {stage}"
                        )
        return frame, problems
