"""JVM prerequisites and artifacts: Java is checked up front, jars come from Maven Central once.

The Kafka broker, Spark's Kafka connector and S3A (hadoop-aws with the AWS SDK modules it uses)
are declared as Maven POMs in ``maven/`` beside this module. `resolve_jars` copies each POM's
runtime closure into a git-ignored cache the first time and reuses it offline afterwards; a changed
POM (new version) is resolved again. A Java source of the lab's own (the stream's contract check)
is compiled against pyspark's jars into the same cache by `udf_jar`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyspark

from smartcity.platform.params import project_root
from smartcity.platform.processes import EngineError, folder_lock

POMS = {
    "kafka-broker": "kafka-broker.pom.xml",
    "spark-kafka": "spark-kafka.pom.xml",
    "hadoop-aws": "hadoop-aws.pom.xml",
}
MIN_JAVA = 17
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-\d[0-9A-Za-z.]*(?:-[0-9A-Za-z.]+)*\.jar$")

INSTALL_JAVA = (
    "install a JDK 17 (Debian/Ubuntu: apt install openjdk-17-jdk-headless; macOS: brew install openjdk@17; "
    "conda: conda install -c conda-forge openjdk=17) and put its bin/ on PATH or set JAVA_HOME"
)
INSTALL_MAVEN = "install Apache Maven (apt install maven, brew install maven, or conda install -c conda-forge maven)"


def java_executable() -> Path:
    """The java binary the lab uses: $JAVA_HOME/bin/java if set, else java on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    if not found:
        raise EngineError(f"Java {MIN_JAVA}+ is required but no java was found: {INSTALL_JAVA}")
    return Path(found)


