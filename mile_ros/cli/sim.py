"""``mile-ros sim``: the simulated intervention session on the ROS 2 node graph, without ``ros2 launch``.

Starts the same nodes as ``launch/sim.launch.py`` with the same ``config/sim.yaml``, plus a YAML of
this run's values, and leaves bags, checkpoints, metrics and a learning curve in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
from pathlib import Path

import yaml

from mile_ros.graph.launcher import domains_in_use
from mile_ros.nodes import NODE_GROUPS, SESSION_NODE

DOMAIN_IDS = range(0, 102)  # safe on Linux (ROS 2's "The ROS_DOMAIN_ID" guide)


class UsageError(Exception):
    """A bad argument or run directory, found before anything is written: exit code 2."""


def default_config() -> Path:
    """The package's ``config/sim.yaml`` (source tree or install, :mod:`mile_ros.paths`)."""
    from mile_ros.paths import find_data

    return find_data("config", "sim.yaml")


def domain_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value not in DOMAIN_IDS:
        raise argparse.ArgumentTypeError(
            f"{value} is outside {DOMAIN_IDS[0]}-{DOMAIN_IDS[-1]}, the domain ids whose DDS ports stay clear of "
            "Linux's ephemeral ports"
        )
    return value


def pick_domain_id(rng: random.Random | None = None) -> int:
    """A random domain in 1-101 (0 is every ROS user's default) that no local process uses, if any."""
    rng = rng or random.Random()
    candidates = range(1, DOMAIN_IDS[-1] + 1)
    used = domains_in_use()
    free = [d for d in candidates if d not in used] or list(candidates)
    return rng.choice(free)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="run the simulated intervention session on the ROS 2 graph",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--task", default="drawer-open-v3", help="Metaworld v3 task (default: drawer-open-v3)")
    p.add_argument("--iterations", type=int, default=5, help="MILE updates (default 5)")
    p.add_argument("--episodes", type=int, default=1, help="intervention episodes per iteration (default 1)")
    p.add_argument("--eval-episodes", type=int, default=10, help="policy-alone episodes per evaluation (default 10)")
    p.add_argument("--out", required=True, type=Path, help="run directory (an existing one is resumed)")
    p.add_argument("--init-policy", type=Path, help="initial MileCheckpoint (default: made for the task)")
    try:
        where = str(default_config())
    except FileNotFoundError as exc:
        where = f"none here: {exc}"
    p.add_argument("--config", type=Path, help=f"parameter YAML (default: the package's config/sim.yaml, {where})")
    p.add_argument("--max-episode-steps", type=int, help="shorter episodes (default: the task's 500)")
    p.add_argument("--epochs", type=int, help="MILE epochs per update (default from the config)")
    p.add_argument("--mental-rollouts", type=int, help="rollouts for the simulated human's mental model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", action="store_true", help="render and record camera images")
    p.add_argument(
        "--domain-id",
        type=domain_id,
        help=f"ROS_DOMAIN_ID, {DOMAIN_IDS[0]}-{DOMAIN_IDS[-1]}: a domain's DDS ports are 7400 + 250 x id + ..., and "
        "above 101 they run into Linux's ephemeral ports (32768 up), above 232 past 65535 (default: "
        "$ROS_DOMAIN_ID, else a random one from 1-101 that no local process is using)",
    )
    p.add_argument(
        "--secure",
        type=Path,
        metavar="KEYSTORE",
        help="DDS security enforced: each node runs with its enclave /mile_ros/<node> from KEYSTORE "
        "(mile-ros security create); refused, before anything starts, where the RMW cannot enforce it",
    )
    from mile_ros.graph.foxglove_bridge import DEFAULT_HOST, DEFAULT_PORT, foxglove_port

    p.add_argument(
        "--foxglove",
        nargs="?",
        const=DEFAULT_PORT,
        type=foxglove_port,
        metavar="PORT",
        help=f"live view: a Foxglove WebSocket server on {DEFAULT_HOST}:PORT (default {DEFAULT_PORT}) with the "
        "session's topics, for config/foxglove_session.json (off by default; needs foxglove-sdk)",
    )
    p.set_defaults(func=run)


def initial_policy(args: argparse.Namespace, run_dir: Path) -> Path:
    if args.init_policy:
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


