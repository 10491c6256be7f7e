"""Tables of a simulated run for people: what it will produce, each vehicle's trip, an example of each topic."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from itertools import takewhile
from pathlib import Path

import orjson
import pandas as pd
from tqdm import tqdm

from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.events import iso, parse_iso
from smartcity.fleet.simulation import FleetSimulation


def run_events(simulation: FleetSimulation, preview: timedelta = timedelta(hours=1)) -> list[Event]:
    """The run as a list for the notebook's tables: all of a bounded run; of an endless one (live
    mode, where the producer takes the events lazily) only the first ``preview`` of simulated time."""
    if simulation.horizon is not None:
        return list(simulation.events())
    end = iso(simulation.params.start_time + preview)
    return list(takewhile(lambda e: e.value["timestamp"] < end, simulation.events()))


def summarize(events: list[Event]) -> pd.DataFrame:
    """Events per topic with their devices and time span: what a run is about to produce."""
    rows = []
    for topic in TOPICS:
        mine = [e for e in events if e.topic == topic]
        rows.append(
            {
                "topic": topic,
                "events": len(mine),
                "devices": len({e.key for e in mine}),
                "first": min((e.value["timestamp"] for e in mine), default=""),
                "last": max((e.value["timestamp"] for e in mine), default=""),
            }
        )
    return pd.DataFrame(rows).set_index("topic")


def trips(events: Iterable[Event]) -> pd.DataFrame:
    """Per vehicle: route, departure, arrival, minutes and distance, from its own telemetry."""
    first: dict[str, dict] = {}
    last: dict[str, dict] = {}
    for event in events:
        if event.topic == "vehicle_data":
            first.setdefault(event.key, event.value)
            last[event.key] = event.value
    rows = []
    for device in sorted(first):
        a, b = first[device], last[device]
        minutes = (parse_iso(b["timestamp"]) - parse_iso(a["timestamp"])).total_seconds() / 60
        km = b["odometer"] - a["odometer"]
        rows.append(
            {
                "vehicle": device,
                "route": a["route"],
                "departed": a["timestamp"][11:16],
                "arrived": b["timestamp"][11:16],
                "minutes": round(minutes),
                "km": round(km, 1),
                "avg km/h": round(km / minutes * 60, 1) if minutes else 0.0,
            }
        )
    return pd.DataFrame(rows).set_index("vehicle")


def examples(events: list[Event]) -> str:
    """The first event of each topic as it goes on the wire: key and JSON value."""
    lines = []
    for topic in TOPICS:
        first = next((e for e in events if e.topic == topic), None)
        if first is not None:
            lines.append(f"{topic}  key={first.key}\n{orjson.dumps(first.value, option=orjson.OPT_INDENT_2).decode()}")
    return "\n\n".join(lines)


def write_jsonl(events: Iterable[Event], out: Path) -> Counter[str]:
    """Events as JSON Lines ({"topic", "key", "value"} per line), as fast as they come; '-' is stdout."""
    counts: Counter[str] = Counter()
    handle = sys.stdout.buffer if str(out) == "-" else open(out, "wb")  # noqa: SIM115 - closed below
    try:
        for event in tqdm(events, desc="simulating", unit="event", mininterval=1.0, disable=str(out) == "-"):
            handle.write(orjson.dumps({"topic": event.topic, "key": event.key, "value": event.value}) + b"\n")
            counts[event.topic] += 1
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    return counts
