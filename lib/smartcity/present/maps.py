"""Maps of the journey: the corridor and its sensors, and what the lake says happened on it.

The journey map is drawn from the catalog (the same tables Athena queries), one layer each for
the vehicles' GPS tracks, incidents, weather stations and traffic cameras, so a reader can
switch them on and off, plus the suggested routes when there are some.

Saved maps render anywhere: :func:`save_map` inlines Leaflet, its plugins and their CSS from the
pinned packages of :mod:`smartcity.present.offline` (nothing is loaded from a CDN), and draws the
corridor's roads and towns in a pane *under* the tiles, so with network the OpenStreetMap tiles
cover it as before and without network the map still has a plain background to sit on. Next to
each map goes a PNG thumbnail drawn from the same layers, for the report.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import folium
import pandas as pd
from branca.element import Element

from smartcity.fleet.roads import LatLon, RoadNetwork, load_network
from smartcity.fleet.sensors import place_cameras, place_stations
from smartcity.present import offline
from smartcity.routes.routing import path_points

ROUTE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TRACK_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
INCIDENT_COLOURS = {"Active": "red", "Resolved": "gray"}
MAP_TRACK_SECONDS = 30.0
SUGGESTION_COLOURS = ("#e6550d", "#31a354", "#756bb1", "#636363")
#: The offline background: land colour, and road colour and width by class.
LAND_COLOUR = "#f2efe9"
ROAD_STYLE = {"motorway": ("#9aa5b1", 3), "trunk": ("#b3bcc6", 2.5), "primary": ("#c8cdd3", 2), "urban": ("#c8cdd3", 2)}
BACKGROUND_PANE = "corridor-background"


def stable_ids(fmap: folium.Map) -> folium.Map:
    """Give every element of a map an id derived from its place in the map, not a random one.

    Folium names each element with 16 random bytes, so the same map renders differently on every
    run; derived ids make saved maps and notebook outputs identical run after run.
    """

    def visit(element: Any, path: str) -> None:
        element._id = hashlib.md5(path.encode()).hexdigest()
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
    network = network or load_network()
    fmap = _base_map(network)
    for n, name in enumerate(network.route_names):
        route = network.route(name)
        layer = folium.FeatureGroup(name=f"{name} ({route.length_km:.0f} km)")
        folium.PolyLine(
            route.points,
            color=ROUTE_COLOURS[n % len(ROUTE_COLOURS)],
            weight=5,
            opacity=0.75,
            tooltip=f"{name}: {route.length_km:.0f} km",
        ).add_to(layer)
        for km, node in route.node_km():
            folium.CircleMarker(
                node.point, radius=3, color="#333333", fill=True, tooltip=f"{node.name} (km {km:.0f} on {name})"
            ).add_to(layer)
        layer.add_to(fmap)
    cameras = folium.FeatureGroup(name="Traffic cameras")
    for camera in place_cameras(network):
        folium.CircleMarker(
            camera.point,
            radius=5,
            color="#c0392b",
            fill=True,
            fill_opacity=0.9,
            tooltip=f"{camera.camera_id} on the {camera.road}",
        ).add_to(cameras)
    cameras.add_to(fmap)
    stations = folium.FeatureGroup(name="Weather stations")
    for station in place_stations(network):
        folium.Marker(
            station.point, tooltip=f"weather station {station.name}", icon=folium.Icon(color="lightblue", icon="cloud")
        ).add_to(stations)
    stations.add_to(fmap)
    folium.LayerControl(collapsed=False).add_to(fmap)
    return stable_ids(fmap)


def journey_layers(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The data behind the journey map, from the catalogued lake tables (``smartcity.<table>`` on ``con``)."""
    con.execute("SET TimeZone = 'UTC'")
    return {
        "tracks": con.sql(
            'SELECT deviceId, route, "timestamp", latitude, longitude, speed '
            'FROM smartcity.vehicle_data ORDER BY deviceId, "timestamp"'
        ).df(),
        "incidents": con.sql(
            'SELECT incidentId, type, severity, status, description, "timestamp", latitude, '
            'longitude FROM smartcity.emergency_data ORDER BY "timestamp", incidentId'
        ).df(),
        "weather": con.sql(
            "SELECT stationName, max(precipitation) AS max_rain, "
            "min(CASE WHEN weatherCondition = 'Rain' THEN \"timestamp\" END) AS rain_from, "
            "round(avg(temperature), 1) AS temperature, any_value(latitude) AS latitude, "
            "any_value(longitude) AS longitude FROM smartcity.weather_data "
            "GROUP BY stationName ORDER BY stationName"
        ).df(),
        "cameras": con.sql(
            "SELECT cameraId, any_value(road) AS road, any_value(latitude) AS latitude, "
            "any_value(longitude) AS longitude, count(*) AS passages, round(avg(speed)) AS speed "
            "FROM smartcity.traffic_data GROUP BY cameraId ORDER BY cameraId"
        ).df(),
    }


