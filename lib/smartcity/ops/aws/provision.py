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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartcity.ops.aws.athena import ensure_athena_workgroup, teardown_workgroup
from smartcity.ops.aws.glue import (
    ensure_crawler,
    ensure_glue_database,
    glue_tables,
    teardown_crawler,
    teardown_glue,
)
from smartcity.ops.aws.iam import (
    check_iam_owners,
    copy_role_policy,
    crawler_role_policy,
    ensure_role,
    ensure_runner_policy,
    role_exists,
    teardown_role,
    teardown_runner_policy,
)
from smartcity.ops.aws.names import (
    COPY_ROLE,
    CRAWLER_ROLE,
    NOT_CREATED,
    AwsError,
    Layout,
    Row,
    TeardownRefused,
    copy_role_name,
    crawler_role_name,
    layout,
    session_of,
)
from smartcity.ops.aws.redshift import check_workgroup_arn, redshift_steps
from smartcity.ops.aws.s3 import bucket_exists, ensure_bucket, teardown_bucket, versions
from smartcity.params import Params, fill_account
from smartcity.platform.aws import caller_account

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3


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


def provision(
    cfg: Params, *, redshift_workgroup_arn: str = "", boto3_session: boto3.Session | None = None
) -> Provisioned:
    """Create or find every resource of the aws profile; a second run changes nothing."""
    session = session_of(cfg, boto3_session)
    cfg = fill_account(cfg, session)
    account = caller_account(session)
    check_workgroup_arn(cfg, account, redshift_workgroup_arn)
    path, name = copy_role_name(cfg)
    if cfg.warehouse.redshift_copy_role_arn and f":{account}:" not in cfg.warehouse.redshift_copy_role_arn:
        raise AwsError(
            f"redshift_copy_role_arn {cfg.warehouse.redshift_copy_role_arn!r} names another account than the "
            f"credentials' ({account}): fix the parameter or use that account's credentials"
        )
    rows = ensure_bucket(cfg, session)
    rows.append(ensure_glue_database(cfg, session))
    rows.append(ensure_athena_workgroup(cfg, session))
    row, copy_arn = ensure_role(cfg, COPY_ROLE, path, name, "redshift.amazonaws.com", copy_role_policy(cfg), session)
    rows.append(row)
    if cfg.aws.glue_crawler:
        row, crawler_role_arn = ensure_role(
            cfg,
            CRAWLER_ROLE,
            "/",
            crawler_role_name(cfg),
            "glue.amazonaws.com",
            crawler_role_policy(cfg, account),
            session,
        )
        rows.append(row)
        rows.append(ensure_crawler(cfg, crawler_role_arn, session))
    runner = ensure_runner_policy(cfg, account, redshift_workgroup_arn, session)
    rows.append(runner)
    steps: list[str] = []
    if cfg.pipeline.warehouse_engine == "redshift":
        rows.append(
            Row(
                "redshift serverless",
                f"namespace and workgroup {cfg.warehouse.redshift_workgroup}",
                NOT_CREATED,
                "moto cannot test it: run the commands below",
            )
        )
        steps = redshift_steps(cfg, copy_arn)
    return Provisioned(
        rows=rows,
        copy_role_arn=copy_arn,
        runner_policy_arn=runner.name,
        redshift_steps=steps,
        params_current=cfg.warehouse.redshift_copy_role_arn == copy_arn,
    )


def _data_to_delete(cfg: Params, s3: Any, glue: Any, where: Layout, bucket_exists: bool) -> list[str]:
    """What teardown would delete that is data, not configuration: objects under our prefixes, Glue tables."""
    found: list[str] = []
    if bucket_exists:
        for key in where.lab_keys:
            if next(versions(s3, where.bucket, key, limit=1), None):
                found.append(f"objects under s3://{where.bucket}/{key}")
    tables = glue_tables(glue, cfg.aws.glue_database)
    if tables:
        found.append(f"{len(tables)} tables in Glue database {cfg.aws.glue_database}")
    return found


def teardown(
    cfg: Params, *, confirm: bool = False, keep_bucket: bool = False, boto3_session: boto3.Session | None = None
) -> list[Row]:
    """Delete what provision created; refuse (TeardownRefused) to delete objects or tables unless confirm.

    Idempotent: whatever is already gone is reported "absent". Only objects under the lab's own
    prefixes are deleted; the bucket goes only if that leaves it empty and keep_bucket is false.
    Redshift Serverless, created by hand, is not touched.
    """
    session = session_of(cfg, boto3_session)
    cfg = fill_account(cfg, session)
    account = caller_account(session)
    where = layout(cfg)
    s3, glue, iam = session.client("s3"), session.client("glue"), session.client("iam")
    exists = bucket_exists(s3, where.bucket)
    data = _data_to_delete(cfg, s3, glue, where, exists)
    if data and not confirm:
        raise TeardownRefused("teardown would delete " + "; ".join(data) + ": run again with --yes to delete them")
    check_iam_owners(cfg, iam, account)  # before deleting anything: no half-done teardown on a foreign name
    rows = [teardown_runner_policy(cfg, iam, account)]
    if cfg.aws.glue_crawler or role_exists(iam, crawler_role_name(cfg)):
        rows.append(teardown_crawler(cfg, glue))
        rows.append(teardown_role(cfg, iam, crawler_role_name(cfg), CRAWLER_ROLE))
    rows.append(teardown_role(cfg, iam, copy_role_name(cfg)[1], COPY_ROLE))
    rows.append(teardown_workgroup(cfg, session.client("athena")))
    rows.extend(teardown_glue(cfg, glue))
    rows.extend(teardown_bucket(cfg, s3, where, keep_bucket))
    return rows
