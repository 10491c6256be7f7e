"""How the lab's settings are declared: groups of typed scalars, each field with its flat key and doc.

A profile (``params/*.yaml``), a notebook's ``parameters`` cell and papermill's ``-p`` all speak in
flat keys (``kafka_bootstrap``, ``seed``); the code speaks in groups (``cfg.kafka.bootstrap``,
``cfg.fleet.seed``), so a function takes the group it uses. A group is a frozen dataclass whose
fields are declared with :func:`param`: the flat key is the group's ``PREFIX`` plus the field's
name unless the field says otherwise. Each group checks its own values (the message names the
flat key, which is what a user typed); checks across groups live with the whole record
(:mod:`smartcity.params`).

Also here: where the lab's root is (:func:`project_root`) and where a profile keeps its files
(:class:`ProfilePaths`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self


class ParamsError(ValueError):
    """A parameter is unknown, has the wrong type or an impossible value; the message names it."""


def project_root() -> Path:
    """Find the lab's root so paths never depend on where a notebook or test runs from."""
    env = os.environ.get("SMARTCITY_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[3]
    if (here / "params").is_dir():
        return here
    for candidate in (Path.cwd(), *Path.cwd().parents):
        if (candidate / "params").is_dir() and (candidate / "notebooks").is_dir():
            return candidate
    raise ParamsError("cannot find the lab root (a folder with params/ and notebooks/); set SMARTCITY_HOME")


def display_path(path: Path) -> str:
    """A path as people should read it (and notebooks print it): relative to the lab root when inside it."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except (ValueError, ParamsError):  # outside the lab, or an installed lab with no root at all
        return str(path)


def param(default: Any, doc: str, *, key: str = "") -> Any:
    """A group's field: its default, what it means (``smartcity params`` prints it), and its flat key
    when that is not the group's prefix plus the field name."""
    return field(default=default, metadata={"doc": doc, "key": key})


_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


class Group:
    """Behaviour shared by the settings groups (frozen dataclasses declared with :func:`param`)."""

    PREFIX: ClassVar[str] = ""

    @classmethod
    def key_of(cls, name: str) -> str:
        """The flat key of a field: ``bootstrap`` of the Kafka group is ``kafka_bootstrap``."""
        spec = next(f for f in fields(cls) if f.name == name)  # type: ignore[arg-type]
        return spec.metadata["key"] or cls.PREFIX + name

    @classmethod
    def specs(cls) -> list[tuple[str, str, type, Any, str]]:
        """(flat key, field name, type, default, doc) of every field, in declaration order."""
        return [
            (f.metadata["key"] or cls.PREFIX + f.name, f.name, _SCALARS[str(f.type)], f.default, f.metadata["doc"])
            for f in fields(cls)
        ]  # type: ignore[arg-type]

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> Self:
        """The group from a flat mapping of checked values (keys of other groups are ignored)."""
        return cls(**{name: values[key] for key, name, *_ in cls.specs() if key in values})

    def flat(self) -> dict[str, Any]:
        """The group's values under their flat keys."""
        return {key: getattr(self, name) for key, name, *_ in self.specs()}

    # -- checks that name the flat key ------------------------------------------------------------
    def fail(self, name: str, problem: str) -> ParamsError:
        return ParamsError(f"parameter '{self.key_of(name)}' {problem}")

    def at_least_one(self, names: Iterable[str]) -> None:
        for name in names:
            if getattr(self, name) < 1:
                raise self.fail(name, f"must be at least 1, got {getattr(self, name)}")

    def not_negative(self, names: Iterable[str]) -> None:
        for name in names:
            if not 0 <= getattr(self, name) < float("inf"):
                raise self.fail(name, f"must be zero or positive, got {getattr(self, name)}")

    def positive(self, names: Iterable[str]) -> None:
        for name in names:
            if not 0 < getattr(self, name) < float("inf"):
                raise self.fail(name, f"must be positive, got {getattr(self, name)}")

    def one_of(self, name: str, choices: Iterable[str]) -> None:
        choices = tuple(choices)
        if getattr(self, name) not in choices:
            raise self.fail(name, f"must be one of {', '.join(map(str, choices))}, got {getattr(self, name)!r}")

    def tcp_port(self, names: Iterable[str]) -> None:
        for name in names:
            if not 1 <= getattr(self, name) <= 65535:
                raise self.fail(name, f"must be a TCP port (1-65535), got {getattr(self, name)}")


def check_type(key: str, value: Any, want: type) -> Any:
    """A flat value of the declared type (an int is taken for a float; a bool is never an int)."""
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ParamsError(f"parameter '{key}' must be {want.__name__}, got {type(value).__name__} {value!r}")
    return value


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of 'host:port'; None when it is not that (validation names the parameter)."""
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


@dataclass(frozen=True)
class ProfilePaths:
    """Where a profile keeps its files: ``data`` (engines' state, the lake) and ``output`` (what people read)."""

    data: Path
    output: Path

    @property
    def lake(self) -> Path:
        return self.data / "lake"

    @property
    def checkpoints(self) -> Path:
        return self.data / "checkpoints"

    @property
    def catalog(self) -> Path:
        """The DuckDB file of the local catalog."""
        return self.data / "catalog.duckdb"

    @property
    def kafka(self) -> Path:
        return self.data / "kafka"

    @property
    def postgres(self) -> Path:
        return self.data / "postgres"

    @property
    def trino(self) -> Path:
        """The lab's Trino: its configuration, metastore, server data and log."""
        return self.data / "trino"

    @property
    def counts(self) -> Path:
        """The count ledger: how many events of each topic every stage holds."""
        return self.output / "counts"

    @property
    def live(self) -> Path:
        """A live run's status, batches, log and summary."""
        return self.output / "live"

    @property
    def maps(self) -> Path:
        return self.output / "maps"