def journey_map(
    data: dict[str, pd.DataFrame],
    tick_seconds: float,
    network: RoadNetwork | None = None,
    suggestions: pd.DataFrame | None = None,
) -> folium.Map:
    """Tracks, incidents, weather and cameras on one map, each a layer that can be toggled.

    ``data`` is :func:`journey_layers`; ``tick_seconds`` the fleet's fix interval; ``suggestions``
    (from :func:`smartcity.routes.routing.suggest`) adds a layer per suggested route.
    """
    network = network or load_network()
    fmap = _base_map(network)

    for layer in (
        _tracks_layer(data["tracks"], tick_seconds),
        _incidents_layer(data["incidents"]),
        _weather_layer(data["weather"]),
        _cameras_layer(data["cameras"]),
    ):
        layer.add_to(fmap)

    if suggestions is not None:
        add_suggestions(fmap, suggestions, network)
    folium.LayerControl(collapsed=False).add_to(fmap)
    return stable_ids(fmap)


def _tracks_layer(rows: pd.DataFrame, tick_seconds: float) -> folium.FeatureGroup:
    """The GPS track of each vehicle, one point every ``MAP_TRACK_SECONDS``."""
    tracks = folium.FeatureGroup(name="Vehicle tracks (GPS)")
    for n, (device, fixes) in enumerate(rows.groupby("deviceId", sort=True)):
        colour = TRACK_COLOURS[n % len(TRACK_COLOURS)]
        # one point every MAP_TRACK_SECONDS is plenty at this zoom and keeps the page light
        step = max(1, round(MAP_TRACK_SECONDS / tick_seconds))
        points = fixes[["latitude", "longitude"]].iloc[::step].round(5).values.tolist()
        route = fixes["route"].iloc[0]
        folium.PolyLine(
            points,
            color=colour,
            weight=3,
            opacity=0.8,
            tooltip=f"{device} via {route}: {len(fixes)} fixes, avg {fixes['speed'].mean():.0f} km/h",
        ).add_to(tracks)
    return tracks


def _incidents_layer(rows: pd.DataFrame) -> folium.FeatureGroup:
    """A marker per incident report, coloured by its status."""
    incidents = folium.FeatureGroup(name="Incidents")
    for _, row in rows.iterrows():
        folium.Marker(
            [row.latitude, row.longitude],
            tooltip=f"{row.incidentId} {row.severity} {row.type.lower()} ({row.status}) {row.timestamp:%H:%M}",
            popup=folium.Popup(
                f"{row.description}<br>{row.status} at {row.timestamp:%Y-%m-%d %H:%M} UTC", max_width=250
            ),
            icon=folium.Icon(color=INCIDENT_COLOURS.get(row.status, "orange"), icon="exclamation-sign"),
        ).add_to(incidents)
    return incidents


