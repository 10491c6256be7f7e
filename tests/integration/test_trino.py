"""Trino stops with whatever started it, and serves only its own profile.

The six notebooks on Trino (03 registers the lake's tables in Trino's metastore, 04 runs the SQL files
unchanged on it and compares DuckDB's answers with Trino's) run on the cluster profile's run, in
test_cluster, which also kills the process that started its Trino. Here: Ctrl-C of the process that
started a Trino, and a profile that finds another profile's Trino on its port.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

from smartcity.params import Params
from smartcity.platform import trino
from smartcity.platform.processes import EngineError, free_port
from tests.conftest import engines_using, lab_params
from tests.trino_starter import TrinoStarter

pytestmark = pytest.mark.integration


def trino_params(root: Path) -> tuple[Params, Path]:
    cfg = lab_params(root, profile="local-trino", query_engine="trino", trino_port=free_port())
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    return cfg, path


def test_a_trino_of_another_profile_is_refused_and_trino_stops_on_ctrl_c(tmp_path: Path) -> None:
    cfg, path = trino_params(tmp_path)
    starter = TrinoStarter(cfg, path, tmp_path / "stderr.txt")
    try:
        with pytest.raises(EngineError, match="a Trino of another profile or lab"):
            trino.ensure_trino(cfg.trino, tmp_path / "another" / "trino")
        starter.end_by(signal.SIGINT)
    finally:
        starter.close()
    assert engines_using(cfg.paths.trino) == []
