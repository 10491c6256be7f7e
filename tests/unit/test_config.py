from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from smartcity import params as config
from smartcity import profiles
from smartcity.params import Params, ParamsError
from smartcity.platform.params import project_root

PARAMS = project_root() / "params"


def test_local_profile_file_equals_the_defaults() -> None:
    # Notebook defaults, Params defaults and params/local.yaml (with base.yaml) must describe the same run.
    assert profiles.load_params() == Params()
    resolved = profiles.resolve_file(PARAMS / "local.yaml")
    assert set(resolved) == {*config.PARAM_TYPES, config.FINGERPRINT}


def test_base_holds_pipeline_keys_and_every_profile_resolves() -> None:
    base = yaml.safe_load((PARAMS / "base.yaml").read_text())
    assert base and not set(base) & set(config.ENGINE_OF)
    names = sorted(p.stem for p in PARAMS.glob("*.yaml") if p.stem != "base")
    assert {"local", "live", "cluster", "compose", "aws", "aws-moto"} <= set(names)
    for name in names:
        resolved = profiles.resolve_file(PARAMS / f"{name}.yaml")
        assert resolved["profile"] == name
        assert yaml.safe_load((PARAMS / f"{name}.yaml").read_text())["extends"]


def test_profiles_state_what_differs_and_keep_their_values() -> None:
    live, cluster = profiles.load_params(PARAMS / "live.yaml"), profiles.load_params(PARAMS / "cluster.yaml")
    assert (
        live.pipeline.platform,
        live.pipeline.mode,
        live.kafka.bootstrap,
        live.warehouse.postgres_port,
        live.fleet.seed,
    ) == ("local", "live", "127.0.0.1:9192", 5533, 42)
    assert (cluster.pipeline.platform, cluster.spark.workers, cluster.kafka.replication, cluster.fleet.vehicles) == (
        "cluster",
        2,
        3,
        3,
    )
    aws, moto = profiles.load_params(PARAMS / "aws.yaml"), profiles.load_params(PARAMS / "aws-moto.yaml")
    assert (
        aws.pipeline.lake_storage,
        aws.pipeline.catalog_engine,
        aws.pipeline.query_engine,
        aws.pipeline.warehouse_engine,
    ) == ("s3", "glue", "athena", "redshift")
    assert (
        moto.pipeline.lake_storage,
        moto.pipeline.catalog_engine,
        moto.pipeline.query_engine,
        moto.pipeline.warehouse_engine,
    ) == ("s3", "glue", "trino", "postgres")
    # unused keys are not carried
    assert moto.aws.s3_bucket == aws.aws.s3_bucket and moto.warehouse.redshift_copy_role_arn == ""


