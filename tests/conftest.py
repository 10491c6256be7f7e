"""Shared fixtures. Engines are started once per test session, on free ports and in a temporary
folder, so tests never touch the lab's own data/ or the default ports a user may have in use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smartcity import config
from smartcity.engines import free_port


def lab_params(root: Path, **overrides: object) -> config.Params:
    """Params for an isolated lab: its own data and output folders and free ports."""
    values: dict[str, object] = {
        "profile": "test",
        "data_dir": str(root / "data"),
        "output_dir": str(root / "outputs"),
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "postgres_port": free_port(),
    }
    values.update(overrides)
    return config.from_mapping(values)


@pytest.fixture(scope="session")
def lab_cfg(tmp_path_factory: pytest.TempPathFactory) -> config.Params:
    return lab_params(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def broker(lab_cfg: config.Params) -> Iterator[object]:
    from smartcity import kafka

    with kafka.ensure_broker(lab_cfg) as running:
        assert running.owned, "the session broker must be one the tests started"
        yield running


@pytest.fixture(scope="session")
def spark(lab_cfg: config.Params) -> Iterator[object]:
    from smartcity.spark import spark_session

    with spark_session(lab_cfg) as session:
        yield session


@pytest.fixture(scope="session")
def warehouse(lab_cfg: config.Params) -> Iterator[object]:
    from smartcity import postgres

    with postgres.ensure_warehouse(lab_cfg) as running:
        yield running
