"""06_route_map's settings: the run its suggestions are judged on."""

from __future__ import annotations

from dataclasses import dataclass

from smartcity.platform.params import Group, param


@dataclass(frozen=True)
class RoutesParams(Group):
    """The judged run: another seed's fleet, driven on its own routes and on the suggested ones."""

    PREFIX = "route_"
    judge_seed: int = param(0, "seed of the run 06_route_map judges its suggestions on; 0: seed + 1 (never seed)")
    judge_vehicles: int = param(24, "vehicles of that judged run, each driven on its own route and on the suggestion")

    def __post_init__(self) -> None:
        self.at_least_one(("judge_vehicles",))

    def seed_after(self, learnt_seed: int) -> int:
        """The seed suggestions are judged on: ``route_judge_seed``, or the learnt seed + 1."""
        return self.judge_seed or learnt_seed + 1
