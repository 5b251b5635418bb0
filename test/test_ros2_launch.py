"""Every launch file under the real ``ros2 launch``: the package and its nodes found through the ament
index, a simulated session end to end with a config file's values, a dead node stopping the launch
with its name and exit 1, bad arguments stopping it before any node starts, the trainer answering a
train call, and the real-robot graph on the driver's kinematic backend.

The stack is the vendored one (``scripts/setup.sh --test``) or a ROS 2 distribution's: see
test/launch_stack.py for which, and for the environment (this checkout's files and nodes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from launch_stack import ROOT, launch_env, ros2_command

pytestmark = pytest.mark.slow

LAUNCH_FILES = sorted(p.name for p in (ROOT / "launch").glob("*.launch.py"))
STOP_TIMEOUT = 90  # launch's own: sigterm_timeout (30 s) + sigkill_timeout (5 s), with room on 2 busy cores
ESCALATION = re.compile(r"escalating to 'SIG(TERM|KILL)'")


class Launch:
    """``ros2 launch mile_ros FILE ARGS...`` as a process; its output in a file (a pipe could fill up)."""

    def __init__(self, tmp_path: Path, name: str, *args: str, only_own_prefix: bool = False) -> None:
        from mile_ros.nodes.probe import unique_domain_id

        self.domain_id = unique_domain_id()
        env = launch_env(only_own_prefix=only_own_prefix)
        env.update(ROS_DOMAIN_ID=str(self.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        self.log = tmp_path / f"{name}.{time.monotonic_ns()}.log"
        self.file = self.log.open("w")
        # Its own session: a stray signal to the test's process group does not reach it, and the
        # clean-up can stop every process it started at once.
        self.proc = subprocess.Popen(
            [ros2_command(), "launch", "mile_ros", name, *args],
            stdout=self.file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ros2 launch still running after {timeout} s:\n{self.output[-6000:]}")

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                pytest.fail(f"ros2 launch exited ({self.proc.returncode}) before {what}:\n{self.output[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s:\n{self.output[-6000:]}")
            time.sleep(0.5)

    def interrupt(self) -> int:
        """Ctrl-C, as a person stops a launch; returns its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(STOP_TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.file.close()


@contextmanager
def launched(tmp_path: Path, name: str, *args: str, **kwargs) -> Iterator[Launch]:
    launch = Launch(tmp_path, name, *args, **kwargs)
    try:
        yield launch
    finally:
        launch.close()


def started(output: str) -> list[str]:
    return re.findall(r"\[INFO\] \[([\w-]+)\]: process started", output)


def sim_config(tmp_path: Path, **sections: dict) -> Path:
    """The package's config/sim.yaml for a short session, with ``sections``' values on top."""
    config = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    short = {
        "metaworld_bridge": {"max_episode_steps": 20},
        "simulated_human": {"mental_rollouts": 1},
        "trainer_node": {"epochs": 2},
        "session_manager": {"iterations": 1, "episodes": 1, "eval_episodes": 0},
    }
    for layer in (short, sections):
        for node, values in layer.items():
            config.setdefault(node, {"ros__parameters": {}})["ros__parameters"].update(values)
    path = tmp_path / f"sim_{len(list(tmp_path.glob('sim_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_every_launch_file_is_found_in_the_index_with_its_arguments(tmp_path):
    assert {"sim.launch.py", "trainer.launch.py", "widowx.launch.py", "widowx_gazebo.launch.py"} <= set(LAUNCH_FILES)
    for name in LAUNCH_FILES:
        with launched(tmp_path, name, "--show-args") as launch:
            assert launch.wait(120) == 0, launch.output
            assert "Arguments" in launch.output, launch.output
    with launched(tmp_path, "sim.launch.py", "--show-args") as launch:
        launch.wait(120)
        for argument in ("config", "run_dir", "initial_checkpoint", "seed", "sigterm_timeout", "max_episode_steps"):
            assert f"'{argument}'" in launch.output


def test_sim_launch_runs_a_session_with_the_config_files_values(tmp_path, init):
    """config:= is honoured: episode length, session size and epochs come from the file, not from
    the launch arguments' defaults; seed:= reaches the session."""
    config = sim_config(tmp_path)
    run = tmp_path / "run"
    with launched(
        tmp_path, "sim.launch.py", f"config:={config}", f"run_dir:={run}", f"initial_checkpoint:={init}", "seed:=3"
    ) as launch:
        code = launch.wait(900)
        out = launch.output
    assert code == 0, out[-6000:]
    assert "session_manager finished: stopping the launch" in out
    assert not ESCALATION.search(out), "a node needed SIGTERM or SIGKILL to stop:\n" + out[-4000:]
    assert sorted(started(out)) == sorted(
        f"{n}-{i}"
        for i, n in enumerate(
            [
                "metaworld_bridge",
                "policy_node",
                "arbitration_node",
                "simulated_human",
                "recorder_node",
                "trainer_node",
                "session_manager",
            ],
            1,
        )
    )
    state = json.loads((run / "session.json").read_text())
    assert state["config"] == {"iterations": 1, "episodes": 1, "eval_episodes": 0, "seed": 3}
    [episode] = state["episodes"]
    assert episode["steps"] == 20  # the file's max_episode_steps (the task's own is 500)
    assert Path(episode["bag"], "metadata.yaml").is_file()
    from mile_ros.graph.bag_episode import read_bag

    assert read_bag(episode["bag"]).messages, f"{episode['bag']} holds no message"
    checkpoint = Path(state["checkpoints"]["1"])
    assert checkpoint.is_file()
    from mile_ros.learning import load_checkpoint

    load_checkpoint(checkpoint)


def test_a_dead_node_stops_the_launch_with_its_name_and_exit_1(tmp_path, init):
    config = sim_config(tmp_path, arbitration_node={"joy_mapping": "no_such_pad"})
    with launched(
        tmp_path, "sim.launch.py", f"config:={config}", f"run_dir:={tmp_path / 'run'}", f"initial_checkpoint:={init}"
    ) as launch:
        code = launch.wait(600)
        out = launch.output
    assert code == 1, out[-6000:]
    assert "node arbitration_node exited with code 1" in out, out[-6000:]
    assert "no_such_pad" in out  # the node's own reason is on the screen too
    assert "session_manager finished" not in out
    assert not (tmp_path / "run" / "checkpoints").exists() or not list((tmp_path / "run" / "checkpoints").iterdir())


def test_bad_arguments_stop_the_launch_before_any_node_starts(tmp_path, init):
    cases = {
        "initial checkpoint /nowhere/initial.pt does not exist": ["initial_checkpoint:=/nowhere/initial.pt"],
        "initial_checkpoint:= is needed": [],
        "launch argument iterations:='two' is not a int": [f"initial_checkpoint:={init}", "iterations:=two"],
        "no such parameter file": [f"initial_checkpoint:={init}", "config:=/nowhere/sim.yaml"],
    }
    for message, args in cases.items():
        with launched(tmp_path, "sim.launch.py", f"run_dir:={tmp_path / 'fresh'}", *args) as launch:
            assert launch.wait(120) == 1, launch.output
            assert message in launch.output, launch.output
            assert not started(launch.output), launch.output


def test_trainer_launch_trains_on_a_call_and_stops_on_ctrl_c(tmp_path):
    """A baseline through method:=, as on a robot's trainer machine (the file's method is MILE)."""
    from std_srvs.srv import Trigger
    from test_graph_bags import OBS_DIM, write_episode

    from mile_ros.learning import MileCheckpoint, Spec, build_policy, load_checkpoint
    from mile_ros.nodes.probe import Probe

    spec = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    init = MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (16,))).save(tmp_path / "init.pt")
    for k in range(2):
        bag = tmp_path / "bags" / "iter_000" / f"train_{k:03d}"
        write_episode(bag, 15, human_steps={2, 3, 9}, seed=k)
        meta = json.loads((bag / "episode.json").read_text())
        (bag / "episode.json").write_text(json.dumps({**meta, "iteration": 0}))
    args = [
        f"bags_dir:={tmp_path / 'bags'}",
        f"checkpoint_dir:={tmp_path / 'checkpoints'}",
        f"initial_checkpoint:={init}",
        "epochs:=2",
        "method:=iwr",
    ]
    with launched(tmp_path, "trainer.launch.py", *args) as launch:
        probe = Probe(launch.domain_id)
        try:
            response = probe.call("/trainer/train", Trigger, timeout=600)
        finally:
            probe.close()
        assert response.success, response.message + launch.output[-4000:]
        answer = json.loads(response.message)
        assert answer["method"] == "iwr", answer
        checkpoint = Path(answer["checkpoint"])
        assert checkpoint.parent == tmp_path / "checkpoints" and checkpoint.is_file()
        load_checkpoint(checkpoint)
        code = launch.interrupt()
        out = launch.output
    assert code == 0, out[-4000:]
    assert not ESCALATION.search(out), out[-4000:]


