"""Saved maps and the report, opened in headless Chromium with networking off, show the routes.

Without network a folium map that loads Leaflet from a CDN is a blank page; these tests take a
screenshot and look for the vehicles' tracks where Leaflet must draw them (positions computed
here with Leaflet's fitBounds and Web Mercator arithmetic from the zoom the page chose), on the
corridor background rather than Leaflet's empty grey, and for the map thumbnails in the report.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smartcity import steps
from smartcity.fleet import simulation
from smartcity.fleet.roads import load_network
from smartcity.params import Params
from smartcity.present import maps
from smartcity.routes import edge_times, routing
from smartcity.stream import lake
from tests import browser
from tests.browser import LOOPBACK_ONLY, OFFLINE
from tests.conftest import lab_params
from tests.lake_fixture import write_lake

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1400, 1000


def screenshot(page: Path, width: int = WIDTH, height: int = HEIGHT, network: list[str] = OFFLINE) -> np.ndarray:
    """RGB pixels of a page as headless Chromium renders it (by default with every request refused)."""
    return browser.screenshot(page.as_uri(), width, height, network)


def map_view(page: Path, width: int = WIDTH, height: int = HEIGHT) -> dict[str, float]:
    """The zoom Leaflet chose and the map's size when it chose it, read from a copy of the page.

    Headless Chromium lays a page out in a viewport shorter than the window (its window frame)
    and grows it to the window for the screenshot; Leaflet keeps the centre and the zoom it fitted
    first. Only that zoom and size are taken from the page: positions are computed here.
    """
    text = page.read_text()
    name = re.search(r"var (map_[0-9a-f]+) = L\.map\(", text).group(1)
    probe = (
        f"<script>var s={name}.getSize();document.body.setAttribute('data-view',"
        f"JSON.stringify({{zoom:{name}.getZoom(),width:s.x,height:s.y}}));</script>"
    )
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "probe.html"
        copy.write_text(text.replace("</html>", probe + "</html>"))
        dom = browser.chromium_run([f"--window-size={width},{height}", "--dump-dom", copy.as_uri()], scratch)
    found = re.search(r"data-view=\"([^\"]*)\"", dom)
    assert found, f"the map did not load (is Leaflet inlined?):\n{dom[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


# -- Leaflet's view arithmetic ----------------------------------------------------------------------
def _project(lat: float, lon: float, zoom: float) -> tuple[float, float]:
    """Web Mercator pixel coordinates at a zoom level (Leaflet's EPSG:3857, 256 px tiles)."""
    scale = 256 * 2**zoom
    s = math.sin(math.radians(lat))
    return (lon + 180) / 360 * scale, (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * scale


def fit_zoom(south: float, west: float, north: float, east: float, width: float, height: float) -> int:
    """The zoom Leaflet's map.fitBounds picks for bounds in a map of that size (zoomSnap 1, no padding)."""
    x0, y0 = _project(north, west, 0)
    x1, y1 = _project(south, east, 0)
    scale = min(width / (x1 - x0), height / (y1 - y0))
    return math.floor(round(math.log2(scale) * 100) / 100)  # within 1 % of a level counts as that level


def fitted_pixels(south: float, west: float, north: float, east: float, zoom: int, width: int, height: int):
    """A function from (lat, lon) to pixels of a map fitted to those bounds, centred in width x height."""
    (ax, ay), (bx, by) = _project(north, west, zoom), _project(south, east, zoom)
    cx, cy = (ax + bx) / 2, (ay + by) / 2

    def pixel(lat: float, lon: float) -> tuple[float, float]:
        x, y = _project(lat, lon, zoom)
        return x - cx + width / 2, y - cy + height / 2

    return pixel


def corridor_pixels(page: Path):
    """Where a point of the corridor must appear in the screenshot of a lab map (fitted to the corridor)."""
    network = load_network()
    lats = [n.lat for n in network.nodes.values()]
    lons = [n.lon for n in network.nodes.values()]
    bounds = (min(lats), min(lons), max(lats), max(lons))
    view = map_view(page)
    assert view["zoom"] == fit_zoom(*bounds, view["width"], view["height"]), view
    return fitted_pixels(*bounds, int(view["zoom"]), WIDTH, HEIGHT)


def _hex(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def _near(pixels: np.ndarray, x: float, y: float, colour: np.ndarray, radius: int = 2, tolerance: float = 45) -> bool:
    xi, yi = round(x), round(y)
    patch = pixels[max(0, yi - radius) : yi + radius + 1, max(0, xi - radius) : xi + radius + 1]
    return bool(patch.size) and bool((np.linalg.norm(patch - colour, axis=2) <= tolerance).any())


class Covered:
    """Screen areas where markers sit on top of the lines (a line there is hidden, not missing)."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []

    def pin(self, x: float, y: float) -> None:
        """An awesome-markers pin (35 x 45 px, tip at the point) and its shadow to the right."""
        self.boxes += [(x - 19, y - 46, x + 20, y + 4), (x - 12, y - 16, x + 30, y + 6)]

    def circle(self, x: float, y: float, radius: float) -> None:
        r = radius + 3  # the circle's stroke
        self.boxes.append((x - r, y - r, x + r, y + r))

    def __contains__(self, point: tuple[float, float]) -> bool:
        x, y = point
        return any(a <= x <= c and b <= y <= d for a, b, c, d in self.boxes)


def check_line(
    pixels: np.ndarray,
    points: list[tuple[float, float]],
    colour: np.ndarray,
    covered: Covered,
    others: np.ndarray,
    label: str,
) -> None:
    """The line's colour must show at (nearly) every point of it that no marker or other line covers."""
    visible = [
        p for p in points if p not in covered and (len(others) == 0 or np.hypot(*(others - np.array(p)).T).min() > 5)
    ]
    assert len(visible) >= 20, f"{label}: too few uncovered points to judge ({len(visible)})"
    drawn = np.mean([_near(pixels, x, y, colour) for x, y in visible])
    assert drawn >= 0.9, f"{label}: only {drawn:.0%} of {len(visible)} uncovered points show the line"


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """A default-sized run written without Kafka or Spark, its maps saved and its report written."""
    cfg = lab_params(tmp_path_factory.mktemp("offline"))
    lab = steps.open_lab(cfg)
    counts = write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    lab.ledger.record("produced", counts)
    steps.crawl_lake(lab)
    model = edge_times.fit_edge_times(steps.observations(lab))
    table = routing.suggest(model, routing.departures_by_hour(cfg.fleet.start_time, [8]), cfg.fleet.weights)
    maps.save_map(maps.corridor_map(), cfg.paths.maps, "corridor")
    maps.save_map(steps.journey_map(lab, suggestions=table), cfg.paths.maps, "journey")
    steps.write_report(lab, [])
    return cfg


def test_the_journey_map_draws_every_track_offline(run: Params) -> None:
    from smartcity.fleet.sensors import place_cameras, place_stations

    page = run.paths.maps / "journey.html"
    pixels, pixel = screenshot(page), corridor_pixels(page)
    network = load_network()
    land = _hex(maps.LAND_COLOUR)
    fixes = lake.read_table(steps.open_store(run), "vehicle_data", ["deviceId", "latitude", "longitude"]).to_pandas()
    incidents = lake.read_table(steps.open_store(run), "emergency_data", ["latitude", "longitude"]).to_pandas()
    covered = Covered()
    for camera in place_cameras(network):
        covered.pin(*pixel(*camera.point))
    for point in incidents.itertuples():
        covered.pin(*pixel(point.latitude, point.longitude))
    for station in place_stations(network):
        covered.circle(*pixel(*station.point), 9)
    tracks = {
        device: [pixel(p.latitude, p.longitude) for p in own.itertuples()]
        for device, own in fixes.groupby("deviceId", sort=True)
    }
    for n, (device, points) in enumerate(tracks.items()):
        others = np.array([p for d, ps in tracks.items() if d != device for p in ps])
        colour = 0.8 * _hex(maps.TRACK_COLOURS[n]) + 0.2 * land  # the line's opacity over the background
        check_line(pixels, points[::10], colour, covered, others, device)
    # no tile loaded, so the corridor background shows: neither a blank page nor Leaflet's grey
    x, y = pixel(52.0, min(n.lon for n in network.nodes.values()) - 0.3)
    assert np.abs(pixels[int(y), int(x)] - land).max() <= 2, pixels[int(y), int(x)]
    assert (np.abs(pixels - land).sum(axis=2) > 30).mean() > 0.02, "hardly anything drawn on the background"


def test_the_corridor_map_draws_the_three_routes_offline(run: Params) -> None:
    from smartcity.fleet.sensors import place_cameras, place_stations

    page = run.paths.maps / "corridor.html"
    pixels, pixel = screenshot(page), corridor_pixels(page)
    network = load_network()
    covered = Covered()
    for camera in place_cameras(network):
        covered.circle(*pixel(*camera.point), 5)
    for station in place_stations(network):
        covered.pin(*pixel(*station.point))
    for node in network.nodes.values():
        covered.circle(*pixel(*node.point), 3)
    lines = {
        name: [pixel(*network.route(name).position(km)[0]) for km in np.arange(0, network.route(name).length_km, 1.0)]
        for name in network.route_names
    }
    for n, (name, points) in enumerate(lines.items()):
        others = np.array([p for other, ps in lines.items() if other != name for p in ps])
        colour = 0.75 * _hex(maps.ROUTE_COLOURS[n]) + 0.25 * _hex(maps.LAND_COLOUR)
        check_line(pixels, points[::3], colour, covered, others, name)


def _find(image: np.ndarray, part: np.ndarray) -> tuple[int, int] | None:
    """Top-left of an exact copy of ``part`` in ``image`` (an <img> shown at its natural size)."""
    row = int(np.argmax([len({tuple(p) for p in r}) for r in part]))  # the part's most varied row
    needle = part[row].astype(np.uint8).tobytes()
    for y in range(row, image.shape[0] - part.shape[0] + row + 1):
        at = image[y].astype(np.uint8).tobytes().find(needle)
        while at >= 0:
            if at % 3 == 0:
                x = at // 3
                top = y - row
                if np.array_equal(image[top : top + part.shape[0], x : x + part.shape[1]], part):
                    return x, top
            at = image[y].astype(np.uint8).tobytes().find(needle, at + 1)
    return None


def test_the_report_shows_each_maps_thumbnail_with_its_routes(run: Params) -> None:
    from PIL import Image

    pixels = screenshot(run.paths.output / "index.html", width=1100, height=2400)
    for name in ("corridor", "journey"):
        thumb = np.asarray(Image.open(run.paths.maps / f"{name}.png").convert("RGB")).astype(int)
        assert _find(pixels, thumb) is not None, f"the {name} thumbnail is not on the report page"
    journey = np.asarray(Image.open(run.paths.maps / "journey.png").convert("RGB")).astype(int)
    for colour in maps.TRACK_COLOURS[:3]:
        blended = 0.8 * _hex(colour) + 0.2 * _hex(maps.LAND_COLOUR)
        track = (np.linalg.norm(journey - blended, axis=2) <= 45).sum()
        assert track > 300, f"track colour {colour}: {track} pixels in the journey thumbnail"


def test_a_map_saved_by_folium_alone_is_blank_offline(run: Params, tmp_path: Path) -> None:
    """The check above can fail: folium's own save loads Leaflet from a CDN, so offline nothing is drawn."""
    network = load_network()
    page = tmp_path / "cdn.html"
    maps.corridor_map().save(str(page))
    pixels = screenshot(page)
    lats = [n.lat for n in network.nodes.values()]
    lons = [n.lon for n in network.nodes.values()]
    pixel = fitted_pixels(min(lats), min(lons), max(lats), max(lons), 9, WIDTH, HEIGHT)
    points = [pixel(*network.route("M40").position(km)[0]) for km in np.arange(0, 170, 3.0)]
    with pytest.raises(AssertionError, match="uncovered points show the line"):
        check_line(pixels, points, _hex(maps.ROUTE_COLOURS[1]), Covered(), np.empty((0, 2)), "M40")
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) <= 2, "a blank page"


@pytest.fixture()
def tile_server() -> Iterator[str]:
    """A tile server on loopback answering every tile with one solid magenta PNG (stands in for OSM)."""
    import http.server
    import threading

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), TILE_COLOUR).save(buffer, format="PNG")
    tile = buffer.getvalue()

    class Tiles(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


TILE_COLOUR = (255, 0, 255)


def test_with_a_tile_server_the_tiles_cover_the_background(run: Params, tile_server: str, tmp_path: Path) -> None:
    """Online the map looks as before: tiles over the corridor background, the tracks on top."""
    saved = (run.paths.maps / "journey.html").read_text()
    osm = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert osm in saved
    page = tmp_path / "journey-local-tiles.html"
    page.write_text(saved.replace(osm, tile_server + "/{z}/{x}/{y}.png"))
    pixels = screenshot(page, network=LOOPBACK_ONLY)
    pixel = corridor_pixels(run.paths.maps / "journey.html")
    x, y = pixel(52.0, min(n.lon for n in load_network().nodes.values()) - 0.3)
    assert tuple(pixels[int(y), int(x)]) == TILE_COLOUR, "the tiles cover the background where there are no layers"
    assert (np.abs(pixels - _hex(maps.LAND_COLOUR)).sum(axis=2) <= 6).mean() < 0.01, "no background shows"
    fixes = lake.read_table(steps.open_store(run), "vehicle_data", ["deviceId", "latitude", "longitude"]).to_pandas()
    first = fixes[fixes["deviceId"] == fixes["deviceId"].min()]
    colour = 0.8 * _hex(maps.TRACK_COLOURS[0]) + 0.2 * np.array(TILE_COLOUR)
    drawn = [_near(pixels, *pixel(p.latitude, p.longitude), colour) for p in first.iloc[::50].itertuples()]
    assert np.mean(drawn) >= 0.5, "the tracks are drawn over the tiles"
