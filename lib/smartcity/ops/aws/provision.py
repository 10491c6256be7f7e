"""``smartcity aws provision | teardown``: the AWS resources of the aws profile, least privilege (0002 §8).

Provision creates, or finds and corrects, every resource the aws profile stands on: the bucket
(Block Public Access, SSE-S3, lifecycle rules), the Glue database, the enforced Athena workgroup,
the role Redshift COPYs with, the optional Glue crawler role and the lab-runner policy. It is
idempotent: a second run changes nothing and reports every resource as "found". Teardown deletes
what provision made and refuses to delete data without ``--yes``.

Redshift Serverless is not created here: moto 5.2.5 has no ``redshift-serverless`` backend (every
call answers 404 "Not yet implemented"), so the code could not be tested; provision prints the
exact ``aws redshift-serverless`` commands instead.

Policy documents come from pure functions (``runner_policy``, ``copy_role_policy``,
``crawler_role_policy``, ``trust_policy``) so tests and reviewers can read them without AWS.
IAM names are global to an account, so roles and the policy carry the tag ``smartcity:root`` =
``s3://bucket/prefix``; provision and teardown refuse to touch one tagged for another root.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartcity.params import Params, ParamsError, caller_account, fill_account, load_params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3

CREATED, FOUND, UPDATED = "created", "found", "updated"
DELETED, ABSENT, KEPT = "deleted", "absent", "kept"
NOT_CREATED = "not created"

ROOT_TAG = "smartcity:root"
COPY_ROLE, CRAWLER_ROLE, RUNNER_POLICY = "iam role (redshift copy)", "iam role (glue crawler)", "iam policy (lab runner)"
POLICY_VERSION = "2012-10-17"
ATHENA_PRIMARY = "primary"  # every account's default workgroup: it cannot be deleted
RESULTS_DAYS = 7  # Athena results expire after a week (0002 §3)
MULTIPART_DAYS = 1  # incomplete multipart uploads are aborted after a day (0002 §8)
MAX_POLICY_VERSIONS = 5  # IAM keeps at most five versions of a managed policy

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


@dataclass
class Provisioned:
    """What provision did, and what the user has to copy or do next."""

    rows: list[Row]
    copy_role_arn: str
    runner_policy_arn: str
    redshift_steps: list[str] = field(default_factory=list)
    params_current: bool = False  # the params file already names this role (directly or through '{account}')

    def params_lines(self) -> list[str]:
        """The params lines the user copies into the profile (provision prints them last)."""
        return [f'redshift_copy_role_arn: "{self.copy_role_arn}"']


# -- names and ARNs (pure) ---------------------------------------------------------------------------


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
    if cfg.lake_storage != "s3":
        raise AwsError(f"lake_storage is {cfg.lake_storage!r}: `smartcity aws` provisions the S3 lake only "
                       "(set lake_storage: s3, s3_bucket and aws_region)")
    if "{" in cfg.s3_bucket or "{" in cfg.athena_output:
        raise AwsError(f"s3_bucket {cfg.s3_bucket!r} still holds a template: fill it with config.fill_account first")
    prefix = cfg.s3_prefix.strip("/")
    if not prefix:
        raise AwsError("s3_prefix is empty: the lab's policies are scoped to a key prefix, name one (e.g. smartcity)")
    bucket, results_key = _split_s3(cfg.athena_results)
    if bucket != cfg.s3_bucket:
        raise AwsError(f"athena_output {cfg.athena_results!r} is outside bucket {cfg.s3_bucket!r}: provisioning "
                       "manages one bucket; leave athena_output empty or point it into that bucket")
    if not results_key:
        raise AwsError(f"athena_output {cfg.athena_results!r} is a whole bucket: name a prefix (…/athena-results/)")
    return Layout(bucket=bucket, prefix=prefix, results_key=results_key.rstrip("/") + "/",
                  region=cfg.aws_region, partition=region_partition(cfg.aws_region))


def _split_s3(url: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of an s3:// URL."""
    if not url.startswith("s3://"):
        raise AwsError(f"not an s3:// location: {url!r}")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def copy_role_name(cfg: Params) -> tuple[str, str]:
    """(path, name) of the COPY role: the one redshift_copy_role_arn names, else '<prefix>-redshift-copy'."""
    if cfg.redshift_copy_role_arn and "{" not in cfg.redshift_copy_role_arn:
        match = re.match(r"^arn:[\w-]+:iam::\d{12}:role(/(?:[\w+=,.@-]+/)*)([\w+=,.@-]+)$", cfg.redshift_copy_role_arn)
        if not match:
            raise AwsError(f"redshift_copy_role_arn {cfg.redshift_copy_role_arn!r} is not an IAM role ARN")
        return match.group(1), match.group(2)
    return "/", _checked_name(f"{layout(cfg).stem}-redshift-copy")


def crawler_role_name(cfg: Params) -> str:
    """Name of the Glue crawler role (only with glue_crawler)."""
    return _checked_name(f"{layout(cfg).stem}-glue-crawler")


