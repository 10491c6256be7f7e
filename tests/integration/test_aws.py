"""`smartcity aws provision | teardown` on moto (in-process ``mock_aws``): idempotence, bucket and
workgroup settings read back, the IAM documents checked statement by statement, and the runner
policy enforced by moto for S3 object ARNs (the only IAM enforcement moto does reliably)."""

from __future__ import annotations

import argparse
import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from smartcity import params, profiles
from smartcity.fleet.contracts import TOPICS
from smartcity.ops.aws.cli import add_commands
from smartcity.ops.aws.iam import copy_role_policy, crawler_role_policy, runner_policy, trust_policy
from smartcity.ops.aws.names import (
    COPY_ROLE,
    CRAWLER_ROLE,
    ROOT_TAG,
    RUNNER_POLICY,
    AwsError,
    Row,
    TeardownRefused,
    runner_policy_arn,
)
from smartcity.ops.aws.provision import provision, teardown
from smartcity.ops.aws.s3 import lifecycle_rules
from smartcity.params import Params
from smartcity.platform.params import project_root
from tests.conftest import use_fake_aws

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
ACCOUNT = "123456789012"  # moto's default account
BUCKET = "smartcity-lab-test-bucket"
PREFIX = "smartcity"
REDSHIFT_WG = f"arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def aws_params(**overrides: Any) -> Params:
    values: dict[str, Any] = {
        "profile": "awstest",
        "platform": "aws",
        "lake_storage": "s3",
        "catalog_engine": "glue",
        "query_engine": "athena",
        "warehouse_engine": "redshift",
        "aws_region": REGION,
        "s3_bucket": BUCKET,
        "s3_prefix": PREFIX,
        "redshift_copy_role_arn": "arn:aws:iam::{account}:role/smartcity-redshift-copy",
        "glue_crawler": True,
    }
    return params.from_mapping({**values, **overrides}, source="test_aws")


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials only; nothing of the user's AWS setup (profile, endpoint) leaks into a test."""
    use_fake_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def session(fake_credentials: None) -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def cfg() -> Params:
    return aws_params()


def statuses(rows: list[Row]) -> dict[str, str]:
    return {row.resource: row.status for row in rows}


