"""The Glue database the catalog registers tables in, and the optional crawler over the lab's tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smartcity.catalog.glue import GlueCatalog
from smartcity.ops.aws.names import (
    ABSENT,
    CREATED,
    DELETED,
    FOUND,
    AwsError,
    Row,
    layout,
    session_of,
)
from smartcity.params import Params

if TYPE_CHECKING:  # boto3 is the `aws` extra: the CLI must import without it
    import boto3


def ensure_glue_database(cfg: Params, boto3_session: boto3.Session | None = None) -> Row:
    """The Glue database the catalog registers tables in."""
    session = session_of(cfg, boto3_session)
    glue = session.client("glue")
    try:
        glue.get_database(Name=cfg.aws.glue_database)
        return Row("glue database", cfg.aws.glue_database, FOUND)
    except glue.exceptions.EntityNotFoundException:
        pass
    glue.create_database(
        DatabaseInput={"Name": cfg.aws.glue_database, "Description": f"smart-city lab tables of {layout(cfg).root}"}
    )
    return Row("glue database", cfg.aws.glue_database, CREATED)


def ensure_crawler(cfg: Params, role_arn: str, session: boto3.Session) -> Row:
    """The optional Glue crawler over the lab's tables (a catalog target; 03_catalog starts it after registering).

    Created here because creating it passes its role (iam:PassRole), which the lab runner may not do.
    """
    glue = session.client("glue")
    try:
        glue.get_crawler(Name=cfg.aws.crawler_name(cfg.profile))
        return Row("glue crawler", cfg.aws.crawler_name(cfg.profile), FOUND)
    except glue.exceptions.EntityNotFoundException:
        GlueCatalog(cfg.aws, cfg.profile, cfg.paths.catalog, session).create_crawler(role_arn)
        return Row("glue crawler", cfg.aws.crawler_name(cfg.profile), CREATED)


def teardown_crawler(cfg: Params, glue: Any) -> Row:
    try:
        glue.delete_crawler(Name=cfg.aws.crawler_name(cfg.profile))
        return Row("glue crawler", cfg.aws.crawler_name(cfg.profile), DELETED)
    except glue.exceptions.EntityNotFoundException:
        return Row("glue crawler", cfg.aws.crawler_name(cfg.profile), ABSENT)


def glue_tables(glue: Any, database: str) -> list[str] | None:
    """Table names of a Glue database; None if the database does not exist."""
    try:
        return [
            t["Name"]
            for page in glue.get_paginator("get_tables").paginate(DatabaseName=database)
            for t in page["TableList"]
        ]
    except glue.exceptions.EntityNotFoundException:
        return None


def teardown_glue(cfg: Params, glue: Any) -> list[Row]:
    tables = glue_tables(glue, cfg.aws.glue_database)
    if tables is None:
        return [Row("glue database", cfg.aws.glue_database, ABSENT)]
    for start in range(0, len(tables), 100):  # BatchDeleteTable takes at most 100 names
        answer = glue.batch_delete_table(DatabaseName=cfg.aws.glue_database, TablesToDelete=tables[start : start + 100])
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise AwsError(
                f"could not delete Glue table {cfg.aws.glue_database}.{first['TableName']}: "
                f"{first['ErrorDetail'].get('ErrorMessage', '')}"
            )
    glue.delete_database(Name=cfg.aws.glue_database)
    return [Row("glue database", cfg.aws.glue_database, DELETED, f"{len(tables)} tables" if tables else "")]
