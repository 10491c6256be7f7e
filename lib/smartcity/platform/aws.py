"""AWS sessions for the lab: credentials from the default chain (never from params), one STS call per key."""

from __future__ import annotations

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
