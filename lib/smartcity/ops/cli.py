"""Command line: ``smartcity run | simulate | stream | live | bench | capacity | setup | params | aws``.

Also ``python -m smartcity``. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from smartcity.params import ParamsError, describe, from_mapping
from smartcity.platform.params import display_path, project_root
from smartcity.platform.processes import EngineError
from smartcity.profiles import load_params, resolve_file


def _run(args: argparse.Namespace) -> int:
    load_params(args.params)  # a bad params file is named before the notebook machinery loads
    from smartcity.ops import runner

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


def _simulate(args: argparse.Namespace) -> int:
    from smartcity import steps
    from smartcity.fleet import summaries
    from smartcity.fleet.contracts import TOPICS
    from smartcity.fleet.simulation import FleetSimulation
    from smartcity.ingest.producer import ProduceError, produce
    from smartcity.platform import topics

    overrides = {
        name: value
        for name, value in (
            ("vehicles", args.vehicles),
            ("duration_seconds", args.duration),
            ("seed", args.seed),
            ("speedup", args.speedup),
            ("producer_backend", args.backend),
        )
        if value is not None
    }
    cfg = from_mapping({**load_params(args.params).as_dict(), **overrides}, source="smartcity simulate")
    events = FleetSimulation(cfg.fleet).events()
    if args.dry_run:
        counts = summaries.write_jsonl(events, args.out)
        where = "stdout" if str(args.out) == "-" else args.out
        print(f"wrote {sum(counts.values())} events to {where}: {dict(counts)}", file=sys.stderr)
        return 0
    with steps.open_broker(cfg):  # an embedded broker started here is stopped on the way out
        topics.ensure_topics(cfg.kafka.bootstrap, TOPICS, partitions=cfg.kafka.partitions)
        try:
            result = produce(cfg.kafka.bootstrap, events, backend=cfg.kafka.producer_backend, speedup=cfg.fleet.speedup)
        except ProduceError as exc:
            print(f"smartcity simulate: {exc}", file=sys.stderr)
            return 1
    print(result.table().to_string())
    return 0


def _stream(args: argparse.Namespace) -> int:
    import signal

    from smartcity import steps
    from smartcity.stream import query

    cfg = load_params(args.params)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    with steps.open_broker(cfg), steps.spark(cfg) as session:
        query.serve(
            session,
            steps.stream_job(steps.open_lab(cfg)),
            duration_s=args.duration or 0.0,
            should_stop=lambda: bool(stopping),
            on_batch=lambda done: print(f"batch {done['batch']}: {done['rows']}", flush=True),
        )
    return 0


def _live(args: argparse.Namespace) -> int:
    from smartcity import steps
    from smartcity.ops import live

    cfg = load_params(args.params)
    if args.stop:
        stopped = steps.stop_live(cfg)
        print(f"smartcity live: {'stopped the' if stopped else 'no'} background live run of profile {cfg.profile!r}")
        return 0
    try:
        summary = live.run_live(cfg, args.duration, console=not args.quiet)
    except BaseException as exc:
        live.record_exit(cfg, exc)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    live.record_exit(cfg, None)
    print(json.dumps(summary, indent=1))
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Each benchmark's module is imported when it runs: the simulator's memory figure is this process's."""
    if args.only in (None, "producer"):
        from smartcity.ops.bench import producer

        results = producer.run_producer_bench(events=args.events, seed_pattern_events=args.seed_pattern_events)
        print(producer.render_producer_markdown(results))
    if args.only in (None, "simulator"):
        from smartcity.ops.bench import simulator

        print(simulator.render_simulator_markdown(simulator.run_simulator_bench(hours=args.simulator_hours)))
    if args.only in (None, "stream"):
        from smartcity.ops.bench import stream

        print(stream.render_stream_markdown(stream.run_stream_bench()))
    if args.only in (None, "freshness"):
        from smartcity.ops.bench import freshness

        seconds = args.freshness_seconds
        results = freshness.run_freshness_bench(
            rate=args.freshness_rate, seconds=seconds, settle_s=min(60.0, seconds / 3)
        )
        print(freshness.render_freshness_markdown(results))
    if args.only in (None, "scaling"):
        from smartcity.ops.bench import scaling

        print(scaling.render_scaling_markdown(scaling.run_scaling_bench()))
    if args.only in (None, "trino"):
        from smartcity.ops.bench import trino

        print(trino.render_trino_markdown(trino.run_trino_bench()))
    if args.only in (None, "capacity-rates"):  # needs simulator.json and producer.json: runs after them
        from smartcity.ops.bench import capacity_rates

        print(capacity_rates.render_capacity_markdown(capacity_rates.run_capacity_bench()))
    return 0