def java_version(java: Path) -> int:
    """Major version of a java binary (17 for 17.0.15)."""
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise EngineError(f"could not read the version of {java}: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java() -> Path:
    """Fail early with a message that says which Java was found and how to get a suitable one."""
    java = java_executable()
    version = java_version(java)
    if version < MIN_JAVA:
        raise EngineError(f"Java {MIN_JAVA}+ is required, found Java {version} at {java}: {INSTALL_JAVA}")
    return java


def java_home() -> Path:
    return check_java().resolve().parents[1]


def cache_dir() -> Path:
    return project_root() / ".cache" / "jvm"


def _pom(name: str) -> Path:
    if name not in POMS:
        raise KeyError(f"unknown JVM artifact set {name!r}; known: {sorted(POMS)}")
    return Path(__file__).with_name("maven") / POMS[name]


def resolve_jars(name: str) -> list[Path]:
    """Jars of one artifact set, resolved from Maven Central on first use and cached after."""
    pom = _pom(name)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    target = cache_dir() / name
    stamp = target / ".resolved"
    with folder_lock(cache_dir()):
        if not (stamp.is_file() and stamp.read_text().strip() == digest):
            _maven_copy(pom, target)
            stamp.write_text(digest + "\n")
    return sorted(target.glob("*.jar"))


def _maven_copy(pom: Path, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _run_maven(
            [
                "-f",
                str(pom),
                f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            what=pom.name,
        )
    except EngineError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def fetch_artifact(coordinate: str, folder: Path) -> Path:
    """One artifact (``group:artifact:version:type``) copied from Maven Central (or the local
    repository ``~/.m2``, where Maven keeps it) into ``folder``; returns the file."""
    _, artifact, version, kind = coordinate.split(":")
    folder.mkdir(parents=True, exist_ok=True)
    _run_maven(
        [f"{_DEPENDENCY_PLUGIN}:copy", f"-Dartifact={coordinate}", f"-DoutputDirectory={folder}"], what=coordinate
    )
    return folder / f"{artifact}-{version}.{kind}"


def _run_maven(args: list[str], *, what: str) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise EngineError(f"Maven is required to fetch the lab's JVM engines and jars once: {INSTALL_MAVEN}")
    check_java()
    result = subprocess.run([mvn, "-B", "-q", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise EngineError(f"could not resolve {what} from Maven Central (is it reachable?):\n{tail}")


def artifact_name(jar: Path) -> str:
    """'kafka-clients' for kafka-clients-3.9.2.jar: what identifies a jar across versions."""
    match = _JAR_NAME.match(jar.name)
    return match.group("artifact") if match else jar.stem


def pyspark_jars() -> list[Path]:
    """The jars pyspark ships (its own classpath)."""
    return sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))


def jars_beside_pyspark(name: str) -> list[Path]:
    """An artifact set's jars minus those pyspark already ships, by artifact name: one copy of each
    class on Spark's classpath, pyspark's (netty, jackson, slf4j, httpclient ... at its versions)."""
    shipped = {artifact_name(j) for j in pyspark_jars()}
    return [j for j in resolve_jars(name) if artifact_name(j) not in shipped]


def spark_connector_jars() -> list[Path]:
    """The Kafka connector's jars minus those pyspark already ships (no duplicate classes)."""
    return jars_beside_pyspark("spark-kafka")


_HADOOP_CLIENT = re.compile(r"^hadoop-client-api-(?P<version>\d[0-9A-Za-z.-]*)\.jar$")
_POM_HADOOP = re.compile(r"<hadoop\.version>(?P<version>[^<]+)</hadoop\.version>")


def pyspark_hadoop_version() -> str:
    """The Hadoop client version inside pyspark (3.5.0 for pyspark 4.2.0), read from its jar name."""
    for jar in pyspark_jars():
        match = _HADOOP_CLIENT.match(jar.name)
        if match:
            return match.group("version")
    raise EngineError("pyspark ships no hadoop-client-api jar: cannot tell which hadoop-aws S3A needs")


def s3a_jars() -> list[Path]:
    """hadoop-aws and the AWS SDK modules S3A needs, minus what pyspark ships (s3a:// for Spark).

    hadoop-aws must be the very Hadoop version pyspark ships: a mismatch fails at the first s3a://
    call with missing methods, so it is refused here with what to change.
    """
    pom = _pom("hadoop-aws")
    declared = _POM_HADOOP.search(pom.read_text())
    shipped = pyspark_hadoop_version()
    if declared is None or declared.group("version") != shipped:
        raise EngineError(
            f"{pom.name} declares hadoop-aws {declared.group('version') if declared else '(none)'} but pyspark ships "
            f"Hadoop {shipped}: set <hadoop.version>{shipped}</hadoop.version> in {pom}"
        )
    return jars_beside_pyspark("hadoop-aws")


def udf_jar(source: Path) -> Path:
    """A Java source of the lab's (a Spark UDF) compiled against pyspark's jars on first use.

    No download: javac and jar come with the JDK, the classpath is the jars pyspark ships, and the
    jar is rebuilt when the source or the pyspark version changes.
    """
    spark_jars = Path(pyspark.__file__).parent / "jars"
    digest = hashlib.sha256(source.read_bytes() + pyspark.__version__.encode()).hexdigest()[:12]
    target = cache_dir() / "smartcity-udf" / f"smartcity-udf-{digest}.jar"
    with folder_lock(cache_dir()):
        if target.exists():
            return target
        bin_dir = check_java().resolve().parent
        javac, jar = bin_dir / "javac", bin_dir / "jar"
        if not javac.exists():
            raise EngineError(
                f"a JDK (with javac) is required to build the lab's Spark UDF, found only {bin_dir}: {INSTALL_JAVA}"
            )
        build = Path(tempfile.mkdtemp(prefix=".udf-", dir=cache_dir()))
        try:
            for argv, what in (
                (
                    [
                        str(javac),
                        "--release",
                        str(MIN_JAVA),
                        "-nowarn",
                        "-cp",
                        f"{spark_jars}/*",
                        "-d",
                        str(build / "classes"),
                        str(source),
                    ],
                    "compiling",
                ),
                ([str(jar), "cf", str(build / target.name), "-C", str(build / "classes"), "."], "packaging"),
            ):
                result = subprocess.run(argv, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise EngineError(f"{what} {source.name} failed:\n{result.stdout}{result.stderr}")
            shutil.rmtree(target.parent, ignore_errors=True)  # older builds
            target.parent.mkdir(parents=True)
            (build / target.name).rename(target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


def setup_all() -> dict[str, int]:
    """Check Java and resolve every artifact set; what `make setup` runs once per machine.

    S3A's set (19 MB, 13.4 MB of it on Spark's classpath) is resolved here too, although only
    profiles with lake_storage s3 use it: `make setup` stays the one step that needs the network, so
    switching to the aws-moto profile later works offline, and the runner's up-front check covers it.
    """
    check_java()
    return {name: len(resolve_jars(name)) for name in POMS}