def check_run_dir(args: argparse.Namespace, run_dir: Path) -> None:
    """Refuse a run directory this session cannot use, before anything is written to it."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise UsageError(f"--out {run_dir} exists and is not a directory")
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise UsageError(f"--out {run_dir} is not writable")
        state = run_dir / "session.json"
        if state.exists():
            # The session manager's own rule for a resume, applied here before run_params.yaml is replaced.
            from mile_ros.graph.session import SessionConfig, SessionState

            config = SessionConfig(args.iterations, args.episodes, args.eval_episodes, args.seed)
            try:
                SessionState.open(run_dir, config, args.task)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                raise UsageError(f"cannot resume {run_dir}: {exc}") from None
        return
    parent = run_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {run_dir}: cannot create it under {parent}")


def make_run_dir(run_dir: Path) -> None:
    """mkdir -p that leaves nothing behind when it fails part way (e.g. under /proc)."""
    missing = []
    d = run_dir
    while not d.exists():
        missing.append(d)
        d = d.parent
    made = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    except OSError as exc:
        for d in reversed(made):
            d.rmdir()
        raise UsageError(f"--out {run_dir}: cannot create it ({exc.strerror or exc})") from None


def validate(args: argparse.Namespace, env: dict[str, str]) -> Path:
    """Every check that needs no writing; returns the run directory. Raises UsageError."""
    if args.iterations < 1 or args.episodes < 1 or args.eval_episodes < 0:
        raise UsageError("need --iterations >= 1, --episodes >= 1, --eval-episodes >= 0")
    if args.config is None:
        try:
            args.config = default_config()
        except FileNotFoundError as exc:
            raise UsageError(f"no --config given and the package's config/sim.yaml is missing: {exc}") from None
    if not args.config.is_file():
        raise UsageError(f"config {args.config} does not exist")
    from mile_ros.sim.envs import valid_tasks

    if args.task not in (tasks := valid_tasks()):
        import difflib

        close = difflib.get_close_matches(args.task, tasks, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise UsageError(f"unknown task {args.task!r}{hint}; tasks: Metaworld v3 names, LunarLander-v3")
    if args.init_policy and not args.init_policy.is_file():
        raise UsageError(f"--init-policy {args.init_policy} does not exist")
    if args.domain_id is None and "ROS_DOMAIN_ID" in env:
        try:
            domain_id(env["ROS_DOMAIN_ID"])
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"ROS_DOMAIN_ID from the environment: {exc}") from None
    if args.secure is not None:
        check_keystore(args.secure, env)
    if args.foxglove is not None:
        from mile_ros.graph.foxglove_bridge import check_live_view

        try:
            check_live_view(args.foxglove, secured=args.secure is not None)
        except ValueError as exc:
            raise UsageError(f"--foxglove: {exc}") from None
    run_dir = args.out.resolve()
    check_run_dir(args, run_dir)
    return run_dir


def session_nodes() -> list[str]:
    return [*NODE_GROUPS["sim"], SESSION_NODE]


def check_keystore(keystore: Path, env: dict[str, str]) -> None:
    """--secure: every node's enclave is there, and a node really comes up secured with one of them.

    Never falls back to running without security: a Fast DDS without the security plugins (the PyPI
    build) is refused here with rcl's reason.
    """
    from mile_ros.graph.security import SecurityUnavailableError, enclave_dir, enclave_name, probe_secure_node

    if not (keystore / "enclaves").is_dir():
        raise UsageError(f"--secure {keystore}: not a keystore (no enclaves/); make one with mile-ros security create")
    missing = [enclave_name(n) for n in session_nodes() if not (enclave_dir(keystore, n) / "permissions.p7s").is_file()]
    if missing:
        raise UsageError(
            f"--secure {keystore}: no enclave {', '.join(missing)}; add them with "
            f"mile-ros security create {keystore} --enclaves {','.join(m.rsplit('/', 1)[-1] for m in missing)}"
        )
    try:
        probe_secure_node(keystore.resolve(), SESSION_NODE, env)
    except SecurityUnavailableError as exc:
        raise UsageError(f"--secure: {exc} Not starting the session without DDS security.") from None


def say(text: str) -> None:
    """To stderr; a terminal gone with SIGHUP must not turn a clean stop into a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from mile_ros.graph.launcher import GraphSignalled, NodeFailedError, NodeProcess, loopback_dds_env, run_graph

    env = dict(os.environ)
    try:
        run_dir = validate(args, env)
        make_run_dir(run_dir)
    except UsageError as exc:
        print(f"mile-ros sim: error: {exc}", file=sys.stderr)
        return 2
    init = initial_policy(args, run_dir)
    params = run_dir / "run_params.yaml"
    if args.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(args.domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(pick_domain_id()))
    try:
        tmp = params.with_name(f".{params.name}.tmp")  # a full disk must not leave half a file
        tmp.write_text(yaml.safe_dump(run_params(args, run_dir, init), sort_keys=False))
        os.replace(tmp, params)
        network = loopback_dds_env(env, run_dir)
    except OSError as exc:
        say(f"mile-ros sim: cannot write to {run_dir}: {exc}")
        return 1
    files = [args.config.resolve(), params]
    nodes = [NodeProcess(n, files) for n in NODE_GROUPS["sim"]] + [NodeProcess(SESSION_NODE, files, echo=True)]
    if args.secure is not None:
        from mile_ros.graph.security import enclave_name, security_env

        env.update(security_env(args.secure))
        for n in nodes:
            n.enclave = enclave_name(n.name)
        network += f", DDS security enforced with {args.secure.resolve()}"
    if args.foxglove is not None:  # beside the graph, not part of it: nothing waits for it
        from mile_ros.graph.foxglove_bridge import DEFAULT_HOST, live_view_args

        nodes.append(NodeProcess("foxglove_bridge", extra_args=live_view_args(args.foxglove)))
        network += f", Foxglove live view on ws://{DEFAULT_HOST}:{args.foxglove}"
    print(
        f"starting {len(nodes)} nodes (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, {network}, logs in {run_dir / 'logs'})",
        flush=True,
    )
    try:
        code = run_graph(nodes, SESSION_NODE, run_dir / "logs", env)
    except NodeFailedError as exc:
        say(f"\nstopped the graph: {exc}")
        return 1
    except GraphSignalled as exc:
        what = "interrupted" if exc.signum == signal.SIGINT else f"stopped by {exc.name}"
        say(f"\n{what}: graph stopped; run the same command again to resume")
        return exc.exit_code
    except OSError as exc:  # e.g. a node's log cannot be created (disk full)
        say(f"\ncould not run the graph: {exc}")
        return 1
    if code == 0:
        print_summary(run_dir)
    else:
        say(f"session_manager exited with code {code}; see {run_dir / 'logs'}")
    return code