def _capacity(args: argparse.Namespace) -> int:
    from smartcity.ops import capacity

    try:
        rates, source = capacity.load_rates(measured_path=args.rates)
        if args.vehicles is None:
            frame = capacity.preset_table(rates, args.fix_seconds)
        else:
            frame = capacity.table(
                {f"{args.vehicles:,} vehicles": capacity.estimate(rates, args.vehicles, args.fix_seconds)}
            )
    except (capacity.RatesError, ValueError) as exc:
        print(f"smartcity capacity: {exc}", file=sys.stderr)
        return 2
    print(capacity.render(rates, source, frame))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from smartcity.advice import contract as advice_contract
    from smartcity.fleet import contracts

    for path in [*contracts.publish_schemas(), advice_contract.publish_schema()]:
        print(f"wrote {display_path(path)}")
    return 0


def _setup(args: argparse.Namespace) -> int:
    from smartcity.platform import jvm
    from smartcity.present import offline
    from smartcity.stream import contract_check

    for name, count in jvm.setup_all().items():
        print(f"{name}: {count} jars in {jvm.cache_dir().relative_to(project_root()) / name}")
    print(f"contract check: {display_path(contract_check.jar())}")
    packages = offline.setup_all()
    print(f"offline map assets: {len(packages)} npm packages in {offline.cache_dir().relative_to(project_root())}")
    return 0


def _params(args: argparse.Namespace) -> int:
    if args.action == "resolve":
        if not args.profile:
            raise ParamsError("smartcity params resolve needs a profile file, e.g. params/aws.yaml")
        text = yaml.safe_dump(resolve_file(args.profile), sort_keys=False, allow_unicode=True)
        header = f"# {args.profile} resolved by `smartcity params resolve`: pass it to papermill with -f; do not edit\n"
        if args.out and args.out != "-":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(header + text)
            print(f"wrote {args.out}")
        else:
            print(header + text, end="")
        return 0
    for name, kind, default, doc in describe():
        print(f"{name:24} {kind:6} {default!s:30} {doc}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from smartcity.ops import runner

    runner.refresh_stored_outputs(tuple(args.notebooks) if args.notebooks else runner.NOTEBOOKS)
    return 0


_PARAMS_HELP = "params YAML file (default: params/local.yaml)"


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """run, simulate, stream and live: the pipeline, whole or in parts."""
    run = sub.add_parser("run", help="run the six notebooks in order and write the HTML report")
    run.add_argument("--params", default=None, help=_PARAMS_HELP)
    run.add_argument(
        "--notebooks",
        nargs="+",
        metavar="NAME",
        help="run only these notebooks (01_simulate ... 06_route_map), in pipeline order (default: all six)",
    )
    run.set_defaults(func=_run)
    simulate = sub.add_parser("simulate", help="simulate the fleet and produce its events to Kafka (or a file)")
    simulate.add_argument("--params", default=None, help=_PARAMS_HELP)
    simulate.add_argument("--vehicles", type=int, help="fleet size (overrides the params file)")
    simulate.add_argument(
        "--duration", type=float, metavar="SECONDS", help="simulated seconds to run (0: until all arrive)"
    )
    simulate.add_argument("--seed", type=int, help="random seed")
    simulate.add_argument("--speedup", type=float, help="1: real time, 60: a minute per second, 0: as fast as possible")
    simulate.add_argument("--backend", choices=("kafka-python", "confluent-kafka"), help="producer backend")
    simulate.add_argument("--dry-run", action="store_true", help="write the events to --out instead of Kafka")
    simulate.add_argument(
        "--out", type=Path, help="with --dry-run: JSON Lines file ({topic, key, value} per line), - for stdout"
    )
    simulate.set_defaults(func=_simulate)
    streaming = sub.add_parser("stream", help="run the Kafka -> lake stream continuously (until Ctrl-C or --duration)")
    streaming.add_argument("--params", default=None, help=_PARAMS_HELP)
    streaming.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    streaming.set_defaults(func=_stream)
    live = sub.add_parser("live", help="drive the fleet while the stream runs, with a live status table")
    live.add_argument("--params", default="params/live.yaml", help="params YAML file (default: params/live.yaml)")
    live.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="seconds the fleet drives before the stream drains (default: live_seconds; 0: until Ctrl-C)",
    )
    live.add_argument("--quiet", action="store_true", help="no status table (the JSON Lines are written anyway)")
    live.add_argument(
        "--stop",
        action="store_true",
        help="stop this profile's background live run (started by 01_simulate): drain, then stop",
    )
    live.set_defaults(func=_live)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="run the benchmarks (results in outputs/bench/)")
    bench.add_argument(
        "--only",
        choices=("producer", "simulator", "stream", "freshness", "scaling", "trino", "capacity-rates"),
        help="run one part of the benchmark",
    )
    bench.add_argument(
        "--freshness-rate",
        type=float,
        default=10_000.0,
        metavar="EVENTS_PER_S",
        help="events/s of the live run whose freshness is measured (default 10,000)",
    )
    bench.add_argument(
        "--freshness-seconds",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="how long that live run drives; its first third (at most 60 s) is reported apart",
    )
    bench.add_argument(
        "--simulator-hours",
        type=int,
        default=30,
        help="simulated hours of the simulator's memory run (an endless live-scale fleet)",
    )
    bench.add_argument("--events", type=int, default=200_000, help="events per producer measurement")
    bench.add_argument(
        "--seed-pattern-events",
        type=int,
        default=2_000,
        help="events for the slow seed pattern (flush after every message)",
    )
    bench.set_defaults(func=_bench)