def runner_policy_name(cfg: Params) -> str:
    """Name of the customer managed policy the user attaches to whoever runs the lab."""
    return _checked_name(f"{layout(cfg).stem}-lab-runner")


def runner_policy_arn(cfg: Params, account: str) -> str:
    return f"arn:{region_partition(cfg.aws_region)}:iam::{account}:policy/{runner_policy_name(cfg)}"


def _checked_name(name: str) -> str:
    if not _IAM_NAME.match(name):
        raise AwsError(f"IAM name {name!r} is longer than 64 characters: choose a shorter s3_prefix")
    return name


def glue_arns(cfg: Params, account: str) -> list[str]:
    """The catalog, database and table ARNs of the profile's Glue database (all three are checked by Glue)."""
    base = f"arn:{region_partition(cfg.aws_region)}:glue:{cfg.aws_region}:{account}"
    return [f"{base}:catalog", f"{base}:database/{cfg.glue_database}", f"{base}:table/{cfg.glue_database}/*"]


def crawler_arn(cfg: Params, account: str) -> str:
    """The optional Glue crawler's ARN (named as smartcity.catalog.GlueCatalog names it)."""
    from smartcity.catalog.crawler import crawler_name

    return f"arn:{region_partition(cfg.aws_region)}:glue:{cfg.aws_region}:{account}:crawler/{crawler_name(cfg)}"


def workgroup_arn(cfg: Params, account: str) -> str:
    return f"arn:{region_partition(cfg.aws_region)}:athena:{cfg.aws_region}:{account}:workgroup/{cfg.athena_workgroup}"


