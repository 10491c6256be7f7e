"""Vehicles that follow route advice as they leave, and the trips the fleet makes (live mode).

A share of the fleet (``advised_share``) is drawn per vehicle from the seed, so the same seed gives the
same advised vehicles whatever the advice says. When a vehicle of that share departs it asks for the
latest advice for its origin and destination (:data:`AdviceLookup`, in live mode the ``route_advice``
topic's latest message, :mod:`smartcity.advice.latest`) and drives the advised route; if there is no
advice yet it keeps its route from the mix and is counted apart (``no advice yet``). Everyone else keeps
the route mix. Each vehicle's telemetry says its group and the advice it follows (contract v3's
``adviceGroup`` and ``adviceId``), and each trip is reported when the vehicle arrives, with its group, so
advised and unadvised trip times can be compared while the run goes on, and from the lake after it. A trip
lasts from the vehicle's first fix to its last, as any reader of its telemetry sees it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from smartcity.fleet.contracts import ADVICE_GROUPS
from smartcity.fleet.roads import RoadNetwork
from smartcity.fleet.vehicles import Vehicle

GROUPS: tuple[str, ...] = ADVICE_GROUPS
ADVISED, UNADVISED, NO_ADVICE = GROUPS

#: (origin node, destination node) -> (a route name of the simulation's network, the advice's id), or None
#: while there is no advice for the pair.
AdviceLookup = Callable[[str, str], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Trip:
    """One vehicle's trip, reported as it arrives."""

    device: str
    group: str  # ADVISED (took the advice), UNADVISED (not in the advised share) or NO_ADVICE
    route: str
    depart: datetime  # the time of its first fix
    arrive: datetime  # the time of its last fix
    advice_id: str | None = None  # the route_advice message it followed

    @property
    def minutes(self) -> float:
        return (self.arrive - self.depart).total_seconds() / 60.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "vehicle": self.device,
            "group": self.group,
            "route": self.route,
            "depart": self.depart.isoformat(),
            "arrive": self.arrive.isoformat(),
            "minutes": round(self.minutes, 3),
            "advice_id": self.advice_id,
        }


def in_advised_share(seed: int, serial: int, share: float) -> bool:
    """Whether vehicle ``serial`` of a run with ``seed`` is one of the ``share`` that follows advice."""
    return share > 0 and random.Random(f"{seed}/advised/{serial}").random() < share


@dataclass
class Following:
    """Who takes advice, where it comes from, and the trips under way (reported to ``on_trip`` on arrival)."""

    share: float
    lookup: AdviceLookup
    on_trip: Callable[[Trip], None]
    under_way: dict[str, tuple[str, str, datetime, str | None]] = field(default_factory=dict)

    def depart(
        self,
        vehicle: Vehicle,
        seed: int,
        network: RoadNetwork,
        cameras: Mapping[str, tuple[Any, ...]],
        now: datetime,
    ) -> Vehicle:
        """The vehicle as it joins the road at ``now`` (its first fix): on the advised route if it follows
        advice and there is some, and marked with its group and the advice it took."""
        group, advice_id = UNADVISED, None
        if in_advised_share(seed, vehicle.serial, self.share):
            nodes = vehicle.route.nodes
            found = self.lookup(nodes[0].id, nodes[-1].id)
            if found is None:
                group = NO_ADVICE
            else:
                name, advice_id = found
                group = ADVISED
                vehicle = replace(vehicle, route=network.route(name), cameras=cameras[name])
        self.under_way[vehicle.device] = (group, vehicle.route.name, now, advice_id)
        return replace(vehicle, advice=(group, advice_id))

    def arrived(self, devices: list[str], at: datetime) -> None:
        """These vehicles made their last fix at ``at``."""
        for device in devices:
            group, route, depart, advice_id = self.under_way.pop(device)
            self.on_trip(Trip(device, group, route, depart, at, advice_id))
