"""The lab's topic admin without a broker: what a quorum's momentarily stale metadata must not break."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import InvalidPartitionsError

from smartcity.platform import topics


class _StaleQuorum:
    """An admin client whose first descriptions list 1 partition of topics that already have 3."""

    def __init__(self) -> None:
        self.describes = 0
        self.grown: list[dict[str, int]] = []

    def list_topics(self) -> list[str]:
        return ["a", "b"]

    def wait_for_topics(self, names: list[str], timeout_ms: int) -> None:
        pass

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.describes += 1
        listed = 1 if self.describes == 1 else 3
        return [{"name": n, "partitions": [{"partition_index": i} for i in range(listed)]} for n in names]

    def create_partitions(self, wanted: dict[str, int], timeout_ms: int) -> None:
        self.grown.append(wanted)
        raise InvalidPartitionsError("Topic already has 3 partition(s).")

    def close(self) -> None:
        pass


def test_a_refused_growth_of_topics_that_already_have_their_partitions_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = _StaleQuorum()
    monkeypatch.setattr(topics, "admin_client", lambda bootstrap: admin)
    table = topics.ensure_topics("127.0.0.1:9", ["a", "b"], partitions=3)
    assert admin.grown == [{"a": 3, "b": 3}], "it asked to grow what a stale description showed"
    assert table["partitions"].to_dict() == {"a": 3, "b": 3}
