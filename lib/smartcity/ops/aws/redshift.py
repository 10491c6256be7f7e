"""Redshift Serverless, which provisioning cannot create (moto has no backend for it): the commands to run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from smartcity.params import Params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    pass

from smartcity.ops.aws.names import AwsError, region_partition


def redshift_steps(cfg: Params, copy_role_arn: str) -> list[str]:
    """The commands that create the Redshift Serverless namespace, workgroup and usage limit by hand.

    The usage limit is one hour of base capacity a day (redshift_base_rpu RPU-hours); past it the
    workgroup is deactivated, so a forgotten BI session cannot run up a bill.
    """
    region, name = cfg.aws.region, cfg.warehouse.redshift_workgroup
    return [
        f"aws redshift-serverless create-namespace --region {region} --namespace-name {name} "
        f"--db-name {cfg.warehouse.redshift_database} --iam-roles {copy_role_arn} --default-iam-role-arn {copy_role_arn}",
        f"aws redshift-serverless create-workgroup --region {region} --workgroup-name {name} "
        f"--namespace-name {name} --base-capacity {cfg.warehouse.redshift_base_rpu}",
        f"WORKGROUP_ARN=$(aws redshift-serverless get-workgroup --region {region} --workgroup-name {name} "
        "--query workgroup.workgroupArn --output text)",
        f"aws redshift-serverless create-usage-limit --region {region} --resource-arn $WORKGROUP_ARN "
        f"--usage-type serverless-compute --amount {cfg.warehouse.redshift_base_rpu} --period daily --breach-action deactivate",
    ]


def check_workgroup_arn(cfg: Params, account: str, arn: str) -> None:
    pattern = (
        rf"^arn:{region_partition(cfg.aws.region)}:redshift-serverless:{re.escape(cfg.aws.region)}:"
        rf"{account}:workgroup/[0-9a-f-]+$"
    )
    if arn and not re.match(pattern, arn):
        raise AwsError(
            f"--redshift-workgroup-arn {arn!r} is not a Redshift Serverless workgroup ARN of account "
            f"{account} in {cfg.aws.region} (arn:aws:redshift-serverless:{cfg.aws.region}:{account}:workgroup/<id>)"
        )
