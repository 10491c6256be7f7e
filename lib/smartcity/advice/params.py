"""The advice query's settings: how much event time a window of telemetry spans, and how late a fix may come."""

from __future__ import annotations

from dataclasses import dataclass

from smartcity.platform.params import Group, param


@dataclass(frozen=True)
class AdviceParams(Group):
    """The live advice query (:mod:`smartcity.advice.query`): its event-time windows and watermark."""

    PREFIX = "advice_"
    enabled: bool = param(
        True, "live mode: run the advice queries beside the lake's (the live map and advised vehicles need them)"
    )
    window_seconds: int = param(300, "event-time seconds of telemetry each advice rests on (a tumbling window)")
    watermark_seconds: int = param(
        120, "how far behind the latest event time a fix may come and still count; later ones are counted as late"
    )

    def __post_init__(self) -> None:
        self.at_least_one(("window_seconds",))
        self.not_negative(("watermark_seconds",))
