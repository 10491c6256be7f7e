"""The report's charts, each a PNG with the sentence that says what it shows.

Drawn with matplotlib from the lake's tables (committed files, through :mod:`smartcity.stream.lake`),
so the report shows what the pipeline stored, not what the simulator meant to send. Every
function returns a :class:`Chart`; the sentence is computed from the same data as the picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartcity.advice.trips import MIN_TRIPS
from smartcity.fleet.roads import RoadNetwork, load_network
from smartcity.routes.matching import incident_spans

ROUTE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class Chart:
    title: str
    png: bytes
    sentence: str

    def __repr__(self) -> str:  # what a notebook shows as text (and nbval compares): the sentence
        return f"{self.title}: {self.sentence}"

    def _repr_png_(self) -> bytes:
        return self.png


def _figure(width: float, height: float):
    # matplotlib (a second to import) is loaded when a chart is drawn, told Agg first: a notebook that only
    # imports the lab keeps its own backend
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt.figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt  # noqa: PLC0415 - loaded already by _figure

    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return out.getvalue()


def _colour(network: RoadNetwork, route: str) -> str:
    names = network.route_names
    return ROUTE_COLOURS[names.index(route) % len(ROUTE_COLOURS)] if route in names else "#555555"


def trip_table(fixes: pd.DataFrame) -> pd.DataFrame:
    """Per vehicle: route, departure and trip minutes, from its first and last telemetry."""
    ordered = fixes.sort_values(["deviceId", "timestamp"])
    grouped = ordered.groupby("deviceId")
    trips = pd.DataFrame(
        {
            "route": grouped["route"].first(),
            "departed": grouped["timestamp"].first(),
            "arrived": grouped["timestamp"].last(),
        }
    )
    trips["minutes"] = (trips["arrived"] - trips["departed"]).dt.total_seconds() / 60
    return trips


def trip_times(fixes: pd.DataFrame, network: RoadNetwork | None = None) -> Chart:
    """Each vehicle's London -> Birmingham time, grouped by route."""
    network = network or load_network()
    trips = trip_table(fixes)
    routes = [r for r in network.route_names if r in set(trips["route"])] + sorted(
        set(trips["route"]) - set(network.route_names)
    )
    fig = _figure(7, 0.6 + 0.55 * len(routes))
    ax = fig.add_subplot()
    for y, route in enumerate(routes):
        minutes = trips.loc[trips["route"] == route, "minutes"]
        jitter = np.linspace(-0.15, 0.15, len(minutes)) if len(minutes) > 1 else [0.0]
        ax.scatter(minutes, y + np.asarray(jitter), color=_colour(network, route), s=28, zorder=3)
        ax.plot([minutes.median()] * 2, [y - 0.3, y + 0.3], color="#222222", linewidth=2, zorder=4)
    ax.set_yticks(range(len(routes)), routes)
    ax.invert_yaxis()
    ax.set_xlabel("trip minutes (dots: vehicles, bar: median)")
    ax.grid(axis="x", color="#dddddd")
    medians = trips.groupby("route")["minutes"].median().sort_values()
    if len(medians) > 1:
        sentence = (
            f"{len(trips)} trips took {trips['minutes'].min():.0f} to {trips['minutes'].max():.0f} minutes; "
            f"the {medians.index[0]} was quickest (median {medians.iloc[0]:.0f} min) and the "
            f"{medians.index[-1]} slowest (median {medians.iloc[-1]:.0f} min)."
        )
    else:
        sentence = f"{len(trips)} trips took {trips['minutes'].min():.0f} to {trips['minutes'].max():.0f} minutes."
    return Chart("Trip times by route", _png(fig), sentence)


def incidents_on_routes(spans: pd.DataFrame, network: RoadNetwork) -> pd.DataFrame:
    """Where each incident lies along each named route that passes it (route, km, incident)."""
    rows = []
    for name in network.route_names:
        route = network.route(name)
        legs = {leg.edge.id: leg for leg in route.legs}
        for span in spans.itertuples():
            if span.edgeId in legs:
                rows.append(
                    {
                        "route": name,
                        "km": legs[span.edgeId].route_km(span.edge_km),
                        "incidentId": span.incidentId,
                        "severity": span.severity,
                        "start": span.start,
                        "end": span.end,
                    }
                )
    return pd.DataFrame(rows, columns=["route", "km", "incidentId", "severity", "start", "end"])


