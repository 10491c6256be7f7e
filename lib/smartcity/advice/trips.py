"""Minutes saved while the run goes on: advised vs unadvised trip times, as trips end.

Every trip that ends is reported with its group (:class:`smartcity.fleet.following.Trip`). The board
keeps them and compares the groups as a live status line and table: per group the trips and their mean
minutes with a 95 % confidence interval, and, once each group has MIN_TRIPS, the minutes the advised save
(unadvised mean minus advised mean) with its own. The intervals are percentile bootstraps (seeded: the same trips give the same figures),
as the batch judge's are. Vehicles of the advised share that left before any advice existed are counted
apart and belong to neither group.

After the run the lake tells the same: each vehicle's telemetry carries its group and the advice it took
(contract v3), so :func:`lake_trips` rebuilds the trips from ``vehicle_data`` alone (first fix to last, as
the live board times them) and :func:`comparison_frame` compares them, beside what the advice expected
(the ``minutes`` of the ``route_advice`` message each advised vehicle followed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smartcity.advice import table
from smartcity.fleet.following import ADVISED, GROUPS, NO_ADVICE, UNADVISED, Trip
from smartcity.stream import lake
from smartcity.stream.store import LakeStore

#: Bootstrap resamples behind each interval.
RESAMPLES = 2000
#: The bootstrap's seed.
SEED = 20260105
#: Trips each group needs before the saving is given (a mean of fewer says little).
MIN_TRIPS = 5


def _interval(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(draws, [0.025, 0.975])
    return round(float(low), 2), round(float(high), 2)


def compare(trips: Iterable[Trip]) -> dict[str, Any]:
    """Per group: trips, mean minutes and its 95 % interval; and the advised's saving with its interval."""
    trips = list(trips)
    minutes = {g: np.array([t.minutes for t in trips if t.group == g]) for g in GROUPS}
    rng = np.random.default_rng(SEED)
    figures: dict[str, Any] = {}
    means = {}
    for group in GROUPS:
        values = minutes.get(group, np.zeros(0))
        row: dict[str, Any] = {"trips": len(values), "mean_min": None, "ci_min": None}
        if len(values):
            means[group] = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
            row["mean_min"] = round(float(values.mean()), 2)
            row["ci_min"] = _interval(means[group]) if len(values) > 1 else None
        figures[group] = row
    saved = None
    if min(len(minutes[ADVISED]), len(minutes[UNADVISED])) >= MIN_TRIPS:
        saved = {
            "mean_min": round(float(minutes[UNADVISED].mean() - minutes[ADVISED].mean()), 2),
            "ci_min": _interval(means[UNADVISED] - means[ADVISED]),
        }
    figures["saved"] = saved
    return figures


@dataclass
class TripBoard:
    """The trips of a live run as they end (from the fleet's thread), compared on request."""

    trips: list[Trip] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, trip: Trip) -> None:
        with self._lock:
            self.trips.append(trip)

    def compare(self) -> dict[str, Any]:
        with self._lock:
            trips = list(self.trips)
        return compare(trips)


def format_trips(figures: dict[str, Any]) -> str:
    """The status line of the comparison: trips and mean minutes of each group, and the saving."""

    def group(name: str) -> str:
        row = figures[name]
        if not row["trips"]:
            return f"{name} 0 trips"
        ci = f" ({row['ci_min'][0]:.1f}-{row['ci_min'][1]:.1f})" if row["ci_min"] else ""
        return f"{name} {row['trips']} trips {row['mean_min']:.1f} min{ci}"

    saved = figures["saved"]
    text = f"trips: {group(ADVISED)}, {group(UNADVISED)}"
    if figures[NO_ADVICE]["trips"]:
        text += f", {figures[NO_ADVICE]['trips']} left before any advice"
    if saved is not None:
        text += (
            f"; advice saves {saved['mean_min']:.1f} min (95% CI {saved['ci_min'][0]:.1f} to {saved['ci_min'][1]:.1f})"
        )
    return text


#: The telemetry columns a trip is rebuilt from.
TRIP_COLUMNS = ["deviceId", "timestamp", "route", "adviceGroup", "adviceId"]


def trips_from_telemetry(fixes: pd.DataFrame, tick_seconds: float) -> list[Trip]:
    """The ended trips of a live run with advice, from its vehicles' telemetry (:data:`TRIP_COLUMNS`).

    A vehicle whose fixes carry an ``adviceGroup`` made a trip from its first fix to its last. It has
    ended if its last fix is more than a tick before the run's last fix: vehicles on the road report every
    tick, so one still driving when the run stopped (or in the tick the producer was stopped in) is left
    out. In arrival order, then by vehicle.
    """
    followed = fixes[fixes["adviceGroup"].notna()]
    if followed.empty:
        return []
    end = fixes["timestamp"].max() - pd.Timedelta(seconds=tick_seconds)
    per = followed.groupby("deviceId").agg(
        group=("adviceGroup", "first"),
        route=("route", "first"),
        advice_id=("adviceId", "first"),
        depart=("timestamp", "min"),
        arrive=("timestamp", "max"),
    )
    per = per[per["arrive"] < end].reset_index().sort_values(["arrive", "deviceId"])
    return [
        Trip(
            r.deviceId,
            r.group,
            r.route,
            r.depart.to_pydatetime(),
            r.arrive.to_pydatetime(),
            None if pd.isna(r.advice_id) else r.advice_id,
        )
        for r in per.itertuples()
    ]


def lake_trips(store: LakeStore, tick_seconds: float) -> list[Trip]:
    """The ended trips of the live run in the lake (none for a run without advice)."""
    fixes = lake.read_table(store, "vehicle_data", columns=TRIP_COLUMNS).to_pandas()
    return trips_from_telemetry(fixes, tick_seconds)


def comparison_frame(ended: list[Trip], advice: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare` as a table, a row per group and one for the saving; for the advised, the mean
    minutes the advice they followed expected (``advice``: the ``route_advice`` table, by ``id``)."""
    figures = compare(ended)
    expected = advice.drop_duplicates("id").set_index("id")["minutes"]
    followed = [expected.get(t.advice_id, np.nan) for t in ended if t.group == ADVISED]
    compared = figures[ADVISED]["trips"] + figures[UNADVISED]["trips"]
    rows = []
    for name in (*GROUPS, "saved"):
        row = figures[name] or {"mean_min": None, "ci_min": None}  # no saving yet
        low, high = row["ci_min"] or (None, None)
        trips = compared if name == "saved" else row["trips"]
        rows.append({"": name, "trips": trips, "mean min": row["mean_min"], "95% CI low": low, "95% CI high": high})
    frame = pd.DataFrame(rows).set_index("")
    frame["advice expected min"] = None
    if followed and not np.isnan(followed).all():
        frame.loc[ADVISED, "advice expected min"] = round(float(np.nanmean(followed)), 2)
    return frame


def lake_comparison(store: LakeStore, tick_seconds: float) -> pd.DataFrame | None:
    """:func:`comparison_frame` of the trips in the lake and the advice they followed (None: no trip with advice)."""
    ended = lake_trips(store, tick_seconds)
    return comparison_frame(ended, table.read_table(store)) if ended else None