def _strip(value: Any) -> Any:
    """A response without what changes on every call (request ids, moto's per-call CreationTime)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in ("ResponseMetadata", "CreationTime")}
    if isinstance(value, (list, tuple)):
        return [_strip(v) for v in value]
    return value


def describe_all(session: boto3.Session, cfg: Params) -> dict[str, Any]:
    """Everything provision configures, as the describe calls return it."""
    s3, glue, athena, iam = (session.client(n) for n in ("s3", "glue", "athena", "iam"))
    runner_arn = runner_policy_arn(cfg, ACCOUNT)
    roles = ("smartcity-redshift-copy", "smartcity-glue-crawler")
    return _strip(
        {
            "location": s3.get_bucket_location(Bucket=BUCKET),
            "bpa": s3.get_public_access_block(Bucket=BUCKET),
            "encryption": s3.get_bucket_encryption(Bucket=BUCKET),
            "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=BUCKET),
            "database": glue.get_database(Name=cfg.aws.glue_database),
            "workgroup": athena.get_work_group(WorkGroup=cfg.aws.athena_workgroup),
            "crawler": glue.get_crawler(Name=f"smartcity-{cfg.profile}"),
            "roles": {
                r: (
                    iam.get_role(RoleName=r),
                    iam.get_role_policy(RoleName=r, PolicyName=r),
                    iam.list_attached_role_policies(RoleName=r),
                )
                for r in roles
            },
            "policy": iam.get_policy(PolicyArn=runner_arn),
            "policy_versions": iam.list_policy_versions(PolicyArn=runner_arn),
            "policies": iam.list_policies(Scope="Local"),
        }
    )


# -- provision ---------------------------------------------------------------------------------------


def test_provision_twice_creates_then_finds_and_changes_nothing(session: boto3.Session, cfg: Params) -> None:
    first = provision(cfg, boto3_session=session)
    assert statuses(first.rows) == {
        "s3 bucket": "created",
        "s3 block public access": "created",
        "s3 default encryption (SSE-S3)": "created",
        "s3 lifecycle rules": "created",
        "glue database": "created",
        "athena workgroup": "created",
        COPY_ROLE: "created",
        CRAWLER_ROLE: "created",
        "glue crawler": "created",
        RUNNER_POLICY: "created",
        "redshift serverless": "not created",
    }
    crawler = session.client("glue").get_crawler(Name=f"smartcity-{cfg.profile}")["Crawler"]
    assert crawler["Role"].endswith("role/smartcity-glue-crawler")
    assert crawler["Targets"]["CatalogTargets"] == [{"DatabaseName": "smartcity", "Tables": [*TOPICS, "quarantine"]}]
    before = describe_all(session, cfg)
    second = provision(cfg, boto3_session=session)
    assert {r.resource: r.status for r in second.rows if r.resource != "redshift serverless"} == dict.fromkeys(
        (r.resource for r in second.rows if r.resource != "redshift serverless"), "found"
    )
    assert describe_all(session, cfg) == before
    assert second.copy_role_arn == first.copy_role_arn == f"arn:aws:iam::{ACCOUNT}:role/smartcity-redshift-copy"
    assert second.params_lines() == [f'redshift_copy_role_arn: "arn:aws:iam::{ACCOUNT}:role/smartcity-redshift-copy"']
    assert first.runner_policy_arn == f"arn:aws:iam::{ACCOUNT}:policy/smartcity-lab-runner"
    assert first.params_current  # '{account}' in the params filled in to the role provision made
    assert not provision(
        aws_params(warehouse_engine="postgres", redshift_copy_role_arn=""), boto3_session=session
    ).params_current


def test_bucket_settings_read_back(session: boto3.Session, cfg: Params) -> None:
    provision(cfg, boto3_session=session)
    s3 = session.client("s3")
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    bpa = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert bpa == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]
    lifecycle = {r["Filter"]["Prefix"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
    assert set(lifecycle) == {f"{PREFIX}/", f"{PREFIX}/athena-results/"}
    abort, results = lifecycle[f"{PREFIX}/"], lifecycle[f"{PREFIX}/athena-results/"]
    assert abort["Status"] == results["Status"] == "Enabled"
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1} and "Expiration" not in abort
    assert results["Expiration"] == {"Days": 7}


def test_us_east_1_bucket_is_created_without_location_constraint(session: boto3.Session) -> None:
    cfg = aws_params(aws_region="us-east-1")
    east = boto3.Session(region_name="us-east-1")
    rows = provision(cfg, boto3_session=east).rows
    assert statuses(rows)["s3 bucket"] == "created"
    assert east.client("s3").get_bucket_location(Bucket=BUCKET).get("LocationConstraint") in (None, "")
    assert statuses(provision(cfg, boto3_session=east).rows)["s3 bucket"] == "found"


def test_a_bucket_in_another_region_is_refused(session: boto3.Session, cfg: Params) -> None:
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    with pytest.raises(AwsError, match="is in eu-west-1, but aws_region is eu-west-2"):
        provision(cfg, boto3_session=session)


def test_a_found_bucket_is_corrected_and_keeps_its_other_lifecycle_rules(session: boto3.Session, cfg: Params) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_public_access_block(
        Bucket=BUCKET,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )
    owner_rule = {"ID": "owner-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [owner_rule]})
    rows = statuses(provision(cfg, boto3_session=session).rows)
    assert rows["s3 bucket"] == "found"
    assert rows["s3 block public access"] == rows["s3 lifecycle rules"] == "updated"
    assert all(s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"].values())
    ids = {r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
    assert ids == {"owner-logs", *(r["ID"] for r in lifecycle_rules(cfg))}


def test_workgroup_enforces_the_result_location(session: boto3.Session, cfg: Params) -> None:
    sent: list[dict[str, Any]] = []  # moto defaults EnforceWorkGroupConfiguration to true: check what was asked
    session.events.register("provide-client-params.athena.CreateWorkGroup", lambda params, **_: sent.append(params))
    provision(cfg, boto3_session=session)
    assert [p["Configuration"]["EnforceWorkGroupConfiguration"] for p in sent] == [True]
    config_ = session.client("athena").get_work_group(WorkGroup="smartcity")["WorkGroup"]["Configuration"]
    assert config_["ResultConfiguration"]["OutputLocation"] == f"s3://{BUCKET}/{PREFIX}/athena-results/"
    assert config_["EnforceWorkGroupConfiguration"] is True
    assert session.client("glue").get_database(Name="smartcity")["Database"]["Name"] == "smartcity"


def test_roles_trust_their_service_and_hold_only_their_inline_policy(session: boto3.Session, cfg: Params) -> None:
    provision(cfg, boto3_session=session)
    iam = session.client("iam")
    for name, service, policy in (
        ("smartcity-redshift-copy", "redshift.amazonaws.com", copy_role_policy(cfg)),
        ("smartcity-glue-crawler", "glue.amazonaws.com", crawler_role_policy(cfg, ACCOUNT)),
    ):
        role = iam.get_role(RoleName=name)["Role"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust == {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        assert iam.list_role_policies(RoleName=name)["PolicyNames"] == [name]
        assert iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"] == policy
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []  # no AmazonS3FullAccess
    policy = iam.get_policy(PolicyArn=runner_policy_arn(cfg, ACCOUNT))["Policy"]
    document = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
    assert document["PolicyVersion"]["Document"] == runner_policy(cfg, ACCOUNT)


def test_no_crawler_role_without_glue_crawler(session: boto3.Session) -> None:
    rows = statuses(provision(aws_params(glue_crawler=False), boto3_session=session).rows)
    assert CRAWLER_ROLE not in rows
    assert [r["RoleName"] for r in session.client("iam").list_roles()["Roles"]] == ["smartcity-redshift-copy"]


def test_a_tampered_or_untagged_role_is_restored(session: boto3.Session, cfg: Params) -> None:
    provision(cfg, boto3_session=session)
    iam = session.client("iam")
    wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    iam.put_role_policy(
        RoleName="smartcity-redshift-copy", PolicyName="smartcity-redshift-copy", PolicyDocument=json.dumps(wide)
    )
    iam.untag_role(RoleName="smartcity-redshift-copy", TagKeys=[ROOT_TAG])
    assert statuses(provision(cfg, boto3_session=session).rows)[COPY_ROLE] == "updated"
    assert iam.list_role_tags(RoleName="smartcity-redshift-copy")["Tags"] == [
        {"Key": ROOT_TAG, "Value": f"s3://{BUCKET}/{PREFIX}"}
    ]
    current = iam.get_role_policy(RoleName="smartcity-redshift-copy", PolicyName="smartcity-redshift-copy")
    assert current["PolicyDocument"] == copy_role_policy(cfg)


def test_redshift_workgroup_arn_is_added_once_and_kept(session: boto3.Session, cfg: Params) -> None:
    provision(cfg, boto3_session=session)
    rows = statuses(provision(cfg, redshift_workgroup_arn=REDSHIFT_WG, boto3_session=session).rows)
    assert rows[RUNNER_POLICY] == "updated"
    assert statuses(provision(cfg, boto3_session=session).rows)[RUNNER_POLICY] == "found"
    iam = session.client("iam")
    arn = runner_policy_arn(cfg, ACCOUNT)
    document = iam.get_policy_version(
        PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    )
    (statement,) = [s for s in document["PolicyVersion"]["Document"]["Statement"] if s["Sid"] == "RedshiftCredentials"]
    assert statement == {
        "Sid": "RedshiftCredentials",
        "Effect": "Allow",
        "Action": ["redshift-serverless:GetCredentials", "redshift-serverless:GetWorkgroup"],
        "Resource": REDSHIFT_WG,
    }
    with pytest.raises(AwsError, match="not a Redshift Serverless workgroup ARN"):
        provision(
            cfg,
            redshift_workgroup_arn=f"arn:aws:redshift-serverless:{REGION}:999999999999:workgroup/ab",
            boto3_session=session,
        )


def test_a_role_of_another_lab_is_not_touched(session: boto3.Session, cfg: Params) -> None:
    iam = session.client("iam")
    iam.create_role(
        RoleName="smartcity-redshift-copy",
        AssumeRolePolicyDocument=json.dumps(trust_policy("redshift.amazonaws.com")),
        Tags=[{"Key": ROOT_TAG, "Value": "s3://someone-else/smartcity"}],
    )
    with pytest.raises(AwsError, match="belongs to another lab"):
        provision(cfg, boto3_session=session)
    with pytest.raises(AwsError, match="belongs to another lab"):
        teardown(cfg, confirm=True, boto3_session=session)
    assert iam.get_role(RoleName="smartcity-redshift-copy")["Role"]["Tags"][0]["Value"] == "s3://someone-else/smartcity"


def test_provision_needs_a_prefix_and_the_results_in_the_bucket(session: boto3.Session) -> None:
    with pytest.raises(AwsError, match="s3_prefix is empty"):
        provision(aws_params(s3_prefix=""), boto3_session=session)
    with pytest.raises(AwsError, match="outside bucket"):
        provision(aws_params(athena_output="s3://elsewhere/results/"), boto3_session=session)
    with pytest.raises(AwsError, match="provisions the S3 lake only"):
        provision(params.from_mapping({}), boto3_session=session)


# -- the policy documents ------------------------------------------------------------------------


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _documents(cfg: Params) -> dict[str, dict[str, Any]]:
    return {
        "runner": runner_policy(cfg, ACCOUNT, REDSHIFT_WG),
        "copy": copy_role_policy(cfg),
        "crawler": crawler_role_policy(cfg, ACCOUNT),
    }


@pytest.mark.parametrize("name", ["runner", "copy", "crawler"])
def test_no_wildcard_actions_and_every_resource_in_scope(cfg: Params, name: str) -> None:
    document = _documents(cfg)[name]
    in_scope = (
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:s3:::{BUCKET}/{PREFIX}/",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:database/smartcity",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:table/smartcity/",
        f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/smartcity",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/crawlers",
        REDSHIFT_WG,
        f"arn:aws:glue:{REGION}:{ACCOUNT}:crawler/smartcity-{cfg.profile}",
    )
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, (name, action)
            assert action.split(":")[0] in ("s3", "glue", "athena", "logs", "redshift-serverless"), action
        for resource in _as_list(statement["Resource"]):
            head = resource.split("*")[0]
            assert resource != "*" and any(head == s or (head.startswith(s) and s.endswith("/")) for s in in_scope), (
                name,
                resource,
            )
            if resource.startswith("arn:aws:s3:::") and "/" in resource:  # object ARNs: only below the prefix
                assert resource.startswith(f"arn:aws:s3:::{BUCKET}/{PREFIX}/"), resource
    actions = {a for s in document["Statement"] for a in _as_list(s["Action"])}
    if name != "runner":  # the roles only read
        assert not actions & {"s3:PutObject", "s3:DeleteObject", "glue:DeleteTable", "glue:CreateTable"}


def test_runner_policy_is_exactly_the_sketch(cfg: Params) -> None:
    """0002 §8, statement by statement (with Sids added)."""
    statements = {s["Sid"]: s for s in runner_policy(cfg, ACCOUNT)["Statement"]}
    assert cfg.aws.glue_crawler
    assert set(statements) == {
        "ListLabPrefix",
        "LocateBucket",
        "LabObjects",
        "GlueCatalog",
        "AthenaWorkgroup",
        "RunCrawler",
    }
    assert statements["RunCrawler"]["Resource"] == f"arn:aws:glue:{REGION}:{ACCOUNT}:crawler/smartcity-{cfg.profile}"
    assert statements["ListLabPrefix"]["Condition"] == {"StringLike": {"s3:prefix": [f"{PREFIX}/", f"{PREFIX}/*"]}}
    assert statements["LabObjects"]["Action"] == [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ]
    assert statements["LabObjects"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"]
    assert len(statements["GlueCatalog"]["Action"]) == 10
    assert statements["AthenaWorkgroup"]["Resource"] == f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/smartcity"


def _glob(pattern: str, value: str, *, fold: bool = False) -> bool:
    """IAM's wildcard match: '*' any run of characters, '?' one (our documents hold no '[')."""
    assert "[" not in pattern
    return fnmatch.fnmatchcase(value.lower(), pattern.lower()) if fold else fnmatch.fnmatchcase(value, pattern)


def _conditions_hold(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, keys in condition.items():
        assert operator == "StringLike", f"the matcher knows StringLike only, the policy uses {operator}"
        for key, patterns in keys.items():
            if key not in context or not any(_glob(p, context[key]) for p in _as_list(patterns)):
                return False
    return True


def allows(document: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """A small IAM evaluator for Allow/Deny statements over Action, Resource and StringLike conditions."""
    allowed = False
    for statement in document["Statement"]:
        if not any(_glob(a, action, fold=True) for a in _as_list(statement["Action"])):
            continue
        if not any(_glob(r, resource) for r in _as_list(statement["Resource"])):
            continue
        if not _conditions_hold(statement.get("Condition", {}), context or {}):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def test_the_matcher_itself() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/p/*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/secret/*"},
        ]
    }
    assert allows(document, "s3:getobject", "arn:aws:s3:::b/p/x")
    assert not allows(document, "s3:GetObject", "arn:aws:s3:::b/p/secret/x")
    assert not allows(document, "s3:PutObject", "arn:aws:s3:::b/p/x")


def test_runner_policy_allows_only_the_prefix(cfg: Params) -> None:
    doc = runner_policy(cfg, ACCOUNT)
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert allows(doc, "s3:GetObject", f"{bucket}/{PREFIX}/lake/gps_data/part-0.parquet")
    assert allows(doc, "s3:PutObject", f"{bucket}/{PREFIX}/checkpoints/lake/0.done.json")
    assert not allows(doc, "s3:GetObject", f"{bucket}/other/x")
    assert not allows(doc, "s3:GetObject", f"{bucket}/{PREFIX}")  # the prefix without its slash is not ours
    assert not allows(doc, "s3:GetObject", f"{bucket}-other/{PREFIX}/lake/x")
    assert not allows(doc, "s3:GetObject", f"arn:aws:s3:::another-bucket/{PREFIX}/lake/x")
    assert allows(doc, "s3:ListBucket", bucket, {"s3:prefix": f"{PREFIX}/"})
    assert allows(doc, "s3:ListBucket", bucket, {"s3:prefix": f"{PREFIX}/lake/gps_data/"})
    assert not allows(doc, "s3:ListBucket", bucket, {"s3:prefix": "other/"})
    assert not allows(doc, "s3:ListBucket", bucket, {})  # a listing of the whole bucket
    assert not allows(doc, "s3:CreateBucket", bucket) and not allows(doc, "s3:PutBucketPolicy", bucket)
    assert allows(doc, "glue:CreateTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/smartcity/gps_data")
    assert not allows(doc, "glue:CreateTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/otherdb/gps_data")
    assert not allows(doc, "glue:DeleteDatabase", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/smartcity")
    assert allows(doc, "athena:StartQueryExecution", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/smartcity")
    assert not allows(doc, "athena:StartQueryExecution", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/primary")
    assert not allows(doc, "redshift-serverless:GetCredentials", REDSHIFT_WG)  # not before its ARN is given
    assert allows(runner_policy(cfg, ACCOUNT, REDSHIFT_WG), "redshift-serverless:GetCredentials", REDSHIFT_WG)


def test_copy_role_reads_only_the_lake_and_manifests(cfg: Params) -> None:
    doc = copy_role_policy(cfg)
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert allows(doc, "s3:GetObject", f"{bucket}/{PREFIX}/lake/gps_data/event_date=2024-01-01/part-0.parquet")
    assert allows(doc, "s3:GetObject", f"{bucket}/{PREFIX}/warehouse/manifests/1/2/gps_data.manifest")
    assert not allows(doc, "s3:GetObject", f"{bucket}/{PREFIX}/checkpoints/lake/0.done.json")
    assert not allows(doc, "s3:PutObject", f"{bucket}/{PREFIX}/lake/x")
    assert allows(doc, "s3:ListBucket", bucket, {"s3:prefix": f"{PREFIX}/lake/gps_data/"})
    assert not allows(doc, "s3:ListBucket", bucket, {"s3:prefix": f"{PREFIX}/checkpoints/"})
    assert allows(doc, "s3:GetBucketLocation", bucket)


def test_results_outside_the_prefix_are_granted_and_expired(cfg: Params) -> None:
    other = aws_params(athena_output=f"s3://{BUCKET}/athena/")
    doc = runner_policy(other, ACCOUNT)
    assert allows(doc, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/athena/q1.csv")
    assert allows(doc, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "athena/"})
    assert [r["Filter"]["Prefix"] for r in lifecycle_rules(other)] == [f"{PREFIX}/", "athena/"]


def test_moto_enforces_the_runner_policy_on_objects(session: boto3.Session, cfg: Params) -> None:
    """A user holding only the runner policy writes and reads under B/P/ and is denied elsewhere.

    moto evaluates Action and Resource for S3 object requests; it does not evaluate the s3:prefix
    condition of ListBucket (a listing of other/ passes there), which the matcher above covers.
    """
    done = provision(cfg, boto3_session=session)
    s3 = session.client("s3")
    s3.create_bucket(Bucket="another-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    iam = session.client("iam")
    iam.create_user(UserName="lab-runner")
    iam.attach_user_policy(UserName="lab-runner", PolicyArn=done.runner_policy_arn)
    key = iam.create_access_key(UserName="lab-runner")["AccessKey"]
    runner = boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    ).client("s3")

    @set_initial_no_auth_action_count(0)  # every request below is authenticated and authorized
    def as_runner() -> None:
        runner.put_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/gps_data/x.parquet", Body=b"lake")
        assert runner.get_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/gps_data/x.parquet")["Body"].read() == b"lake"
        runner.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/gps_data/x.parquet")
        for bucket, key_ in ((BUCKET, "other/x"), (BUCKET, PREFIX), ("another-bucket", f"{PREFIX}/lake/x")):
            with pytest.raises(ClientError) as denied:
                runner.put_object(Bucket=bucket, Key=key_, Body=b"x")
            assert denied.value.response["Error"]["Code"] == "AccessDenied", (bucket, key_)
        for denied_call in (
            lambda: runner.get_object(Bucket=BUCKET, Key="other/x"),
            lambda: runner.delete_object(Bucket=BUCKET, Key="other/x"),
            lambda: runner.delete_bucket(Bucket=BUCKET),
        ):
            with pytest.raises(ClientError) as denied:
                denied_call()
            assert denied.value.response["Error"]["Code"] == "AccessDenied"

    s3.put_object(Bucket=BUCKET, Key="other/x", Body=b"not the lab's")
    as_runner()
    assert s3.get_object(Bucket=BUCKET, Key="other/x")["Body"].read() == b"not the lab's"


# -- teardown -----------------------------------------------------------------------------------------


def leftovers(session: boto3.Session) -> dict[str, list[str]]:
    s3, glue, athena, iam = (session.client(n) for n in ("s3", "glue", "athena", "iam"))
    return {
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
        "databases": [d["Name"] for d in glue.get_databases()["DatabaseList"]],
        "workgroups": [w["Name"] for w in athena.list_work_groups()["WorkGroups"] if w["Name"] != "primary"],
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"]],
        "policies": [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]],
    }


def _add_table(session: boto3.Session) -> None:
    session.client("glue").create_table(
        DatabaseName="smartcity",
        TableInput={
            "Name": "gps_data",
            "StorageDescriptor": {
                "Columns": [{"Name": "id", "Type": "string"}],
                "Location": f"s3://{BUCKET}/{PREFIX}/lake/gps_data/",
            },
        },
    )


def test_teardown_refuses_to_delete_data_without_yes(session: boto3.Session, cfg: Params) -> None:
    provision(cfg, boto3_session=session)
    session.client("s3").put_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/gps_data/x.parquet", Body=b"x")
    _add_table(session)
    before = leftovers(session)
    with pytest.raises(TeardownRefused, match=r"objects under s3://.*/smartcity/; 1 tables in Glue database"):
        teardown(cfg, boto3_session=session)
    assert leftovers(session) == before
    assert session.client("s3").head_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/gps_data/x.parquet")


def test_teardown_leaves_nothing_and_a_second_is_a_no_op(session: boto3.Session, cfg: Params) -> None:
    done = provision(cfg, redshift_workgroup_arn=REDSHIFT_WG, boto3_session=session)
    s3 = session.client("s3")
    for n in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/gps_data/part-{n}.parquet", Body=b"x")
    s3.create_multipart_upload(Bucket=BUCKET, Key=f"{PREFIX}/checkpoints/lake/_staging/0/_raw/big")
    _add_table(session)
    iam = session.client("iam")
    iam.create_user(UserName="alice")
    iam.attach_user_policy(UserName="alice", PolicyArn=done.runner_policy_arn)
    rows = teardown(cfg, confirm=True, boto3_session=session)
    assert {r.resource: r.status for r in rows} == {
        RUNNER_POLICY: "deleted",
        "glue crawler": "deleted",
        CRAWLER_ROLE: "deleted",
        COPY_ROLE: "deleted",
        "athena workgroup": "deleted",
        "glue database": "deleted",
        "s3 objects": "deleted",
        "s3 bucket": "deleted",
    }
    assert session.client("glue").get_crawlers()["Crawlers"] == []
    assert [r.note for r in rows if r.resource == RUNNER_POLICY] == ["detached from user/alice"]
    assert leftovers(session) == {"buckets": [], "databases": [], "workgroups": [], "roles": [], "policies": []}
    again = teardown(cfg, boto3_session=session)  # nothing left: no data, so no --yes needed
    assert {r.status for r in again} == {"absent"}


def test_teardown_keeps_a_shared_bucket_and_what_is_not_ours(session: boto3.Session, cfg: Params) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    owner_rule = {"ID": "owner-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [owner_rule]})
    s3.put_object(Bucket=BUCKET, Key="logs/keep.txt", Body=b"someone else's")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}x/keep.txt", Body=b"a sibling prefix")
    provision(cfg, boto3_session=session)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/lake/x", Body=b"ours")
    rows = statuses(teardown(cfg, confirm=True, boto3_session=session))
    assert rows["s3 bucket"] == "kept" and rows["s3 lifecycle rules"] == "deleted"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["logs/keep.txt", f"{PREFIX}x/keep.txt"]
    assert s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"][0]["ID"] == "owner-logs"
    assert len(s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]) == 1


def test_teardown_keep_bucket(session: boto3.Session, cfg: Params) -> None:
    provision(cfg, boto3_session=session)
    rows = statuses(teardown(cfg, keep_bucket=True, boto3_session=session))  # an empty lab: no data, no --yes
    assert rows["s3 bucket"] == "kept" and rows["s3 objects"] == "absent"
    assert leftovers(session)["buckets"] == [BUCKET]
    with pytest.raises(ClientError):
        session.client("s3").get_bucket_lifecycle_configuration(Bucket=BUCKET)
    assert statuses(teardown(cfg, boto3_session=session))["s3 bucket"] == "deleted"


# -- command line -------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smartcity")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_provision_and_teardown_of_the_aws_profile(
    fake_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = str(project_root() / "params" / "aws.yaml")
    cfg = profiles.load_params(profile)
    with mock_aws():
        assert _cli(["aws", "provision", "--params", profile]) == 0
        out = capsys.readouterr().out
        assert f'redshift_copy_role_arn: "arn:aws:iam::{ACCOUNT}:role/smartcity-redshift-copy"' in out
        assert (
            "aws redshift-serverless create-workgroup" in out
            and f"--base-capacity {cfg.warehouse.redshift_base_rpu}" in out
        )
        assert f"arn:aws:iam::{ACCOUNT}:policy/smartcity-lab-runner" in out
        assert _cli(["aws", "provision", "--params", profile]) == 0
        table = capsys.readouterr().out.split("\n\n")[0].splitlines()[2:]
        assert table and all(" found" in line or "not created" in line for line in table)
        bucket = params.fill_account(cfg).aws.s3_bucket
        boto3.client("s3", region_name=cfg.aws.region).put_object(
            Bucket=bucket, Key=f"{cfg.aws.s3_prefix}/lake/x", Body=b"x"
        )
        assert _cli(["aws", "teardown", "--params", profile]) == 1
        assert "run again with --yes" in capsys.readouterr().err
        assert _cli(["aws", "teardown", "--params", profile, "--yes"]) == 0
        assert "delete-workgroup" in capsys.readouterr().out
        assert boto3.client("s3", region_name=cfg.aws.region).list_buckets()["Buckets"] == []
    assert _cli(["aws", "provision", "--params", str(project_root() / "params" / "missing.yaml")]) == 2
