"""``smartcity aws provision | teardown`` on the command line: the report table and clear one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from smartcity.ops.aws.names import AwsError, Row, error_code
from smartcity.params import Params, ParamsError
from smartcity.profiles import load_params


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
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - the `aws` extra, needed from here on

    try:
        return action()
    except (AwsError, ParamsError) as exc:
        print(f"smartcity aws {command}: {exc}", file=sys.stderr)
    except ClientError as exc:
        print(
            f"smartcity aws {command}: AWS refused {exc.operation_name}: {error_code(exc)}: "
            f"{exc.response.get('Error', {}).get('Message', '')}",
            file=sys.stderr,
        )
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable
        print(f"smartcity aws {command}: {exc}", file=sys.stderr)
    return 1


def _provision_command(args: argparse.Namespace) -> int:
    cfg = _load(args.params, "provision")
    if cfg is None:
        return 2

    def run() -> int:
        from smartcity.ops.aws.provision import provision  # noqa: PLC0415 - the `aws` extra, needed from here on

        done = provision(cfg, redshift_workgroup_arn=args.redshift_workgroup_arn or "")
        print(format_rows(done.rows))
        print(
            f"\nAttach the lab-runner policy to whoever runs the lab (a user, group or role), e.g.\n"
            f"  aws iam attach-user-policy --user-name <you> --policy-arn {done.runner_policy_arn}"
        )
        if done.redshift_steps:
            print("\nRedshift Serverless is NOT created by this command (moto cannot test it). Create it with:")
            print("\n".join(f"  {step}" for step in done.redshift_steps))
            print(
                f"  smartcity aws provision --params {args.params} --redshift-workgroup-arn $WORKGROUP_ARN"
                "   # lets the lab-runner policy get Redshift credentials"
            )
        print("\nYour params file already names it:" if done.params_current else "\nCopy into your params file:")
        print("\n".join(f"  {line}" for line in done.params_lines()))
        return 0

    return _guarded("provision", run)


def _teardown_command(args: argparse.Namespace) -> int:
    cfg = _load(args.params, "teardown")
    if cfg is None:
        return 2

    def run() -> int:
        from smartcity.ops.aws.provision import teardown  # noqa: PLC0415 - the `aws` extra, needed from here on

        print(format_rows(teardown(cfg, confirm=args.yes, keep_bucket=args.keep_bucket)))
        if cfg.pipeline.warehouse_engine == "redshift":
            print(
                f"\nRedshift Serverless was created by hand; delete it the same way:\n"
                f"  aws redshift-serverless delete-workgroup --region {cfg.aws.region} --workgroup-name {cfg.warehouse.redshift_workgroup}\n"
                f"  aws redshift-serverless delete-namespace --region {cfg.aws.region} --namespace-name {cfg.warehouse.redshift_workgroup}"
            )
        return 0

    return _guarded("teardown", run)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``smartcity aws provision | teardown`` on the CLI's subcommands."""
    aws = sub.add_parser("aws", help="create or delete the AWS resources of the aws profile (least-privilege IAM)")
    commands = aws.add_subparsers(dest="aws_command", required=True)
    default = "params/aws.yaml"
    up = commands.add_parser(
        "provision",
        help="create or find the bucket, Glue database, Athena workgroup, roles and lab-runner policy (idempotent)",
    )
    up.add_argument("--params", default=default, help=f"params YAML file (default: {default})")
    up.add_argument(
        "--redshift-workgroup-arn",
        metavar="ARN",
        help="the Redshift Serverless workgroup's ARN, once created: grants the lab-runner policy "
        "redshift-serverless:GetCredentials on it",
    )
    up.set_defaults(func=_provision_command)
    down = commands.add_parser("teardown", help="delete what provision created (objects under the prefix only)")
    down.add_argument("--params", default=default, help=f"params YAML file (default: {default})")
    down.add_argument("--yes", action="store_true", help="confirm deleting data: the lab's objects and Glue tables")
    down.add_argument("--keep-bucket", action="store_true", help="keep the bucket even if it ends up empty")
    down.set_defaults(func=_teardown_command)
