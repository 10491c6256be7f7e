"""The lab's SQL, kept as files: ``athena/`` in Athena's (Trino) dialect, ``redshift/`` in SQL that
runs unchanged on Redshift and PostgreSQL. A query is named by its file without the order prefix
(``02_journey_times.sql`` is ``journey_times``)."""

from __future__ import annotations

from pathlib import Path

SQL_ROOT = Path(__file__).parent


def query_names(kind: str) -> list[str]:
    """Names of the queries of one kind ('athena' or 'redshift'), in file order."""
    return [p.stem.split("_", 1)[1] for p in sorted((SQL_ROOT / kind).glob("[0-9][0-9]_*.sql"))]


def query_text(kind: str, name: str) -> str:
    """The SQL of a named query, as written."""
    matches = sorted((SQL_ROOT / kind).glob(f"[0-9][0-9]_{name}.sql"))
    if not matches:
        raise KeyError(f"no {kind} query named {name!r}; known: {', '.join(query_names(kind))}")
    return matches[0].read_text()