def _add_tool_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """capacity, schemas, setup, params, aws and refresh-notebooks."""
    cap = sub.add_parser("capacity", help="size Kafka, Spark, lake and warehouse for N vehicles from measured rates")
    cap.add_argument("--vehicles", type=int, help="vehicles reporting at once (default: the corridor, London and UK)")
    cap.add_argument(
        "--fix-seconds", type=float, default=5.0, help="seconds between two fixes of a vehicle (default 5)"
    )
    cap.add_argument(
        "--rates",
        type=Path,
        help="a rates.json to use if newer than the committed rates (default outputs/bench/rates.json)",
    )
    cap.set_defaults(func=_capacity)
    sub.add_parser(
        "schemas",
        help="write the JSON Schema of every topic (lib/smartcity/fleet/schemas/<topic>.v<N>.schema.json) and of "
        "the route advice (lib/smartcity/advice/schemas/)",
    ).set_defaults(func=_schemas)
    sub.add_parser(
        "setup", help="check Java, fetch the Kafka and Spark jars (Maven Central) and the map assets (npm)"
    ).set_defaults(func=_setup)
    params = sub.add_parser(
        "params",
        help="list every parameter with its type, default and meaning; "
        "`params resolve PROFILE [-o FILE]` merges a profile with what it extends",
    )
    params.add_argument("action", nargs="?", choices=["resolve"], help="resolve: print or write the flat profile")
    params.add_argument("profile", nargs="?", help="params file to resolve, e.g. params/aws.yaml")
    params.add_argument("-o", "--out", type=Path, help="write the resolved profile here (default: stdout)")
    params.set_defaults(func=_params)
    from smartcity.ops.aws import cli as aws

    aws.add_commands(sub)
    refresh = sub.add_parser("refresh-notebooks", help="re-run notebooks in place: new reference outputs for nbval")
    refresh.add_argument("notebooks", nargs="*", help="names such as 01_simulate (default: all, in order)")
    refresh.set_defaults(func=_refresh)


def parser() -> argparse.ArgumentParser:
    """The command line's parser, every subcommand with its options."""
    top = argparse.ArgumentParser(prog="smartcity", description="Smart City streaming lab")
    top.add_argument("-v", "--verbose", action="store_true", help="log what the lab starts and stops")
    sub = top.add_subparsers(dest="command", required=True)
    _add_pipeline_commands(sub)
    _add_bench_command(sub)
    _add_tool_commands(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if getattr(args, "dry_run", False) and args.out is None:
        cli.error("--dry-run needs --out FILE (or --out - for stdout)")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # kafka-python warns about its own event loop's timing under load
        logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("smartcity: interrupted; engines the lab started have been stopped", file=sys.stderr)
        return 130
    except (EngineError, ParamsError) as exc:  # a clear one-line error beats a traceback for known failures
        print(f"smartcity {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ParamsError) else 1
