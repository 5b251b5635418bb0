"""``mile-ros bags info|check|repair DIR``: a session's episode bags, one line each, what is wrong, the fix.

``info`` lists every episode bag under DIR (a run directory, its ``bags/`` or one bag): mode, steps,
interventions, success and end reason, and its state (``ok``, ``discarded``, ``incomplete``,
``truncated``, ``bad data``, ``unreadable``, ``quarantined``). ``check`` adds each bag's problems (what
is missing or truncated) and exits 1 when a bag has one. ``repair`` reindexes bags whose recorder died
(the original file kept as ``*.mcap.truncated``, the episode marked incomplete so it is never trained
on) and rewrites missing sidecars; ``--quarantine`` also moves bags that cannot be trained on to
``quarantine/``; ``--dry-run`` only says what it would do. Nothing is deleted.
Exit status 0: fine (or repaired); 1: ``check`` found problems; 2: bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bags",
        help="info, check or repair a session's episode bags",
        description=__doc__.splitlines()[0].strip("`"),
    )
    p.add_argument("action", choices=("info", "check", "repair"))
    p.add_argument("dir", type=Path, help="a run directory, a folder of bags, or one bag")
    p.add_argument("--json", action="store_true", help="info/check: one JSON list instead of the table")
    p.add_argument("--quarantine", action="store_true", help="repair: also quarantine bags that cannot be trained on")
    p.add_argument("--dry-run", action="store_true", help="repair: only say what would be done")
    p.set_defaults(func=run)


def _row(info, root: Path) -> str:
    name = str(info.path.relative_to(root)) if info.path.is_relative_to(root) and info.path != root else info.path.name
    success = "-" if info.success is None else ("yes" if info.success else "no")
    steps = "-" if info.steps is None else str(info.steps)
    inter = "-" if info.interventions is None else str(info.interventions)
    return (
        f"{name:<34} {info.mode or '-':<6} {steps:>6} {inter:>6} {success:>7} {info.end_reason or '-':<11} {info.state}"
    )


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.bag_episode import BagError
    from mile_ros.graph.bag_tools import inspect_bags, repair_bag, to_json

    try:
        infos = inspect_bags(args.dir)
    except (BagError, OSError) as exc:
        print(f"mile-ros bags: {exc}", file=sys.stderr)
        return 2
    if not infos:
        print(f"mile-ros bags: no episode bag under {args.dir}", file=sys.stderr)
        return 2
    root = args.dir if args.dir.is_dir() and infos[0].path != args.dir else args.dir.parent
    if args.action == "repair":
        done = 0
        for info in infos:
            try:
                what = repair_bag(info, quarantine=args.quarantine, dry_run=args.dry_run)
            except (BagError, OSError) as exc:
                print(f"{info.path}: cannot repair: {exc}", file=sys.stderr)
                continue
            if what:
                done += 1
                print(f"{info.path}: {what}")
        print(f"{done} of {len(infos)} bags {'to repair' if args.dry_run else 'repaired'}")
        return 0
    if args.json:
        print(to_json(infos))
    else:
        print(f"{'bag':<34} {'mode':<6} {'steps':>6} {'interv':>6} {'success':>7} {'end':<11} state")
        for info in infos:
            print(_row(info, root))
            if args.action == "check":
                for problem in info.problems:
                    print(f"    problem: {problem}")
                for note in info.notes:
                    print(f"    note: {note}")
                if info.repair:
                    print(f"    repair: {info.repair}")
        usable = [i for i in infos if i.state == "ok"]
        steps = sum(i.steps or 0 for i in usable)
        inter = sum(i.interventions or 0 for i in usable)
        others = ", ".join(f"{n} {s}" for s, n in _counts(infos).items() if s != "ok")
        print(
            f"{len(infos)} bags: {len(usable)} ok with {steps} steps ({inter} intervened)"
            + (f"; {others}" if others else "")
        )
    if args.action == "check":
        bad = [i for i in infos if i.problems]
        return 1 if bad else 0
    return 0


def _counts(infos) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in infos:
        out[i.state] = out.get(i.state, 0) + 1
    return out
