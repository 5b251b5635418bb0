"""``mile-ros bench``: every speed benchmark, one subcommand each (the code: ``mile_ros.benchmarks``).

``mile-ros bench NAME`` runs one; ``mile-ros bench all`` runs each with its defaults (``--quick``: each
with short settings, a check that every benchmark runs on this machine). ``mile-ros benchmark`` is the
paper's experiments, not a speed figure.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import traceback

from mile_ros.benchmarks import BENCHES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench", help="speed benchmarks: " + ", ".join(BENCHES) + ", all", description=__doc__.splitlines()[0]
    )
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, bench in BENCHES.items():
        module = importlib.import_module(bench.module)
        p = benches.add_parser(name, help=bench.help, description=(module.__doc__ or "").split("\n\n")[0])
        module.add_arguments(p)
        p.set_defaults(func=module.run)
        parsers[name] = p
    every = benches.add_parser("all", help="every benchmark, one after the other; failures are listed at the end")
    every.add_argument("--quick", action="store_true", help="short settings: checks each runs, figures are rough")
    every.add_argument("--skip", default="", metavar="NAMES", help="comma list of benchmarks to leave out")
    every.set_defaults(func=functools.partial(_run_all, parsers))


def _run_all(parsers: dict[str, argparse.ArgumentParser], args: argparse.Namespace) -> int:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(parsers)
    if unknown:
        print(
            f"mile-ros bench all: unknown benchmark(s) {sorted(unknown)}; known: {', '.join(parsers)}", file=sys.stderr
        )
        return 2
    outcome: dict[str, str] = {}
    for name, parser in parsers.items():
        if name in skip:
            continue
        argv = list(BENCHES[name].quick) if args.quick else []
        print(f"== mile-ros bench {' '.join([name, *argv])}", flush=True)
        bench_args = parser.parse_args(argv)
        try:
            rc = int(bench_args.func(bench_args) or 0)
        except KeyboardInterrupt:
            raise
        except Exception:  # one benchmark's failure (a missing extra, a dead node) must not hide the others'
            traceback.print_exc()
            rc = 1
        outcome[name] = "ok" if rc == 0 else f"failed ({rc})"
        sys.stdout.flush()
    if not outcome:
        print("mile-ros bench all: every benchmark was skipped", file=sys.stderr)
        return 2
    print("== " + ", ".join(f"{name}: {state}" for name, state in outcome.items()))
    return 0 if all(state == "ok" for state in outcome.values()) else 1
