"""SQL kept as files: a folder of ``NN_<name>.sql``, where a query is named by its file without the
order prefix (``02_journey_times.sql`` is ``journey_times``). The Athena queries live in
``smartcity/query/sql/``, the warehouse's BI queries in ``smartcity/warehouse/sql/``."""

from __future__ import annotations

from pathlib import Path


def query_names(folder: Path) -> list[str]:
    """Names of the queries in a folder, in file order."""
    return [p.stem.split("_", 1)[1] for p in sorted(folder.glob("[0-9][0-9]_*.sql"))]


def query_text(folder: Path, name: str, kind: str = "") -> str:
    """The SQL of a named query, as written (``kind`` names the queries in an error: athena, warehouse)."""
    matches = sorted(folder.glob(f"[0-9][0-9]_{name}.sql"))
    if not matches:
        raise KeyError(f"no {kind + ' ' if kind else ''}query named {name!r}; known: {', '.join(query_names(folder))}")
    return matches[0].read_text()