def _profile(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_a_local_engine_key_never_leaks_into_another_platform(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text((PARAMS / "base.yaml").read_text())
    (tmp_path / "local.yaml").write_text((PARAMS / "local.yaml").read_text())
    inherits = _profile(tmp_path, "c", "extends: local.yaml\nprofile: c\nplatform: cluster\n")
    with pytest.raises(ParamsError, match=r"'lake_storage' comes from .*local.yaml \(platform local\); a cluster"):
        profiles.resolve_file(inherits)
    aws = (PARAMS / "aws.yaml").read_text().replace("kafka_embedded: true\n", "")
    silent = _profile(tmp_path, "a", aws.replace("profile: aws", "profile: a"))
    with pytest.raises(ParamsError, match=r"must state 'kafka_embedded': its kafka engine uses it, and the default"):
        profiles.resolve_file(silent)


def test_unused_engine_keys_cycles_and_base_engine_keys_are_refused(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text((PARAMS / "base.yaml").read_text())
    (tmp_path / "local.yaml").write_text((PARAMS / "local.yaml").read_text())
    unused = _profile(tmp_path, "u", "extends: local.yaml\nprofile: u\nredshift_database: analytics\n")
    with pytest.raises(
        ParamsError, match=r"states 'redshift_database', which no engine .*\(warehouse_engine is 'postgres'\)"
    ):
        profiles.resolve_file(unused)
    _profile(tmp_path, "x", "extends: y.yaml\nprofile: x\n")
    _profile(tmp_path, "y", "extends: x.yaml\nprofile: y\n")
    with pytest.raises(ParamsError, match="in a cycle"):
        profiles.resolve_file(tmp_path / "x.yaml")
    engine_in_base = _profile(tmp_path, "b2", "vehicles: 4\nkafka_bootstrap: 'h:1'\n")
    child = _profile(tmp_path, "child", "extends: b2.yaml\nprofile: child\n")
    with pytest.raises(ParamsError, match="engine key 'kafka_bootstrap' but no platform"):
        profiles.resolve_file(child)
    nameless = _profile(tmp_path, "nameless", "extends: local.yaml\nvehicles: 4\n")
    with pytest.raises(ParamsError, match="must state its own `profile:`"):
        profiles.resolve_file(nameless)
    standalone = _profile(tmp_path, "flat", "kafka_bootstrap: '127.0.0.1:9999'\nkafka_embedded: false\n")
    assert profiles.load_params(standalone).profile == "local"  # a file extending nothing keeps the default name
    assert engine_in_base.exists()


def test_a_notebook_refuses_engine_settings_not_resolved_from_a_profile() -> None:
    resolved = profiles.resolve_file(PARAMS / "aws-moto.yaml")
    assert config.resolve(resolved).pipeline.lake_storage == "s3"
    assert config.resolve({**resolved, "vehicles": 7}).fleet.vehicles == 7  # pipeline keys may still be set with -p
    with pytest.raises(ParamsError, match="were not resolved from a profile, or were changed after"):
        config.resolve({**resolved, "s3_bucket": "someone-elses-bucket"})
    raw = yaml.safe_load((PARAMS / "aws-moto.yaml").read_text())
    with pytest.raises(ParamsError, match="extends 'aws.yaml' unresolved"):
        config.resolve(raw)
    assert config.resolve({"vehicles": 2}).pipeline.platform == "local"  # notebook defaults need no fingerprint


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"catalog_engine": "glue"}, "parameter 'catalog_engine' is glue, which reads what lake_storage s3 provides"),
        # catalog_engine glue: a lake on S3 with the duckdb catalog is refused first (its own group's check)
        ({"lake_storage": "s3", "aws_region": "us-east-1", "s3_bucket": "My_Bucket"}, "parameter 's3_bucket' must be"),
        (
            {"lake_storage": "s3", "catalog_engine": "glue", "s3_bucket": "lab-bucket"},
            "parameter 'aws_region' is empty",
        ),
        ({"warehouse_engine": "mysql"}, "parameter 'warehouse_engine' must be one of postgres, redshift"),
        (
            {
                "lake_storage": "s3",
                "catalog_engine": "glue",
                "aws_region": "us-east-1",
                "s3_bucket": "lab-bucket",
                "warehouse_engine": "redshift",
            },
            "parameter 'redshift_copy_role_arn' must be the ARN",
        ),
        ({"redshift_base_rpu": 12}, "parameter 'redshift_base_rpu' must be a multiple of 8"),
        ({"athena_output": "/tmp/x"}, "parameter 'athena_output' must be an s3:// location"),
        (
            {"lake_storage": "s3", "aws_region": "us-east-1", "s3_bucket": "lab-bucket"},
            "parameter 'catalog_engine' is duckdb, whose views read the lake's local folders, but lake_storage is s3",
        ),
    ],
)
def test_bad_engine_choices_name_the_parameter(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        config.from_mapping(values)


def test_account_templates_are_filled_from_the_caller(fake_aws: None) -> None:
    from moto import mock_aws

    cfg = profiles.load_params(PARAMS / "aws.yaml")
    with mock_aws():
        filled = config.fill_account(cfg)
    assert filled.aws.s3_bucket == "smartcity-123456789012-us-east-1"  # moto's default account
    assert filled.warehouse.redshift_copy_role_arn == "arn:aws:iam::123456789012:role/smartcity-redshift-copy"
    assert filled.aws.s3_root == "s3://smartcity-123456789012-us-east-1/smartcity"
    assert config.fill_account(Params()) == Params()  # nothing templated: no AWS call


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("vehicels: 3\n")
    with pytest.raises(ParamsError, match=r"unknown parameter 'vehicels' \(did you mean 'vehicles'\?\)"):
        profiles.load_params(path)


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
    assert config.from_mapping({"tick_seconds": 2}).fleet.tick_seconds == 2.0


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        profiles.load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vehicles: [1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        profiles.load_params(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="flat mapping"):
        profiles.load_params(listy)


def test_resolve_takes_only_lab_parameters_from_a_namespace() -> None:
    namespace = {"vehicles": 5, "profile": "demo", "events": [], "__name__": "__main__"}
    cfg = config.resolve(namespace)
    assert (cfg.fleet.vehicles, cfg.profile, cfg.fleet.seed) == (5, "demo", Params().fleet.seed)


def test_paths_come_from_the_project_root_not_the_cwd(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = config.from_mapping({"profile": "demo"})
        assert cfg.paths.data == project_root() / "data" / "demo"
        assert cfg.paths.lake == project_root() / "data" / "demo" / "lake"
        assert cfg.paths.output == project_root() / "outputs" / "demo"
    finally:
        os.chdir(here)


def test_absolute_dirs_are_kept(tmp_path: Path) -> None:
    cfg = config.from_mapping({"data_dir": str(tmp_path / "{profile}"), "profile": "x"})
    assert cfg.paths.data == tmp_path / "x"
