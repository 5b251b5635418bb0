"""The session's orchestration without ROS (fast): the order of calls for an episode, training and the
policy's switch, resuming, a bag left by a crash, the simulated human's retries, an episode that never
ends, the recorder's lifecycle, and the refusals that stop a session. The graph here is an in-memory
stand-in for the nodes' services; test_session_sim.py runs the same runner in the real graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mile_ros.graph.bag_episode import write_sidecar
from mile_ros.graph.session import SessionConfig, SessionState, Task
from mile_ros.graph.session_runner import (
    RECORDER,
    SETBOOL_SERVICES,
    TRIGGER_SERVICES,
    RunnerOptions,
    SessionRunner,
    episode_outcome,
    open_session,
)
from mile_ros.seeds import collect_seed

OPTIONS = RunnerOptions(
    bridge_node="metaworld_bridge",
    use_simulated_human=True,
    episode_timeout_s=5.0,
    train_timeout_s=10.0,
    service_timeout_s=3.0,
)


class Graph:
    """Answers like the nodes do: the bridge ends an episode after its reset, the recorder reports it,
    the trainer writes update n and the policy node switches to a published checkpoint."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.log: list[tuple] = []  # every call and parameter set, in order
        self.answers: dict[str, list[tuple[bool, str]]] = {}  # queued answers before the normal one
        self.ends_episodes = True
        self.switches = True
        self.ended = False
        self.active = ""
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.update_offset = 0
        self.result = {"steps": 7, "interventions": 2, "success": True, "end_reason": "success", "discarded": False}
        # The recorder's lifecycle: its state, its parameters, the bag it was configured for.
        self.recorder_state = "unconfigured"
        self.bridge_state = "active"  # autostart
        self.recorder_params: dict = {}
        self.configured: str | None = None

    def call(self, service: str, data: bool | None = None, timeout: float = 60.0) -> tuple[bool, str]:
        assert service in (TRIGGER_SERVICES if data is None else SETBOOL_SERVICES), (service, data)
        self.log.append((service, data) if data is not None else (service,))
        if self.answers.get(service):
            return self.answers[service].pop(0)
        if service == "episode/reset":
            self.ended = self.ends_episodes
        if service == "trainer/train":
            n = len([e for e in self.log if e[0] == "trainer/train"]) + self.update_offset
            path = str(self.run_dir / "checkpoints" / f"update_{n:03d}.pt")
            if self.switches:
                self.active = path
            return True, json.dumps({"update": n, "checkpoint": path, "rows": 70, "seconds": 0.1})
        return True, "ok"

    def set_params(self, node: str, values: dict) -> None:
        self.log.append(("params", node, values))
        if node == RECORDER:
            assert self.recorder_state == "unconfigured", "the recorder refuses its bag's name while configured"
            self.recorder_params.update(values)

    def get_param(self, node: str, name: str):
        assert node == RECORDER
        return self.recorder_params[name]

    def lifecycle_state(self, node: str, timeout: float = 60.0) -> str:
        if node == "policy_node":
            return "active"
        return self.recorder_state if node == RECORDER else self.bridge_state

    def transition(self, node: str, label: str, timeout: float = 60.0) -> bool:
        """The recorder's transitions as rclpy.lifecycle makes them; deactivate writes the bag's summary.
        The bridge's: activate and deactivate (pause)."""
        self.log.append((f"{node}:{label}",))
        if node == "policy_node":
            return True
        if node != RECORDER:
            assert node in ("metaworld_bridge", "widowx_driver") and label in ("activate", "deactivate")
            self.bridge_state = "active" if label == "activate" else "inactive"
            return True
        if self.answers.get(f"{node}:{label}"):
            return self.answers[f"{node}:{label}"].pop(0)[0]
        allowed = {"configure": "unconfigured", "activate": "inactive", "deactivate": "active", "cleanup": "inactive"}
        if self.recorder_state != allowed[label]:
            return False
        if label == "configure":
            self.configured = self.recorder_params["bag_path"]
        if label == "deactivate" and self.configured:
            Path(self.configured).mkdir(parents=True)
            write_sidecar(Path(self.configured), {**self.result, "message_counts": {"/mile/observation": 8}})
        self.recorder_state = {"configure": "inactive", "activate": "active", "deactivate": "inactive"}.get(
            label, "unconfigured"
        )
        return True

    def publish_checkpoint(self, path: str) -> None:
        self.log.append(("checkpoint", path))
        self.active = path

    def wait_active(self, path: str, timeout: float) -> str:
        return self.active

    def expect_episode_end(self) -> None:
        self.ended = False

    def wait_episode_end(self, timeout: float) -> bool:
        return self.ended

    def progress(self, text: str, **extra) -> None:
        self.lines.append(text)

    def log_error(self, text: str) -> None:
        self.errors.append(text)

    def log_warning(self, text: str) -> None:
        self.warnings.append(text)

    def services(self) -> list[str]:
        return [e[0] for e in self.log if e[0] not in ("params", "checkpoint")]


