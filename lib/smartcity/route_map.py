"""Maps of the journey: the planned route, and what the lake says happened along it.

The journey map is drawn from the catalog (the same tables Athena queries), one layer each for
the vehicles' GPS tracks, incidents, weather stations and traffic cameras, so a reader can
switch them on and off; it is saved as a self-contained HTML file next to the report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import folium
from branca.element import Element
import pandas as pd

from smartcity import catalog
from smartcity.config import Params
from smartcity.geo import Route, default_route

TRACK_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
INCIDENT_COLOURS = {"Active": "red", "Resolved": "gray"}
MAP_TRACK_SECONDS = 30.0


def stable_ids(fmap: folium.Map) -> folium.Map:
    """Give every element of a map an id derived from its place in the map, not a random one.

    Folium names each element with 16 random bytes, so the same map renders differently on every
    run; derived ids make saved maps and notebook outputs identical run after run.
    """

    def visit(element: Any, path: str) -> None:
        element._id = hashlib.md5(path.encode()).hexdigest()  # noqa: S324 - a name, not security
        children = getattr(element, "_children", None)
        if children:
            renamed = []
            for n, (key, child) in enumerate(children.items()):
                was = child.get_name()
                visit(child, f"{path}/{n}")
                # children are keyed by the name they had when added, and templates print the key
                renamed.append((child.get_name() if key == was else key, child))
            children.clear()
            children.update(renamed)
        for part in ("header", "html", "script"):  # figures and popups keep elements here too
            if isinstance(getattr(element, part, None), Element):
                visit(getattr(element, part), f"{path}/{part}")

    visit(fmap.get_root(), "root")
    return fmap


def _base_map(route: Route) -> folium.Map:
    lats = [p[0] for p in route.points]
    lons = [p[1] for p in route.points]
    fmap = folium.Map(tiles="OpenStreetMap", control_scale=True)
    fmap.fit_bounds([[min(lats), min(lons)], [max(lats), max(lons)]])
    return fmap


def route_preview(route: Route | None = None) -> folium.Map:
    """The planned route with its waypoints: what the simulated fleet is about to drive."""
    route = route or default_route()
    fmap = _base_map(route)
    folium.PolyLine(route.points, color="#555555", weight=4, tooltip=f"{route.length_km:.0f} km").add_to(fmap)
    for (name, point), km in zip(zip(route.names, route.points), route.chainage_km):
        folium.CircleMarker(point, radius=4, color="#333333", fill=True, tooltip=f"{name} (km {km:.0f})").add_to(fmap)
    folium.Marker(route.points[0], tooltip="Start: " + route.names[0], icon=folium.Icon(color="green")).add_to(fmap)
    folium.Marker(route.points[-1], tooltip="Finish: " + route.names[-1], icon=folium.Icon(color="black")).add_to(fmap)
    return stable_ids(fmap)


def _query(cfg: Params, sql: str) -> pd.DataFrame:
    con = catalog.connect(cfg, read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).df()
    finally:
        con.close()


def journey_layers(cfg: Params) -> dict[str, pd.DataFrame]:
    """The data behind the journey map, from the catalogued lake tables."""
    return {
        "tracks": _query(cfg, 'SELECT deviceId, "timestamp", latitude, longitude, speed '
                              'FROM smartcity.gps_data ORDER BY deviceId, "timestamp"'),
        "incidents": _query(cfg, 'SELECT incidentId, type, status, description, "timestamp", latitude, longitude '
                                 'FROM smartcity.emergency_data ORDER BY "timestamp", incidentId'),
        "weather": _query(cfg, 'SELECT deviceId, arg_max(weatherCondition, "timestamp") AS condition, '
                               'round(avg(temperature), 1) AS temperature, round(max(precipitation), 2) AS max_rain, '
                               'any_value(latitude) AS latitude, any_value(longitude) AS longitude '
                               'FROM smartcity.weather_data GROUP BY deviceId ORDER BY deviceId'),
        "cameras": _query(cfg, 'SELECT cameraId, any_value(latitude) AS latitude, any_value(longitude) AS longitude, '
                               'count(*) AS passages FROM smartcity.traffic_data GROUP BY cameraId ORDER BY cameraId'),
    }


def journey_map(cfg: Params, route: Route | None = None) -> folium.Map:
    """Tracks, incidents, weather and cameras on one map, each a layer that can be toggled."""
    route = route or default_route()
    data = journey_layers(cfg)
    fmap = _base_map(route)

    tracks = folium.FeatureGroup(name="Vehicle tracks (GPS)")
    for n, (device, fixes) in enumerate(data["tracks"].groupby("deviceId", sort=True)):
        colour = TRACK_COLOURS[n % len(TRACK_COLOURS)]
        # one point every MAP_TRACK_SECONDS is plenty at this zoom and keeps the page light
        step = max(1, round(MAP_TRACK_SECONDS / cfg.tick_seconds))
        points = fixes[["latitude", "longitude"]].iloc[::step].round(5).values.tolist()
        folium.PolyLine(points, color=colour, weight=3, opacity=0.8,
                        tooltip=f"{device}: {len(fixes)} fixes, avg {fixes['speed'].mean():.0f} km/h").add_to(tracks)
    tracks.add_to(fmap)

    incidents = folium.FeatureGroup(name="Incidents")
    for _, row in data["incidents"].iterrows():
        folium.Marker(
            [row.latitude, row.longitude],
            tooltip=f"{row.incidentId} {row.type} ({row.status}) {row.timestamp:%H:%M}",
            popup=folium.Popup(f"{row.description}<br>{row.status} at {row.timestamp:%Y-%m-%d %H:%M} UTC", max_width=250),
            icon=folium.Icon(color=INCIDENT_COLOURS.get(row.status, "orange"), icon="exclamation-sign"),
        ).add_to(incidents)
    incidents.add_to(fmap)

    weather = folium.FeatureGroup(name="Weather stations")
    for _, row in data["weather"].iterrows():
        folium.CircleMarker(
            [row.latitude, row.longitude], radius=9, color="#1f4e79", fill=True, fill_opacity=0.6,
            tooltip=f"{row.deviceId}: {row.condition}, avg {row.temperature} °C, max rain {row.max_rain} mm/h",
        ).add_to(weather)
    weather.add_to(fmap)

    cameras = folium.FeatureGroup(name="Traffic cameras")
    for _, row in data["cameras"].iterrows():
        folium.Marker(
            [row.latitude, row.longitude], tooltip=f"{row.cameraId}: {row.passages} passages",
            icon=folium.Icon(color="blue", icon="camera"),
        ).add_to(cameras)
    cameras.add_to(fmap)

    folium.LayerControl(collapsed=False).add_to(fmap)
    return stable_ids(fmap)


def save_map(fmap: folium.Map, cfg: Params, name: str) -> Path:
    """Write a map as standalone HTML under <output_dir>/maps/ and return the path."""
    path = cfg.output_path / "maps" / f"{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    fmap.save(str(path))
    return path
