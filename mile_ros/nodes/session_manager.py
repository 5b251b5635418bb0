"""session_manager: N iterations x M episodes of record, train, reload, evaluate; resumable.

The plan and the bookkeeping are :mod:`mile_ros.graph.session`; this node drives the other nodes
through their services (and sets the recorder's and bridge's per-episode parameters), publishes
progress on ``/session/progress`` and exits 0 when the session is complete.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from mile_ros.graph.bag_episode import INTERRUPTED, mark_interrupted
from mile_ros.graph.session import SessionConfig, SessionState, Task, next_task, write_metrics
from mile_ros.nodes.common import (
    Param,
    call_service,
    catch_stop_signals,
    declare_parameters,
    publisher,
    subscription,
)

PARAMETERS = (
    Param("run_dir", "run", "the session's folder: bags, checkpoints, metrics; an existing one is resumed"),
    Param("task", "drawer-open-v3", "task name recorded with the session (simulation: the Metaworld v3 task)"),
    Param("iterations", 5, "MILE updates (each after the iteration's intervention episodes)", (1, 10000)),
    Param("episodes", 1, "intervention episodes per iteration", (1, 10000)),
    Param("eval_episodes", 1, "episodes of the policy alone before the first and after each update", (0, 10000)),
    Param(
        "seed",
        0,
        "run seed: picks the intervention episodes as the benchmark's seed does (evaluation episodes are shared)",
        (0, 1_000_000),
    ),
    Param("initial_checkpoint", "", "the policy of iteration 0"),
    Param(
        "bridge_node",
        "metaworld_bridge",
        "node that runs the episodes and takes the per-episode 'seed' (metaworld_bridge or widowx_driver)",
    ),
    Param("use_simulated_human", True, "drive the simulated_human node's enable/reset services"),
    Param(
        "episode_timeout_s",
        600.0,
        "an episode not ended by the bridge after this long counts as failed",
        (1.0, 1e6),
    ),
    Param("train_timeout_s", 3600.0, "longest wait for one MILE update", (1.0, 1e6)),
    Param("service_timeout_s", 60.0, "longest wait for a node's service to appear and answer", (0.1, 3600.0)),
)


class SessionManager(Node):
    def __init__(self) -> None:
        super().__init__("session_manager")
        self.p = declare_parameters(self, PARAMETERS)
        self.run_dir = Path(self.p["run_dir"]).resolve()
        cfg = SessionConfig(self.p["iterations"], self.p["episodes"], self.p["eval_episodes"], self.p["seed"])
        self.state = SessionState.open(self.run_dir, cfg, self.p["task"])
        if not self.state.initial_checkpoint:
            if not self.p["initial_checkpoint"]:
                raise ValueError("parameter 'initial_checkpoint' is empty and the run has none")
            self.state.initial_checkpoint = str(Path(self.p["initial_checkpoint"]).resolve())
            self.state.save()
        self.episode_end = threading.Event()
        self.end_msg = None
        self.active = ""
        self.active_changed = threading.Condition()
        self.pub_progress = publisher(self, "/session/progress")
        self.pub_ckpt = publisher(self, "/mile/checkpoint")
        subscription(self, "/sim/episode_end", self.on_episode_end)
        subscription(self, "/mile/active_checkpoint", self.on_active)
        self.srv_clients = {
            name: self.create_client(Trigger, name)
            for name in (
                "/sim/reset",
                "/policy/reset",
                "/arbitration/reset",
                "/simulated_human/reset",
                "/recorder/start",
                "/recorder/stop",
                "/trainer/train",
            )
        }
        self.srv_clients["/sim/set_running"] = self.create_client(SetBool, "/sim/set_running")
        self.srv_clients["/simulated_human/enable"] = self.create_client(SetBool, "/simulated_human/enable")
        self.bridge = self.p["bridge_node"]
        nodes = ("recorder_node", self.bridge) + (("simulated_human",) if self.p["use_simulated_human"] else ())
        self.params_of = {n: AsyncParameterClient(self, n) for n in nodes}

    # ---- callbacks (executor thread) ---------------------------------------------------------

    def on_episode_end(self, msg) -> None:
        self.end_msg = msg
        self.episode_end.set()

    def on_active(self, msg: String) -> None:
        with self.active_changed:
            self.active = msg.data
            self.active_changed.notify_all()

    # ---- helpers (session thread) ------------------------------------------------------------

    def call(self, name: str, data: bool | None = None, timeout: float | None = None):
        req = SetBool.Request(data=data) if data is not None else Trigger.Request()
        res = call_service(self, self.srv_clients[name], req, timeout or self.p["service_timeout_s"])
        if not res.success:
            raise RuntimeError(f"{name} refused: {res.message}")
        return res

    def set_params(self, node: str, values: dict) -> None:
        client = self.params_of[node]
        if not client.wait_for_services(timeout_sec=self.p["service_timeout_s"]):
            raise TimeoutError(f"parameters of {node} are not reachable")
        done = threading.Event()
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.p["service_timeout_s"]):
            raise TimeoutError(f"setting parameters of {node} timed out")
        for r in future.result().results:
            if not r.successful:
                raise RuntimeError(f"{node} refused parameters {values}: {r.reason}")

    def wait_active(self, path: str, timeout: float) -> None:
        with self.active_changed:
            if not self.active_changed.wait_for(lambda: self.active == path, timeout):
                raise TimeoutError(
                    f"the policy node did not switch to {path} within {timeout:.0f} s (has {self.active!r})"
                )

    def progress(self, text: str, **extra) -> None:
        print(text, flush=True)
        self.pub_progress.publish(String(data=json.dumps({"text": text, **extra})))

    # ---- the session -------------------------------------------------------------------------

    def run(self) -> None:
        current = self.state.current_checkpoint()
        self.pub_ckpt.publish(String(data=current))
        self.wait_active(current, self.p["service_timeout_s"])
        while (task := next_task(self.state)).kind != "done":
            if task.kind == "episode":
                self.run_episode(task)
            else:
                self.train(task.iteration)
            write_metrics(self.state, plot=False)
        rows = write_metrics(self.state)
        self.progress(f"session complete: {len(rows)} iterations in {self.run_dir}", done=True)

    def episode_info(self, task: Task) -> dict:
        """The metadata the recorder writes into the episode's bag."""
        return {
            "task": self.state.task,
            "iteration": task.iteration,
            "episode": task.index,
            "mode": task.mode,
            "seed": task.seed,
            "checkpoint": self.state.current_checkpoint(),
            "run_dir": str(self.run_dir),
        }

    def set_aside(self, task: Task, bag: Path) -> None:
        """Keep a bag left by a crash mid-episode as ``<bag>.interruptedN``, marked, never trained on."""
        n = 0
        while (aside := bag.with_name(f"{bag.name}{INTERRUPTED}{n}")).exists():
            n += 1
        bag.rename(aside)
        reason = f"the session stopped before episode {task.name} ended; the episode was recorded again"
        try:
            note = mark_interrupted(aside, self.episode_info(task), reason)
        except Exception as exc:  # the name alone keeps it out of training; nothing is lost
            self.get_logger().error(f"{aside}: interrupted episode set aside but not reindexed: {exc}")
            return
        self.get_logger().warn(f"{aside}: interrupted episode set aside, never trained on ({note})")

    def run_episode(self, task: Task) -> None:
        bag = self.state.bag_path(task)
        if bag.exists():  # left by a crash mid-episode: keep it aside, record the episode again
            self.set_aside(task, bag)
        info = self.episode_info(task)
        self.set_params("recorder_node", {"bag_path": str(bag), "episode_info": json.dumps(info)})
        self.set_params(self.bridge, {"seed": int(task.seed)})
        if self.p["use_simulated_human"]:
            self.set_params("simulated_human", {"episode_seed": int(task.seed)})  # its draws, as offline
            self.call("/simulated_human/enable", task.mode == "train")
            deadline = time.monotonic() + self.p["train_timeout_s"]
            while True:  # the human may still be fitting its mental model of the new policy
                try:
                    self.call("/simulated_human/reset")
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        self.call("/policy/reset")
        self.call("/arbitration/reset")
        self.episode_end.clear()
        self.call("/recorder/start")
        started = time.monotonic()
        self.call("/sim/reset")
        if not self.episode_end.wait(self.p["episode_timeout_s"]):
            self.call("/sim/set_running", False)
            self.get_logger().error(f"{task.name}: no episode end within {self.p['episode_timeout_s']} s")
        result = json.loads(self.stop_recorder())
        result["wall_s"] = round(time.monotonic() - started, 2)
        self.state.record_episode(task, result)
        outcome = "success" if result["success"] else "failure"
        if result.get("end_reason") and result["end_reason"] not in ("success", "failure"):
            outcome += f" ({result['end_reason']})"  # time_limit, pad_lost, discard
        if result.get("discarded"):
            outcome = "discarded by the operator (bag kept, not trained on)"
        self.progress(
            f"iteration {task.iteration} {task.mode} episode {task.index}: "
            f"{outcome} after {result['steps']} steps, "
            f"{result['interventions']} interventions ({result['wall_s']:.1f} s)",
            episode=task.name,
            result=result,
        )

    def stop_recorder(self) -> str:
        deadline = time.monotonic() + self.p["service_timeout_s"]
        while True:
            res = call_service(self, self.srv_clients["/recorder/stop"], Trigger.Request(), self.p["service_timeout_s"])
            if res.success:
                return res.message
            if not res.message.startswith("draining") or time.monotonic() > deadline:
                raise RuntimeError(f"/recorder/stop refused: {res.message}")
            time.sleep(0.05)

    def train(self, iteration: int) -> None:
        self.progress(f"iteration {iteration - 1}: training MILE on the bags so far")
        res = json.loads(self.call("/trainer/train", timeout=self.p["train_timeout_s"]).message)
        if res.get("update") not in (None, iteration):  # the trainer read another iteration from the bags
            raise RuntimeError(f"asked for update {iteration}, the trainer answered with update {res['update']}: {res}")
        self.state.record_checkpoint(iteration, res["checkpoint"])
        self.wait_active(res["checkpoint"], self.p["service_timeout_s"])
        rows = write_metrics(self.state, plot=False)
        row = next((r for r in rows if r["iteration"] == iteration - 1), None)

        def fmt(key: str, digits: int) -> str:
            return f"{row[key]:.{digits}f}" if row and row.get(key) is not None else "-"

        self.progress(
            f"iteration {iteration - 1}: policy-alone success rate {fmt('eval_success_rate', 2)}, "
            f"intervention episodes' success rate {fmt('train_success_rate', 2)}, "
            f"intervention rate {fmt('intervention_rate', 3)}; "
            f"update {iteration} on {res['rows']} steps -> {res['checkpoint']} ({res['seconds']} s)",
            update=res,
        )


def main(args: list[str] | None = None) -> int:
    catch_stop_signals()  # SIGTERM as SIGINT: out of any wait in node.run(), state saved as it stands
    rclpy.init(args=args)
    code = 0
    node = None
    executor = MultiThreadedExecutor(num_threads=2)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        node = SessionManager()
        executor.add_node(node)
        spinner.start()
        node.run()
    except KeyboardInterrupt as exc:
        code = 128 + getattr(exc, "signum", signal.SIGINT)  # 130 or 143, the shell's convention
    except Exception as exc:
        print(f"[session_manager] fatal: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        # Stop the context first so the spinning thread returns, then take the node down.
        if rclpy.ok():
            rclpy.shutdown()
        if spinner.is_alive():
            spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is saved by now; rclpy's C++ side can abort while the interpreter tears down
    # ("terminate called without an active exception"), which would turn a finished session
    # into a failure, so leave without that teardown.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
