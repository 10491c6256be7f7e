"""Maps of the journey: the corridor and its sensors, and what the lake says happened on it.

The journey map is drawn from the catalog (the same tables Athena queries), one layer each for
the vehicles' GPS tracks, incidents, weather stations and traffic cameras, so a reader can
switch them on and off; it is saved as a self-contained HTML file next to the report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import folium
import pandas as pd
from branca.element import Element

from smartcity import catalog
from smartcity.config import Params
from smartcity.geo import RoadNetwork, load_network

ROUTE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
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


def _base_map(network: RoadNetwork) -> folium.Map:
    lats = [n.lat for n in network.nodes.values()]
    lons = [n.lon for n in network.nodes.values()]
    fmap = folium.Map(tiles="OpenStreetMap", control_scale=True)
    fmap.fit_bounds([[min(lats), min(lons)], [max(lats), max(lons)]])
    return fmap


def corridor_map(network: RoadNetwork | None = None) -> folium.Map:
    """The routes the fleet can take, with the cameras and weather stations along them."""
    from smartcity.simulate import place_cameras, place_stations

    network = network or load_network()
    fmap = _base_map(network)
    for n, name in enumerate(network.route_names):
        route = network.route(name)
        layer = folium.FeatureGroup(name=f"{name} ({route.length_km:.0f} km)")
        folium.PolyLine(route.points, color=ROUTE_COLOURS[n % len(ROUTE_COLOURS)], weight=5, opacity=0.75,
                        tooltip=f"{name}: {route.length_km:.0f} km").add_to(layer)
        for km, node in route.node_km():
            folium.CircleMarker(node.point, radius=3, color="#333333", fill=True,
                                tooltip=f"{node.name} (km {km:.0f} on {name})").add_to(layer)
        layer.add_to(fmap)
    cameras = folium.FeatureGroup(name="Traffic cameras")
    for camera in place_cameras(network):
        folium.CircleMarker(camera.point, radius=5, color="#c0392b", fill=True, fill_opacity=0.9,
                            tooltip=f"{camera.camera_id} on the {camera.road}").add_to(cameras)
    cameras.add_to(fmap)
    stations = folium.FeatureGroup(name="Weather stations")
    for station in place_stations(network):
        folium.Marker(station.point, tooltip=f"weather station {station.name}",
                      icon=folium.Icon(color="lightblue", icon="cloud")).add_to(stations)
    stations.add_to(fmap)
    folium.LayerControl(collapsed=False).add_to(fmap)
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
        "tracks": _query(cfg, 'SELECT deviceId, route, "timestamp", latitude, longitude, speed '
                              'FROM smartcity.vehicle_data ORDER BY deviceId, "timestamp"'),
        "incidents": _query(cfg, 'SELECT incidentId, type, severity, status, description, "timestamp", latitude, '
                                 'longitude FROM smartcity.emergency_data ORDER BY "timestamp", incidentId'),
        "weather": _query(cfg, 'SELECT stationName, max(precipitation) AS max_rain, '
                               'min(CASE WHEN weatherCondition = \'Rain\' THEN "timestamp" END) AS rain_from, '
                               'round(avg(temperature), 1) AS temperature, any_value(latitude) AS latitude, '
                               'any_value(longitude) AS longitude FROM smartcity.weather_data '
                               'GROUP BY stationName ORDER BY stationName'),
        "cameras": _query(cfg, 'SELECT cameraId, any_value(road) AS road, any_value(latitude) AS latitude, '
                               'any_value(longitude) AS longitude, count(*) AS passages, round(avg(speed)) AS speed '
                               'FROM smartcity.traffic_data GROUP BY cameraId ORDER BY cameraId'),
    }


def journey_map(cfg: Params, network: RoadNetwork | None = None) -> folium.Map:
    """Tracks, incidents, weather and cameras on one map, each a layer that can be toggled."""
    data = journey_layers(cfg)
    fmap = _base_map(network or load_network())

    tracks = folium.FeatureGroup(name="Vehicle tracks (GPS)")
    for n, (device, fixes) in enumerate(data["tracks"].groupby("deviceId", sort=True)):
        colour = TRACK_COLOURS[n % len(TRACK_COLOURS)]
        # one point every MAP_TRACK_SECONDS is plenty at this zoom and keeps the page light
        step = max(1, round(MAP_TRACK_SECONDS / cfg.tick_seconds))
        points = fixes[["latitude", "longitude"]].iloc[::step].round(5).values.tolist()
        route = fixes["route"].iloc[0]
        folium.PolyLine(points, color=colour, weight=3, opacity=0.8,
                        tooltip=f"{device} via {route}: {len(fixes)} fixes, avg {fixes['speed'].mean():.0f} km/h"
                        ).add_to(tracks)
    tracks.add_to(fmap)

    incidents = folium.FeatureGroup(name="Incidents")
    for _, row in data["incidents"].iterrows():
        folium.Marker(
            [row.latitude, row.longitude],
            tooltip=f"{row.incidentId} {row.severity} {row.type.lower()} ({row.status}) {row.timestamp:%H:%M}",
            popup=folium.Popup(f"{row.description}<br>{row.status} at {row.timestamp:%Y-%m-%d %H:%M} UTC", max_width=250),
            icon=folium.Icon(color=INCIDENT_COLOURS.get(row.status, "orange"), icon="exclamation-sign"),
        ).add_to(incidents)
    incidents.add_to(fmap)

    weather = folium.FeatureGroup(name="Weather stations")
    for _, row in data["weather"].iterrows():
        rain = f"rain from {row.rain_from:%H:%M}, up to {row.max_rain:.1f} mm/h" if pd.notna(row.rain_from) else "dry"
        folium.CircleMarker(
            [row.latitude, row.longitude], radius=9, color="#1f4e79", fill=True, fill_opacity=min(0.9, 0.2 + row.max_rain / 8),
            tooltip=f"{row.stationName}: {rain}, avg {row.temperature} °C",
        ).add_to(weather)
    weather.add_to(fmap)

    cameras = folium.FeatureGroup(name="Traffic cameras")
    for _, row in data["cameras"].iterrows():
        folium.Marker(
            [row.latitude, row.longitude],
            tooltip=f"{row.cameraId} ({row.road}): {row.passages} passages, avg {row.speed:.0f} km/h",
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