def widowx_params(tmp_path: Path) -> Path:
    """config/widowx.yaml for a short session without an arm or a pad, with a slow CPU encoder."""
    config = yaml.safe_load((ROOT / "config" / "widowx.yaml").read_text())
    changes = {
        "widowx_driver": {"max_episode_steps": 20, "hold_without_pad": False},
        "webcam_node": {"loop": True, "rate_hz": 5.0},
        "r3m_encoder": {"cpu_threads": 1},
        # R3M on a busy CPU takes about a second a frame: let the policy use older embeddings.
        "policy_node": {"max_embedding_age_s": 30.0},
        "session_manager": {"iterations": 1, "episodes": 1, "eval_episodes": 0},
    }
    for node, values in changes.items():
        config[node]["ros__parameters"].update(values)
    path = tmp_path / "widowx.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_widowx_launch_runs_an_episode_on_the_sim_backend(tmp_path):
    import cv2
    import numpy as np

    from mile_ros.graph.bag_episode import read_bag
    from mile_ros.robot.initial_policy import still_policy_checkpoint
    from mile_ros.robot.r3m import save_random_r3m_checkpoint

    video = tmp_path / "scene.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for i in range(20):
        writer.write(np.full((120, 160, 3), 10 * i, np.uint8))
    writer.release()
    r3m = save_random_r3m_checkpoint(tmp_path / "r3m.pt")
    policy = still_policy_checkpoint(hidden=(32, 32)).save(tmp_path / "initial.pt")
    run = tmp_path / "run"
    args = [
        f"params_file:={widowx_params(tmp_path)}",
        "backend:=sim",
        "with_trainer:=false",
        f"run_dir:={run}",
        f"initial_checkpoint:={policy}",
        f"r3m_checkpoint:={r3m}",
        f"camera_source:={video}",
        "namespace:=arm1",  # every node, topic and service under /arm1
    ]

    def recorded() -> bool:
        state = run / "session.json"
        return state.is_file() and bool(json.loads(state.read_text())["episodes"])

    with launched(tmp_path, "widowx.launch.py", *args) as launch:
        launch.wait_until(recorded, 600, "recorded episode")
        code = launch.interrupt()
        out = launch.output
    names = {n.rsplit("-", 1)[0] for n in started(out)}
    assert names == {
        "widowx_driver",
        "webcam_node",
        "r3m_encoder",
        "ps3_teleop",
        "policy_node",
        "arbitration_node",
        "recorder_node",
        "session_manager",
    }
    assert code == 0, out[-6000:]
    assert "exited with code" not in out, out[-6000:]
    [episode] = json.loads((run / "session.json").read_text())["episodes"]
    assert episode["steps"] == 20, episode
    bag = read_bag(episode["bag"])
    assert any(m.topic == "/mile/executed_action" for m in bag.messages)
    from rosbags.rosbag2 import Reader

    with Reader(episode["bag"]) as reader:  # recorded under the namespace's names
        recorded_as = {c.topic for c in reader.connections}
    assert "/arm1/mile/executed_action" in recorded_as and all(t.startswith("/arm1/") for t in recorded_as)


def test_widowx_launches_stop_before_any_node_where_a_package_is_missing(tmp_path):
    """Only this checkout's prefix on AMENT_PREFIX_PATH: joy and interbotix are missing even where a
    ROS 2 distribution has them."""
    policy = tmp_path / "initial.pt"
    policy.write_bytes(b"")
    common = [f"run_dir:={tmp_path / 'run'}", f"initial_checkpoint:={policy}"]
    with launched(tmp_path, "widowx.launch.py", *common, "with_teleop:=false", only_own_prefix=True) as launch:
        assert launch.wait(120) == 1, launch.output
        assert "with_teleop:=false runs the joy package's joy_node" in launch.output, launch.output
        assert not started(launch.output), launch.output
    with launched(tmp_path, "widowx_gazebo.launch.py", *common, only_own_prefix=True) as launch:
        assert launch.wait(120) == 1, launch.output
        assert "interbotix_xsarm_control" in launch.output, launch.output
        assert not started(launch.output), launch.output
