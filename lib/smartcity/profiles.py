"""Profiles: the YAML files in ``params/``, what they extend, and the rule that keeps engines apart.

``params/base.yaml`` holds the pipeline; each profile ``extends:`` it (or another profile), names
its ``platform`` and states the engine keys its engines use. :func:`resolve_file` merges a chain
and checks it; :func:`load_params` turns a profile into :class:`~smartcity.params.Params`.
Papermill gets the resolved, flat file (``smartcity params resolve``), marked with a fingerprint
that the notebooks check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from smartcity.params import (
    ENGINE_OF,
    EXTENDS,
    FINGERPRINT,
    Params,
    engines_in_use,
    fingerprint,
    from_mapping,
)
from smartcity.platform.params import ParamsError, display_path, project_root

#: Parameters' defaults, by flat key: the local platform's own values.
DEFAULTS: dict[str, Any] = Params().as_dict()
#: The selector that switches each engine on: what an error says when a profile states a key of an unused engine.
_SELECTOR = {
    "postgres": "warehouse_engine",
    "redshift": "warehouse_engine",
    "s3": "lake_storage",
    "glue": "catalog_engine",
    "athena": "query_engine",
    "trino": "query_engine",
    "spark_standalone": "spark_master",
}


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: must be a flat mapping of parameter: value")
    if FINGERPRINT in values:
        raise ParamsError(
            f"{path}: holds '{FINGERPRINT}', the mark of a resolved file; resolved files are "
            "papermill's input, not a profile to edit or extend"
        )
    return values


def _chain(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """A profile and the files it extends, base first (a cycle is an error)."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[Path] = []
    while True:
        path = path.resolve()
        if path in seen:
            raise ParamsError(
                "params files extend each other in a cycle: " + " -> ".join(display_path(p) for p in (*seen, path))
            )
        seen.append(path)
        values = _read_yaml(path)
        chain.insert(0, (path, values))
        parent = values.get(EXTENDS)
        if parent is None:
            return chain
        if not isinstance(parent, str) or not parent:
            raise ParamsError(f"{path}: '{EXTENDS}' must name a params file beside it, got {parent!r}")
        path = path.parent / parent


def _merge(chain: list[tuple[Path, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, tuple[Path, str | None]]]:
    """The chain's keys merged base first, and for each the file that set it last with that file's platform."""
    leaf = chain[-1][0]
    merged: dict[str, Any] = {}
    origin: dict[str, tuple[Path, str | None]] = {}
    for file, values in chain:
        platform = values.get("platform", merged.get("platform"))
        if platform is None and file == leaf:  # a file extending nothing is a whole profile: local by default
            platform = DEFAULTS["platform"]
        for key, value in values.items():
            if key == EXTENDS:
                continue
            if key in ENGINE_OF and platform is None:
                raise ParamsError(
                    f"{display_path(file)} states the engine key '{key}' but no platform: a file "
                    "without `platform:` holds pipeline keys only (see params/base.yaml)"
                )
            merged[key] = value
            origin[key] = (file, platform)
    return merged, origin


def _check_engine_key(
    key: str, engine: str, cfg: Params, leaf: Path, origin: dict[str, tuple[Path, str | None]]
) -> None:
    """The platform rule for one engine key the run uses: stated by a file of the profile's own platform."""
    platform = cfg.pipeline.platform
    if platform == "local":
        return  # the defaults are the local platform's own values
    if key not in origin:
        raise ParamsError(
            f"{display_path(leaf)} (platform {platform}) must state '{key}': its {engine} "
            f"engine uses it, and the default ({DEFAULTS[key]!r}) is the local profile's"
        )
    file, stated_on = origin[key]
    if stated_on != platform:
        raise ParamsError(
            f"'{key}' comes from {display_path(file)} (platform {stated_on}); a {platform} "
            f"profile must state it itself ({display_path(leaf)} or a {platform} file it extends)"
        )


def resolve_file(path: str | Path) -> dict[str, Any]:
    """A profile as one flat mapping: its chain merged, checked for leaks, with its fingerprint.

    Files merge base first, each key overriding its parent's (papermill's repeated ``-f``). Then the
    platform rule: an engine key the run uses must be stated by a file of the profile's own platform,
    because a value inherited from another platform, or a notebook's default, is a local value (the
    embedded broker, ``127.0.0.1``) silently reused on a cluster or on AWS. A profile may not state
    engine keys its engines do not use (but for their defaults, as a flat file of every key has them),
    and a file without a platform that others extend holds pipeline keys only.
    """
    chain = _chain(Path(path))
    leaf, stated = chain[-1]
    merged, origin = _merge(chain)
    cfg = from_mapping(merged, source=display_path(leaf))
    if len(chain) > 1 and "profile" not in stated:  # else it would share its parent's data and outputs
        raise ParamsError(f"{display_path(leaf)} must state its own `profile:` (the name of its data and outputs)")
    used = engines_in_use(cfg)
    for key, engine in ENGINE_OF.items():
        if engine in used:
            _check_engine_key(key, engine, cfg, leaf, origin)
            continue
        if key in stated and stated[key] != DEFAULTS[key]:  # a default is harmless (a flat file)
            selector = _SELECTOR.get(engine, "platform")
            raise ParamsError(
                f"{display_path(leaf)} states '{key}', which no engine of this profile uses "
                f"({selector} is {cfg.as_dict()[selector]!r}): remove it"
            )
        merged.pop(key, None)
    flat = from_mapping(merged, source=display_path(leaf)).as_dict()
    return {**flat, FINGERPRINT: fingerprint(cfg)}


def load_params(path: str | Path | None = None) -> Params:
    """Read a profile (default: params/local.yaml), resolve what it extends, validate before anything starts."""
    values = resolve_file(Path(path) if path else project_root() / "params" / "local.yaml")
    values.pop(FINGERPRINT)
    return from_mapping(values)
