"""AWS sessions for the lab: credentials from the default chain (never from params), one STS call per key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # boto3 is the `aws` extra: the lab imports without it
    import boto3


def session(region: str = "", boto3_session: boto3.Session | None = None) -> boto3.Session:
    """The given session, or a new one from the default credential chain in ``region``."""
    if boto3_session is not None:
        return boto3_session
    import boto3  # noqa: PLC0415 - the `aws` extra: the lab imports without it

    return boto3.Session(region_name=region or None)


_ACCOUNTS: dict[tuple[str, str], str] = {}


def caller_account(boto3_session: boto3.Session) -> str:
    """The 12-digit account of the credentials in use: one STS call per access key and endpoint, not
    one per store or reader that fills in a profile's names."""
    sts = boto3_session.client("sts")
    credentials = boto3_session.get_credentials()
    key = (credentials.get_frozen_credentials().access_key if credentials else "", sts.meta.endpoint_url)
    if key not in _ACCOUNTS:
        _ACCOUNTS[key] = str(sts.get_caller_identity()["Account"])
    return _ACCOUNTS[key]


def endpoint(service: str, environ: Mapping[str, str] | None = None) -> str:
    """The endpoint the environment names for an AWS service (``AWS_ENDPOINT_URL_S3``, ``..._GLUE``, else
    ``AWS_ENDPOINT_URL``), as botocore reads it: moto in the tests, any compatible store; empty for real
    AWS, where the SDKs derive it from the region. What the lab's JVM engines (Spark's S3A, Trino) are told."""
    env = os.environ if environ is None else environ
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return ""
    return (env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL") or "").strip()