def _weather_layer(rows: pd.DataFrame) -> folium.FeatureGroup:
    """A circle per weather station, the deeper the blue the more rain."""
    weather = folium.FeatureGroup(name="Weather stations")
    for _, row in rows.iterrows():
        rain = f"rain from {row.rain_from:%H:%M}, up to {row.max_rain:.1f} mm/h" if pd.notna(row.rain_from) else "dry"
        folium.CircleMarker(
            [row.latitude, row.longitude],
            radius=9,
            color="#1f4e79",
            fill=True,
            fill_opacity=min(0.9, 0.2 + row.max_rain / 8),
            tooltip=f"{row.stationName}: {rain}, avg {row.temperature} °C",
        ).add_to(weather)
    return weather


def _cameras_layer(rows: pd.DataFrame) -> folium.FeatureGroup:
    """A marker per traffic camera with its passages and average speed."""
    cameras = folium.FeatureGroup(name="Traffic cameras")
    for _, row in rows.iterrows():
        folium.Marker(
            [row.latitude, row.longitude],
            tooltip=f"{row.cameraId} ({row.road}): {row.passages} passages, avg {row.speed:.0f} km/h",
            icon=folium.Icon(color="blue", icon="camera"),
        ).add_to(cameras)
    return cameras


def add_suggestions(fmap: folium.Map, suggestions: pd.DataFrame, network: RoadNetwork) -> None:
    """One layer per distinct suggested route, naming the departures it is suggested for."""
    by_path: dict[tuple[str, ...], list[str]] = {}
    for departs, row in suggestions.iterrows():
        by_path.setdefault(tuple(row["nodes"]), []).append(str(departs))
    for n, (nodes, departures) in enumerate(by_path.items()):
        rows = suggestions.loc[departures]
        label = rows["suggested"].iloc[0]
        minutes = f"{rows['expected min'].min():.0f}-{rows['expected min'].max():.0f} min"
        when = (
            ", ".join(departures)
            if len(departures) <= 3
            else f"{departures[0]} … {departures[-1]}, {len(departures)} departures"
        )
        layer = folium.FeatureGroup(name=f"Suggested ({when}): {label}")
        folium.PolyLine(
            [list(p) for p in path_points(network, nodes)],
            color=SUGGESTION_COLOURS[n % len(SUGGESTION_COLOURS)],
            weight=7,
            opacity=0.7,
            dash_array="12 8",
            tooltip=f"suggested for departures at {', '.join(departures)}: {label}, "
            f"{rows['km'].iloc[0]:.0f} km, expected {minutes}",
        ).add_to(layer)
        layer.add_to(fmap)


def add_offline_background(fmap: folium.Map, network: RoadNetwork) -> None:
    """The corridor's roads and towns in a pane under the tiles: visible only where tiles are missing."""
    folium.map.CustomPane(BACKGROUND_PANE, z_index=150, pointer_events=False).add_to(fmap)  # tiles are at 200
    group = folium.FeatureGroup(name="Corridor roads (background)", control=False)
    for edge in network.edges.values():
        colour, weight = ROAD_STYLE[edge.road_class]
        line = folium.PolyLine(
            [list(p) for p in edge.points], color=colour, weight=weight, opacity=1.0, interactive=False
        )
        line.options["pane"] = BACKGROUND_PANE  # folium's PolyLine has no pane argument; Leaflet's has
        line.add_to(group)
    for node in network.nodes.values():
        if node.kind in ("city", "town"):
            name = node.name.split(",")[0].split(" (")[0]
            folium.Marker(
                node.point,
                pane=BACKGROUND_PANE,
                interactive=False,
                icon=folium.DivIcon(
                    html=f'<div class="corridor-town">{name}</div>',
                    icon_size=(160, 14),
                    icon_anchor=(-6, 7),
                ),
            ).add_to(group)
    group.add_to(fmap)
    fmap.get_root().header.add_child(
        Element(
            f"<style>div.folium-map.leaflet-container {{ background: {LAND_COLOUR}; }} .corridor-town {{ font: 11px/14px sans-serif; "
            "color: #6b6b6b; white-space: nowrap; }</style>"
        ),
        name="corridor_background_css",
    )