class Clock:
    """Time that passes only in sleep(): a retry loop's deadline without waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def make(tmp_path: Path, options: RunnerOptions = OPTIONS, **cfg) -> tuple[SessionRunner, Graph, Clock]:
    config = SessionConfig(**{"iterations": 1, "episodes": 1, "eval_episodes": 1, "seed": 3, **cfg})
    state = open_session(tmp_path / "run", config, "drawer-open-v3", str(tmp_path / "initial.pt"))
    graph, clock = Graph(state.run_dir), Clock()
    return SessionRunner(state, graph, options, clock=clock, sleep=clock.sleep), graph, clock


def saved_episode(runner: SessionRunner, index: int) -> dict:
    return json.loads((runner.state.run_dir / "session.json").read_text())["episodes"][index]


def test_a_session_in_order(tmp_path):
    runner, graph, _ = make(tmp_path)
    rows = runner.run()
    initial = str((tmp_path / "initial.pt").resolve())
    assert graph.log[0] == ("checkpoint", initial)
    episode = [
        "params metaworld_bridge",
        "params simulated_human",
        "simulated_human/enable",
        "simulated_human/reset",
        "policy/reset",
        "arbitration/reset",
        "params recorder_node",
        "recorder_node:configure",  # names the bag
        "recorder_node:activate",
        "episode/reset",
        "recorder_node:deactivate",
        "recorder_node:cleanup",
    ]
    steps = [e[0] if e[0] != "params" else f"params {e[1]}" for e in graph.log[1:]]
    assert steps == [*episode, *episode, "trainer/train", *episode]  # eval 0, train 0, update 1, eval 1
    enables = [e[1] for e in graph.log if e[0] == "simulated_human/enable"]
    assert enables == [False, True, False]  # the human only in intervention episodes
    params = [e[1:] for e in graph.log if e[0] == "params"]
    assert params[:3] == [
        ("metaworld_bridge", {"seed": 0}),
        ("simulated_human", {"episode_seed": 0}),
        ("recorder_node", params[2][1]),
    ]  # evaluation episode 0: seed 0
    info = json.loads(params[5][1]["episode_info"])  # the intervention episode's
    seed = collect_seed(3, 1, 0, 0)
    assert info["mode"] == "train" and info["checkpoint"] == initial and info["seed"] == seed
    assert params[5][1]["bag_path"] == str(runner.state.run_dir / "bags" / "iter_000" / "train_000")
    assert params[3:5] == [("metaworld_bridge", {"seed": seed}), ("simulated_human", {"episode_seed": seed})]
    # The summary is the bag's own (episode.json), without its message counts.
    assert "message_counts" not in saved_episode(runner, 1) and saved_episode(runner, 1)["steps"] == 7
    saved = json.loads((runner.state.run_dir / "session.json").read_text())
    assert [e["name"] for e in saved["episodes"]] == ["iter_000/eval_000", "iter_000/train_000", "iter_001/eval_000"]
    assert saved["checkpoints"] == {"1": str(runner.state.run_dir / "checkpoints" / "update_001.pt")}
    assert saved["episodes"][1]["seed"] == seed
    assert [r["iteration"] for r in rows] == [0, 1] and rows[0]["intervention_rate"] == pytest.approx(2 / 7)
    assert graph.lines[0] == "iteration 0 eval episode 0: success after 7 steps, 2 interventions (0.0 s)"
    assert graph.lines[2] == "iteration 0: training MILE on the bags so far"
    assert graph.lines[3].startswith("iteration 0: policy-alone success rate 1.00, intervention episodes' success")
    assert "update 1 on 70 steps" in graph.lines[3]
    assert graph.lines[-1] == f"session complete: 2 iterations in {runner.state.run_dir}"
    assert (runner.state.run_dir / "metrics.csv").is_file() and not graph.errors


def test_a_resumed_session_sets_a_crashed_episodes_bag_aside_and_records_it_again(tmp_path):
    runner, graph, _ = make(tmp_path)
    graph.ends_episodes = False
    graph.answers["recorder_node:deactivate"] = [(False, "")]
    with pytest.raises(RuntimeError, match="recorder_node refused the transition deactivate"):
        runner.run()  # the first episode fails: nothing recorded, the recorder left recording
    assert runner.state.episodes == [] and graph.recorder_state == "active"
    bag = runner.state.bag_path(runner_task(runner))
    bag.mkdir(parents=True)
    (bag / "partial.mcap").write_bytes(b"not a bag")

    # The same run directory opened again, as a restarted session manager does; the recorder still records.
    state = open_session(tmp_path / "run", runner.state.config, "drawer-open-v3", "")
    assert state.initial_checkpoint == str((tmp_path / "initial.pt").resolve())  # kept from the first start
    graph = Graph(state.run_dir)
    graph.recorder_state = "active"
    SessionRunner(state, graph, OPTIONS).run()
    assert graph.log[1:3] == [("recorder_node:deactivate",), ("recorder_node:cleanup",)]  # stopped first
    aside = bag.with_name("eval_000.interrupted0")
    assert aside.is_dir() and (aside / "partial.mcap").is_file()  # kept, never trained on
    assert json.loads((aside / "episode.json").read_text())["complete"] is False
    assert len(graph.warnings) == 1 and "still recording" in graph.warnings[0]
    assert len(graph.errors) == 1 and str(aside) in graph.errors[0]  # not reindexed: not an MCAP file
    assert len(state.episodes) == 3 and state.episodes[0]["name"] == "iter_000/eval_000"


def test_resuming_skips_what_is_done(tmp_path):
    runner, graph, _ = make(tmp_path, iterations=2)
    graph.answers["trainer/train"] = [(False, "no bags")]
    with pytest.raises(RuntimeError, match="trainer/train refused: no bags"):
        runner.run()
    done = [e["name"] for e in runner.state.episodes]
    assert done == ["iter_000/eval_000", "iter_000/train_000"]
    graph.log.clear()
    runner.run()
    assert graph.services()[0] == "trainer/train"  # straight to the update that failed
    assert len(runner.state.episodes) == 5 and set(runner.state.checkpoints) == {"1", "2"}


def test_the_simulated_human_is_retried_until_it_is_ready(tmp_path):
    runner, graph, clock = make(tmp_path)
    graph.answers["simulated_human/reset"] = [(False, "fitting")] * 3
    runner.run_episode(runner_task(runner))
    assert graph.services().count("simulated_human/reset") == 4 and clock.now == pytest.approx(1.5)

    graph.answers["simulated_human/reset"] = [(False, "fitting its model")] * 100
    with pytest.raises(RuntimeError, match="simulated_human/reset refused: fitting its model"):
        runner.run_episode(runner_task(runner, 1))
    assert clock.now >= 1.5 + OPTIONS.train_timeout_s  # gave up at train_timeout_s
    assert graph.services().count("recorder_node:configure") == 1 and graph.recorder_state == "unconfigured"


def test_without_the_simulated_human(tmp_path):
    options = RunnerOptions("widowx_driver", False, 5.0, 10.0, 3.0)
    runner, graph, _ = make(tmp_path, options)
    assert runner.param_nodes == ("recorder_node", "widowx_driver")
    runner.run_episode(runner_task(runner))
    assert not any("simulated_human" in str(e) for e in graph.log)
    assert ("params", "widowx_driver", {"seed": 0}) in graph.log


def test_an_episode_that_never_ends_is_paused_and_recorded(tmp_path):
    runner, graph, _ = make(tmp_path)
    graph.ends_episodes = False
    graph.result = {"steps": 3, "interventions": 0, "success": False, "end_reason": "", "discarded": False}
    result = runner.run_episode(runner_task(runner))
    assert graph.services()[-4:] == [
        "episode/reset",
        "metaworld_bridge:deactivate",  # paused
        "recorder_node:deactivate",
        "recorder_node:cleanup",
    ]
    assert graph.bridge_state == "inactive"
    assert graph.errors == [f"iter_000/eval_000: no episode end within {OPTIONS.episode_timeout_s} s"]
    assert result["steps"] == 3 and runner.state.done(runner_task(runner))
    graph.log.clear()
    runner.run_episode(runner_task(runner, 1))  # the next episode activates the bridge again
    services = graph.services()
    assert services.index("metaworld_bridge:activate") < services.index("episode/reset")


def test_the_bag_is_the_one_configured_or_nothing_is_recorded(tmp_path):
    """configure names the bag; the runner reads the name back and records only into the bag it asked for."""
    runner, graph, _ = make(tmp_path)
    task = runner_task(runner)
    real_get = graph.get_param
    graph.get_param = lambda node, name: "/elsewhere/bag"  # someone set it between set and configure
    with pytest.raises(RuntimeError, match="configured for '/elsewhere/bag'"):
        runner.run_episode(task)
    assert graph.services()[-2:] == ["recorder_node:configure", "recorder_node:cleanup"]
    assert "recorder_node:activate" not in graph.services() and graph.recorder_state == "unconfigured"
    graph.get_param = real_get
    graph.answers["recorder_node:configure"] = [(False, "")]  # an existing bag, a path outside output_dir
    with pytest.raises(RuntimeError, match="recorder_node refused the transition configure"):
        runner.run_episode(task)
    assert "recorder_node:activate" not in graph.services()
    assert runner.run_episode(task)["steps"] == 7  # and then recorded as usual


def test_a_trainer_answering_another_update_or_a_policy_that_does_not_switch_stops_the_session(tmp_path):
    runner, graph, _ = make(tmp_path)
    graph.update_offset = 1
    with pytest.raises(RuntimeError, match="asked for update 1, the trainer answered with update 2"):
        runner.train(1)
    assert runner.state.checkpoints == {}
    graph.update_offset, graph.switches = -1, False  # the second call: update 1 again
    with pytest.raises(TimeoutError, match=r"did not switch to .*update_001"):
        runner.train(1)


def test_episode_outcome_lines():
    base = {"success": False, "end_reason": "failure", "discarded": False}
    assert episode_outcome({**base, "success": True, "end_reason": "success"}) == "success"
    assert episode_outcome(base) == "failure"
    assert episode_outcome({**base, "end_reason": "time_limit"}) == "failure (time_limit)"
    assert episode_outcome({**base, "end_reason": "pad_lost"}) == "failure (pad_lost)"
    assert episode_outcome({**base, "end_reason": "discard", "discarded": True}).startswith("discarded by the operator")
    assert episode_outcome({"success": True}) == "success"  # an older recorder: no reason


def test_a_new_session_needs_an_initial_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="initial_checkpoint"):
        open_session(tmp_path / "run", SessionConfig(1, 1, 1), "drawer-open-v3", "")
    assert SessionState.open(tmp_path / "run", SessionConfig(1, 1, 1), "drawer-open-v3").initial_checkpoint == ""


def runner_task(runner: SessionRunner, index: int = 0) -> Task:
    """Evaluation episode ``index`` of iteration 0 (its seed is its index, as the benchmark's)."""
    return Task("episode", 0, index, "eval", index)
