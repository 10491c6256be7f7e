"""The same Athena queries on two engines, compared: what DuckDB answers against what Trino answers.

DuckDB runs each query after sqlglot transpiled it; Trino, the engine Athena is built on, runs it as
written. Where the two disagree, the translation (or DuckDB) differs from Athena's semantics, and
a user would have found out in their AWS account. :func:`compare` says how two results differ:

- columns: the same names, in the same order;
- rows: the same multiset (ties of a query's ``ORDER BY`` may come in either order on either engine);
- integers, strings, booleans, dates and timestamps: exactly equal (timestamps as UTC instants);
- floating point: within :data:`FLOAT_TOLERANCE`. The lab's queries round to one decimal, and a
  value halfway between two is rounded by Trino in decimal arithmetic (``100.0 * x / n`` is a
  decimal on Trino, as on Athena) and by DuckDB in binary doubles, so one unit of that digit may
  differ. None of the queries uses ``approx_percentile`` (whose sketches differ between engines).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from smartcity.query.athena import QueryEngine

#: Largest difference allowed between two engines' floats: one unit of a ``round(x, 1)``.
FLOAT_TOLERANCE = 0.1 + 1e-9


def _utc_naive(frame: pd.DataFrame) -> pd.DataFrame:
    """Zoned timestamps as UTC wall time: DuckDB reads the lake's UTC instants zoned, Trino and Athena as
    ``timestamp`` (no zone, in UTC sessions); the instants are what must agree."""
    zoned = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    return frame.assign(**{c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in zoned})


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one canonical order: exact columns first, floats last (so a rounding unit cannot reorder)."""
    frame = _utc_naive(frame)
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    exact = [c for c in frame.columns if c not in floats]
    keyed = frame.astype({c: str for c in exact if frame[c].dtype == object})
    order = keyed.sort_values([*exact, *floats], kind="stable", na_position="last").index
    return frame.loc[order].reset_index(drop=True)


def _shown(value: object) -> str:
    """A value as Python writes it (37, not np.int64(37))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def compare(left: pd.DataFrame, right: pd.DataFrame, tolerance: float = FLOAT_TOLERANCE) -> list[str]:
    """How two engines' results of one query differ; empty when they agree (see the module's rules)."""
    if list(left.columns) != list(right.columns):
        return [f"columns differ: {list(left.columns)} vs {list(right.columns)}"]
    if len(left) != len(right):
        return [f"{len(left)} rows vs {len(right)}"]
    a, b = _sorted(left), _sorted(right)
    problems = []
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            xs, ys = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            both_nan = np.isnan(xs) & np.isnan(ys)
            off = ~both_nan & ~(np.abs(xs - ys) <= tolerance)
        else:
            off = ~((x == y) | (x.isna() & y.isna())).to_numpy()
        if off.any():
            i = int(np.argmax(off))
            problems.append(
                f"{column}: {int(off.sum())} of {len(a)} rows differ, e.g. {_shown(x.iloc[i])} vs {_shown(y.iloc[i])}"
            )
    return problems


#: A query's result on one engine, and the seconds it took.
Timed = tuple[pd.DataFrame, float]


def timed_run(engine: QueryEngine, name: str) -> Timed:
    started = time.perf_counter()
    frame = engine.run(name)
    return frame, round(time.perf_counter() - started, 3)


def crosscheck(
    engines: dict[str, QueryEngine], names: Iterable[str], done: Mapping[tuple[str, str], Timed] | None = None
) -> pd.DataFrame:
    """Every query on every engine: rows, seconds per engine, and how the results differ from the first engine's.

    ``done`` holds results already answered, by (engine, query): those are compared, not run again.
    """
    (first, *others) = engines
    rows = []
    for name in names:
        results, seconds = {}, {}
        for label, engine in engines.items():
            results[label], seconds[f"{label} s"] = (done or {}).get((label, name)) or timed_run(engine, name)
        differences = [f"{o}: {p}" for o in others for p in compare(results[first], results[o])]
        rows.append({"query": name, "rows": len(results[first]), **seconds, "differences": "; ".join(differences)})
    return pd.DataFrame(rows).set_index("query")
