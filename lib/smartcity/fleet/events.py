"""The fleet's events as they go on the wire: one JSON value per reading, keyed by its device.

Field names and types are the contracts' (:mod:`smartcity.fleet.contracts`); time is ISO 8601 UTC
with milliseconds; ids are uuid5 of (seed, topic, device, sequence). Telemetry and GPS are built
for the whole fleet at once each tick (the hot loop, kept plain); camera passages, weather and
incident reports one at a time, each with the key that orders it in the stream.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from smartcity.fleet.contracts import TOPICS, Event
from smartcity.fleet.driving import FleetArrays, Moves
from smartcity.fleet.noise import DeviceIds, sha1, uuid5_texts
from smartcity.fleet.roads import LatLon
from smartcity.fleet.sensors import Camera, Incident, Station, WeatherField

_TOPIC_ORDER = {t: n for n, t in enumerate(TOPICS)}
#: An event with the key that orders it: (timestamp, topic, device, id).
Keyed = tuple[tuple[str, int, str, str], Event]


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds: one spelling of time for every event."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def keyed(event: Event) -> Keyed:
    """An event with its stream order: event time, then topic, device and id (all fixed by the params)."""
    return (event.value["timestamp"], _TOPIC_ORDER[event.topic], event.key, event.value["id"]), event


class EventMaker:
    """Builds one run's events: its seed's ids, its contract version."""

    def __init__(self, seed: int, schema_version: int, leg_info: list[tuple[str, str, float]]):
        self.version = schema_version
        self.ids = DeviceIds(seed)
        self.leg_info = leg_info

    def _base(self, topic: str, device: str, at: datetime, where: LatLon) -> dict[str, Any]:
        return {
            "id": self.ids.next(topic, device),
            "schemaVersion": self.version,
            "deviceId": device,
            "timestamp": iso(at),
            "latitude": round(where[0], 6),
            "longitude": round(where[1], 6),
        }

    def vehicle_reports(self, fleet: FleetArrays, stamp: str, moves: Moves) -> tuple[list[Event], list[Event]]:
        """The vehicle_data and gps_data events of one tick, in device order: the hot loop, kept plain."""
        version = self.version
        with_edge, with_advice = version >= 2, version >= 3
        leg_info = self.leg_info
        make_event = tuple.__new__
        ids = _tick_ids(fleet, moves)
        telemetry: list[Event] = []
        fixes: list[Event] = []
        add_telemetry, add_fix = telemetry.append, fixes.append
        for device, telemetry_id, fix_id, la, lo, sp, di, od, fu, lg, static in zip(
            fleet.devices, ids, islice(ids, fleet.size, None), *moves.rows, moves.legs, fleet.statics
        ):
            road, edge_id, accuracy = leg_info[lg]
            make, model, year, fuel_type, vehicle_type, route, advice_group, advice_id = static
            value = {
                "id": telemetry_id,
                "schemaVersion": version,
                "deviceId": device,
                "timestamp": stamp,
                "latitude": la,
                "longitude": lo,
                "speed": sp,
                "direction": di,
                "make": make,
                "model": model,
                "year": year,
                "fuelType": fuel_type,
                "odometer": od,
                "fuelLevel": fu,
                "route": route,
                "road": road,
            }
            if with_edge:
                value["edgeId"] = edge_id
            if with_advice and advice_group is not None:
                value["adviceGroup"] = advice_group
                if advice_id is not None:
                    value["adviceId"] = advice_id
            add_telemetry(make_event(Event, ("vehicle_data", device, value)))
            fix = {
                "id": fix_id,
                "schemaVersion": version,
                "deviceId": device,
                "timestamp": stamp,
                "latitude": la,
                "longitude": lo,
                "speed": sp,
                "direction": di,
                "vehicleType": vehicle_type,
                "accuracy": accuracy,
            }
            add_fix(make_event(Event, ("gps_data", device, fix)))
        return telemetry, fixes

    def camera_passage(self, camera: Camera, vehicle: str, at: datetime, speed: float) -> Keyed:
        value = self._base("traffic_data", camera.device, at, camera.point)
        value.update(
            cameraId=camera.camera_id,
            road=camera.road,
            vehicleId=vehicle,
            speed=round(max(0.0, speed), 1),
            snapshot=f"snapshots/{camera.camera_id}/{at:%Y/%m/%d/%H%M%S}-{at.microsecond // 1000:03d}-{vehicle}.jpg",
        )
        return keyed(Event("traffic_data", camera.device, value))

    def weather_reports(
        self, weather: WeatherField, stations: list[Station], at: datetime, rng: random.Random
    ) -> list[Keyed]:
        """Every station's reading at ``at``: the field where it stands, plus its instruments' noise."""
        events = []
        for station in stations:
            field_ = weather.sample(station.point, at, station.urban)
            value = self._base("weather_data", station.device, at, station.point)
            value.update(
                stationName=station.name,
                temperature=round(float(field_["temperature"]) + rng.gauss(0, 0.2), 1),
                weatherCondition=field_["weatherCondition"],
                precipitation=round(max(0.0, float(field_["precipitation"]) + rng.gauss(0, 0.05)), 2),
                windSpeed=round(max(0.0, float(field_["windSpeed"]) + rng.gauss(0, 1.5)), 1),
                humidity=round(min(100.0, max(0.0, float(field_["humidity"]) + rng.gauss(0, 1.0))), 1),
                airQualityIndex=round(max(0.0, float(field_["airQualityIndex"]) + rng.gauss(0, 1.5)), 1),
            )
            events.append(keyed(Event("weather_data", station.device, value)))
        return events

    def incident_report(self, incident: Incident, status: str, at: datetime) -> Keyed:
        value = self._base("emergency_data", "traffic-control", at, incident.point)
        value.update(
            incidentId=incident.incident_id,
            type=incident.kind,
            severity=incident.severity,
            status=status,
            road=incident.road,
            description=f"{incident.severity} {incident.kind.lower()} on the {incident.road} near {incident.place}",
        )
        return keyed(Event("emergency_data", "traffic-control", value))


def _tick_ids(fleet: FleetArrays, moves: Moves) -> list[str]:
    """The uuid5 ids of one tick's events: every vehicle's telemetry ids, then its fix ids."""
    seqs = [b"%d" % n for n in moves.ticks]
    return uuid5_texts(
        [sha1(p + q).digest() for p, q in zip(fleet.telemetry_ids, seqs)]
        + [sha1(p + q).digest() for p, q in zip(fleet.fix_ids, seqs)]
    )
