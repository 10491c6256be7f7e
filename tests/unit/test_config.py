from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from smartcity import config
from smartcity.config import Params, ParamsError


def test_local_profile_file_equals_the_defaults() -> None:
    # Notebook defaults, Params defaults and params/local.yaml must describe the same run.
    values = yaml.safe_load((config.project_root() / "params" / "local.yaml").read_text())
    assert config.load_params() == Params()
    assert set(values) == set(config.PARAM_TYPES)


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("vehicels: 3\n")
    with pytest.raises(ParamsError, match=r"unknown parameter 'vehicels' \(did you mean 'vehicles'\?\)"):
        config.load_params(path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vehicles": "3"}, "parameter 'vehicles' must be int, got str"),
        ({"vehicles": True}, "parameter 'vehicles' must be int, got bool"),
        ({"kafka_embedded": "yes"}, "parameter 'kafka_embedded' must be bool"),
        ({"vehicles": 0}, "parameter 'vehicles' must be at least 1"),
        ({"tick_seconds": -1.0}, "parameter 'tick_seconds' must be positive"),
        ({"base_date": "yesterday"}, "parameter 'base_date' is not an ISO 8601 date-time"),
        ({"base_date": "2026-01-05T08:00:00"}, "parameter 'base_date' needs a UTC offset"),
        ({"kafka_bootstrap": "localhost"}, "parameter 'kafka_bootstrap' must be host:port"),
        ({"postgres_port": 70000}, "parameter 'postgres_port' must be a TCP port"),
        ({"profile": "../x"}, "parameter 'profile' must be a plain name"),
        ({"postgres_dsn": "postgresql://u:secret@db:5432/x"}, "parameter 'postgres_dsn' must not carry a password"),
        ({"postgres_dsn": "host=db user=u password=secret"}, "parameter 'postgres_dsn' must not carry a password"),
    ],
)
def test_bad_values_name_the_parameter(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.from_mapping(values)


def test_int_is_accepted_for_a_float_parameter() -> None:
    assert config.from_mapping({"tick_seconds": 2}).tick_seconds == 2.0


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        config.load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vehicles: [1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        config.load_params(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="flat mapping"):
        config.load_params(listy)


def test_resolve_takes_only_lab_parameters_from_a_namespace() -> None:
    namespace = {"vehicles": 5, "profile": "demo", "events": [], "__name__": "__main__"}
    cfg = config.resolve(namespace)
    assert (cfg.vehicles, cfg.profile, cfg.seed) == (5, "demo", Params().seed)


def test_paths_come_from_the_project_root_not_the_cwd(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = Params(profile="demo")
        assert cfg.data_path == config.project_root() / "data" / "demo"
        assert cfg.lake_path == config.project_root() / "data" / "demo" / "lake"
        assert cfg.output_path == config.project_root() / "outputs" / "demo"
    finally:
        os.chdir(here)


def test_absolute_dirs_are_kept(tmp_path: Path) -> None:
    cfg = Params(data_dir=str(tmp_path / "{profile}"), profile="x")
    assert cfg.data_path == tmp_path / "x"
