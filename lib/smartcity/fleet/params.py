"""The fleet's settings: who drives, on which routes, when, how often they report, how it is paced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from smartcity.fleet.contracts import SCHEMA_VERSION, SCHEMA_VERSIONS
from smartcity.fleet.roads import load_network
from smartcity.platform.params import Group, ParamsError, param


def route_weights(spec: str) -> dict[str, float]:
    """Parse the ``routes`` parameter ('M1/M6:2,M40:1'); unknown routes and bad weights name it."""
    known = load_network().route_names
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, weight = item.partition(":")
        name = name.strip()
        if name not in known:
            raise ParamsError(f"parameter 'routes': unknown route {name!r}; the corridor has {', '.join(known)}")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ParamsError(f"parameter 'routes': the weight of {name!r} is not a number: {weight!r}") from None
        if not 0 <= value < float("inf"):
            raise ParamsError(f"parameter 'routes': the weight of {name!r} must be zero or positive, got {weight}")
        weights[name] = value
    if sum(weights.values()) <= 0:
        raise ParamsError("parameter 'routes' must give at least one route a positive weight")
    return weights


@dataclass(frozen=True)
class FleetParams(Group):
    """A run of the fleet: everything the simulator draws from, so the same values give the same events."""

    seed: int = param(42, "random seed: same seed and params give the same events")
    base_date: str = param("2026-01-05T08:00:00+00:00", "simulated clock start, ISO 8601 with offset")
    vehicles: int = param(3, "fleet size: vehicles driving London to Birmingham")
    routes: str = param("M1/M6:1,M40:1,A5/A45:1", "route mix, name:weight, from the corridor's routes")
    departure_spacing_seconds: float = param(180.0, "seconds between two departures")
    departure_rate_per_hour: float = param(
        0.0,
        "after the first `vehicles`, more keep leaving at this mean rate "
        "(Poisson) for as long as the run lasts, endless if duration_seconds "
        "is 0; 0 keeps the fixed fleet of `vehicles`",
    )
    tick_seconds: float = param(5.0, "simulated seconds between two telemetry fixes")
    duration_seconds: float = param(0.0, "simulated seconds to run (sensors report to the end); 0: until all arrive")
    incident_rate: float = param(0.1, "incidents per 100 km of road per hour (a Poisson process)")
    vehicle_weight: float = param(
        25.0,
        "real vehicles each simulated one stands for in the roads' flows (the volume-delay "
        "curve, smartcity.fleet.traffic); 0: the fleet's own vehicles slow no road",
    )
    advised_share: float = param(
        0.0,
        "live mode: share of the fleet (a seeded draw per vehicle) that takes the latest route_advice "
        "as it departs; the rest keep the route mix",
    )
    speedup: float = param(0.0, "1 paces events in real time, 60 a minute per second; 0 as fast as possible")
    schema_version: int = param(
        SCHEMA_VERSION,
        "contract version the fleet produces (1; 2 adds vehicle_data.edgeId; 3 adds adviceGroup and adviceId, "
        "written in live runs with advice)",
    )

    def __post_init__(self) -> None:
        self.at_least_one(("vehicles",))
        self.positive(("tick_seconds",))
        self.not_negative(
            (
                "departure_spacing_seconds",
                "departure_rate_per_hour",
                "duration_seconds",
                "incident_rate",
                "speedup",
                "vehicle_weight",
            )
        )
        self.one_of("schema_version", SCHEMA_VERSIONS)
        if not 0.0 <= self.advised_share <= 1.0:
            raise self.fail("advised_share", f"is a share of the fleet, from 0 to 1, got {self.advised_share}")
        route_weights(self.routes)
        try:
            start = datetime.fromisoformat(self.base_date)
        except ValueError:
            raise self.fail("base_date", f"is not an ISO 8601 date-time: {self.base_date!r}") from None
        if start.tzinfo is None:
            raise self.fail("base_date", f"needs a UTC offset, e.g. '+00:00': {self.base_date!r}")

    @property
    def start_time(self) -> datetime:
        return datetime.fromisoformat(self.base_date)

    @property
    def weights(self) -> dict[str, float]:
        """The route mix: what the fleet drives without suggestions."""
        return route_weights(self.routes)

    @property
    def open_ended(self) -> bool:
        """Vehicles keep departing; without a duration the run never ends."""
        return self.departure_rate_per_hour > 0