def speed_along_routes(fixes: pd.DataFrame, reports: pd.DataFrame, network: RoadNetwork | None = None) -> Chart:
    """Speed against distance driven, one panel per route, with the incidents on each route marked."""
    network = network or load_network()
    fixes = fixes.sort_values(["deviceId", "timestamp"]).copy()
    fixes["km"] = fixes["odometer"] - fixes.groupby("deviceId")["odometer"].transform("first")
    routes = [r for r in network.route_names if r in set(fixes["route"])]
    marks = incidents_on_routes(incident_spans(reports, network), network)
    fig = _figure(7, 0.4 + 1.7 * len(routes))
    axes = fig.subplots(len(routes), 1, sharex=True, squeeze=False)[:, 0]
    for ax, route in zip(axes, routes):
        for _, own in fixes[fixes["route"] == route].groupby("deviceId"):
            smooth = own["speed"].rolling(12, center=True, min_periods=1).median()  # a minute at 5 s ticks
            ax.plot(own["km"], smooth, color=_colour(network, route), linewidth=0.9, alpha=0.8)
        for mark in marks[marks["route"] == route].itertuples():
            ax.axvline(mark.km, color="#c0392b", linewidth=1.2, linestyle="--")
            until = f"{mark.end:%H:%M}" if pd.notna(mark.end) else "end"
            ax.annotate(
                f"{mark.incidentId} {mark.severity}\n{mark.start:%H:%M}-{until}",
                (mark.km, 1.0),
                xycoords=("data", "axes fraction"),
                ha="left",
                va="top",
                fontsize=7,
                color="#c0392b",
                xytext=(3, -2),
                textcoords="offset points",
            )
        ax.set_ylabel(f"{route}\nkm/h")
        ax.set_ylim(0, max(130.0, float(fixes["speed"].max()) * 1.05))
        ax.grid(axis="y", color="#eeeeee")
    axes[-1].set_xlabel("km driven from London")
    if marks.empty:
        sentence = (
            "Speed along each route (one line per vehicle, one-minute median): slow in London and Birmingham, "
            "fastest on the motorways; no incident was reported on a route the fleet drove."
        )
    else:
        listed = "; ".join(
            f"{m.incidentId} ({m.severity}) at km {m.km:.0f} of the {m.route}, active {m.start:%H:%M}-{m.end:%H:%M}"
            if pd.notna(m.end)
            else f"{m.incidentId} ({m.severity}) at km {m.km:.0f} of the {m.route}"
            for m in marks.itertuples()
        )
        sentence = (
            "Speed along each route (one line per vehicle, one-minute median), slow in the cities and fastest on "
            f"the motorways; dashed red lines mark the incidents reported on the routes: {listed}. A dip at a "
            "line means a vehicle reached it while it was active."
        )
    return Chart("Speed along each route, incidents marked", _png(fig), sentence)


