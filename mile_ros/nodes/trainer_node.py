"""trainer_node: on ``/trainer/train``, one MILE update on every bag so far; announces the checkpoint.

The answer's message is JSON (checkpoint, update, seed, reused, rows, intervention rate, skipped
bags). Update ``n`` follows the bags' iteration ``n - 1`` and trains with seed ``update_seed(seed, n)``;
one that is on disk already is reused, never trained twice (:mod:`mile_ros.graph.training`). The
checkpoint is published whole under ``checkpoint_dir`` and announced on ``/mile/checkpoint``, where the
policy node picks it up. Ctrl-C stops an update within a minibatch; its record says "interrupted".
"""

from __future__ import annotations

import json
import sys
import threading

import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mile_ros.baselines import default_config
from mile_ros.graph.training import (
    TrainingInterruptedError,
    UpdateClaim,
    published_updates,
    session_iteration,
    train_from_bags,
    trainer_config,
    update_path,
)
from mile_ros.learning import MileConfig, load_checkpoint
from mile_ros.nodes.common import Param, declare_parameters, publisher
from mile_ros.seeds import update_seed

# The benchmark's default MILE for iterative Metaworld sessions (docs/results-history.md), so that the graph
# and the offline experiments train the same way unless a parameter file says otherwise.
_DEFAULT = default_config("mile", iterative=True)

PARAMETERS = (
    Param("bags_dir", "bags", "folder holding the episode bags (searched recursively)"),
    Param("checkpoint_dir", "checkpoints", "where new checkpoints are written"),
    Param("initial_checkpoint", "", "the initial policy: where updates start from (see train_from)"),
    Param(
        "prior_data",
        "",
        "the demonstrations the initial policy was cloned from (.npz dataset), trained on with every "
        "update; empty: none",
    ),
    Param("lambda_prior", _DEFAULT.lambda_prior, "weight of the prior's log-likelihood", (0.0, 1e3)),
    Param(
        "train_from",
        "initial",
        "each update trains a clone of the initial policy on all bags (initial) or continues from the "
        "latest update (previous)",
        choices=("initial", "previous"),
    ),
    Param("epochs", _DEFAULT.epochs, "MILE epochs per update", (1, 100000)),
    Param("batch_size", _DEFAULT.batch_size, "minibatch size", (1, 1000000)),
    Param("lr", _DEFAULT.lr, "learning rate", (1e-7, 1.0)),
    Param("select_best", False, "keep the epoch with the lowest held-out NLL (else the last epoch)"),
    Param("patience", 50, "with select_best: epochs without held-out improvement before stopping", (1, 100000)),
    Param(
        "cost",
        _DEFAULT.cost,
        "MILE intervention cost c (where it starts unless cost_from_rate; fitted with learn_cost)",
        (0.0, 1e6),
    ),
    Param("sigma", _DEFAULT.sigma, "MILE probit scale sigma (where it starts; fitted with learn_sigma)", (1e-6, 1e6)),
    Param(
        "lambda_mental",
        _DEFAULT.lambda_mental,
        "weight of the mental-model anchor (fit to the robot's recorded actions); 0: the paper's loss",
        (0.0, 1e3),
    ),
    Param(
        "policy_std",
        _DEFAULT.policy_std,
        "Gaussian std of the policy and mental model: one per action dimension (shared) or per state",
        choices=("shared", "state"),
    ),
    Param("cost_from_rate", _DEFAULT.cost_from_rate, "start c where the predicted rate is the bags' own rate"),
    Param("learn_cost", _DEFAULT.learn_cost, "fit c by maximum likelihood"),
    Param("learn_sigma", _DEFAULT.learn_sigma, "fit sigma by maximum likelihood"),
    Param("val_fraction", 0.0, "fraction of episodes held out: NLL reported, used by select_best", (0.0, 0.9)),
    Param("seed", 0, "base training seed: update n trains with 1000 * seed + n, as the benchmark", (0, 1_000_000)),
    Param(
        "threads",
        0,
        "most torch threads while training, fewer while other processes keep cores busy; 0: the cores",
        (0, 256),
    ),
)


