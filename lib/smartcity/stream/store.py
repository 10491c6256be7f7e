"""Where the lake, its commit log and the stream's checkpoints live: a folder, or an S3 prefix.

The lake's commit protocol (``docs/decisions/0001-lake-commits.md``) needs only a handful of
storage primitives; ``docs/decisions/0002-aws-profile.md`` §1 says how each maps to a local file
system and to S3. Keys are relative to the profile's root ("lake/gps_data/...",
"checkpoints/lake/..."), always with "/" separators, so the same commit log runs on both.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import pyarrow.fs as pafs

if TYPE_CHECKING:
    import boto3


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object (file): its key relative to the store's root, size in bytes and etag."""

    key: str
    size: int
    etag: str = ""


@dataclass(frozen=True)
class StoreTarget:
    """A store as a Spark task on an executor writes into it: a local folder, or an S3 bucket (and prefix)
    with its region and endpoint. No credentials: on S3 the task signs with its own AWS default chain
    (an executor's instance role on AWS; the environment the lab's executors inherit here)."""

    root: str  # an absolute folder, or bucket[/prefix]
    s3_region: str = ""  # "" for a local folder
    s3_endpoint: str = ""  # scheme://host[:port] of an S3 that is not AWS's own (moto), else ""

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """pyarrow's file system for the store and the root path in it (built where the task runs)."""
        if self.local:
            return pafs.LocalFileSystem(), self.root
        return pafs.S3FileSystem(**_s3_options(self.s3_region, self.s3_endpoint)), self.root

    @property
    def local(self) -> bool:
        return not self.s3_region


def _s3_options(region: str, endpoint: str) -> dict[str, Any]:
    """pyarrow's S3FileSystem options for a region and an endpoint ('' for AWS's own)."""
    options: dict[str, Any] = {"region": region}
    if endpoint:
        parts = urlsplit(endpoint)
        options.update(scheme=parts.scheme or "https", endpoint_override=parts.netloc + parts.path.rstrip("/"))
    return options


