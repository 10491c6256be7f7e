"""The live map: the corridor as it is now, on a page the live run serves on 127.0.0.1.

While ``smartcity live`` runs, ``http://127.0.0.1:<live_map_port>/`` shows the corridor's edges coloured
by the speed the advice query measured on them in its latest windows (against the limit), the advised
route, every vehicle where it last reported (advised ones apart), and the active incidents, redrawn every
second from ``state.json``. The page is self-contained: Leaflet is inlined from the pinned offline assets
(:mod:`smartcity.present.offline`) and there are no tiles, so it renders with no network beyond the
loopback. 02_stream shows it in JupyterLab in live mode.

:class:`MapState` gathers what the page shows from the run's threads: the fleet's ticks (a copy at most
every :data:`SNAPSHOT_EVERY_S`), and callables for the speeds, the advice and the trips line.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from IPython.display import IFrame

from smartcity.fleet.roads import RoadNetwork
from smartcity.fleet.simulation import TickView
from smartcity.present.offline import package_file
from smartcity.routes.routing import path_points

#: The fleet's positions are copied at most this often (wall seconds): the page polls every second.
SNAPSHOT_EVERY_S = 0.5
#: Decimal places of the coordinates sent (about 1 m).
COORD_DECIMALS = 5


@cache
def page() -> bytes:
    """The map's page, Leaflet's script and style inlined."""
    template = resources.files("smartcity.present").joinpath("web/live_map.html").read_text()
    return (
        template.replace("/*LEAFLET_CSS*/", package_file("leaflet", "dist/leaflet.css").decode())
        .replace("/*LEAFLET_JS*/", package_file("leaflet", "dist/leaflet.js").decode())
        .encode()
    )


def network_document(network: RoadNetwork) -> dict[str, Any]:
    """The corridor's edges (polyline, road, limit) and bounds, sent once."""

    def rounded(points: Any) -> list[list[float]]:
        return [[round(lat, COORD_DECIMALS), round(lon, COORD_DECIMALS)] for lat, lon in points]

    lats = [p[0] for e in network.edges.values() for p in e.points]
    lons = [p[1] for e in network.edges.values() for p in e.points]
    return {
        "edges": {
            e.id: {"points": rounded(e.points), "road": e.road, "limit_kmh": e.speed_limit_kmh}
            for e in network.edges.values()
        },
        "bounds": [[min(lats), min(lons)], [max(lats), max(lons)]],
    }


class MapState:
    """What the page shows now: the latest fleet snapshot, and the speeds, advice and trips asked for on each poll."""

    def __init__(
        self,
        network: RoadNetwork,
        speeds: Callable[[], dict[str, float]],
        advice: Callable[[], list[dict[str, Any]]],
        trips: Callable[[], str],
        group_of: Callable[[str], str],
    ) -> None:
        self.network, self.speeds, self.advice, self.trips, self.group_of = network, speeds, advice, trips, group_of
        self._fleet: dict[str, Any] = {"clock": None, "vehicles": [], "incidents": []}
        self._taken = 0.0
        self._lock = threading.Lock()

    def on_tick(self, view: TickView) -> None:
        """From the fleet's thread, every tick: a copy of where everyone is, at most every SNAPSHOT_EVERY_S."""
        now = time.monotonic()
        if now - self._taken < SNAPSHOT_EVERY_S:
            return
        self._taken = now
        lat, lon = view.lat.round(COORD_DECIMALS).tolist(), view.lon.round(COORD_DECIMALS).tolist()
        vehicles = [[d, lat[j], lon[j], self.group_of(d)] for j, d in enumerate(view.devices)]
        incidents = [
            {
                "lat": i.point[0],
                "lon": i.point[1],
                "kind": i.kind,
                "severity": i.severity,
                "road": i.road,
                "place": i.place,
            }
            for i in view.incidents
        ]
        with self._lock:
            self._fleet = {"clock": view.now.strftime("%H:%M"), "vehicles": vehicles, "incidents": incidents}

    def state(self) -> dict[str, Any]:
        with self._lock:
            fleet = dict(self._fleet)
        advice = [
            {
                "route": a["route"],
                "minutes": a["minutes"],
                "points": [list(p) for p in path_points(self.network, a["path"].split(">"))],
            }
            for a in self.advice()
        ]
        return {**fleet, "speeds": self.speeds(), "advice": advice, "trips": self.trips()}


#: Height of the map in a notebook (pixels).
FRAME_HEIGHT_PX = 560


def frame(url: str) -> IFrame:
    """The live map in a notebook cell (JupyterLab shows it while the live run serves it)."""
    return IFrame(url, width="100%", height=FRAME_HEIGHT_PX)


@contextmanager
def serve(state: MapState, port: int = 0) -> Iterator[str]:
    """Serve the map on 127.0.0.1:``port`` (0: a free one) while the block runs; yields its URL."""
    network = json.dumps(network_document(state.network)).encode()
    page()  # the offline assets now, not at the first request

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path in ("/", "/index.html"):
                self._send(page(), "text/html; charset=utf-8")
            elif path == "/network.json":
                self._send(network, "application/json")
            elif path == "/state.json":
                self._send(json.dumps(state.state()).encode(), "application/json")
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # the live run's log is its status, not requests
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise OSError(
            f"the live map cannot listen on 127.0.0.1:{port} ({exc.strerror}): another live run may hold it; "
            "set live_map_port to a free port, or 0 to pick one"
        ) from exc
    thread = threading.Thread(target=server.serve_forever, name="live-map", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
