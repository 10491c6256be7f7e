"""The ``route_advice`` contract: what the advice query publishes for each window and origin -> destination.

A contract of its own, versioned apart from the five sensor topics (it changes when the advice does, not
when the fleet's messages do), built from the same :class:`~smartcity.fleet.contracts.Field` list as
they are, its JSON Schema published beside this module (``schemas/route_advice.v1.schema.json``). The
Kafka key is ``origin→destination``. Each message is one window's advice as it stood after a micro-batch:
a window's advice is refreshed while its fixes arrive, so a pair has several messages per window, the
last of which counts; the id is a uuid5 of the pair, the window and the fixes it rests on, so a
micro-batch replayed after a restart gives the same ids.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from smartcity.fleet.contracts import UUID_PATTERN, Field, schema_document
from smartcity.fleet.noise import NAMESPACE

ADVICE_TOPIC = "route_advice"
ADVICE_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("schemas") / f"{ADVICE_TOPIC}.v{ADVICE_VERSION}.schema.json"
#: Between the nodes of ``path``.
PATH_SEPARATOR = ">"
#: No London - Birmingham advice can expect more than a day.
MAX_MINUTES = 1440.0

ADVICE_FIELDS: list[Field] = [
    Field(
        "id",
        "string",
        "advice id: uuid5 of the origin, destination, window start and fixes, the same for a replayed micro-batch",
        pattern=UUID_PATTERN,
    ),
    Field("schemaVersion", "int", "version of this contract (route_advice's own, apart from the sensor topics')"),
    Field("timestamp", "timestamp", "event time the advice is for: the end of its window"),
    Field("windowStart", "timestamp", "start of the event-time window of telemetry the advice rests on"),
    Field(
        "origin", "string", "node id of the corridor where the route starts (lib/smartcity/fleet/data/corridor.json)"
    ),
    Field("destination", "string", "node id where the route ends"),
    Field("route", "string", "the advised route: a corridor route's name, or the roads it takes"),
    Field("path", "string", f"node ids of the advised route, in order, separated by '{PATH_SEPARATOR}'"),
    Field("minutes", "double", "expected minutes of the advised route now", "min", minimum=0, maximum=MAX_MINUTES),
    Field("edgesObserved", "int", "edges a vehicle reported from in the window", minimum=0),
    Field("fixes", "long", "telemetry fixes of the window the advice rests on", minimum=0),
]


def key(origin: str, destination: str) -> str:
    """The Kafka key of a pair's advice."""
    return f"{origin}→{destination}"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(advice: dict[str, Any]) -> dict[str, Any]:
    """An advisor's record (:meth:`smartcity.advice.query.Advisor.latest`: UTC window bounds, the advice of
    :func:`smartcity.advice.now.advise`) as the contract's message."""
    start = _iso(advice["windowStart"])
    ident = uuid.uuid5(
        NAMESPACE, f"{ADVICE_TOPIC}/{advice['origin']}/{advice['destination']}/{start}/{advice['fixes']}"
    )
    return {
        "id": str(ident),
        "schemaVersion": ADVICE_VERSION,
        "timestamp": _iso(advice["windowEnd"]),
        "windowStart": start,
        "origin": advice["origin"],
        "destination": advice["destination"],
        "route": advice["route"],
        "path": PATH_SEPARATOR.join(advice["nodes"]),
        "minutes": float(advice["minutes"]),
        "edgesObserved": int(advice["edgesObserved"]),
        "fixes": int(advice["fixes"]),
    }


def json_schema() -> dict[str, Any]:
    """The contract's JSON Schema (draft 2020-12), as generated from :data:`ADVICE_FIELDS`."""
    return schema_document(ADVICE_TOPIC, ADVICE_FIELDS, ADVICE_VERSION)


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def publish_schema() -> Path:
    """Write the published JSON Schema (``smartcity schemas`` does, with the sensor topics')."""
    SCHEMA_FILE.parent.mkdir(exist_ok=True)
    SCHEMA_FILE.write_text(render_schema())
    return SCHEMA_FILE


def published_schema() -> dict[str, Any]:
    """The JSON Schema as published in the repo (what consumers of the advice validate against)."""
    return json.loads(SCHEMA_FILE.read_text())