class LakeStore(Protocol):
    """The storage primitives of the lake's commit protocol (0002 §1, §7)."""

    def list(self, prefix: str, *, delimiter: str | None = None) -> list[ObjectInfo]:
        """Objects under a prefix, sorted by key; with delimiter '/', only the direct children
        (sub-prefixes are returned as ObjectInfo(key='<prefix>/<name>/', size=0))."""
        ...

    def get(self, key: str) -> bytes:
        """An object's bytes; FileNotFoundError if it does not exist."""
        ...

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Write an object whole (readers see all of it or nothing); with if_absent, FileExistsError
        if it exists."""
        ...

    def publish(self, src: str, dst: str, size: int) -> None:
        """Move a staged object to its lake key, atomically for readers and idempotently: a dst that
        already holds `size` bytes counts as done; src and dst both missing raises FileNotFoundError."""
        ...

    def delete(self, key: str) -> None:
        """Delete one object; a missing one is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under a prefix (a folder's rmtree)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """An object's info, None if it does not exist."""
        ...

    def arrow(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow file system and the root path in it, for datasets and Parquet footers."""
        ...

    def spark_uri(self, key: str) -> str:
        """The URI Spark writes or reads a key at: an absolute path, or s3a://bucket/prefix/key."""
        ...

    def target(self) -> StoreTarget:
        """The store as Spark's tasks write into it (:class:`StoreTarget`)."""
        ...

    def uri(self, key: str) -> str:
        """The URI people and other tools read a key at: an absolute path, or s3://bucket/prefix/key."""
        ...


class StoreError(RuntimeError):
    """The store cannot do what the lake asked, for a reason the message names (credentials, a bad key, ...)."""


def _check_key(key: str) -> str:
    """A key as the stores expect it: relative, '/'-separated, no empty, '.' or '..' parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"not a store key: {key!r} (relative, '/'-separated, no empty, '.' or '..' parts)")
    return key


def _check_prefix(prefix: str) -> str:
    """A folder-like prefix without its trailing '/'; '' is the store's root."""
    prefix = prefix.rstrip("/")
    return _check_key(prefix) if prefix else ""


def _sorted(objects: list[ObjectInfo]) -> list[ObjectInfo]:
    return sorted(objects, key=lambda o: o.key)


class LocalStore:
    """The lake on a local file system under ``root`` (the profile's data_dir): what the lab always did.

    A put is a temporary file, fsync and ``os.replace``; a publish is one ``os.replace``; so every
    file appears whole. Prefixes are folders.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def list(self, prefix: str, *, delimiter: str | None = None) -> list[ObjectInfo]:
        """Files under a folder, sorted by key; with delimiter '/', its files and sub-folders ('<key>/')."""
        if delimiter not in (None, "/"):
            raise StoreError(f"LocalStore lists with delimiter '/' or none, not {delimiter!r}")
        prefix = _check_prefix(prefix)
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        found: list[ObjectInfo] = []
        if delimiter:
            with os.scandir(base) as entries:
                for entry in entries:
                    key = f"{prefix}/{entry.name}" if prefix else entry.name
                    if entry.is_dir():
                        found.append(ObjectInfo(f"{key}/", 0))
                    elif entry.is_file():
                        found.append(ObjectInfo(key, entry.stat().st_size))
        else:
            for folder, _, names in os.walk(base):
                for name in names:
                    path = Path(folder) / name
                    if path.is_file():
                        found.append(ObjectInfo(path.relative_to(self.root).as_posix(), path.stat().st_size))
        return _sorted(found)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Temporary file, fsync, then os.replace (or, with if_absent, os.link, which fails if the file exists)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a unique temporary name for conditional puts: they are the ones two writers may race on
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp" if if_absent else f".{path.name}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not if_absent:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{path} exists already") from None
        finally:
            tmp.unlink()

    def publish(self, src: str, dst: str, size: int) -> None:
        """One os.replace; a missing src whose dst holds `size` bytes (size < 0: not recorded) is done."""
        source, target = self._path(src), self._path(dst)
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            return
        if not target.is_file():
            raise FileNotFoundError(f"neither {source} nor {target} exists")
        held = target.stat().st_size
        if size >= 0 and held != size:
            raise FileExistsError(f"{target} holds {held} bytes, not the {size} bytes staged as {source}")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """rmtree of the folder (never of the root: an empty prefix is refused)."""
        if not _check_prefix(prefix):
            raise StoreError("delete_prefix refuses the store's root: name a folder")
        shutil.rmtree(self._path(_check_prefix(prefix)), ignore_errors=True)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, stat.st_size) if path.is_file() else None

    def arrow(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), str(self.root)

    def target(self) -> StoreTarget:
        return StoreTarget(str(self.root.resolve()))

    def spark_uri(self, key: str) -> str:
        return str(self._path(key))

    def uri(self, key: str) -> str:
        return str(self._path(key))


#: CopyObject copies up to 5 GiB in one atomic request; larger objects need a multipart copy.
MAX_COPY_BYTES = 5 * 1024**3
#: Attempts of a conditional write that S3 answers with 409 ConditionalRequestConflict (a concurrent
#: write to the same key was in flight; S3's documentation says to retry).
CONFLICT_ATTEMPTS = 5
#: DeleteObjects takes at most 1000 keys per request.
DELETE_OBJECTS_MAX_KEYS = 1000


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


#: Error codes of an object that does not exist (HeadObject answers a bare 404).
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_PRECONDITION = frozenset({"PreconditionFailed"})


class S3Store:
    """The lake under ``s3://bucket/prefix`` through boto3 (0002 §1): atomic PUTs, conditional copies.

    Every object appears whole (S3 never adds partial objects); a publish is a CopyObject with
    ``If-None-Match: *`` to the deterministic key, then a DeleteObject of the staged one; a 412, or
    a staged object already gone, counts as done when the lake's object has the manifest's size.
    The endpoint is boto3's (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` or the config file), so
    the same code runs on AWS and on a moto server.
    """

    def __init__(self, bucket: str, prefix: str = "", boto3_session: boto3.Session | None = None) -> None:
        import boto3  # noqa: PLC0415 - the `aws` extra: the lab imports without it

        if not bucket:
            raise StoreError("S3Store needs a bucket name (parameter s3_bucket)")
        self.bucket = bucket
        self.prefix = _check_prefix(prefix.strip("/"))
        self.session = boto3_session or boto3.Session()
        self.client = self.session.client("s3")  # clients are thread-safe; the publisher thread shares it

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def list(self, prefix: str, *, delimiter: str | None = None) -> list[ObjectInfo]:
        """ListObjectsV2 of a folder-like prefix, every page; with delimiter, sub-prefixes end in '/'."""
        prefix = _check_prefix(prefix)
        folder = f"{self._key(prefix)}/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": folder}
        if delimiter:
            args["Delimiter"] = delimiter
        found: list[ObjectInfo] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(**args):
            found += [
                ObjectInfo(self._relative(o["Key"]), o["Size"], o.get("ETag", "").strip('"'))
                for o in page.get("Contents", [])
            ]
            found += [ObjectInfo(self._relative(p["Prefix"]), 0) for p in page.get("CommonPrefixes", [])]
        return _sorted(found)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError  # noqa: PLC0415 - the `aws` extra

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise FileNotFoundError(f"{self.uri(key)} does not exist") from None
            raise

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """One PutObject; with if_absent, ``If-None-Match: *`` and a 412 becomes FileExistsError."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_absent:
            args["IfNoneMatch"] = "*"
        if self._conditionally(self.client.put_object, args, _PRECONDITION):
            raise FileExistsError(f"{self.uri(key)} exists already")

    def _conditionally(self, call: Any, args: dict[str, Any], refusals: frozenset[str]) -> str:
        """Run a write: '' when done, or the error code when S3 refused it for one of the expected reasons;
        a 409 ConditionalRequestConflict (a concurrent conditional write) is retried, anything else raised."""
        from botocore.exceptions import ClientError  # noqa: PLC0415 - the `aws` extra

        attempt = 0
        while True:
            try:
                call(**args)
                return ""
            except ClientError as exc:
                code = _error_code(exc)
                if code in refusals:
                    return code
                attempt += 1
                if code != "ConditionalRequestConflict" or attempt >= CONFLICT_ATTEMPTS:
                    raise
                time.sleep(0.1 * 2**attempt)

    def publish(self, src: str, dst: str, size: int) -> None:
        """CopyObject(dst, If-None-Match '*') then DeleteObject(src); see the class docstring for retries."""
        if size > MAX_COPY_BYTES:
            raise StoreError(f"{self.uri(src)} has {size} bytes: a single CopyObject copies at most 5 GiB")
        refused = self._conditionally(
            self.client.copy_object,
            {
                "Bucket": self.bucket,
                "Key": self._key(dst),
                "IfNoneMatch": "*",
                "CopySource": {"Bucket": self.bucket, "Key": self._key(src)},
            },
            _PRECONDITION | _MISSING,
        )
        if refused:  # dst exists (412), or src is gone: done if dst is the staged object
            held = self.head(dst)
            if held is None:
                raise FileNotFoundError(f"neither {self.uri(src)} nor {self.uri(dst)} exists")
            if size < 0:
                raise StoreError(f"{self.uri(dst)} exists and the manifest recorded no size to check it against")
            if held.size != size:
                raise FileExistsError(
                    f"{self.uri(dst)} holds {held.size} bytes, not the {size} bytes staged as {self.uri(src)}"
                )
        self.delete(src)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        """List the prefix, then DeleteObjects in chunks of ``DELETE_OBJECTS_MAX_KEYS``."""
        prefix = _check_prefix(prefix)
        if not prefix:
            raise StoreError("delete_prefix refuses the store's root: name a folder")
        keys = [self._key(o.key) for o in self.list(prefix)]
        for start in range(0, len(keys), DELETE_OBJECTS_MAX_KEYS):
            chunk = keys[start : start + DELETE_OBJECTS_MAX_KEYS]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise StoreError(
                    f"deleting under {self.uri(prefix)} failed for {len(errors)} objects, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415 - the `aws` extra

        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return None
            raise
        return ObjectInfo(key, answer["ContentLength"], answer.get("ETag", "").strip('"'))

    def endpoint_url(self) -> str | None:
        """The S3 endpoint boto3 was configured with (environment or config file), None for AWS's own."""
        from botocore.config import Config  # noqa: PLC0415 - the `aws` extra

        default = self.session.client("s3", config=Config(ignore_configured_endpoint_urls=True)).meta.endpoint_url
        configured = self.client.meta.endpoint_url
        return None if configured == default else configured

    def arrow(self) -> tuple[pafs.FileSystem, str]:
        """pyarrow's S3FileSystem with the session's region, its credentials frozen now, and boto3's endpoint.

        pyarrow cannot take a boto3 session, so temporary credentials are copied: build a new
        file system before they expire (0002 §5).
        """
        credentials = self.session.get_credentials()
        if credentials is None:
            raise StoreError(
                "boto3 found no AWS credentials (environment, profile, SSO or instance role) for "
                f"s3://{self.bucket}: pyarrow cannot read the lake without them"
            )
        frozen = credentials.get_frozen_credentials()
        options = _s3_options(self.client.meta.region_name, self.endpoint_url() or "")
        options.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
        return pafs.S3FileSystem(**options), self._root()

    def spark_uri(self, key: str) -> str:
        return f"s3a://{self.bucket}/{self._key(key)}"

    def _root(self) -> str:
        """bucket/prefix: the store's root as pyarrow names it."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def target(self) -> StoreTarget:
        return StoreTarget(self._root(), self.client.meta.region_name, self.endpoint_url() or "")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"
