"""What the aws profile's resources are called and where they live: bucket, prefixes, IAM names, ARNs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smartcity.params import Params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3


CREATED, FOUND, UPDATED = "created", "found", "updated"
DELETED, ABSENT, KEPT = "deleted", "absent", "kept"
NOT_CREATED = "not created"
ROOT_TAG = "smartcity:root"
COPY_ROLE, CRAWLER_ROLE, RUNNER_POLICY = (
    "iam role (redshift copy)",
    "iam role (glue crawler)",
    "iam policy (lab runner)",
)
POLICY_VERSION = "2012-10-17"
_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


class AwsError(Exception):
    """A provisioning or teardown step cannot go on; the message says which resource and why."""


class TeardownRefused(AwsError):
    """Teardown would delete data (objects, Glue tables) and was not confirmed with --yes."""


@dataclass(frozen=True)
class Row:
    """One line of the report: a resource, its name or ARN, and what happened to it."""

    resource: str
    name: str
    status: str
    note: str = ""


def region_partition(region: str) -> str:
    """The ARN partition of a region: aws-cn for China, aws-us-gov for GovCloud, else aws."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class Layout:
    """Where this profile's resources live: bucket, key prefix, Athena result prefix, IAM names."""

    bucket: str
    prefix: str  # key prefix without slashes at either end, e.g. "smartcity"
    results_key: str  # key prefix of Athena's results in the bucket, ending in "/"
    region: str
    partition: str

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}"

    def object_arn(self, key_prefix: str) -> str:
        return f"{self.bucket_arn}/{key_prefix}*"

    @property
    def lab_keys(self) -> list[str]:
        """Key prefixes the lab reads and writes: P/, plus Athena's results if they lie elsewhere."""
        keys = [f"{self.prefix}/"]
        if not self.results_key.startswith(keys[0]):
            keys.append(self.results_key)
        return keys

    @property
    def stem(self) -> str:
        """The prefix as an IAM name part (IAM names allow letters, digits and +=,.@_-)."""
        return re.sub(r"[^\w+=,.@-]", "-", self.prefix)


def layout(cfg: Params) -> Layout:
    """The bucket and prefixes of a profile, refusing what provisioning cannot scope a policy to."""
    if cfg.pipeline.lake_storage != "s3":
        raise AwsError(
            f"lake_storage is {cfg.pipeline.lake_storage!r}: `smartcity aws` provisions the S3 lake only "
            "(set lake_storage: s3, s3_bucket and aws_region)"
        )
    if "{" in cfg.aws.s3_bucket or "{" in cfg.aws.athena_output:
        raise AwsError(
            f"s3_bucket {cfg.aws.s3_bucket!r} still holds a template: fill it with config.fill_account first"
        )
    prefix = cfg.aws.s3_prefix.strip("/")
    if not prefix:
        raise AwsError("s3_prefix is empty: the lab's policies are scoped to a key prefix, name one (e.g. smartcity)")
    bucket, results_key = _split_s3(cfg.aws.athena_results)
    if bucket != cfg.aws.s3_bucket:
        raise AwsError(
            f"athena_output {cfg.aws.athena_results!r} is outside bucket {cfg.aws.s3_bucket!r}: provisioning "
            "manages one bucket; leave athena_output empty or point it into that bucket"
        )
    if not results_key:
        raise AwsError(f"athena_output {cfg.aws.athena_results!r} is a whole bucket: name a prefix (…/athena-results/)")
    return Layout(
        bucket=bucket,
        prefix=prefix,
        results_key=results_key.rstrip("/") + "/",
        region=cfg.aws.region,
        partition=region_partition(cfg.aws.region),
    )


def _split_s3(url: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of an s3:// URL."""
    if not url.startswith("s3://"):
        raise AwsError(f"not an s3:// location: {url!r}")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def copy_role_name(cfg: Params) -> tuple[str, str]:
    """(path, name) of the COPY role: the one redshift_copy_role_arn names, else '<prefix>-redshift-copy'."""
    if cfg.warehouse.redshift_copy_role_arn and "{" not in cfg.warehouse.redshift_copy_role_arn:
        match = re.match(
            r"^arn:[\w-]+:iam::\d{12}:role(/(?:[\w+=,.@-]+/)*)([\w+=,.@-]+)$", cfg.warehouse.redshift_copy_role_arn
        )
        if not match:
            raise AwsError(f"redshift_copy_role_arn {cfg.warehouse.redshift_copy_role_arn!r} is not an IAM role ARN")
        return match.group(1), match.group(2)
    return "/", _checked_name(f"{layout(cfg).stem}-redshift-copy")


def crawler_role_name(cfg: Params) -> str:
    """Name of the Glue crawler role (only with glue_crawler)."""
    return _checked_name(f"{layout(cfg).stem}-glue-crawler")


def runner_policy_name(cfg: Params) -> str:
    """Name of the customer managed policy the user attaches to whoever runs the lab."""
    return _checked_name(f"{layout(cfg).stem}-lab-runner")


def runner_policy_arn(cfg: Params, account: str) -> str:
    return f"arn:{region_partition(cfg.aws.region)}:iam::{account}:policy/{runner_policy_name(cfg)}"


def _checked_name(name: str) -> str:
    if not _IAM_NAME.match(name):
        raise AwsError(f"IAM name {name!r} is longer than 64 characters: choose a shorter s3_prefix")
    return name


def glue_arns(cfg: Params, account: str) -> list[str]:
    """The catalog, database and table ARNs of the profile's Glue database (all three are checked by Glue)."""
    base = f"arn:{region_partition(cfg.aws.region)}:glue:{cfg.aws.region}:{account}"
    return [f"{base}:catalog", f"{base}:database/{cfg.aws.glue_database}", f"{base}:table/{cfg.aws.glue_database}/*"]


def crawler_arn(cfg: Params, account: str) -> str:
    """The optional Glue crawler's ARN (named as smartcity.catalog.glue.GlueCatalog names it)."""
    return f"arn:{region_partition(cfg.aws.region)}:glue:{cfg.aws.region}:{account}:crawler/{cfg.aws.crawler_name(cfg.profile)}"


def workgroup_arn(cfg: Params, account: str) -> str:
    return (
        f"arn:{region_partition(cfg.aws.region)}:athena:{cfg.aws.region}:{account}:workgroup/{cfg.aws.athena_workgroup}"
    )


def error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def canonical(document: Any) -> str:
    """A policy document as comparable text (IAM returns the JSON it was given, keys in any order)."""
    if isinstance(document, str):
        document = json.loads(document)
    return json.dumps(document, sort_keys=True)


def session_of(cfg: Params, boto3_session: boto3.Session | None) -> boto3.Session:
    """The given session, or one in the profile's region from the default credential chain."""
    import boto3  # noqa: PLC0415 - the `aws` extra: the CLI imports this module without it

    return boto3_session or boto3.Session(region_name=cfg.aws.region)


def tags_of(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def check_owner(kind: str, name: str, tags: dict[str, str], root: str) -> None:
    owner = tags.get(ROOT_TAG)
    if owner is not None and owner != root:
        raise AwsError(
            f"{kind} {name!r} belongs to another lab ({ROOT_TAG}={owner}, this one is {root}): "
            "choose another s3_prefix (IAM names are per account)"
        )


def paged(pages: Any, key: str) -> list[Any]:
    return [item for page in pages for item in page.get(key, [])]
