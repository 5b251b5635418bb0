"""session_manager: N iterations x M episodes of record, train, reload, evaluate; resumable.

The plan and the bookkeeping are :mod:`mile_ros.graph.session`, the orchestration (what to call when, and
what the answers mean) :mod:`mile_ros.graph.session_runner`; this node is their adapter: it calls the
other nodes' services, sets the recorder's and bridge's per-episode parameters, drives the recorder's
lifecycle transitions, listens for episode ends
and the policy's active checkpoint, publishes progress on ``/session/progress`` and exits 0 when the
session is complete.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from mile_ros.graph.session import SessionConfig
from mile_ros.graph.session_runner import (
    SETBOOL_SERVICES,
    TRIGGER_SERVICES,
    RunnerOptions,
    SessionRunner,
    open_session,
)
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
    """The :class:`~mile_ros.graph.session_runner.SessionGraph` of the session, over rclpy."""

    def __init__(self) -> None:
        super().__init__("session_manager")
        self.p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        cfg = SessionConfig(self.p["iterations"], self.p["episodes"], self.p["eval_episodes"], self.p["seed"])
        state = open_session(self.p["run_dir"], cfg, self.p["task"], self.p["initial_checkpoint"])
        options = RunnerOptions(
            bridge_node=self.p["bridge_node"],
            use_simulated_human=self.p["use_simulated_human"],
            episode_timeout_s=self.p["episode_timeout_s"],
            train_timeout_s=self.p["train_timeout_s"],
            service_timeout_s=self.p["service_timeout_s"],
        )
        self.runner = SessionRunner(state, self, options)
        self.episode_end = threading.Event()
        self.active = ""
        self.active_changed = threading.Condition()
        self.pub_progress = publisher(self, "session/progress")
        self.pub_ckpt = publisher(self, "mile/checkpoint")
        subscription(self, "episode/end", self.on_episode_end)
        subscription(self, "mile/active_checkpoint", self.on_active)
        self.srv_clients = {name: self.create_client(Trigger, name) for name in TRIGGER_SERVICES}
        self.srv_clients |= {name: self.create_client(SetBool, name) for name in SETBOOL_SERVICES}
        self.params_of = {n: AsyncParameterClient(self, n) for n in self.runner.param_nodes}
        # Relative (recorder_node/change_state): the nodes of this session's namespace.
        nodes = self.runner.lifecycle_nodes
        self.change_state = {n: self.create_client(ChangeState, f"{n}/change_state") for n in nodes}
        self.get_state = {n: self.create_client(GetState, f"{n}/get_state") for n in nodes}

    # ---- callbacks (executor thread) ---------------------------------------------------------

    def on_episode_end(self, msg) -> None:
        self.episode_end.set()

    def on_active(self, msg: String) -> None:
        with self.active_changed:
            self.active = msg.data
            self.active_changed.notify_all()

    # ---- the SessionGraph (session thread) ---------------------------------------------------

    def call(self, service: str, data: bool | None = None, timeout: float = 60.0) -> tuple[bool, str]:
        req = SetBool.Request(data=data) if data is not None else Trigger.Request()
        res = call_service(self, self.srv_clients[service], req, timeout)
        return bool(res.success), res.message

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

    def get_param(self, node: str, name: str):
        client = self.params_of[node]
        if not client.wait_for_services(timeout_sec=self.p["service_timeout_s"]):
            raise TimeoutError(f"parameters of {node} are not reachable")
        done = threading.Event()
        future = client.get_parameters([name])
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.p["service_timeout_s"]):
            raise TimeoutError(f"reading parameter {name} of {node} timed out")
        return parameter_value_to_python(future.result().values[0])

    def transition(self, node: str, label: str, timeout: float = 60.0) -> bool:
        request = ChangeState.Request(transition=Transition(label=label))
        return bool(call_service(self, self.change_state[node], request, timeout).success)

    def lifecycle_state(self, node: str, timeout: float = 60.0) -> str:
        return str(call_service(self, self.get_state[node], GetState.Request(), timeout).current_state.label)

    def publish_checkpoint(self, path: str) -> None:
        self.pub_ckpt.publish(String(data=path))

    def wait_active(self, path: str, timeout: float) -> str:
        with self.active_changed:
            self.active_changed.wait_for(lambda: self.active == path, timeout)
            return self.active

    def expect_episode_end(self) -> None:
        self.episode_end.clear()

    def wait_episode_end(self, timeout: float) -> bool:
        return self.episode_end.wait(timeout)

    def progress(self, text: str, **extra) -> None:
        print(text, flush=True)
        self.pub_progress.publish(String(data=json.dumps({"text": text, **extra})))

    def log_error(self, text: str) -> None:
        self.get_logger().error(text)

    def log_warning(self, text: str) -> None:
        self.get_logger().warning(text)

    def run(self) -> None:
        self.runner.run()


# Not nodes.common.run_node: here the main thread runs the session while a second thread spins, a stop
# signal exits 130/143 (the session is left as saved) rather than 0, and the process leaves by os._exit.
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