def _listing(where: Layout, key_prefixes: list[str], sid: str) -> dict[str, Any]:
    """s3:ListBucket on the bucket, only for listings under the given prefixes (the prefix itself, or below)."""
    prefixes = [p for k in key_prefixes for p in (k, f"{k}*")]
    return {"Sid": sid, "Effect": "Allow", "Action": "s3:ListBucket", "Resource": where.bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": prefixes}}}


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def trust_policy(service: str) -> dict[str, Any]:
    """A role's trust policy: only the given AWS service (redshift.amazonaws.com, glue.amazonaws.com) assumes it."""
    return _document({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def runner_policy(cfg: Params, account: str, redshift_workgroup_arn: str = "") -> dict[str, Any]:
    """What the lab's driver, notebooks and loader need (0002 §8): its prefix, its Glue database, its workgroup.

    Athena runs with the caller's Glue and S3 rights, so those cover the queries too. The Redshift
    statement is there only once the Serverless workgroup's ARN is known (its id is not its name).
    """
    where = layout(cfg)
    statements = [
        _listing(where, where.lab_keys, "ListLabPrefix"),
        {"Sid": "LocateBucket", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": where.bucket_arn},
        {"Sid": "LabObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": [where.object_arn(k) for k in where.lab_keys]},
        {"Sid": "GlueCatalog", "Effect": "Allow",
         "Action": ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:CreateTable", "glue:UpdateTable",
                    "glue:DeleteTable", "glue:GetPartition", "glue:GetPartitions", "glue:BatchCreatePartition",
                    "glue:BatchDeletePartition"],
         "Resource": glue_arns(cfg, account)},
        {"Sid": "AthenaWorkgroup", "Effect": "Allow",
         "Action": ["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
                    "athena:StopQueryExecution", "athena:GetWorkGroup"],
         "Resource": workgroup_arn(cfg, account)},
    ]
    if cfg.glue_crawler:
        statements.append({"Sid": "RunCrawler", "Effect": "Allow", "Action": ["glue:StartCrawler", "glue:GetCrawler"],
                           "Resource": crawler_arn(cfg, account)})
    if redshift_workgroup_arn:  # the warehouse finds its endpoint (GetWorkgroup), then signs in (GetCredentials)
        statements.append({"Sid": "RedshiftCredentials", "Effect": "Allow",
                           "Action": ["redshift-serverless:GetCredentials", "redshift-serverless:GetWorkgroup"],
                           "Resource": redshift_workgroup_arn})
    return _document(*statements)


def copy_role_policy(cfg: Params) -> dict[str, Any]:
    """The COPY role's inline policy: read the lake and the COPY manifests, nothing else."""
    where = layout(cfg)
    keys = [f"{where.prefix}/lake/", f"{where.prefix}/warehouse/manifests/"]
    return _document(
        {"Sid": "ReadLakeAndManifests", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [where.object_arn(k) for k in keys]},
        _listing(where, keys, "ListLakeAndManifests"),
        {"Sid": "LocateBucket", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": where.bucket_arn},
    )


def crawler_role_policy(cfg: Params, account: str) -> dict[str, Any]:
    """The Glue crawler role's inline policy: read the lake, update the lab's tables, write crawler logs.

    The exact set a crawler with a catalog target needs is unverified (0002 §8); the log actions are
    those of AWS's own AWSGlueServiceRole, narrowed to the crawlers' log group.
    """
    where = layout(cfg)
    lake = f"{where.prefix}/lake/"
    logs = f"arn:{where.partition}:logs:{cfg.aws_region}:{account}:log-group:/aws-glue/crawlers*"
    return _document(
        {"Sid": "ReadLake", "Effect": "Allow", "Action": "s3:GetObject", "Resource": where.object_arn(lake)},
        _listing(where, [lake], "ListLake"),
        {"Sid": "LocateBucket", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": where.bucket_arn},
        {"Sid": "UpdateLabTables", "Effect": "Allow",
         "Action": ["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable", "glue:GetPartition", "glue:GetPartitions",
                    "glue:BatchCreatePartition", "glue:BatchGetPartition"],
         "Resource": glue_arns(cfg, account)},
        {"Sid": "CrawlerLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], "Resource": logs},
    )


def lifecycle_rules(cfg: Params) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules for this prefix: abort stale multipart uploads, expire Athena results."""
    where = layout(cfg)
    return [
        {"ID": f"smartcity:{where.prefix}:abort-multipart", "Status": "Enabled", "Filter": {"Prefix": f"{where.prefix}/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": MULTIPART_DAYS}},
        {"ID": f"smartcity:{where.prefix}:expire-athena-results", "Status": "Enabled",
         "Filter": {"Prefix": where.results_key}, "Expiration": {"Days": RESULTS_DAYS}},
    ]


def redshift_steps(cfg: Params, copy_role_arn: str) -> list[str]:
    """The commands that create the Redshift Serverless namespace, workgroup and usage limit by hand.

    The usage limit is one hour of base capacity a day (redshift_base_rpu RPU-hours); past it the
    workgroup is deactivated, so a forgotten BI session cannot run up a bill.
    """
    region, name = cfg.aws_region, cfg.redshift_workgroup
    return [
        f"aws redshift-serverless create-namespace --region {region} --namespace-name {name} "
        f"--db-name {cfg.redshift_database} --iam-roles {copy_role_arn} --default-iam-role-arn {copy_role_arn}",
        f"aws redshift-serverless create-workgroup --region {region} --workgroup-name {name} "
        f"--namespace-name {name} --base-capacity {cfg.redshift_base_rpu}",
        f"WORKGROUP_ARN=$(aws redshift-serverless get-workgroup --region {region} --workgroup-name {name} "
        "--query workgroup.workgroupArn --output text)",
        f"aws redshift-serverless create-usage-limit --region {region} --resource-arn $WORKGROUP_ARN "
        f"--usage-type serverless-compute --amount {cfg.redshift_base_rpu} --period daily --breach-action deactivate",
    ]


# -- provision -------------------------------------------------------------------------------------


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _canonical(document: Any) -> str:
    """A policy document as comparable text (IAM returns the JSON it was given, keys in any order)."""
    if isinstance(document, str):
        document = json.loads(document)
    return json.dumps(document, sort_keys=True)


def _session(cfg: Params, boto3_session: boto3.Session | None) -> boto3.Session:
    import boto3

    return boto3_session or boto3.Session(region_name=cfg.aws_region)


def _bucket_exists(s3: Any, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _error_code(exc) in ("404", "NoSuchBucket"):
            return False
        if _error_code(exc) == "403":
            raise AwsError(f"bucket {bucket!r} exists but these credentials cannot use it (403): it belongs to another "
                           "account, or the caller lacks s3:ListBucket on it; choose another s3_bucket") from None
        raise
    return True


def ensure_bucket(cfg: Params, boto3_session: boto3.Session | None = None) -> list[Row]:
    """The bucket with Block Public Access, SSE-S3 and this prefix's lifecycle rules; one row each."""
    session = _session(cfg, boto3_session)
    s3 = session.client("s3")
    where = layout(cfg)
    created = not _bucket_exists(s3, where.bucket) and _create_bucket(s3, where)
    if not created:
        _check_bucket_region(s3, where)
    rows = [Row("s3 bucket", f"s3://{where.bucket}", CREATED if created else FOUND)]
    for resource, ensure in (("s3 block public access", _ensure_public_access_block),
                             ("s3 default encryption (SSE-S3)", _ensure_encryption),
                             ("s3 lifecycle rules", lambda c, w: _ensure_lifecycle(c, w, lifecycle_rules(cfg)))):
        changed = ensure(s3, where)
        rows.append(Row(resource, f"s3://{where.bucket}", CREATED if created else UPDATED if changed else FOUND))
    return rows


def _create_bucket(s3: Any, where: Layout) -> bool:
    """Create the bucket; False if it turned out to exist already (ours, created meanwhile)."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": where.bucket}
    if where.region != "us-east-1":  # us-east-1 rejects its own name as a LocationConstraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": where.region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) == "BucketAlreadyOwnedByYou":
            return False
        if _error_code(exc) == "BucketAlreadyExists":
            raise AwsError(f"bucket name {where.bucket!r} is taken by another account (names are global): "
                           "choose another s3_bucket") from None
        raise
    return True


def _check_bucket_region(s3: Any, where: Layout) -> None:
    """A found bucket must be in aws_region: Redshift COPY needs the bucket in the database's region."""
    location = s3.get_bucket_location(Bucket=where.bucket).get("LocationConstraint") or "us-east-1"
    location = "eu-west-1" if location == "EU" else location  # the legacy name of eu-west-1
    if location != where.region:
        raise AwsError(f"bucket {where.bucket!r} is in {location}, but aws_region is {where.region}: set "
                       f"aws_region: {location} or choose another bucket (Redshift COPY reads only its own region)")


_BLOCK_ALL = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def _ensure_public_access_block(s3: Any, where: Layout) -> bool:
    from botocore.exceptions import ClientError

    try:
        current = s3.get_public_access_block(Bucket=where.bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if all(current.get(k) is True for k in _BLOCK_ALL):
        return False
    s3.put_public_access_block(Bucket=where.bucket, PublicAccessBlockConfiguration=_BLOCK_ALL)
    return True


def _ensure_encryption(s3: Any, where: Layout) -> bool:
    """SSE-S3 by default; a bucket found with SSE-KMS is switched, since the policies grant no kms actions."""
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=where.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if defaults and all(d.get("SSEAlgorithm") == "AES256" and not d.get("KMSMasterKeyID") for d in defaults):
        return False
    s3.put_bucket_encryption(Bucket=where.bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    return True


_RULE_PARTS = ("Status", "Filter", "Prefix", "Expiration", "Transitions", "NoncurrentVersionTransitions",
               "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")


def _same_rule(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _RULE_PARTS)


def _lifecycle(s3: Any, bucket: str) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
    except ClientError as exc:
        if _error_code(exc) != "NoSuchLifecycleConfiguration":
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


def ensure_glue_database(cfg: Params, boto3_session: boto3.Session | None = None) -> Row:
    """The Glue database the catalog registers tables in."""
    session = _session(cfg, boto3_session)
    glue = session.client("glue")
    try:
        glue.get_database(Name=cfg.glue_database)
        return Row("glue database", cfg.glue_database, FOUND)
    except glue.exceptions.EntityNotFoundException:
        pass
    glue.create_database(DatabaseInput={"Name": cfg.glue_database,
                                        "Description": f"smart-city lab tables of {layout(cfg).root}"})
    return Row("glue database", cfg.glue_database, CREATED)


def _workgroup_names(athena: Any) -> set[str]:
    names: set[str] = set()
    token: dict[str, str] = {}
    while True:
        page = athena.list_work_groups(**token)
        names.update(w["Name"] for w in page.get("WorkGroups", []))
        if not page.get("NextToken"):
            return names
        token = {"NextToken": page["NextToken"]}


def ensure_athena_workgroup(cfg: Params, boto3_session: boto3.Session | None = None) -> Row:
    """The workgroup with its result location enforced, so no query falls back to a bucket of its own."""
    session = _session(cfg, boto3_session)
    athena = session.client("athena")
    output = cfg.athena_results
    if cfg.athena_workgroup not in _workgroup_names(athena):
        athena.create_work_group(
            Name=cfg.athena_workgroup, Description=f"smart-city lab queries; results in {output}",
            Configuration={"ResultConfiguration": {"OutputLocation": output}, "EnforceWorkGroupConfiguration": True})
        return Row("athena workgroup", cfg.athena_workgroup, CREATED)
    config = athena.get_work_group(WorkGroup=cfg.athena_workgroup)["WorkGroup"].get("Configuration", {})
    if (config.get("ResultConfiguration", {}).get("OutputLocation") == output
            and config.get("EnforceWorkGroupConfiguration") is True):
        return Row("athena workgroup", cfg.athena_workgroup, FOUND)
    athena.update_work_group(WorkGroup=cfg.athena_workgroup, ConfigurationUpdates={
        "EnforceWorkGroupConfiguration": True, "ResultConfigurationUpdates": {"OutputLocation": output}})
    return Row("athena workgroup", cfg.athena_workgroup, UPDATED)


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _check_owner(kind: str, name: str, tags: dict[str, str], root: str) -> None:
    owner = tags.get(ROOT_TAG)
    if owner is not None and owner != root:
        raise AwsError(f"{kind} {name!r} belongs to another lab ({ROOT_TAG}={owner}, this one is {root}): "
                       "choose another s3_prefix (IAM names are per account)")


def _claim(kind: str, name: str, tags: list[dict[str, str]] | None, root: str,
           tag: Callable[[list[dict[str, str]]], Any]) -> bool:
    """Refuse a found IAM resource of another lab; tag an untagged one as ours (True: it was changed)."""
    _check_owner(kind, name, _tags(tags), root)
    if ROOT_TAG in _tags(tags):
        return False
    tag([{"Key": ROOT_TAG, "Value": root}])
    return True


def ensure_role(cfg: Params, resource: str, path: str, name: str, service: str, policy: dict[str, Any],
                boto3_session: boto3.Session | None = None) -> tuple[Row, str]:
    """A role trusting one service, with one inline policy (named like the role); (row, role ARN)."""
    session = _session(cfg, boto3_session)
    iam = session.client("iam")
    root = layout(cfg).root
    trust = trust_policy(service)
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(Path=path, RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                               Description=f"smart-city lab: {service} reads {root}",
                               Tags=[{"Key": ROOT_TAG, "Value": root}])["Role"]
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        return Row(resource, role["Arn"], CREATED), role["Arn"]
    changed = _claim("role", name, role.get("Tags"), root, lambda tags: iam.tag_role(RoleName=name, Tags=tags))
    if _canonical(role["AssumeRolePolicyDocument"]) != _canonical(trust):
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        changed = True
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        current = None
    if current is None or _canonical(current) != _canonical(policy):
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        changed = True
    return Row(resource, role["Arn"], UPDATED if changed else FOUND), role["Arn"]


def _redshift_arn_in(document: dict[str, Any]) -> str:
    """The Serverless workgroup ARN an existing runner policy grants GetCredentials on ('' if none)."""
    for statement in document.get("Statement", []):
        if statement.get("Sid") == "RedshiftCredentials":
            return str(statement.get("Resource", ""))
    return ""


def ensure_runner_policy(cfg: Params, account: str, redshift_workgroup_arn: str = "",
                         boto3_session: boto3.Session | None = None) -> Row:
    """The customer managed lab-runner policy; a changed document becomes its new default version.

    A Redshift workgroup ARN given once is kept by later runs that do not repeat it.
    """
    session = _session(cfg, boto3_session)
    iam = session.client("iam")
    root = layout(cfg).root
    name = runner_policy_name(cfg)
    arn = runner_policy_arn(cfg, account)
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        document = runner_policy(cfg, account, redshift_workgroup_arn)
        iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document),
                          Description=f"smart-city lab runner: read/write {root}/, its Glue database and Athena workgroup",
                          Tags=[{"Key": ROOT_TAG, "Value": root}])
        return Row(RUNNER_POLICY, arn, CREATED)
    changed = _claim("policy", name, policy.get("Tags"), root, lambda tags: iam.tag_policy(PolicyArn=arn, Tags=tags))
    current = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"]
    current = json.loads(current) if isinstance(current, str) else current
    document = runner_policy(cfg, account, redshift_workgroup_arn or _redshift_arn_in(current))
    if _canonical(current) != _canonical(document):
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        if len(versions) >= MAX_POLICY_VERSIONS and old:
            iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
        changed = True
    return Row(RUNNER_POLICY, arn, UPDATED if changed else FOUND)


def _check_workgroup_arn(cfg: Params, account: str, arn: str) -> None:
    pattern = (rf"^arn:{region_partition(cfg.aws_region)}:redshift-serverless:{re.escape(cfg.aws_region)}:"
               rf"{account}:workgroup/[0-9a-f-]+$")
    if arn and not re.match(pattern, arn):
        raise AwsError(f"--redshift-workgroup-arn {arn!r} is not a Redshift Serverless workgroup ARN of account "
                       f"{account} in {cfg.aws_region} (arn:aws:redshift-serverless:{cfg.aws_region}:{account}:workgroup/<id>)")


def provision(cfg: Params, *, redshift_workgroup_arn: str = "",
              boto3_session: boto3.Session | None = None) -> Provisioned:
    """Create or find every resource of the aws profile; a second run changes nothing."""
    session = _session(cfg, boto3_session)
    cfg = fill_account(cfg, session)
    account = caller_account(session)
    _check_workgroup_arn(cfg, account, redshift_workgroup_arn)
    path, name = copy_role_name(cfg)
    if cfg.redshift_copy_role_arn and f":{account}:" not in cfg.redshift_copy_role_arn:
        raise AwsError(f"redshift_copy_role_arn {cfg.redshift_copy_role_arn!r} names another account than the "
                       f"credentials' ({account}): fix the parameter or use that account's credentials")
    rows = ensure_bucket(cfg, session)
    rows.append(ensure_glue_database(cfg, session))
    rows.append(ensure_athena_workgroup(cfg, session))
    row, copy_arn = ensure_role(cfg, COPY_ROLE, path, name, "redshift.amazonaws.com", copy_role_policy(cfg), session)
    rows.append(row)
    if cfg.glue_crawler:
        row, crawler_role_arn = ensure_role(cfg, CRAWLER_ROLE, "/", crawler_role_name(cfg), "glue.amazonaws.com",
                                            crawler_role_policy(cfg, account), session)
        rows.append(row)
        rows.append(ensure_crawler(cfg, crawler_role_arn, session))
    runner = ensure_runner_policy(cfg, account, redshift_workgroup_arn, session)
    rows.append(runner)
    steps: list[str] = []
    if cfg.warehouse_engine == "redshift":
        rows.append(Row("redshift serverless", f"namespace and workgroup {cfg.redshift_workgroup}", NOT_CREATED,
                        "moto cannot test it: run the commands below"))
        steps = redshift_steps(cfg, copy_arn)
    return Provisioned(rows=rows, copy_role_arn=copy_arn, runner_policy_arn=runner.name, redshift_steps=steps,
                       params_current=cfg.redshift_copy_role_arn == copy_arn)


# -- teardown --------------------------------------------------------------------------------------


def ensure_crawler(cfg: Params, role_arn: str, session: boto3.Session) -> Row:
    """The optional Glue crawler over the lab's tables (a catalog target; 03_catalog starts it after registering).

    Created here because creating it passes its role (iam:PassRole), which the lab runner may not do.
    """
    from smartcity.catalog.crawler import GlueCatalog, crawler_name

    glue = session.client("glue")
    try:
        glue.get_crawler(Name=crawler_name(cfg))
        return Row("glue crawler", crawler_name(cfg), FOUND)
    except glue.exceptions.EntityNotFoundException:
        GlueCatalog(cfg, session).create_crawler(role_arn)
        return Row("glue crawler", crawler_name(cfg), CREATED)


def _versions(s3: Any, bucket: str, prefix: str, limit: int | None = None) -> Iterator[dict[str, str]]:
    """Every object version and delete marker under a prefix (on an unversioned bucket: each object once)."""
    seen = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in (*page.get("Versions", []), *page.get("DeleteMarkers", [])):
            yield {"Key": item["Key"], "VersionId": item["VersionId"]}
            seen += 1
            if limit is not None and seen >= limit:
                return


def _teardown_crawler(cfg: Params, glue: Any) -> Row:
    from smartcity.catalog.crawler import crawler_name

    try:
        glue.delete_crawler(Name=crawler_name(cfg))
        return Row("glue crawler", crawler_name(cfg), DELETED)
    except glue.exceptions.EntityNotFoundException:
        return Row("glue crawler", crawler_name(cfg), ABSENT)


def _glue_tables(glue: Any, database: str) -> list[str] | None:
    """Table names of a Glue database; None if the database does not exist."""
    try:
        return [t["Name"] for page in glue.get_paginator("get_tables").paginate(DatabaseName=database)
                for t in page["TableList"]]
    except glue.exceptions.EntityNotFoundException:
        return None


def _data_to_delete(cfg: Params, s3: Any, glue: Any, where: Layout, bucket_exists: bool) -> list[str]:
    """What teardown would delete that is data, not configuration: objects under our prefixes, Glue tables."""
    found: list[str] = []
    if bucket_exists:
        for key in where.lab_keys:
            if next(_versions(s3, where.bucket, key, limit=1), None):
                found.append(f"objects under s3://{where.bucket}/{key}")
    tables = _glue_tables(glue, cfg.glue_database)
    if tables:
        found.append(f"{len(tables)} tables in Glue database {cfg.glue_database}")
    return found


def _delete_objects(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object (and version) under a prefix and abort its multipart uploads; how many objects."""
    deleted = 0
    batch: list[dict[str, str]] = []
    for item in _versions(s3, bucket, prefix):
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
        raise AwsError(f"could not delete s3://{bucket}/{first['Key']}: {first['Code']} {first.get('Message', '')} "
                       f"({len(answer['Errors'])} objects failed)")
    return len(batch)


def _teardown_bucket(cfg: Params, s3: Any, where: Layout, keep_bucket: bool) -> list[Row]:
    """Delete our objects, then the bucket if nothing else is in it, else just our lifecycle rules."""
    if not _bucket_exists(s3, where.bucket):
        return [Row("s3 objects", f"{where.root}/", ABSENT), Row("s3 bucket", f"s3://{where.bucket}", ABSENT)]
    rows = []
    for key in where.lab_keys:
        count = _delete_objects(s3, where.bucket, key)
        rows.append(Row("s3 objects", f"s3://{where.bucket}/{key}", DELETED if count else ABSENT,
                        f"{count} object(s)" if count else ""))
    others = next(_versions(s3, where.bucket, "", limit=1), None)
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


def _teardown_glue(cfg: Params, glue: Any) -> list[Row]:
    tables = _glue_tables(glue, cfg.glue_database)
    if tables is None:
        return [Row("glue database", cfg.glue_database, ABSENT)]
    for start in range(0, len(tables), 100):  # BatchDeleteTable takes at most 100 names
        answer = glue.batch_delete_table(DatabaseName=cfg.glue_database, TablesToDelete=tables[start:start + 100])
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise AwsError(f"could not delete Glue table {cfg.glue_database}.{first['TableName']}: "
                           f"{first['ErrorDetail'].get('ErrorMessage', '')}")
    glue.delete_database(Name=cfg.glue_database)
    return [Row("glue database", cfg.glue_database, DELETED, f"{len(tables)} tables" if tables else "")]


def _teardown_workgroup(cfg: Params, athena: Any) -> Row:
    if cfg.athena_workgroup == ATHENA_PRIMARY:
        return Row("athena workgroup", ATHENA_PRIMARY, KEPT, "the account's default workgroup cannot be deleted")
    if cfg.athena_workgroup not in _workgroup_names(athena):
        return Row("athena workgroup", cfg.athena_workgroup, ABSENT)
    athena.delete_work_group(WorkGroup=cfg.athena_workgroup, RecursiveDeleteOption=True)
    return Row("athena workgroup", cfg.athena_workgroup, DELETED)


def _teardown_role(cfg: Params, iam: Any, name: str, resource: str) -> Row:
    """Delete a role provision tagged as ours, with its inline and attached policies."""
    root = layout(cfg).root
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return Row(resource, name, ABSENT)
    if _tags(role.get("Tags")).get(ROOT_TAG) != root:
        return Row(resource, role["Arn"], KEPT, f"not tagged {ROOT_TAG}={root}: provision did not make it")
    for policy_name in _all(iam.get_paginator("list_role_policies").paginate(RoleName=name), "PolicyNames"):
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    for attached in _all(iam.get_paginator("list_attached_role_policies").paginate(RoleName=name), "AttachedPolicies"):
        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    for profile in _all(iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=name), "InstanceProfiles"):
        iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
    iam.delete_role(RoleName=name)
    return Row(resource, role["Arn"], DELETED)


def _all(pages: Any, key: str) -> list[Any]:
    return [item for page in pages for item in page.get(key, [])]


def _teardown_runner_policy(cfg: Params, iam: Any, account: str) -> Row:
    """Detach the lab-runner policy from whoever holds it, then delete it and its versions."""
    root = layout(cfg).root
    arn = runner_policy_arn(cfg, account)
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        return Row(RUNNER_POLICY, arn, ABSENT)
    if _tags(policy.get("Tags")).get(ROOT_TAG) != root:
        return Row(RUNNER_POLICY, arn, KEPT, f"not tagged {ROOT_TAG}={root}: provision did not make it")
    detached: list[str] = []
    pages = list(iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=arn))
    for user in _all(pages, "PolicyUsers"):
        iam.detach_user_policy(UserName=user["UserName"], PolicyArn=arn)
        detached.append(f"user/{user['UserName']}")
    for group in _all(pages, "PolicyGroups"):
        iam.detach_group_policy(GroupName=group["GroupName"], PolicyArn=arn)
        detached.append(f"group/{group['GroupName']}")
    for role in _all(pages, "PolicyRoles"):
        iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
        detached.append(f"role/{role['RoleName']}")
    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    iam.delete_policy(PolicyArn=arn)
    return Row(RUNNER_POLICY, arn, DELETED, f"detached from {', '.join(detached)}" if detached else "")


def teardown(cfg: Params, *, confirm: bool = False, keep_bucket: bool = False,
             boto3_session: boto3.Session | None = None) -> list[Row]:
    """Delete what provision created; refuse (TeardownRefused) to delete objects or tables unless confirm.

    Idempotent: whatever is already gone is reported "absent". Only objects under the lab's own
    prefixes are deleted; the bucket goes only if that leaves it empty and keep_bucket is false.
    Redshift Serverless, created by hand, is not touched.
    """
    session = _session(cfg, boto3_session)
    cfg = fill_account(cfg, session)
    account = caller_account(session)
    where = layout(cfg)
    s3, glue, iam = session.client("s3"), session.client("glue"), session.client("iam")
    exists = _bucket_exists(s3, where.bucket)
    data = _data_to_delete(cfg, s3, glue, where, exists)
    if data and not confirm:
        raise TeardownRefused("teardown would delete " + "; ".join(data) + ": run again with --yes to delete them")
    _check_iam_owners(cfg, iam, account)  # before deleting anything: no half-done teardown on a foreign name
    rows = [_teardown_runner_policy(cfg, iam, account)]
    if cfg.glue_crawler or _role_exists(iam, crawler_role_name(cfg)):
        rows.append(_teardown_crawler(cfg, glue))
        rows.append(_teardown_role(cfg, iam, crawler_role_name(cfg), CRAWLER_ROLE))
    rows.append(_teardown_role(cfg, iam, copy_role_name(cfg)[1], COPY_ROLE))
    rows.append(_teardown_workgroup(cfg, session.client("athena")))
    rows.extend(_teardown_glue(cfg, glue))
    rows.extend(_teardown_bucket(cfg, s3, where, keep_bucket))
    return rows


def _check_iam_owners(cfg: Params, iam: Any, account: str) -> None:
    """Refuse if a role or policy of ours by name is tagged for another lab's root."""
    root = layout(cfg).root
    for name in (copy_role_name(cfg)[1], crawler_role_name(cfg)):
        try:
            _check_owner("role", name, _tags(iam.get_role(RoleName=name)["Role"].get("Tags")), root)
        except iam.exceptions.NoSuchEntityException:
            pass
    arn = runner_policy_arn(cfg, account)
    try:
        _check_owner("policy", arn, _tags(iam.get_policy(PolicyArn=arn)["Policy"].get("Tags")), root)
    except iam.exceptions.NoSuchEntityException:
        pass


def _role_exists(iam: Any, name: str) -> bool:
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


# -- command line ----------------------------------------------------------------------------------


def format_rows(rows: list[Row]) -> str:
    """The report as an aligned text table: resource, name/ARN, status (and a note if any)."""
    header = Row("resource", "name / ARN", "status")
    widths = [max(len(getattr(r, f)) for r in (header, *rows)) for f in ("resource", "name", "status")]
    lines = []
    for r in (header, *rows):
        cells = [r.resource.ljust(widths[0]), r.name.ljust(widths[1]), r.status.ljust(widths[2])]
        lines.append("  ".join(cells + ([r.note] if r.note else [])).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load(path: str, command: str) -> Params | None:
    try:
        return load_params(path)
    except ParamsError as exc:
        print(f"smartcity aws {command}: {exc}", file=sys.stderr)
        return None


def _guarded(command: str, action: Callable[[], int]) -> int:
    """Run a command, turning AWS and credential errors into one clear line on stderr."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except (AwsError, ParamsError) as exc:
        print(f"smartcity aws {command}: {exc}", file=sys.stderr)
    except ClientError as exc:
        print(f"smartcity aws {command}: AWS refused {exc.operation_name}: {_error_code(exc)}: "
              f"{exc.response.get('Error', {}).get('Message', '')}", file=sys.stderr)
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable
        print(f"smartcity aws {command}: {exc}", file=sys.stderr)
    return 1


def _provision_command(args: argparse.Namespace) -> int:
    cfg = _load(args.params, "provision")
    if cfg is None:
        return 2

    def run() -> int:
        done = provision(cfg, redshift_workgroup_arn=args.redshift_workgroup_arn or "")
        print(format_rows(done.rows))
        print(f"\nAttach the lab-runner policy to whoever runs the lab (a user, group or role), e.g.\n"
              f"  aws iam attach-user-policy --user-name <you> --policy-arn {done.runner_policy_arn}")
        if done.redshift_steps:
            print("\nRedshift Serverless is NOT created by this command (moto cannot test it). Create it with:")
            print("\n".join(f"  {step}" for step in done.redshift_steps))
            print(f"  smartcity aws provision --params {args.params} --redshift-workgroup-arn $WORKGROUP_ARN"
                  "   # lets the lab-runner policy get Redshift credentials")
        print("\nYour params file already names it:" if done.params_current else "\nCopy into your params file:")
        print("\n".join(f"  {line}" for line in done.params_lines()))
        return 0

    return _guarded("provision", run)


def _teardown_command(args: argparse.Namespace) -> int:
    cfg = _load(args.params, "teardown")
    if cfg is None:
        return 2

    def run() -> int:
        print(format_rows(teardown(cfg, confirm=args.yes, keep_bucket=args.keep_bucket)))
        if cfg.warehouse_engine == "redshift":
            print(f"\nRedshift Serverless was created by hand; delete it the same way:\n"
                  f"  aws redshift-serverless delete-workgroup --region {cfg.aws_region} --workgroup-name {cfg.redshift_workgroup}\n"
                  f"  aws redshift-serverless delete-namespace --region {cfg.aws_region} --namespace-name {cfg.redshift_workgroup}")
        return 0

    return _guarded("teardown", run)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``smartcity aws provision | teardown`` on the CLI's subcommands."""
    aws = sub.add_parser("aws", help="create or delete the AWS resources of the aws profile (least-privilege IAM)")
    commands = aws.add_subparsers(dest="aws_command", required=True)
    default = "params/aws.yaml"
    up = commands.add_parser("provision", help="create or find the bucket, Glue database, Athena workgroup, roles "
                                               "and lab-runner policy (idempotent)")
    up.add_argument("--params", default=default, help=f"params YAML file (default: {default})")
    up.add_argument("--redshift-workgroup-arn", metavar="ARN",
                    help="the Redshift Serverless workgroup's ARN, once created: grants the lab-runner policy "
                         "redshift-serverless:GetCredentials on it")
    up.set_defaults(func=_provision_command)
    down = commands.add_parser("teardown", help="delete what provision created (objects under the prefix only)")
    down.add_argument("--params", default=default, help=f"params YAML file (default: {default})")
    down.add_argument("--yes", action="store_true", help="confirm deleting data: the lab's objects and Glue tables")
    down.add_argument("--keep-bucket", action="store_true", help="keep the bucket even if it ends up empty")
    down.set_defaults(func=_teardown_command)
