"""trainer_node: on ``/trainer/train``, one update of a method on every bag so far; announces the checkpoint.

The method (``method``: MILE or any baseline) trains through ``mile_ros.baselines.train``, as in the
benchmark, with ``baselines.method_config``'s settings for it and the parameters that are set on
top. The answer's message is JSON (checkpoint, update, seed, reused, rows, intervention rate, skipped
bags). Update ``n`` follows the bags' iteration ``n - 1`` and trains with seed ``update_seed(seed, n)``;
one that is on disk already is reused, never trained twice (:mod:`mile_ros.graph.training`). The
checkpoint is published whole under ``checkpoint_dir`` and announced on ``/mile/checkpoint``, where the
policy node picks it up. Ctrl-C stops an update within a minibatch; its record says "interrupted".

Defaults: the node's settings take theirs from the ``trainer_node`` section of ``config/sim.yaml``,
their one home (a parameter file such as ``config/widowx.yaml`` overrides them); the training
settings (``epochs``, ``lr``, ...) are unset unless a file or the command line sets them, and an unset
one is the method's own (its config dataclass and, with ``task``, the task preset). Parameters are
read at each update, so a ``ros2 param set`` applies from the next one; a value the method cannot
train with is refused when set.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mile_ros.baselines import METHODS
from mile_ros.graph.training import (
    TRAINING_SETTINGS,
    TrainingInterruptedError,
    UpdateClaim,
    published_updates,
    session_iteration,
    train_from_bags,
    trainer_config,
    update_path,
)
from mile_ros.learning import load_checkpoint
from mile_ros.nodes.common import Param, publisher
from mile_ros.seeds import update_seed

DEFAULTS_FILE = "sim.yaml"  # under config/: the file whose trainer_node section holds the defaults

# The node's own settings; their defaults come from DEFAULTS_FILE (``default`` here is the type).
SETTINGS = (
    Param("bags_dir", str, "folder holding the episode bags (searched recursively)"),
    Param("checkpoint_dir", str, "where new checkpoints are written"),
    Param("initial_checkpoint", str, "the initial policy: where updates start from (see train_from)"),
    Param(
        "prior_data",
        str,
        "the demonstrations the initial policy was cloned from (.npz dataset), trained on with every "
        "update (every method but rlif); empty: none",
    ),
    Param("method", str, "the method each update trains (MILE or a baseline)", choices=METHODS),
    Param("task", str, "task whose preset holds per-task training settings (sim/<task>.yaml); empty: none"),
    Param(
        "options",
        str,
        "more of the method's settings, as the benchmark's method options: a variant (paper) and/or "
        "key=value pairs, comma-separated",
    ),
    Param(
        "train_from",
        str,
        "each update trains a clone of the initial policy on all bags (initial) or continues from the "
        "latest update (previous)",
        choices=("initial", "previous"),
    ),
    Param("seed", int, "base training seed: update n trains with 1000 * seed + n, as the benchmark", (0, 1_000_000)),
    Param(
        "threads",
        int,
        "most torch threads while training, fewer while other processes keep cores busy; 0: the cores",
        (0, 256),
    ),
)
# The method's settings one by one (graph.training.TRAINING_SETTINGS); unset: the method's own.
TRAINING = (
    Param("epochs", int, "epochs per update", (1, 100000)),
    Param("batch_size", int, "minibatch size", (1, 1000000)),
    Param("lr", float, "learning rate", (1e-7, 1.0)),
    Param("select_best", bool, "keep the epoch with the lowest held-out NLL (else the last epoch)"),
    Param("patience", int, "with select_best: epochs without held-out improvement before stopping", (1, 100000)),
    Param("val_fraction", float, "fraction of episodes held out: NLL reported, used by select_best", (0.0, 0.9)),
    Param("lambda_prior", float, "weight of the prior's rows (log-likelihood)", (0.0, 1e3)),
    Param(
        "cost",
        float,
        "MILE: intervention cost c (where it starts unless cost_from_rate; fitted with learn_cost)",
        (0.0, 1e6),
    ),
    Param("sigma", float, "MILE: probit scale sigma (where it starts; fitted with learn_sigma)", (1e-6, 1e6)),
    Param(
        "lambda_mental",
        float,
        "MILE: weight of the mental-model anchor (fit to the robot's recorded actions); 0: the paper's loss",
        (0.0, 1e3),
    ),
    Param(
        "policy_std",
        str,
        "MILE: Gaussian std of the policy and mental model: one per action dimension (shared) or per state",
        choices=("shared", "state"),
    ),
    Param("cost_from_rate", bool, "MILE: start c where the predicted rate is the bags' own rate"),
    Param("learn_cost", bool, "MILE: fit c by maximum likelihood"),
    Param("learn_sigma", bool, "MILE: fit sigma by maximum likelihood"),
)
# All live: read at every update (and checked when set), so a run-time set applies from the next one.
PARAMETERS = tuple(dataclasses.replace(p, live=True) for p in SETTINGS + TRAINING)
assert {p.name for p in TRAINING} == set(TRAINING_SETTINGS), "the node's training parameters are graph.training's"
_TYPES = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
}


def yaml_defaults(path=None) -> dict[str, Any]:
    """The ``trainer_node`` section of ``config/sim.yaml`` (or ``path``): the node's defaults."""
    if path is None:
        from mile_ros.paths import find_data

        path = find_data("config", DEFAULTS_FILE)
    data = yaml.safe_load(Path(path).read_text()) or {}
    section = (data.get("trainer_node") or {}).get("ros__parameters") or {}
    unknown = sorted(set(section) - {p.name for p in PARAMETERS} - {"use_sim_time"})
    if unknown:
        raise ValueError(f"{path}: unknown trainer_node parameter(s) {unknown}")
    missing = sorted({p.name for p in SETTINGS} - set(section))
    if missing:
        raise ValueError(f"{path}: the trainer_node section has no default for {missing}")
    return section


