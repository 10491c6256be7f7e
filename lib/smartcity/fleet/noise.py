"""Randomness that is a pure function of its key, and event ids that are the same on every run.

The noise a vehicle meets comes from a counter-based generator keyed by seed, vehicle and tick, so
one vehicle's trip does not depend on which others are on the road; ids are uuid5 of (seed,
topic, device, sequence), made without the UUID object (ids are made for every event).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from typing import Any

import numpy as np

#: The namespace of every event id (uuid5).
NAMESPACE = uuid.UUID("6f1f5b5e-3c55-4a7e-9d1e-5c17a0b1c0de")

# -- noise: counter-based, so a vehicle's draws depend only on the seed, the vehicle and its tick ----
_GOLDEN = np.array(0x9E3779B97F4A7C15, dtype=np.uint64)
_MIX_A = np.array(0xBF58476D1CE4E5B9, dtype=np.uint64)
_MIX_B = np.array(0x94D049BB133111EB, dtype=np.uint64)
_DRAW_SLOTS = np.arange(4, dtype=np.uint64)
# numpy scalars as 0-d arrays: on a small fleet the cost of an operation is its per-call overhead
_U4, _U11, _U27, _U30, _U31 = (np.array(v, dtype=np.uint64) for v in (4, 11, 27, 30, 31))


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit words whose outputs look independent."""
    z = z ^ (z >> _U30)
    z *= _MIX_A
    z ^= z >> _U27
    z *= _MIX_B
    z ^= z >> _U31
    return z


def noise_keys(seed: int, serials: np.ndarray) -> np.ndarray:
    """One 64-bit key per vehicle, from the seed and the vehicle's serial number."""
    base = int.from_bytes(hashlib.sha256(f"{seed}/noise".encode()).digest()[:8], "little")
    return _mix64(np.array(base, dtype=np.uint64) + serials.astype(np.uint64) * _GOLDEN)


def tick_normals(keys: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three independent standard normal draws per vehicle for its ``ticks``-th step (Box-Muller over
    four hashed counters): a pure function of (key, tick), whichever other vehicles are on the road.
    ``keys`` and ``ticks`` are arrays of one shape; so are the draws."""
    counter = ticks.astype(np.uint64)[None] * _U4 + _DRAW_SLOTS.reshape((4,) + (1,) * ticks.ndim)
    counter *= _GOLDEN
    counter += keys[None]
    u = (_mix64(counter) >> _U11).astype(np.float64)
    u += 0.5
    u *= 2.0**-53  # in (0, 1), never 0
    radius = np.log(u[0::2])
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = u[1::2]
    angle *= 2.0 * math.pi
    return radius[0] * np.cos(angle[0]), radius[0] * np.sin(angle[0]), radius[1] * np.cos(angle[1])


# -- ids ------------------------------------------------------------------------------------------
try:  # CPython's own SHA-1: for messages this short it is faster than OpenSSL's (no EVP context per hash)
    from _sha1 import sha1
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import sha1

_VARIANT = {c: format((int(c, 16) & 0x3) | 0x8, "x") for c in "0123456789abcdef"}
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DIGIT_AT = np.array([c for c in range(36) if c not in (8, 13, 18, 23)])  # where the 32 digits go
_DASH = ord("-")


def id_prefix(seed: int, topic: str, device: str) -> bytes:
    """What every id of one device hashes first: the namespace, then "{seed}/{topic}/{device}/"."""
    return NAMESPACE.bytes + f"{seed}/{topic}/{device}/".encode()


def event_id(prefix: bytes, n: int) -> str:
    """``str(uuid.uuid5(namespace, f"{seed}/{topic}/{device}/{n}"))`` from the device's prefix, without the
    UUID object: the same text at a fraction of the cost (ids are made for every event)."""
    return _uuid5_text(sha1(prefix + b"%d" % n).hexdigest())


def _uuid5_text(x: str) -> str:
    """The uuid5 text of a SHA-1 hex digest: its first 32 digits, version 5, RFC 4122 variant."""
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def uuid5_texts(digests: list[bytes]) -> list[str]:
    """The uuid5 text of each SHA-1 digest: for many at once in arrays (a few dozen and more: a fleet's
    tick), which is what makes them cheap; one by one for a few."""
    if len(digests) < 32:
        return [_uuid5_text(d.hex()) for d in digests]
    raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 20)[:, :16]
    nibbles = np.empty((len(digests), 32), dtype=np.uint8)
    np.right_shift(raw, 4, out=nibbles[:, 0::2])
    np.bitwise_and(raw, 0x0F, out=nibbles[:, 1::2])
    nibbles[:, 12] = 5
    nibbles[:, 16] = (nibbles[:, 16] & 0x3) | 0x8
    text = np.full((len(digests), 36), _DASH, dtype=np.uint8)
    text[:, _UUID_DIGIT_AT] = _HEX_DIGITS[nibbles]
    blob = text.tobytes().decode("ascii")
    return [blob[c : c + 36] for c in range(0, len(blob), 36)]


class DeviceIds:
    """Per-device sequence numbers and id prefixes of the roadside devices (a bounded set)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.state: dict[tuple[str, str], list[Any]] = {}  # (topic, device) -> [prefix, next sequence number]

    def next(self, topic: str, device: str) -> str:
        entry = self.state.get((topic, device))
        if entry is None:
            entry = self.state[(topic, device)] = [id_prefix(self.seed, topic, device), 0]
        n = entry[1]
        entry[1] = n + 1
        return event_id(entry[0], n)
