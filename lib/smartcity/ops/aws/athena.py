"""The Athena workgroup the queries run in, with its result location enforced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smartcity.ops.aws.names import (
    ABSENT,
    CREATED,
    DELETED,
    FOUND,
    KEPT,
    UPDATED,
    Row,
    session_of,
)
from smartcity.params import Params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3

ATHENA_PRIMARY = "primary"  # every account's default workgroup: it cannot be deleted


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
    session = session_of(cfg, boto3_session)
    athena = session.client("athena")
    output = cfg.aws.athena_results
    if cfg.aws.athena_workgroup not in _workgroup_names(athena):
        athena.create_work_group(
            Name=cfg.aws.athena_workgroup,
            Description=f"smart-city lab queries; results in {output}",
            Configuration={"ResultConfiguration": {"OutputLocation": output}, "EnforceWorkGroupConfiguration": True},
        )
        return Row("athena workgroup", cfg.aws.athena_workgroup, CREATED)
    config = athena.get_work_group(WorkGroup=cfg.aws.athena_workgroup)["WorkGroup"].get("Configuration", {})
    if (
        config.get("ResultConfiguration", {}).get("OutputLocation") == output
        and config.get("EnforceWorkGroupConfiguration") is True
    ):
        return Row("athena workgroup", cfg.aws.athena_workgroup, FOUND)
    athena.update_work_group(
        WorkGroup=cfg.aws.athena_workgroup,
        ConfigurationUpdates={
            "EnforceWorkGroupConfiguration": True,
            "ResultConfigurationUpdates": {"OutputLocation": output},
        },
    )
    return Row("athena workgroup", cfg.aws.athena_workgroup, UPDATED)


def teardown_workgroup(cfg: Params, athena: Any) -> Row:
    if cfg.aws.athena_workgroup == ATHENA_PRIMARY:
        return Row("athena workgroup", ATHENA_PRIMARY, KEPT, "the account's default workgroup cannot be deleted")
    if cfg.aws.athena_workgroup not in _workgroup_names(athena):
        return Row("athena workgroup", cfg.aws.athena_workgroup, ABSENT)
    athena.delete_work_group(WorkGroup=cfg.aws.athena_workgroup, RecursiveDeleteOption=True)
    return Row("athena workgroup", cfg.aws.athena_workgroup, DELETED)