def _descriptor(p: Param) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=p.description, read_only=p.read_only or not p.live)
    if p.range is not None:
        lo, hi = p.range
        if p.default is int:
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return desc


def _check_choice(p: Param, value: Any) -> None:
    if p.choices is not None and value is not None and value not in p.choices:
        raise ValueError(f"parameter {p.name}: {value!r} is not one of {', '.join(p.choices)}")


class TrainerNode(Node):
    def __init__(self) -> None:
        super().__init__("trainer_node")
        defaults = yaml_defaults()
        for p in PARAMETERS:
            # A default from the file (all node settings, training settings it sets); else typed, unset.
            value = defaults[p.name] if p.name in defaults else _TYPES[p.default]
            if p.default is float and type(value) is int:  # YAML's 1 for a double
                value = float(value)
            declared = self.declare_parameter(p.name, value, _descriptor(p))
            _check_choice(p, declared.value)
        self.current()  # refuse at start what an update would refuse
        self.add_on_set_parameters_callback(self.on_set)
        self.busy = threading.Lock()
        # The first optimiser imports torch._dynamo (seconds on a busy machine), a stretch no stop check
        # reaches: pay it here, not inside the first update.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        # Set on Ctrl-C / shutdown: the update in the executor thread stops at its next minibatch.
        self.stopping = threading.Event()
        self.context.on_shutdown(self.stopping.set)
        self.pub_ckpt = publisher(self, "mile/checkpoint")
        self.create_service(Trigger, "trainer/train", self.on_train, callback_group=MutuallyExclusiveCallbackGroup())

    def current(self, changed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter's value now (None: unset), with ``changed`` on top; checked by building
        update 1's settings, so that a value no update could train with is refused at once."""
        values = {}
        for p in PARAMETERS:
            try:
                values[p.name] = self.get_parameter(p.name).value
            except ParameterUninitializedException:
                values[p.name] = None
        values.update(changed or {})
        for p in PARAMETERS:
            _check_choice(p, values[p.name])
        trainer_config(values, 1)
        return values

    def on_set(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self.current({p.name: p.value for p in params})
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def close(self) -> None:
        """Stop an update in progress and wait (briefly) until it has cleaned up and said so."""
        self.stopping.set()
        if self.busy.acquire(timeout=5.0):
            self.busy.release()

    def on_train(self, request, response):
        if not self.busy.acquire(blocking=False):
            response.success, response.message = False, "already training"
            return response
        try:
            result = self.update()
        except TrainingInterruptedError as exc:
            self.get_logger().warning(f"update interrupted, nothing published: {exc}")
            response.success, response.message = False, f"interrupted: {exc}"
            return response
        except Exception as exc:
            self.get_logger().error(f"training failed: {exc}")
            response.success, response.message = False, f"training failed: {exc}"
            return response
        finally:
            self.busy.release()
        self.pub_ckpt.publish(String(data=result["checkpoint"]))
        response.success, response.message = True, json.dumps(result)
        return response

    def plan(self, p: Mapping[str, Any]) -> tuple[int, int | None]:
        """(update number, iteration) that the bags call for.

        A session's bags say their iteration: update ``n`` follows iteration ``n - 1`` whatever is on
        disk, so a resume asks for the same update and seed as the run that was stopped. Bags without
        it (recorded outside a session) get the next number not yet published.
        """
        iteration = session_iteration(p["bags_dir"])
        if iteration is not None:
            return iteration + 1, iteration
        existing = published_updates(p["checkpoint_dir"])
        return max(existing, default=0) + 1, None

    def update(self) -> dict:
        """Train (or find) the update the bags call for; the answer's JSON."""
        p = self.current()  # the parameters as they are now, for the whole update
        if not p["initial_checkpoint"]:
            raise ValueError("no initial_checkpoint to start from")
        log = self.get_logger()
        while True:
            number, iteration = self.plan(p)
            seed = update_seed(p["seed"], number)
            with UpdateClaim(p["checkpoint_dir"], number, self.stopping.is_set) as claim:
                if claim.waited_s > 0.5:
                    log.info(f"waited {claim.waited_s:.1f} s for another trainer's claim on update {number}")
                if claim.path.exists():
                    if iteration is None:
                        continue  # another trainer published this number meanwhile: take the next
                    log.info(f"update {number} (iteration {iteration}) is on disk already: reusing it")
                    return self.reused(claim, seed, p["method"])
                before = claim.record()
                if before.get("state") in ("training", "interrupted"):
                    log.warning(f"update {number} was {before['state']} when its trainer stopped: training it again")
                return self.train(p, claim, number, iteration, seed)

    def train(self, p: Mapping[str, Any], claim: UpdateClaim, number: int, iteration: int | None, seed: int) -> dict:
        out_dir = claim.dir
        start = p["initial_checkpoint"]
        if p["train_from"] == "previous":  # the newest update before this one, as the stopped run had
            earlier = [n for n in published_updates(out_dir) if n < number]
            if earlier:
                start = str(update_path(out_dir, max(earlier)))
        method = p["method"]
        fields = {"iteration": iteration, "seed": seed, "start": start, "method": method}
        claim.write_record(state="training", **fields)
        log = self.get_logger()
        log.info(f"training update {number} by {method} (iteration {iteration}, seed {seed}) from {start}")
        try:
            outcome = train_from_bags(
                p["bags_dir"],
                start,
                claim.path,
                trainer_config(p, number),
                threads=p["threads"] or None,
                prior=p["prior_data"] or None,
                should_stop=self.stopping.is_set,
                meta={"update": number, "iteration": iteration, "update_seed": seed},
                on_fit=lambda rows, threads: self.get_logger().info(
                    f"update {number}: fitting on {rows} steps, {threads} torch thread(s)"
                ),
                method=method,
            )
        except TrainingInterruptedError as exc:
            claim.write_record(state="interrupted", reason=str(exc), **fields)
            raise
        except BaseException as exc:
            claim.write_record(state="failed", reason=f"{type(exc).__name__}: {exc}", **fields)
            raise
        claim.write_record(state="done", seconds=round(outcome.seconds, 2), threads=outcome.threads, **fields)
        for path, why in outcome.report.skipped:
            self.get_logger().warning(f"skipped bag {path}: {why}")
        self.get_logger().info(f"update {number}: {outcome.report.summary()} -> {claim.path}")
        return {
            "checkpoint": str(claim.path),
            "update": number,
            "iteration": iteration,
            "seed": seed,
            "method": method,
            "reused": False,
            "rows": outcome.rows,
            "intervention_rate": outcome.intervention_rate,
            "best_epoch": outcome.best_epoch,
            "seconds": round(outcome.seconds, 2),
            "threads": outcome.threads,
            "skipped": [[str(p), why] for p, why in outcome.report.skipped],
            "summary": outcome.report.summary(),
        }

    def reused(self, claim: UpdateClaim, seed: int, method: str) -> dict:
        """The answer for an update published before (by a stopped run or another trainer)."""
        meta = load_checkpoint(claim.path).meta
        if meta.get("update_seed", seed) != seed:
            raise ValueError(f"{claim.path} was trained with seed {meta['update_seed']}, not {seed}")
        trained_by = meta.get("method", meta.get("trainer"))
        if trained_by != method:
            raise ValueError(f"{claim.path} was trained by {trained_by}, not {method}: use another checkpoint_dir")
        return {
            "checkpoint": str(claim.path),
            "update": claim.number,
            "iteration": meta.get("iteration"),
            "seed": seed,
            "method": method,
            "reused": True,
            "rows": meta.get("rows", 0),
            "intervention_rate": meta.get("intervention_rate"),
            "best_epoch": meta.get("best_epoch", -1),
            "seconds": 0.0,
            "threads": 0,
            "skipped": meta.get("skipped_bags", []),
            "summary": f"reused: {meta.get('summary', '')}",
        }


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(TrainerNode, args, threads=2)


if __name__ == "__main__":
    sys.exit(main())
