from __future__ import annotations

import os
from pathlib import Path

import pytest

from smartcity.platform import jvm
from smartcity.platform.processes import EngineError


@pytest.mark.parametrize(
    ("jar", "artifact"),
    [
        ("kafka-clients-3.9.2.jar", "kafka-clients"),
        ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "spark-sql-kafka-0-10_2.13"),
        ("zstd-jni-1.5.7-7.jar", "zstd-jni"),
        ("log4j-slf4j2-impl-2.25.4.jar", "log4j-slf4j2-impl"),
        ("commons-lang3-3.17.0.jar", "commons-lang3"),
    ],
)
def test_artifact_name_ignores_the_version(jar: str, artifact: str) -> None:
    assert jvm.artifact_name(Path(jar)) == artifact


def test_java_17_or_newer_is_found() -> None:
    assert jvm.java_version(jvm.check_java()) >= jvm.MIN_JAVA


def test_an_old_java_is_refused_with_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "jdk" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(EngineError, match=r"Java 17\+ is required, found Java 11 .*apt install openjdk-17"):
        jvm.check_java()


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(jvm, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(EngineError, match="Maven is required"):
        jvm.resolve_jars("kafka-broker")


def test_connector_jars_skip_what_pyspark_ships() -> None:
    names = {jvm.artifact_name(j) for j in jvm.spark_connector_jars()}
    assert "spark-sql-kafka-0-10_2.13" in names and "kafka-clients" in names
    assert not names & {"scala-library", "slf4j-api", "snappy-java", "hadoop-client-api"}


def test_jars_are_cached_offline_after_the_first_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    jvm.resolve_jars("kafka-broker")  # cached by `make setup`
    monkeypatch.setenv("PATH", "/nonexistent")  # no mvn, no network tool: must not be needed
    assert any(j.name.startswith("kafka_2.13-4.") for j in jvm.resolve_jars("kafka-broker"))
    assert os.environ["PATH"] == "/nonexistent"