def rain_band(weather: pd.DataFrame, threshold_mm_h: float = 1.0) -> Chart:
    """Rain at each weather station over time, stations west to east: the band's passage is the diagonal."""
    order = weather.groupby("stationName")["longitude"].first().sort_values().index
    grid = weather.pivot_table(
        index="stationName", columns="timestamp", values="precipitation", aggfunc="mean"
    ).reindex(order)
    fig = _figure(7, 0.6 + 0.22 * len(order))
    ax = fig.add_subplot()
    times = pd.to_datetime(grid.columns)
    mesh = ax.pcolormesh(
        np.arange(len(times) + 1), np.arange(len(order) + 1), grid.to_numpy(), cmap="Blues", vmin=0, shading="flat"
    )
    ax.set_yticks(np.arange(len(order)) + 0.5, order)
    ax.invert_yaxis()
    step = max(1, len(times) // 8)
    ax.set_xticks(np.arange(0, len(times), step) + 0.5, [f"{t:%H:%M}" for t in times[::step]])
    ax.set_xlabel("time (UTC); stations from west (top) to east")
    fig.colorbar(mesh, ax=ax, label="rain mm/h", fraction=0.04, pad=0.02)
    wet = weather[weather["precipitation"] >= threshold_mm_h].groupby("stationName")["timestamp"].min().sort_values()
    if len(wet) >= 2:
        sentence = (
            f"Rain of {threshold_mm_h:g} mm/h or more reached {wet.index[0]} first, at {wet.iloc[0]:%H:%M}, and "
            f"{wet.index[-1]} last, at {wet.iloc[-1]:%H:%M}: {len(wet)} of {len(order)} stations saw the band pass."
        )
    elif len(wet) == 1:
        sentence = f"Only {wet.index[0]} saw rain of {threshold_mm_h:g} mm/h or more, from {wet.iloc[0]:%H:%M}."
    else:
        sentence = f"No station saw rain of {threshold_mm_h:g} mm/h or more during the run."
    return Chart("The rain band's passage", _png(fig), sentence)


def minutes_saved(trips: pd.DataFrame, column: str = "saved min") -> Chart:
    """Minutes each judged vehicle saved on its suggested route, by the route its fleet gave it."""
    network = load_network()
    fig = _figure(7, 2.6)
    ax = fig.add_subplot()
    colours = [_colour(network, r) for r in trips["fleet route"]]
    ax.bar(range(len(trips)), trips[column], color=colours)
    ax.axhline(0, color="#222222", linewidth=0.8)
    ax.set_xticks(range(len(trips)), trips["departs"], rotation=90, fontsize=7)
    ax.set_ylabel("minutes saved")
    ax.set_xlabel("departure (bar colour: the route the fleet mix gave the vehicle)")
    for route in dict.fromkeys(trips["fleet route"]):
        ax.bar([0], [0], color=_colour(network, route), label=route)
    ax.legend(frameon=False, fontsize=8)
    saved = trips[column]
    sentence = (
        f"On the judged run, following the suggestion saved {saved.mean():.1f} minutes per vehicle on average "
        f"(from {saved.min():.1f} to {saved.max():.1f}); {int((saved > 0.5).sum())} of {len(saved)} vehicles "
        "arrived sooner."
    )
    return Chart("Minutes saved by following the suggestion", _png(fig), sentence)


def live_run(status: pd.DataFrame, goal_p95_s: float = 3.0) -> Chart:
    """A live run second by second: events/s produced and written, Kafka lag, freshness p50/p95."""
    fig = _figure(9, 6.5)
    axes = fig.subplots(3, 1, sharex=True)
    t = status["elapsed_s"]
    # a batch publishes every second or two: per-second rates alternate, a 5 s mean reads better
    axes[0].plot(t, status["produced_per_s"].rolling(5, min_periods=1).mean(), label="produced", color=ROUTE_COLOURS[0])
    axes[0].plot(
        t, status["written_per_s"].rolling(5, min_periods=1).mean(), label="written to the lake", color=ROUTE_COLOURS[1]
    )
    axes[0].set_ylabel("events/s (5 s mean)")
    axes[0].legend(loc="upper right", frameon=False)
    axes[1].plot(t, status["lag"], color=ROUTE_COLOURS[3])
    axes[1].set_ylabel("Kafka lag (events)")
    axes[2].plot(t, status["freshness_p50_s"], label="p50", color=ROUTE_COLOURS[2])
    axes[2].plot(t, status["freshness_p95_s"], label="p95", color=ROUTE_COLOURS[4])
    axes[2].axhline(goal_p95_s, color="#999999", linestyle="--", linewidth=1, label=f"goal p95 {goal_p95_s:g} s")
    axes[2].set_ylabel("freshness (s)")
    axes[2].set_xlabel("seconds since the fleet started")
    axes[2].legend(loc="upper right", frameon=False)
    draining = status.loc[status["phase"] == "draining", "elapsed_s"]
    for ax in axes:
        if len(draining):
            ax.axvspan(draining.iloc[0], draining.iloc[-1], color="#eeeeee", zorder=0)
    producing = status[status["phase"] == "producing"]
    fresh = status["freshness_p95_s"].dropna()
    sentence = (
        f"Over {t.iloc[-1]:.0f} s the fleet produced {producing['produced_per_s'].mean():,.0f} events/s on average "
        f"and the stream wrote {producing['written_per_s'].mean():,.0f}/s; the Kafka lag peaked at "
        f"{int(status['lag'].max()):,} events and ended at {int(status['lag'].iloc[-1]):,}; "
        + (
            f"the freshness p95 (produced to readable in the lake) stayed between {fresh.min():.1f} and "
            f"{fresh.max():.1f} s"
            if len(fresh)
            else "no batch was published"
        )
        + (" (grey: producer stopped, stream draining)." if len(draining) else ".")
    )
    return Chart("The live run", _png(fig), sentence)


def advice_trips(status: pd.DataFrame) -> Chart:
    """A live run's trips as they ended: mean minutes of the advised and the unadvised with their 95 %
    intervals, second by second (from the status samples' ``trips``)."""
    fig = _figure(9, 4.0)
    ax = fig.subplots()
    t = status["elapsed_s"]
    for group, colour in (("advised", ROUTE_COLOURS[1]), ("unadvised", ROUTE_COLOURS[3])):
        rows = [r[group] for r in status["trips"]]
        mean = np.array([r["mean_min"] if r["mean_min"] is not None else np.nan for r in rows], dtype=float)
        low = np.array([r["ci_min"][0] if r["ci_min"] else np.nan for r in rows], dtype=float)
        high = np.array([r["ci_min"][1] if r["ci_min"] else np.nan for r in rows], dtype=float)
        ax.plot(t, mean, color=colour, label=f"{group} ({rows[-1]['trips']} trips)")
        ax.fill_between(t, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.set_ylabel("trip minutes (mean, 95% CI)")
    ax.set_xlabel("seconds since the fleet started")
    ax.legend(loc="upper right", frameon=False)
    saved = status["trips"].iloc[-1]["saved"]
    sentence = (
        f"By the end of the run the advised saved {saved['mean_min']:.1f} min a trip "
        f"(95% CI {saved['ci_min'][0]:.1f} to {saved['ci_min'][1]:.1f}) against the vehicles that kept the route mix."
        if saved
        else f"No saving yet: each group needs {MIN_TRIPS} finished trips."
    )
    return Chart("Advised and unadvised trips, as they ended", _png(fig), sentence)
