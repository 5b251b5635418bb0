"""``mile-ros sim``: the simulated intervention session on the ROS 2 node graph, without ``ros2 launch``.

Starts the same nodes as ``launch/sim.launch.py`` with the same ``config/sim.yaml``, plus a YAML of
this run's values, and leaves bags, checkpoints, metrics and a learning curve in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import yaml

from mile_ros.nodes import NODE_GROUPS, SESSION_NODE

CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="run the simulated intervention session on the ROS 2 graph",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--task", default="drawer-open-v3", help="Metaworld v3 task (default: drawer-open-v3)")
    p.add_argument("--iterations", type=int, default=5, help="MILE updates (default 5)")
    p.add_argument("--episodes", type=int, default=1, help="intervention episodes per iteration (default 1)")
    p.add_argument(
        "--eval-episodes", type=int, default=10, help="policy-alone episodes per evaluation (default 10)"
    )
    p.add_argument("--out", required=True, type=Path, help="run directory (an existing one is resumed)")
    p.add_argument("--init-policy", type=Path, help="initial MileCheckpoint (default: made for the task)")
    p.add_argument("--config", type=Path, default=CONFIG, help=f"parameter YAML (default {CONFIG})")
    p.add_argument("--max-episode-steps", type=int, help="shorter episodes (default: the task's 500)")
    p.add_argument("--epochs", type=int, help="MILE epochs per update (default from the config)")
    p.add_argument("--mental-rollouts", type=int, help="rollouts for the simulated human's mental model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", action="store_true", help="render and record camera images")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID or a random one)")
    p.set_defaults(func=run)


def initial_policy(args: argparse.Namespace, run_dir: Path) -> Path:
    if args.init_policy:
        if not args.init_policy.is_file():
            raise SystemExit(f"--init-policy {args.init_policy} does not exist")
        return args.init_policy.resolve()
    path = run_dir / "checkpoints" / "initial.pt"
    if not path.is_file():
        from mile_ros.sim import make_initial_policy

        print(f"making the initial policy for {args.task} (once per run directory) ...", flush=True)
        made = make_initial_policy(args.task, seed=args.seed)
        if made.demonstrations is not None:  # the trainer's prior (written first: the policy marks it done)
            made.demonstrations.save(prior_path(path))
        made.checkpoint.save(path)
        print(f"initial policy: success {made.check_metric:.2f} on its check -> {path}", flush=True)
    return path


def prior_path(init: Path) -> Path:
    """Where a session finds the demonstrations its initial policy was cloned from (ROS-free helper)."""
    from mile_ros.sim.initial_policy import demonstrations_path

    return demonstrations_path(init)


def run_params(args: argparse.Namespace, run_dir: Path, init: Path) -> dict:
    """This run's values, layered over the config file (the later --params-file wins)."""

    def node(**values):
        return {"ros__parameters": values}

    bridge = {"task": args.task, "render": bool(args.render)}
    if args.max_episode_steps:
        bridge["max_episode_steps"] = args.max_episode_steps
    human = {"task": args.task, "checkpoint": str(init), "seed": args.seed}
    if args.mental_rollouts:
        human["mental_rollouts"] = args.mental_rollouts
    trainer = {
        "bags_dir": str(run_dir / "bags"),
        "checkpoint_dir": str(run_dir / "checkpoints"),
        "initial_checkpoint": str(init),
        "seed": args.seed,
    }
    if prior_path(init).is_file():
        trainer["prior_data"] = str(prior_path(init))
    if args.epochs:
        trainer["epochs"] = args.epochs
    return {
        "metaworld_bridge": node(**bridge),
        "policy_node": node(checkpoint=str(init)),
        "simulated_human": node(**human),
        "recorder_node": node(output_dir=str(run_dir / "bags"), record_camera=bool(args.render)),
        "trainer_node": node(**trainer),
        "session_manager": node(
            run_dir=str(run_dir),
            task=args.task,
            iterations=args.iterations,
            episodes=args.episodes,
            eval_episodes=args.eval_episodes,
            seed=args.seed,
            initial_checkpoint=str(init),
        ),
    }


def print_summary(run_dir: Path) -> None:
    import json

    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return
    rows = json.loads(metrics.read_text())["iterations"]
    print("\niteration  policy-alone success  success with human  intervention rate")

    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    for r in rows:
        print(
            f"{r['iteration']:>9}  {fmt(r['eval_success_rate']):>20}  {fmt(r['train_success_rate']):>18}"
            f"  {fmt(r['intervention_rate'], '.3f'):>17}"
        )
    print(f"\nrun directory: {run_dir} (metrics.csv, metrics.json, learning_curve.png, bags/, checkpoints/)")


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.launcher import NodeFailedError, NodeProcess, run_graph

    if args.iterations < 1 or args.episodes < 1 or args.eval_episodes < 0:
        raise SystemExit("need --iterations >= 1, --episodes >= 1, --eval-episodes >= 0")
    if not args.config.is_file():
        raise SystemExit(f"config {args.config} does not exist")
    run_dir = args.out.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    init = initial_policy(args, run_dir)
    params = run_dir / "run_params.yaml"
    params.write_text(yaml.safe_dump(run_params(args, run_dir, init), sort_keys=False))
    env = dict(os.environ)
    if args.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(args.domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(random.Random().randint(30, 200)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    files = [args.config.resolve(), params]
    nodes = [NodeProcess(n, files) for n in NODE_GROUPS["sim"]] + [NodeProcess(SESSION_NODE, files, echo=True)]
    print(
        f"starting {len(nodes)} nodes (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, logs in {run_dir / 'logs'})",
        flush=True,
    )
    try:
        code = run_graph(nodes, SESSION_NODE, run_dir / "logs", env)
    except NodeFailedError as exc:
        print(f"\nstopped the graph: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: graph stopped; run the same command again to resume", file=sys.stderr)
        return 130
    if code == 0:
        print_summary(run_dir)
    else:
        print(f"session_manager exited with code {code}; see {run_dir / 'logs'}", file=sys.stderr)
    return code
