"""The session's orchestration, without ROS: what to run next, which node to ask what and in which order,
and what each answer means.

:func:`mile_ros.graph.session.next_task` says what comes next; :class:`SessionRunner` does it through a
:class:`SessionGraph`, the few things a node can do on the graph (call a service, set another node's
parameters, publish a checkpoint, wait for the policy's switch or an episode's end, report progress).
``session_manager`` is that adapter over rclpy and nothing more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mile_ros.graph.bag_episode import INTERRUPTED, BagError, episode_meta, mark_interrupted
from mile_ros.graph.session import SessionConfig, SessionState, Task, next_task, write_metrics

__all__ = [
    "POLICY",
    "RECORDER",
    "SETBOOL_SERVICES",
    "TRIGGER_SERVICES",
    "RunnerOptions",
    "SessionGraph",
    "SessionRunner",
    "episode_outcome",
    "open_session",
]

# The services the session calls: std_srvs/Trigger ones, and std_srvs/SetBool ones (called with data).
TRIGGER_SERVICES = (
    "episode/reset",
    "policy/reset",
    "arbitration/reset",
    "simulated_human/reset",
    "trainer/train",
)
# The lifecycle nodes whose transitions the session drives: the recorder, one episode per
# configure (names the bag) -> activate (records) -> deactivate (closes it) -> cleanup; and the node that
# runs the episodes (RunnerOptions.bridge_node), active while episodes run, deactivated to pause one.
RECORDER = "recorder_node"
POLICY = "policy_node"  # active while the session runs (deactivated: it proposes nothing)
SETBOOL_SERVICES = ("simulated_human/enable",)


class SessionGraph(Protocol):
    """What the session asks of the ROS graph; the session manager node implements it."""

    def call(self, service: str, data: bool | None = None, timeout: float = 60.0) -> tuple[bool, str]:
        """Call a Trigger service (``data`` None) or a SetBool one; return its success and message.
        Raises TimeoutError when the service is missing or does not answer within ``timeout``."""
        ...

    def set_params(self, node: str, values: dict[str, Any]) -> None:
        """Set parameters of another node; raise when they are refused or unreachable."""
        ...

    def get_param(self, node: str, name: str) -> Any:
        """A parameter's value in another node; raise when unreachable."""
        ...

    def transition(self, node: str, label: str, timeout: float = 60.0) -> bool:
        """Ask lifecycle node ``node`` for the transition ``label`` (configure, activate, deactivate,
        cleanup); whether it was made. Raises TimeoutError as :meth:`call` does."""
        ...

    def lifecycle_state(self, node: str, timeout: float = 60.0) -> str:
        """The lifecycle state of ``node``: unconfigured, inactive, active or finalized."""
        ...

    def publish_checkpoint(self, path: str) -> None:
        """Tell the policy node which checkpoint to run (``/mile/checkpoint``)."""
        ...

    def wait_active(self, path: str, timeout: float) -> str:
        """Wait until the policy node reports ``path`` active; return the active checkpoint then."""
        ...

    def expect_episode_end(self) -> None:
        """Forget any earlier episode end: the next one counts."""
        ...

    def wait_episode_end(self, timeout: float) -> bool:
        """Wait for the bridge's episode end since :meth:`expect_episode_end`; False on timeout."""
        ...

    def progress(self, text: str, **extra: Any) -> None:
        """Report a step of the session to the person running it."""
        ...

    def log_error(self, text: str) -> None: ...

    def log_warning(self, text: str) -> None: ...


@dataclass(frozen=True)
class RunnerOptions:
    """The session manager's parameters that shape the run (their defaults live in the node's table)."""

    bridge_node: str  # the node that runs episodes and takes each one's ``seed``
    use_simulated_human: bool
    episode_timeout_s: float
    train_timeout_s: float
    service_timeout_s: float


def open_session(run_dir: str | Path, config: SessionConfig, task: str, initial_checkpoint: str) -> SessionState:
    """Open (or resume) the session in ``run_dir``; a new one needs ``initial_checkpoint``, a resumed one
    keeps the checkpoint it started from."""
    state = SessionState.open(Path(run_dir).resolve(), config, task)
    if not state.initial_checkpoint:
        if not initial_checkpoint:
            raise ValueError("parameter 'initial_checkpoint' is empty and the run has none")
        state.initial_checkpoint = str(Path(initial_checkpoint).resolve())
        state.save()
    return state