def offline_page(fmap: folium.Map, network: RoadNetwork | None = None) -> str:
    """A map as one self-contained HTML page: assets inlined, corridor background under the tiles.

    Works on a copy, so a map shown in a notebook stays as it was. Folium appends its scripts
    again on every render; the original is rendered once here, as ``Map.save`` did before maps
    were made offline, so what a notebook displays after saving is unchanged too.
    """
    page = copy.deepcopy(fmap)
    fmap.get_root().render()
    add_offline_background(page, network or load_network())
    return offline.inline_assets(stable_ids(page).get_root().render())


def _elements(element: Any) -> Iterator[Any]:
    yield element
    for child in getattr(element, "_children", {}).values():
        yield from _elements(child)


def _mercator(points: Sequence[LatLon]) -> tuple[list[float], list[float]]:
    return [p[1] for p in points], [
        math.degrees(math.log(math.tan(math.pi / 4 + math.radians(p[0]) / 2))) for p in points
    ]


def map_thumbnail(
    fmap: folium.Map, network: RoadNetwork | None = None, width_px: int = 480, height_px: int = 320
) -> bytes:
    """A PNG of a map's lines and markers on the corridor background, drawn from its own layers."""
    import matplotlib  # noqa: PLC0415 - loaded when drawn, told Agg first (see smartcity.present.charts)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    network = network or load_network()
    fig = plt.figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor(LAND_COLOUR)
    for edge in network.edges.values():
        colour, weight = ROAD_STYLE[edge.road_class]
        ax.plot(*_mercator(edge.points), color=colour, linewidth=weight * 0.6, solid_capstyle="round", zorder=1)
    for element in _elements(fmap):
        if isinstance(element, folium.PolyLine):
            o = element.options
            ax.plot(
                *_mercator([tuple(p) for p in element.locations]),
                color=o["color"],
                alpha=o["opacity"],
                linewidth=o["weight"] * 0.6,
                linestyle=(0, (4, 3)) if o.get("dashArray") else "-",
                zorder=2,
            )
        elif isinstance(element, folium.CircleMarker):
            x, y = _mercator([tuple(element.location)])
            ax.scatter(x, y, s=element.options.get("radius", 5) ** 2, color=element.options["color"], zorder=3)
        elif isinstance(element, folium.Marker) and element.location is not None:
            icons = [c for c in element._children.values() if isinstance(c, folium.Icon)]
            if icons:
                x, y = _mercator([tuple(element.location)])
                ax.scatter(
                    x,
                    y,
                    s=30,
                    marker="v",
                    color=_ICON_COLOURS.get(icons[0].options["marker_color"], "#555555"),
                    edgecolors="white",
                    linewidths=0.5,
                    zorder=4,
                )
    xs, ys = _mercator([n.point for n in network.nodes.values()])
    pad_x, pad_y = (max(xs) - min(xs)) * 0.08, (max(ys) - min(ys)) * 0.08
    ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
    ax.set_ylim(min(ys) - pad_y, max(ys) + pad_y)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    out = io.BytesIO()
    fig.savefig(out, format="png", facecolor=LAND_COLOUR, metadata={"Software": None})
    plt.close(fig)
    return out.getvalue()


#: Folium marker colour names as they look on the awesome-markers sprite.
_ICON_COLOURS = {
    "red": "#d63e2a",
    "blue": "#38aadd",
    "green": "#72b026",
    "orange": "#f69730",
    "gray": "#575757",
    "lightblue": "#8adaff",
    "darkred": "#a23336",
    "purple": "#d252b9",
    "darkblue": "#0067a3",
}


def save_map(fmap: folium.Map, folder: Path, name: str, network: RoadNetwork | None = None) -> Path:
    """Write a map into ``folder`` (a profile's outputs/<profile>/maps/) as self-contained HTML and a PNG
    thumbnail; return the HTML path."""
    path = folder / f"{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(offline_page(fmap, network))
    path.with_suffix(".png").write_bytes(map_thumbnail(fmap, network))
    return path
