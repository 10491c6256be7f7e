"""Command line: ``smartcity run``, ``smartcity setup``, ``smartcity params`` (also ``python -m smartcity``)."""

from __future__ import annotations

import argparse
import logging
import sys

from smartcity.config import NOTEBOOKS, ParamsError, describe, project_root


def _run(args: argparse.Namespace) -> int:
    from smartcity import runner

    try:
        result = runner.run(args.params, tuple(args.notebooks) if args.notebooks else runner.NOTEBOOKS)
    except (ParamsError, runner.RunError) as exc:
        print(f"smartcity run: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ParamsError) else 1
    total = sum(r.seconds for r in result.notebooks)
    print(f"done: {len(result.notebooks)} notebooks in {total:.0f} s")
    if result.index is not None:
        print(f"report: {result.index.relative_to(project_root())}")
    return 0


def _setup(args: argparse.Namespace) -> int:
    from smartcity import jvm

    for name, count in jvm.setup_all().items():
        print(f"{name}: {count} jars in {jvm.cache_dir().relative_to(project_root()) / name}")
    return 0


def _params(args: argparse.Namespace) -> int:
    for name, kind, default, doc in describe():
        print(f"{name:24} {kind:6} {default!s:30} {doc}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from smartcity import runner

    runner.refresh_stored_outputs(tuple(args.notebooks) if args.notebooks else runner.NOTEBOOKS)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartcity", description="Smart City streaming lab")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the lab starts and stops")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the six notebooks in order and write the HTML report")
    run.add_argument("--params", default=None, help="params YAML file (default: params/local.yaml)")
    run.add_argument("--notebooks", nargs="+", choices=NOTEBOOKS, metavar="NAME",
                     help="run only these notebooks, in pipeline order (default: all six)")
    run.set_defaults(func=_run)
    setup = sub.add_parser("setup", help="check Java and fetch the Kafka and Spark jars from Maven Central")
    setup.set_defaults(func=_setup)
    params = sub.add_parser("params", help="list every parameter with its type, default and meaning")
    params.set_defaults(func=_params)
    refresh = sub.add_parser("refresh-notebooks", help="re-run notebooks in place: new reference outputs for nbval")
    refresh.add_argument("notebooks", nargs="*", help="names such as 01_simulate (default: all, in order)")
    refresh.set_defaults(func=_refresh)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("smartcity: interrupted; engines the lab started have been stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a clear one-line error beats a traceback for known failures
        from smartcity.engines import EngineError

        if isinstance(exc, EngineError):
            print(f"smartcity: {exc}", file=sys.stderr)
            return 1
        raise
