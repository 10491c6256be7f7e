"""Traffic that reacts to where vehicles go: the speed of each carriageway falls with the flow on it.

The volume-delay function is the BPR curve (US Bureau of Public Roads, *Traffic Assignment Manual*,
1964; the form and its standard parameters as FHWA's syntheses give them):

    travel time = free-flow time x (1 + ALPHA x (V / C) ^ BETA),  so  speed = free-flow speed / (1 + ...)

* ``C``, the capacity of one direction of an edge: lanes x vehicles per hour per lane of its road class
  (:data:`LANE_CAPACITY_VPH`, from DMRB TA 79/99 *Traffic capacity of urban roads*, Table 2: urban
  motorway about 2,000 per lane, a high-standard dual carriageway 1,700, a 7.3 m single carriageway
  1,470 in its busiest direction, a busy high street 1,140; :data:`LANES` are this model's assumption for
  the corridor's roads).
* ``V``, the flow in vehicles per hour: a background flow of the traffic the lab does not simulate, per
  road class and hour (:func:`background_vph`), plus the simulated fleet's own: the rate at which its
  vehicles enter the carriageway, smoothed over about :data:`FLOW_MEMORY_S` (:func:`smoothed_flow`), each
  vehicle counting for ``vehicle_weight`` real ones (the fleet is a sample of the traffic: vehicles that
  behave alike, e.g. that got the same advice). A rate of entries, not the vehicles on the road: a queue
  holds more vehicles but lets fewer through, and counting it as more flow would jam it further.
* The background is a volume-to-capacity ratio: :data:`BACKGROUND_VC_OFF_PEAK` off-peak (an assumption),
  rising with :func:`smartcity.fleet.vehicles.rush_hour` to a peak chosen per class so that the curve
  alone slows the road by what the model's rush hour did before flows counted
  (:data:`smartcity.fleet.vehicles.RUSH_HOUR_DEPTH`: 20 % on motorways .. 45 % in town): with no fleet
  on the road the model drives as before, give or take 1 % off-peak; every vehicle added slows it more.
* ``V / C`` is capped at :data:`MAX_VC` so that a simulated overload cannot stop a road outright (the
  queue that would build is not modelled).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np

from smartcity.fleet.roads import Leg
from smartcity.fleet.vehicles import RUSH_HOUR_DEPTH, rush_hour

#: The BPR curve's parameters (Bureau of Public Roads, 1964): 15 % slower at capacity, steeply more beyond.
BPR_ALPHA = 0.15
BPR_BETA = 4.0
#: Vehicles per hour one lane carries at capacity, by road class (DMRB TA 79/99, Table 2).
LANE_CAPACITY_VPH = {"motorway": 2000.0, "trunk": 1700.0, "primary": 1470.0, "urban": 1140.0}
#: Lanes in each direction, by road class: the corridor's motorways are mostly three-lane (D3M), its
#: trunk roads dual two-lane, its primary roads and town streets single carriageways (an assumption).
LANES = {"motorway": 3, "trunk": 2, "primary": 1, "urban": 1}
#: The background traffic's volume-to-capacity ratio off-peak (an assumption: half full).
BACKGROUND_VC_OFF_PEAK = 0.5
#: Flows beyond this many times capacity count as this many (the curve is 1 + 0.15 x 3^4 = 13x slower there).
MAX_VC = 3.0
#: The fleet's flow on a carriageway is what entered it over about this long (s): the time constant of an
#: exponential average of its entries (an assumption, between a detector's minute and the hour of DfT counts).
FLOW_MEMORY_S = 600.0
SECONDS_PER_HOUR = 3600.0


def peak_vc(road_class: str) -> float:
    """The background's volume-to-capacity ratio at the height of the rush hour: the one at which the curve
    slows the class by its :data:`~smartcity.fleet.vehicles.RUSH_HOUR_DEPTH`."""
    slowdown = 1 / (1 - RUSH_HOUR_DEPTH[road_class]) - 1
    return float((slowdown / BPR_ALPHA) ** (1 / BPR_BETA))


#: The peak ratio of each class (motorway 1.14 .. urban 1.53: over capacity at the peak, as the curve allows).
PEAK_VC = {road_class: peak_vc(road_class) for road_class in RUSH_HOUR_DEPTH}


def capacity_vph(road_class: str) -> float:
    """Vehicles per hour one direction of a road of this class carries at capacity."""
    return LANES[road_class] * LANE_CAPACITY_VPH[road_class]


def background_vc(peak: float | np.ndarray, at: datetime) -> float | np.ndarray:
    """The background's volume-to-capacity ratio at ``at`` on roads whose peak ratio is ``peak`` (scalars or arrays)."""
    return BACKGROUND_VC_OFF_PEAK + (peak - BACKGROUND_VC_OFF_PEAK) * rush_hour(at)


def background_vph(road_class: str, at: datetime) -> float:
    """The flow the lab does not simulate on one direction of a road of this class, at ``at``."""
    return float(background_vc(PEAK_VC[road_class], at)) * capacity_vph(road_class)


def delay_factor(volume_vph: float | np.ndarray, capacity: float | np.ndarray) -> float | np.ndarray:
    """The BPR curve: travel time over free-flow time at a flow (scalars or arrays)."""
    vc = np.minimum(np.asarray(volume_vph, dtype=float) / capacity, MAX_VC)
    factor = 1.0 + BPR_ALPHA * vc**BPR_BETA
    return float(factor) if factor.ndim == 0 else factor


def carriageway(leg: Leg) -> str:
    """The key of an edge driven in one direction: its id and + (as drawn) or - (against)."""
    return f"{leg.edge.id}:{'+' if leg.forward else '-'}"


def smoothed_flow(
    flow_vph: float | np.ndarray, entered: float | np.ndarray, tick_seconds: float, since_seconds: float
) -> float | np.ndarray:
    """A carriageway's fleet flow (veh/h) after a tick of ``tick_seconds`` in which ``entered`` vehicles (already
    weighted) entered it, ``since_seconds`` after the previous update: the old flow decays over the gap, the
    tick's rate of entries comes in with the weight an exponential average over :data:`FLOW_MEMORY_S` gives it."""
    keep = np.exp(-since_seconds / FLOW_MEMORY_S)
    rate = np.asarray(entered, dtype=float) * (SECONDS_PER_HOUR / tick_seconds)
    return flow_vph * keep + rate * (1.0 - np.exp(-tick_seconds / FLOW_MEMORY_S))


def speed_factor(leg: Leg, at: datetime, fleet_flows: Mapping[str, float]) -> float:
    """What share of its free-flow speed a carriageway allows at ``at`` with the fleet's flows on it."""
    road_class = leg.edge.road_class
    volume = background_vph(road_class, at) + fleet_flows.get(carriageway(leg), 0.0)
    return 1.0 / float(delay_factor(volume, capacity_vph(road_class)))