def episode_outcome(result: dict[str, Any]) -> str:
    """How an episode's end reads in the progress line."""
    outcome = "success" if result["success"] else "failure"
    if result.get("end_reason") and result["end_reason"] not in ("success", "failure"):
        outcome += f" ({result['end_reason']})"  # time_limit, pad_lost, discard
    if result.get("discarded"):
        outcome = "discarded by the operator (bag kept, not trained on)"
    return outcome


class SessionRunner:
    """Runs a session's remaining tasks on a graph; the state is saved after every step."""

    def __init__(
        self,
        state: SessionState,
        graph: SessionGraph,
        options: RunnerOptions,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state, self.graph, self.options = state, graph, options
        self.clock, self.sleep = clock, sleep

    @property
    def lifecycle_nodes(self) -> tuple[str, ...]:
        """The lifecycle nodes whose transitions the session drives."""
        return (RECORDER, self.options.bridge_node, POLICY)

    @property
    def param_nodes(self) -> tuple[str, ...]:
        """The nodes whose parameters the session sets before each episode."""
        return ("recorder_node", self.options.bridge_node) + (
            ("simulated_human",) if self.options.use_simulated_human else ()
        )

    def call(self, service: str, data: bool | None = None, timeout: float | None = None) -> str:
        """Call a service that must agree; return its message."""
        ok, message = self.graph.call(service, data, timeout or self.options.service_timeout_s)
        if not ok:
            raise RuntimeError(f"{service} refused: {message}")
        return message

    def wait_active(self, path: str, timeout: float) -> None:
        active = self.graph.wait_active(path, timeout)
        if active != path:
            raise TimeoutError(f"the policy node did not switch to {path} within {timeout:.0f} s (has {active!r})")

    def run(self) -> list[dict[str, Any]]:
        """Every task left, then the final metrics (with the plot); returns the metrics' rows."""
        current = self.state.current_checkpoint()
        self.graph.publish_checkpoint(current)
        self.wait_active(current, self.options.service_timeout_s)
        while (task := next_task(self.state)).kind != "done":
            if task.kind == "episode":
                self.run_episode(task)
            else:
                self.train(task.iteration)
            write_metrics(self.state, plot=False)
        rows = write_metrics(self.state)
        self.graph.progress(f"session complete: {len(rows)} iterations in {self.state.run_dir}", done=True)
        return rows

    def episode_info(self, task: Task) -> dict[str, Any]:
        """The metadata the recorder writes into the episode's bag."""
        return {
            "task": self.state.task,
            "iteration": task.iteration,
            "episode": task.index,
            "mode": task.mode,
            "seed": task.seed,
            "checkpoint": self.state.current_checkpoint(),
            "run_dir": str(self.state.run_dir),
        }

    def set_aside(self, task: Task, bag: Path) -> Path:
        """Keep a bag left by a crash mid-episode as ``<bag>.interruptedN``, marked, never trained on."""
        n = 0
        while (aside := bag.with_name(f"{bag.name}{INTERRUPTED}{n}")).exists():
            n += 1
        bag.rename(aside)
        reason = f"the session stopped before episode {task.name} ended; the episode was recorded again"
        try:
            note = mark_interrupted(aside, self.episode_info(task), reason)
        except Exception as exc:  # the name alone keeps it out of training; nothing is lost
            self.graph.log_error(f"{aside}: interrupted episode set aside but not reindexed: {exc}")
            return aside
        self.graph.log_warning(f"{aside}: interrupted episode set aside, never trained on ({note})")
        return aside

    def prepare_human(self, task: Task) -> None:
        """Seed the simulated human's draws as offline, switch it on for intervention episodes only,
        and reset it: it refuses while still fitting its mental model of a new policy, so retry."""
        self.graph.set_params("simulated_human", {"episode_seed": int(task.seed)})
        self.call("simulated_human/enable", task.mode == "train")
        deadline = self.clock() + self.options.train_timeout_s
        while True:
            try:
                self.call("simulated_human/reset")
                return
            except RuntimeError:
                if self.clock() > deadline:
                    raise
                self.sleep(0.5)

    def transition(self, node: str, label: str, timeout: float | None = None) -> None:
        """A lifecycle transition that must be made."""
        if not self.graph.transition(node, label, timeout or self.options.service_timeout_s):
            raise RuntimeError(f"{node} refused the transition {label} (its log says why)")

    def settle_recorder(self) -> None:
        """Bring the recorder back to unconfigured: a session stopped mid-episode can leave it recording
        (its bag is then closed as interrupted, and set aside below) or configured."""
        state = self.graph.lifecycle_state(RECORDER, self.options.service_timeout_s)
        if state == "active":
            self.graph.log_warning("the recorder was still recording (a session stopped mid-episode): stopping it")
            self.transition(RECORDER, "deactivate")
        if state in ("active", "inactive"):
            self.transition(RECORDER, "cleanup")

    def activate(self, node: str) -> None:
        """A lifecycle node active: the bridge paused by an episode timeout, a node started without
        autostart."""
        state = self.graph.lifecycle_state(node, self.options.service_timeout_s)
        if state == "unconfigured":
            self.transition(node, "configure")
        if state != "active":
            self.transition(node, "activate")

    def configure_recorder(self, bag: Path, info: dict[str, Any]) -> None:
        """Name the episode's bag: the recorder reads ``bag_path`` at configure and refuses to change
        it until cleanup, so the bag it records is the one read back here."""
        self.graph.set_params(RECORDER, {"bag_path": str(bag), "episode_info": json.dumps(info)})
        self.transition(RECORDER, "configure")
        configured = self.graph.get_param(RECORDER, "bag_path")
        if configured != str(bag):  # someone set it between the two calls: record nothing
            self.transition(RECORDER, "cleanup")
            raise RuntimeError(f"the recorder was configured for {configured!r}, not {bag}")

    def run_episode(self, task: Task) -> dict[str, Any]:
        """Record one episode: parameters, resets, recorder start, bridge reset, its end, the record."""
        self.settle_recorder()
        bag = self.state.bag_path(task)
        if bag.exists():  # left by a crash mid-episode: keep it aside, record the episode again
            self.set_aside(task, bag)
        self.graph.set_params(self.options.bridge_node, {"seed": int(task.seed)})
        if self.options.use_simulated_human:
            self.prepare_human(task)
        self.call("policy/reset")
        self.call("arbitration/reset")
        self.configure_recorder(bag, self.episode_info(task))
        self.activate(self.options.bridge_node)
        self.activate(POLICY)
        self.graph.expect_episode_end()  # before the start: an end that comes at once is not missed
        self.transition(RECORDER, "activate")
        started = self.clock()
        self.call("episode/reset")
        if not self.graph.wait_episode_end(self.options.episode_timeout_s):
            self.transition(self.options.bridge_node, "deactivate")  # paused: the bag says it did not end
            self.graph.log_error(f"{task.name}: no episode end within {self.options.episode_timeout_s} s")
        result = self.stop_recorder(bag)
        result["wall_s"] = round(self.clock() - started, 2)
        self.state.record_episode(task, result)
        self.graph.progress(
            f"iteration {task.iteration} {task.mode} episode {task.index}: "
            f"{episode_outcome(result)} after {result['steps']} steps, "
            f"{result['interventions']} interventions ({result['wall_s']:.1f} s)",
            episode=task.name,
            result=result,
        )
        return result

    def stop_recorder(self, bag: Path) -> dict[str, Any]:
        """Stop the recorder (deactivate waits while it drains the episode's last messages, then closes
        the bag; cleanup frees its name); return the episode's summary from the bag."""
        self.transition(RECORDER, "deactivate")
        self.transition(RECORDER, "cleanup")
        try:
            result = episode_meta(bag)
        except BagError as exc:
            raise RuntimeError(f"the recorder closed no readable bag at {bag}: {exc}") from exc
        if not result:
            raise RuntimeError(f"the recorder left no episode summary in {bag}")
        result.pop("message_counts", None)  # in the bag's episode.json; the session's state stays small
        return result

    def train(self, iteration: int) -> dict[str, Any]:
        """Ask the trainer for update ``iteration``, record it, and wait until the policy runs it."""
        self.graph.progress(f"iteration {iteration - 1}: training MILE on the bags so far")
        res = json.loads(self.call("trainer/train", timeout=self.options.train_timeout_s))
        if res.get("update") not in (None, iteration):  # the trainer read another iteration from the bags
            raise RuntimeError(f"asked for update {iteration}, the trainer answered with update {res['update']}: {res}")
        self.state.record_checkpoint(iteration, res["checkpoint"])
        self.wait_active(res["checkpoint"], self.options.service_timeout_s)
        rows = write_metrics(self.state, plot=False)
        row = next((r for r in rows if r["iteration"] == iteration - 1), None)

        def fmt(key: str, digits: int) -> str:
            return f"{row[key]:.{digits}f}" if row and row.get(key) is not None else "-"

        self.graph.progress(
            f"iteration {iteration - 1}: policy-alone success rate {fmt('eval_success_rate', 2)}, "
            f"intervention episodes' success rate {fmt('train_success_rate', 2)}, "
            f"intervention rate {fmt('intervention_rate', 3)}; "
            f"update {iteration} on {res['rows']} steps -> {res['checkpoint']} ({res['seconds']} s)",
            update=res,
        )
        return res
