"""IAM for the aws profile, least privilege (0002 §8): the lab-runner policy, the COPY and crawler roles."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smartcity.ops.aws.names import (
    ABSENT,
    CREATED,
    DELETED,
    FOUND,
    KEPT,
    POLICY_VERSION,
    ROOT_TAG,
    RUNNER_POLICY,
    UPDATED,
    Layout,
    Row,
    canonical,
    check_owner,
    copy_role_name,
    crawler_arn,
    crawler_role_name,
    glue_arns,
    layout,
    paged,
    runner_policy_arn,
    runner_policy_name,
    session_of,
    tags_of,
    workgroup_arn,
)
from smartcity.params import Params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3

MAX_POLICY_VERSIONS = 5  # IAM keeps at most five versions of a managed policy


def _listing(where: Layout, key_prefixes: list[str], sid: str) -> dict[str, Any]:
    """s3:ListBucket on the bucket, only for listings under the given prefixes (the prefix itself, or below)."""
    prefixes = [p for k in key_prefixes for p in (k, f"{k}*")]
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": where.bucket_arn,
        "Condition": {"StringLike": {"s3:prefix": prefixes}},
    }


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def trust_policy(service: str) -> dict[str, Any]:
    """A role's trust policy: only the given AWS service (redshift.amazonaws.com, glue.amazonaws.com) assumes it."""
    return _document({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def _allow(sid: str, actions: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


#: The runner's rights on the lab's objects, its Glue database and its Athena workgroup.
_LAB_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]
_GLUE_CATALOG_ACTIONS = [
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchCreatePartition",
    "glue:BatchDeletePartition",
]
_ATHENA_ACTIONS = [
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
    "athena:GetWorkGroup",
]


def runner_policy(cfg: Params, account: str, redshift_workgroup_arn: str = "") -> dict[str, Any]:
    """What the lab's driver, notebooks and loader need (0002 §8): its prefix, its Glue database, its workgroup.

    Athena runs with the caller's Glue and S3 rights, so those cover the queries too. The Redshift
    statement is there only once the Serverless workgroup's ARN is known (its id is not its name).
    """
    where = layout(cfg)
    statements = [
        _listing(where, where.lab_keys, "ListLabPrefix"),
        _allow("LocateBucket", "s3:GetBucketLocation", where.bucket_arn),
        _allow("LabObjects", _LAB_OBJECT_ACTIONS, [where.object_arn(k) for k in where.lab_keys]),
        _allow("GlueCatalog", _GLUE_CATALOG_ACTIONS, glue_arns(cfg, account)),
        _allow("AthenaWorkgroup", _ATHENA_ACTIONS, workgroup_arn(cfg, account)),
    ]
    if cfg.aws.glue_crawler:
        statements.append(_allow("RunCrawler", ["glue:StartCrawler", "glue:GetCrawler"], crawler_arn(cfg, account)))
    if redshift_workgroup_arn:  # the warehouse finds its endpoint (GetWorkgroup), then signs in (GetCredentials)
        actions = ["redshift-serverless:GetCredentials", "redshift-serverless:GetWorkgroup"]
        statements.append(_allow("RedshiftCredentials", actions, redshift_workgroup_arn))
    return _document(*statements)


def copy_role_policy(cfg: Params) -> dict[str, Any]:
    """The COPY role's inline policy: read the lake and the COPY manifests, nothing else."""
    where = layout(cfg)
    keys = [f"{where.prefix}/lake/", f"{where.prefix}/warehouse/manifests/"]
    return _document(
        {
            "Sid": "ReadLakeAndManifests",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [where.object_arn(k) for k in keys],
        },
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
    logs = f"arn:{where.partition}:logs:{cfg.aws.region}:{account}:log-group:/aws-glue/crawlers*"
    return _document(
        {"Sid": "ReadLake", "Effect": "Allow", "Action": "s3:GetObject", "Resource": where.object_arn(lake)},
        _listing(where, [lake], "ListLake"),
        {"Sid": "LocateBucket", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": where.bucket_arn},
        {
            "Sid": "UpdateLabTables",
            "Effect": "Allow",
            "Action": [
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:UpdateTable",
                "glue:GetPartition",
                "glue:GetPartitions",
                "glue:BatchCreatePartition",
                "glue:BatchGetPartition",
            ],
            "Resource": glue_arns(cfg, account),
        },
        {
            "Sid": "CrawlerLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": logs,
        },
    )


def _claim(
    kind: str, name: str, tags: list[dict[str, str]] | None, root: str, tag: Callable[[list[dict[str, str]]], Any]
) -> bool:
    """Refuse a found IAM resource of another lab; tag an untagged one as ours (True: it was changed)."""
    check_owner(kind, name, tags_of(tags), root)
    if ROOT_TAG in tags_of(tags):
        return False
    tag([{"Key": ROOT_TAG, "Value": root}])
    return True


def ensure_role(
    cfg: Params,
    resource: str,
    path: str,
    name: str,
    service: str,
    policy: dict[str, Any],
    boto3_session: boto3.Session | None = None,
) -> tuple[Row, str]:
    """A role trusting one service, with one inline policy (named like the role); (row, role ARN)."""
    session = session_of(cfg, boto3_session)
    iam = session.client("iam")
    root = layout(cfg).root
    trust = trust_policy(service)
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            Path=path,
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"smart-city lab: {service} reads {root}",
            Tags=[{"Key": ROOT_TAG, "Value": root}],
        )["Role"]
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        return Row(resource, role["Arn"], CREATED), role["Arn"]
    changed = _claim("role", name, role.get("Tags"), root, lambda tags: iam.tag_role(RoleName=name, Tags=tags))
    if canonical(role["AssumeRolePolicyDocument"]) != canonical(trust):
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        changed = True
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        current = None
    if current is None or canonical(current) != canonical(policy):
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        changed = True
    return Row(resource, role["Arn"], UPDATED if changed else FOUND), role["Arn"]


def _redshift_arn_in(document: dict[str, Any]) -> str:
    """The Serverless workgroup ARN an existing runner policy grants GetCredentials on ('' if none)."""
    for statement in document.get("Statement", []):
        if statement.get("Sid") == "RedshiftCredentials":
            return str(statement.get("Resource", ""))
    return ""


def ensure_runner_policy(
    cfg: Params, account: str, redshift_workgroup_arn: str = "", boto3_session: boto3.Session | None = None
) -> Row:
    """The customer managed lab-runner policy; a changed document becomes its new default version.

    A Redshift workgroup ARN given once is kept by later runs that do not repeat it.
    """
    session = session_of(cfg, boto3_session)
    iam = session.client("iam")
    root = layout(cfg).root
    name = runner_policy_name(cfg)
    arn = runner_policy_arn(cfg, account)
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        document = runner_policy(cfg, account, redshift_workgroup_arn)
        iam.create_policy(
            PolicyName=name,
            PolicyDocument=json.dumps(document),
            Description=f"smart-city lab runner: read/write {root}/, its Glue database and Athena workgroup",
            Tags=[{"Key": ROOT_TAG, "Value": root}],
        )
        return Row(RUNNER_POLICY, arn, CREATED)
    changed = _claim("policy", name, policy.get("Tags"), root, lambda tags: iam.tag_policy(PolicyArn=arn, Tags=tags))
    current = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"]
    current = json.loads(current) if isinstance(current, str) else current
    document = runner_policy(cfg, account, redshift_workgroup_arn or _redshift_arn_in(current))
    if canonical(current) != canonical(document):
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        if len(versions) >= MAX_POLICY_VERSIONS and old:
            iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
        changed = True
    return Row(RUNNER_POLICY, arn, UPDATED if changed else FOUND)


def teardown_role(cfg: Params, iam: Any, name: str, resource: str) -> Row:
    """Delete a role provision tagged as ours, with its inline and attached policies."""
    root = layout(cfg).root
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return Row(resource, name, ABSENT)
    if tags_of(role.get("Tags")).get(ROOT_TAG) != root:
        return Row(resource, role["Arn"], KEPT, f"not tagged {ROOT_TAG}={root}: provision did not make it")
    for policy_name in paged(iam.get_paginator("list_role_policies").paginate(RoleName=name), "PolicyNames"):
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    for attached in paged(iam.get_paginator("list_attached_role_policies").paginate(RoleName=name), "AttachedPolicies"):
        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    for profile in paged(
        iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=name), "InstanceProfiles"
    ):
        iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
    iam.delete_role(RoleName=name)
    return Row(resource, role["Arn"], DELETED)


def teardown_runner_policy(cfg: Params, iam: Any, account: str) -> Row:
    """Detach the lab-runner policy from whoever holds it, then delete it and its versions."""
    root = layout(cfg).root
    arn = runner_policy_arn(cfg, account)
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        return Row(RUNNER_POLICY, arn, ABSENT)
    if tags_of(policy.get("Tags")).get(ROOT_TAG) != root:
        return Row(RUNNER_POLICY, arn, KEPT, f"not tagged {ROOT_TAG}={root}: provision did not make it")
    detached: list[str] = []
    pages = list(iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=arn))
    for user in paged(pages, "PolicyUsers"):
        iam.detach_user_policy(UserName=user["UserName"], PolicyArn=arn)
        detached.append(f"user/{user['UserName']}")
    for group in paged(pages, "PolicyGroups"):
        iam.detach_group_policy(GroupName=group["GroupName"], PolicyArn=arn)
        detached.append(f"group/{group['GroupName']}")
    for role in paged(pages, "PolicyRoles"):
        iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
        detached.append(f"role/{role['RoleName']}")
    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    iam.delete_policy(PolicyArn=arn)
    return Row(RUNNER_POLICY, arn, DELETED, f"detached from {', '.join(detached)}" if detached else "")


def check_iam_owners(cfg: Params, iam: Any, account: str) -> None:
    """Refuse if a role or policy of ours by name is tagged for another lab's root."""
    root = layout(cfg).root
    for name in (copy_role_name(cfg)[1], crawler_role_name(cfg)):
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            check_owner("role", name, tags_of(iam.get_role(RoleName=name)["Role"].get("Tags")), root)
    arn = runner_policy_arn(cfg, account)
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        check_owner("policy", arn, tags_of(iam.get_policy(PolicyArn=arn)["Policy"].get("Tags")), root)


def role_exists(iam: Any, name: str) -> bool:
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True
