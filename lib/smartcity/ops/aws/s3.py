"""The bucket of the aws profile: Block Public Access, SSE-S3, this prefix's lifecycle rules; deleting its objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from smartcity.ops.aws.names import (
    ABSENT,
    CREATED,
    DELETED,
    FOUND,
    KEPT,
    UPDATED,
    AwsError,
    Layout,
    Row,
    error_code,
    layout,
    session_of,
)
from smartcity.params import Params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3

RESULTS_DAYS = 7  # Athena results expire after a week (0002 §3)

MULTIPART_DAYS = 1  # incomplete multipart uploads are aborted after a day (0002 §8)


def lifecycle_rules(cfg: Params) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules for this prefix: abort stale multipart uploads, expire Athena results."""
    where = layout(cfg)
    return [
        {
            "ID": f"smartcity:{where.prefix}:abort-multipart",
            "Status": "Enabled",
            "Filter": {"Prefix": f"{where.prefix}/"},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": MULTIPART_DAYS},
        },
        {
            "ID": f"smartcity:{where.prefix}:expire-athena-results",
            "Status": "Enabled",
            "Filter": {"Prefix": where.results_key},
            "Expiration": {"Days": RESULTS_DAYS},
        },
    ]


def bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket"):
            return False
        if error_code(exc) == "403":
            raise AwsError(
                f"bucket {bucket!r} exists but these credentials cannot use it (403): it belongs to another "
                "account, or the caller lacks s3:ListBucket on it; choose another s3_bucket"
            ) from None
        raise
    return True


def ensure_bucket(cfg: Params, boto3_session: boto3.Session | None = None) -> list[Row]:
    """The bucket with Block Public Access, SSE-S3 and this prefix's lifecycle rules; one row each."""
    session = session_of(cfg, boto3_session)
    s3 = session.client("s3")
    where = layout(cfg)
    created = not bucket_exists(s3, where.bucket) and _create_bucket(s3, where)
    if not created:
        _check_bucket_region(s3, where)
    rows = [Row("s3 bucket", f"s3://{where.bucket}", CREATED if created else FOUND)]
    for resource, ensure in (
        ("s3 block public access", _ensure_public_access_block),
        ("s3 default encryption (SSE-S3)", _ensure_encryption),
        ("s3 lifecycle rules", lambda c, w: _ensure_lifecycle(c, w, lifecycle_rules(cfg))),
    ):
        changed = ensure(s3, where)
        rows.append(Row(resource, f"s3://{where.bucket}", CREATED if created else UPDATED if changed else FOUND))
    return rows


def _create_bucket(s3: Any, where: Layout) -> bool:
    """Create the bucket; False if it turned out to exist already (ours, created meanwhile)."""
    kwargs: dict[str, Any] = {"Bucket": where.bucket}
    if where.region != "us-east-1":  # us-east-1 rejects its own name as a LocationConstraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": where.region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if error_code(exc) == "BucketAlreadyOwnedByYou":
            return False
        if error_code(exc) == "BucketAlreadyExists":
            raise AwsError(
                f"bucket name {where.bucket!r} is taken by another account (names are global): choose another s3_bucket"
            ) from None
        raise
    return True


def _check_bucket_region(s3: Any, where: Layout) -> None:
    """A found bucket must be in aws_region: Redshift COPY needs the bucket in the database's region."""
    location = s3.get_bucket_location(Bucket=where.bucket).get("LocationConstraint") or "us-east-1"
    location = "eu-west-1" if location == "EU" else location  # the legacy name of eu-west-1
    if location != where.region:
        raise AwsError(
            f"bucket {where.bucket!r} is in {location}, but aws_region is {where.region}: set "
            f"aws_region: {location} or choose another bucket (Redshift COPY reads only its own region)"
        )


_BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _ensure_public_access_block(s3: Any, where: Layout) -> bool:
    try:
        current = s3.get_public_access_block(Bucket=where.bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if all(current.get(k) is True for k in _BLOCK_ALL):
        return False
    s3.put_public_access_block(Bucket=where.bucket, PublicAccessBlockConfiguration=_BLOCK_ALL)
    return True


def _ensure_encryption(s3: Any, where: Layout) -> bool:
    """SSE-S3 by default; a bucket found with SSE-KMS is switched, since the policies grant no kms actions."""
    try:
        rules = s3.get_bucket_encryption(Bucket=where.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if defaults and all(d.get("SSEAlgorithm") == "AES256" and not d.get("KMSMasterKeyID") for d in defaults):
        return False
    s3.put_bucket_encryption(
        Bucket=where.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return True


_RULE_PARTS = (
    "Status",
    "Filter",
    "Prefix",
    "Expiration",
    "Transitions",
    "NoncurrentVersionTransitions",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
)


def _same_rule(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _RULE_PARTS)


def _lifecycle(s3: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
    except ClientError as exc:
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        return []


def _ensure_lifecycle(s3: Any, where: Layout, wanted: list[dict[str, Any]]) -> bool:
    """Our rules in the bucket's lifecycle, leaving every other rule (another prefix's, the owner's) as it is."""
    current = _lifecycle(s3, where.bucket)
    by_id = {r.get("ID"): r for r in current}
    if all(w["ID"] in by_id and _same_rule(by_id[w["ID"]], w) for w in wanted):
        return False
    ours = {w["ID"] for w in wanted}
    rules = [r for r in current if r.get("ID") not in ours] + wanted
    s3.put_bucket_lifecycle_configuration(Bucket=where.bucket, LifecycleConfiguration={"Rules": rules})
    return True


def versions(s3: Any, bucket: str, prefix: str, limit: int | None = None) -> Iterator[dict[str, str]]:
    """Every object version and delete marker under a prefix (on an unversioned bucket: each object once)."""
    seen = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in (*page.get("Versions", []), *page.get("DeleteMarkers", [])):
            yield {"Key": item["Key"], "VersionId": item["VersionId"]}
            seen += 1
            if limit is not None and seen >= limit:
                return


def _delete_objects(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object (and version) under a prefix and abort its multipart uploads; how many objects."""
    deleted = 0
    batch: list[dict[str, str]] = []
    for item in versions(s3, bucket, prefix):
        batch.append(item)
        if len(batch) == 1000:  # DeleteObjects takes at most 1000 keys
            deleted += _delete_batch(s3, bucket, batch)
            batch = []
    if batch:
        deleted += _delete_batch(s3, bucket, batch)
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return deleted


def _delete_batch(s3: Any, bucket: str, batch: list[dict[str, str]]) -> int:
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    if answer.get("Errors"):
        first = answer["Errors"][0]
        raise AwsError(
            f"could not delete s3://{bucket}/{first['Key']}: {first['Code']} {first.get('Message', '')} "
            f"({len(answer['Errors'])} objects failed)"
        )
    return len(batch)


def teardown_bucket(cfg: Params, s3: Any, where: Layout, keep_bucket: bool) -> list[Row]:
    """Delete our objects, then the bucket if nothing else is in it, else just our lifecycle rules."""
    if not bucket_exists(s3, where.bucket):
        return [Row("s3 objects", f"{where.root}/", ABSENT), Row("s3 bucket", f"s3://{where.bucket}", ABSENT)]
    rows = []
    for key in where.lab_keys:
        count = _delete_objects(s3, where.bucket, key)
        rows.append(
            Row(
                "s3 objects",
                f"s3://{where.bucket}/{key}",
                DELETED if count else ABSENT,
                f"{count} object(s)" if count else "",
            )
        )
    others = next(versions(s3, where.bucket, "", limit=1), None)
    if keep_bucket or others:
        why = "--keep-bucket" if keep_bucket else "it holds objects outside this lab's prefixes"
        rows.append(_remove_lifecycle_rules(cfg, s3, where))
        rows.append(Row("s3 bucket", f"s3://{where.bucket}", KEPT, why))
        return rows
    s3.delete_bucket(Bucket=where.bucket)
    rows.append(Row("s3 bucket", f"s3://{where.bucket}", DELETED))
    return rows


def _remove_lifecycle_rules(cfg: Params, s3: Any, where: Layout) -> Row:
    current = _lifecycle(s3, where.bucket)
    ours = {r["ID"] for r in lifecycle_rules(cfg)}
    rest = [r for r in current if r.get("ID") not in ours]
    if len(rest) == len(current):
        return Row("s3 lifecycle rules", f"s3://{where.bucket}", ABSENT)
    if rest:
        s3.put_bucket_lifecycle_configuration(Bucket=where.bucket, LifecycleConfiguration={"Rules": rest})
    else:
        s3.delete_bucket_lifecycle(Bucket=where.bucket)
    return Row("s3 lifecycle rules", f"s3://{where.bucket}", DELETED)
