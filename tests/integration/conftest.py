"""The integration tests' order: the longest modules first, so two workers finish together.

`make test` runs these modules two at a time (``-n 2 --dist loadfile --no-loadscope-reorder``): a worker
that finishes a module takes the next one in collection order. With the longest first (the rule of
scheduling the longest job first), the short modules fill in at the end and neither worker waits long
for the other; xdist's own reordering, by the number of tests in a module, ran the 1-test live module
and the 2-test kill module last. The order changes when a test runs, never what it does.
"""

from __future__ import annotations

import pytest

#: Modules by worker-seconds in make test (setup, calls and teardown; fresh clone of 679f002, 2 cores),
#: longest first; the others follow in their usual order.
LONGEST_FIRST: tuple[str, ...] = (
    "test_cluster.py",  # two clusters' six notebooks, Trino twice, a broker and a worker killed
    "test_cluster_s3.py",  # the six notebooks on moto's S3 and Glue
    "test_stream.py",  # kill -9 of the stream at 4 moments
    "test_s3a.py",  # kill -9 of the stream on S3
    "test_live.py",  # a live run, its map in Chromium, Ctrl-C, a restart
    "test_pipeline.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's tests keep their order