class TrainerNode(Node):
    def __init__(self) -> None:
        super().__init__("trainer_node")
        self.p = declare_parameters(self, PARAMETERS)
        self.initial = self.p["initial_checkpoint"]
        self.busy = threading.Lock()
        # The first optimiser imports torch._dynamo (seconds on a busy machine), a stretch no stop check
        # reaches: pay it here, not inside the first update.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        # Set on Ctrl-C / shutdown: the update in the executor thread stops at its next minibatch.
        self.stopping = threading.Event()
        self.context.on_shutdown(self.stopping.set)
        self.pub_ckpt = publisher(self, "/mile/checkpoint")
        self.create_service(Trigger, "/trainer/train", self.on_train, callback_group=MutuallyExclusiveCallbackGroup())

    def config(self, update: int) -> MileConfig:
        return trainer_config(self.p, update)

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

    def plan(self) -> tuple[int, int | None]:
        """(update number, iteration) that the bags call for.

        A session's bags say their iteration: update ``n`` follows iteration ``n - 1`` whatever is on
        disk, so a resume asks for the same update and seed as the run that was stopped. Bags without
        it (recorded outside a session) get the next number not yet published.
        """
        iteration = session_iteration(self.p["bags_dir"])
        if iteration is not None:
            return iteration + 1, iteration
        existing = published_updates(self.p["checkpoint_dir"])
        return max(existing, default=0) + 1, None

    def update(self) -> dict:
        """Train (or find) the update the bags call for; the answer's JSON."""
        if not self.initial:
            raise ValueError("no initial_checkpoint to start from")
        log = self.get_logger()
        while True:
            number, iteration = self.plan()
            seed = update_seed(self.p["seed"], number)
            with UpdateClaim(self.p["checkpoint_dir"], number, self.stopping.is_set) as claim:
                if claim.waited_s > 0.5:
                    log.info(f"waited {claim.waited_s:.1f} s for another trainer's claim on update {number}")
                if claim.path.exists():
                    if iteration is None:
                        continue  # another trainer published this number meanwhile: take the next
                    log.info(f"update {number} (iteration {iteration}) is on disk already: reusing it")
                    return self.reused(claim, seed)
                before = claim.record()
                if before.get("state") in ("training", "interrupted"):
                    log.warning(f"update {number} was {before['state']} when its trainer stopped: training it again")
                return self.train(claim, number, iteration, seed)

    def train(self, claim: UpdateClaim, number: int, iteration: int | None, seed: int) -> dict:
        out_dir = claim.dir
        start = self.initial
        if self.p["train_from"] == "previous":  # the newest update before this one, as the stopped run had
            earlier = [n for n in published_updates(out_dir) if n < number]
            if earlier:
                start = str(update_path(out_dir, max(earlier)))
        fields = {"iteration": iteration, "seed": seed, "start": start}
        claim.write_record(state="training", **fields)
        self.get_logger().info(f"training update {number} (iteration {iteration}, seed {seed}) from {start}")
        try:
            # From the initial policy by default: measured better than continuing (docs/results-history.md).
            outcome = train_from_bags(
                self.p["bags_dir"],
                start,
                claim.path,
                self.config(number),
                threads=self.p["threads"] or None,
                prior=self.p["prior_data"] or None,
                should_stop=self.stopping.is_set,
                meta={"update": number, "iteration": iteration, "update_seed": seed},
                on_fit=lambda rows, threads: self.get_logger().info(
                    f"update {number}: fitting on {rows} steps, {threads} torch thread(s)"
                ),
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
            "reused": False,
            "rows": outcome.rows,
            "intervention_rate": outcome.intervention_rate,
            "best_epoch": outcome.best_epoch,
            "seconds": round(outcome.seconds, 2),
            "threads": outcome.threads,
            "skipped": [[str(p), why] for p, why in outcome.report.skipped],
            "summary": outcome.report.summary(),
        }

    def reused(self, claim: UpdateClaim, seed: int) -> dict:
        """The answer for an update published before (by a stopped run or another trainer)."""
        meta = load_checkpoint(claim.path).meta
        if meta.get("update_seed", seed) != seed:
            raise ValueError(f"{claim.path} was trained with seed {meta['update_seed']}, not {seed}")
        return {
            "checkpoint": str(claim.path),
            "update": claim.number,
            "iteration": meta.get("iteration"),
            "seed": seed,
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
