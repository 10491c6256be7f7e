"""The PostgreSQL warehouse: a real server, COPY loads that never duplicate, clear errors."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from smartcity import steps
from smartcity.fleet import simulation
from smartcity.fleet.contracts import TOPICS
from smartcity.params import Params
from smartcity.platform import postgres
from smartcity.platform.processes import EngineError, free_port
from smartcity.stream import lake
from smartcity.warehouse.postgres import PostgresWarehouse
from tests.conftest import lab_params
from tests.lake_fixture import write_lake

pytestmark = pytest.mark.integration


def _load(cfg: Params, warehouse: PostgresWarehouse) -> pd.DataFrame:
    """05_redshift's load of this profile's lake into the warehouse (the ledger recorded, as the notebook does)."""
    return steps.load_warehouse(steps.open_lab(cfg), warehouse)


def _ensure_server(cfg: Params) -> postgres.PostgresServer:
    return postgres.ensure_server(cfg.warehouse, cfg.paths.postgres)


def test_server_is_real_postgresql(warehouse: PostgresWarehouse) -> None:
    with warehouse.connect() as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("18.")
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


def test_loads_use_copy_and_never_duplicate(tmp_path: Path, warehouse: PostgresWarehouse) -> None:
    cfg = lab_params(tmp_path)
    counts = write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    with warehouse.connect() as conn:
        conn.execute("DROP SCHEMA IF EXISTS smartcity CASCADE")
    other = lab_params(tmp_path / "other", seed=9)  # an earlier run, with other events
    write_lake(other, simulation.simulate_journey(other.fleet))
    _load(other, warehouse)
    first = _load(cfg, warehouse).loc[list(TOPICS)]
    second = _load(cfg, warehouse).loc[list(TOPICS)]
    assert first["rows copied"].to_dict() == counts
    assert first["rows in warehouse"].to_dict() == counts
    assert (first["reloaded"] == 0).all(), "another lake is a new generation: loaded afresh, not a reload"
    assert second["rows in warehouse"].to_dict() == counts
    assert (second["rows copied"] == 0).all() and (second["new files"] == 0).all(), "nothing new, nothing copied"
    with warehouse.connect() as conn:
        stats = conn.execute(
            "SELECT relname, n_tup_ins FROM pg_stat_user_tables WHERE schemaname = 'smartcity'"
        ).fetchall()
    assert set(counts) <= {name for name, _ in stats}


def test_files_gone_from_the_same_lake_reload_the_table_and_a_reset_lake_starts_afresh(
    tmp_path: Path, warehouse: PostgresWarehouse
) -> None:
    cfg = lab_params(tmp_path)
    events = simulation.simulate_journey(cfg.fleet)
    write_lake(cfg, [e for e in events if e.value["timestamp"] < "2026-01-05T09:00"])
    write_lake(cfg, [e for e in events if e.value["timestamp"] >= "2026-01-05T09:00"])
    _load(cfg, warehouse)
    removed = sorted(lake.data_files(cfg.paths.lake / "gps_data"))[0]
    left = lake.count_rows(lake.data_files(cfg.paths.lake / "gps_data")) - lake.count_rows([removed])
    removed.unlink()  # by hand, not a reset: the warehouse must not keep rows the lake lost
    again = _load(cfg, warehouse)
    assert again.at["gps_data", "reloaded"] == 1 and again.at["gps_data", "rows in warehouse"] == left
    assert again.at["vehicle_data", "reloaded"] == 0 and again.at["vehicle_data", "rows copied"] == 0
    lake.reset(steps.open_store(cfg), cfg.paths.data)  # a new run
    counts = write_lake(cfg, events[:500])
    fresh = _load(cfg, warehouse).loc[list(TOPICS)]
    assert (fresh["reloaded"] == 0).all() and fresh["rows in warehouse"].to_dict() == counts


def test_an_external_dsn_is_used_and_left_running(
    tmp_path: Path, warehouse: PostgresWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = lab_params(tmp_path, postgres_dsn=warehouse.server.dsn)
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(EngineError, match="cannot connect .* PGPASSWORD or ~/.pgpass"):
        _ensure_server(cfg)
    monkeypatch.setenv("PGPASSWORD", warehouse.server.password)  # an external DSN's password comes from libpq's places
    external = _ensure_server(cfg)
    assert not external.owned and external.password is None
    external.stop()
    assert postgres.can_connect(warehouse.server.dsn)


def test_the_embedded_server_wants_its_generated_password(warehouse: PostgresWarehouse, lab_cfg: Params) -> None:
    data_dir = lab_cfg.paths.postgres
    secret = data_dir / postgres.SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_uid == os.geteuid()
    server = warehouse.server
    assert server.password == secret.read_text().strip() and len(server.password) >= 32
    assert server.password not in server.dsn + repr(server) + repr(warehouse) + repr(lab_cfg.as_dict())
    assert [p.name for p in data_dir.iterdir() if p.name.startswith(".initdb")] == [], "initdb's password file is gone"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.dsn, connect_timeout=10, password="guess").close()
    with warehouse.connect() as conn:
        assert {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules")} == {"scram-sha-256"}
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [postgres.SUPERUSER]).fetchone()[
            0
        ]
        assert stored.startswith("SCRAM-SHA-256$")
        assert conn.execute("SHOW fsync").fetchone()[0] == "off"  # the test session's choice (lab_params)


def test_a_new_server_flushes_to_disk_and_restarts_with_its_password(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path, postgres_fsync=Params().warehouse.postgres_fsync)  # a user's default
    with _ensure_server(cfg) as first:
        assert first.owned
        with first.connect() as conn:
            assert conn.execute("SHOW fsync").fetchone()[0] == "on"
            assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    with _ensure_server(cfg) as second:  # the same data dir again: no initdb, the same secret
        assert second.owned and second.password == first.password
        assert postgres.can_connect(second.dsn, password=second.password)


def test_another_data_dirs_server_on_the_port_is_a_clear_error(
    warehouse: PostgresWarehouse, lab_cfg: Params, tmp_path: Path
) -> None:
    port = lab_cfg.warehouse.postgres_port
    other = lab_params(tmp_path, postgres_port=port)  # a second lab with the same port
    mine = other.paths.postgres
    with pytest.raises(
        EngineError,
        match=f"127.0.0.1:{port} is a PostgreSQL server, but not this profile's: "
        f"{mine / 'pgdata'} has no server yet.*stop that server, or set postgres_port",
    ):
        _ensure_server(other)
    mine.mkdir(parents=True)
    (mine / postgres.SECRET_FILE).write_text("this data dir's own secret\n")
    with pytest.raises(
        EngineError,
        match=f"refuses this profile's login .*password authentication failed.*not the server of {mine / 'pgdata'}",
    ):
        _ensure_server(other)
    # even a server that accepts the login is refused if it serves another data directory
    (mine / postgres.SECRET_FILE).write_text(warehouse.server.password)
    with pytest.raises(
        EngineError,
        match=f"serves the PostgreSQL data directory {lab_cfg.paths.postgres / 'pgdata'}"
        f", not this profile's {mine / 'pgdata'}",
    ):
        _ensure_server(other)


def test_a_data_dir_from_an_older_lab_is_a_clear_error(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path)
    pgdata = cfg.paths.postgres / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")  # initdb'd with trust auth, before the lab kept a password
    with pytest.raises(
        EngineError, match=f"{pgdata} was created by an older version of the lab .*delete {pgdata.parent} and run again"
    ):
        _ensure_server(cfg)


def test_a_running_embedded_server_is_reused(lab_cfg: Params, warehouse: PostgresWarehouse) -> None:
    again = _ensure_server(lab_cfg)
    assert not again.owned and again.dsn == warehouse.server.dsn


def test_a_port_taken_by_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(
            EngineError, match=f"127.0.0.1:{port} is in use by something that is not the lab's PostgreSQL"
        ):
            _ensure_server(lab_params(tmp_path, postgres_port=port))


def test_an_unreachable_dsn_is_a_clear_error(tmp_path: Path) -> None:
    cfg = lab_params(tmp_path, postgres_dsn=f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    with pytest.raises(EngineError, match="cannot connect to the PostgreSQL given by postgres_dsn"):
        _ensure_server(cfg)


def test_a_table_from_an_older_contract_is_evolved_not_dropped(tmp_path: Path, warehouse: PostgresWarehouse) -> None:
    cfg = lab_params(tmp_path)
    counts = write_lake(cfg, simulation.simulate_journey(cfg.fleet))
    with warehouse.connect() as conn:
        conn.execute("DROP SCHEMA IF EXISTS smartcity CASCADE")
        conn.execute("CREATE SCHEMA smartcity")
        # an older vehicle_data: no odometer, fuel level, route or road, and a column since removed
        conn.execute('CREATE TABLE smartcity.vehicle_data ("id" TEXT PRIMARY KEY, "legacy" TEXT NOT NULL)')
        conn.execute("INSERT INTO smartcity.vehicle_data VALUES ('old-row', 'kept')")
    loaded = _load(cfg, warehouse)
    # the table mirrors the lake (the old row is not in it), and keeps the column it no longer needs
    assert loaded.at["vehicle_data", "rows in warehouse"] == counts["vehicle_data"]
    with warehouse.connect() as conn:
        assert (
            conn.execute("SELECT count(*) FROM smartcity.vehicle_data WHERE odometer IS NOT NULL").fetchone()[0]
            == counts["vehicle_data"]
        )
        assert (
            conn.execute("SELECT count(*) FROM smartcity.vehicle_data WHERE legacy IS NULL").fetchone()[0]
            == counts["vehicle_data"]
        )
