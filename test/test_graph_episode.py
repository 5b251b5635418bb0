"""The episode state machine shared by widowx_driver and the Metaworld bridge (ROS-free, fast): start, steps,
the step limit, the operator's verdicts, pad loss and return, pause and resume; and the bridge's core on it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mile_ros.graph.episode import (
    ENDED,
    IDLE,
    PAUSED,
    RUNNING,
    WAITING,
    Episode,
    EpisodeEnd,
)
from mile_ros.graph.sim_bridge import BridgeCore


def test_simulator_episode_starts_idle_and_ends_at_the_step_limit():
    ep = Episode(max_steps=3)
    assert ep.phase == IDLE and ep.ended and not ep.running
    with pytest.raises(RuntimeError, match="no episode running"):
        ep.step()
    assert not ep.resume()  # nothing to resume before a start
    assert ep.start() == RUNNING
    assert ep.step(reward=0.5) is None and ep.step(reward=0.25) is None
    end = ep.step(reward=1.0)
    assert end == EpisodeEnd("time_limit", 3, False, 1.75) and ep.phase == ENDED and ep.last_end == end
    with pytest.raises(RuntimeError, match="ended"):
        ep.step()
    assert not ep.resume()  # refused after the end
    assert ep.start() == RUNNING and (ep.steps, ep.episode_return, ep.success, ep.last_end) == (0, 0.0, False, None)


@pytest.mark.parametrize(
    ("flags", "reason", "success"),
    [
        ({"success": True, "terminated": True}, "success", True),
        ({"success": False, "terminated": True}, "terminated", False),
        ({"truncated": True}, "time_limit", False),
        ({"success": True, "truncated": True}, "time_limit", True),  # successful step at the limit
        ({"success": True, "terminated": True, "truncated": True}, "success", True),
    ],
)
def test_the_step_that_ends_says_why(flags, reason, success):
    ep = Episode()
    ep.start()
    assert ep.step(success=flags.get("success", False)) is None  # success alone does not end it
    end = ep.step(**flags)
    assert (end.reason, end.success, end.steps) == (reason, success, 2)


def test_no_limit_when_max_steps_is_zero():
    ep = Episode(max_steps=0, running=True)
    assert all(ep.step() is None for _ in range(1000)) and ep.steps == 1000
    with pytest.raises(ValueError):
        Episode(max_steps=-1)


def test_operator_verdicts_end_only_a_running_episode():
    ep = Episode(running=True)  # the driver: commands from start-up, before any reset
    ep.step()
    ep.step()
    assert ep.end("success", reward=1.0) == EpisodeEnd("success", 2, True, 1.0)
    assert ep.success and ep.end("failure") is None  # a press between episodes ends nothing
    ep.start()
    assert not ep.success
    ep.step()
    assert ep.end("discard") == EpisodeEnd("discard", 1, False, 0.0)
    ep.start()
    ep.pause()
    assert ep.end("failure") is None and ep.phase == PAUSED  # paused: no verdict
    assert ep.resume() and ep.end("failure") == EpisodeEnd("failure", 0, False, 0.0)
    with pytest.raises(ValueError, match="time_limit"):
        ep.end("time_limit")  # not the operator's to give


def test_pad_loss_ends_the_episode_and_the_next_waits_for_the_pad():
    ep = Episode(running=True)
    assert ep.operator(True) is None and ep.running
    ep.step()
    end = ep.operator(False)
    assert end == EpisodeEnd("pad_lost", 1, False, 0.0) and ep.phase == ENDED
    assert ep.operator(False) is None  # once
    assert ep.start() == WAITING and not ep.running
    assert ep.end("success") is None  # no verdict while waiting
    with pytest.raises(RuntimeError):
        ep.step()
    assert ep.operator(True) is None and ep.running  # the pad is back: the episode runs
    ep.step()
    assert ep.steps == 1


def test_pause_and_resume():
    ep = Episode(max_steps=5)
    ep.pause()
    assert ep.phase == IDLE  # nothing to pause
    ep.start()
    ep.step()
    ep.pause()
    assert ep.phase == PAUSED and not ep.running and not ep.ended
    with pytest.raises(RuntimeError):
        ep.step()
    assert ep.operator(False) is None  # a pad lost while paused ends nothing...
    assert ep.resume() and ep.phase == WAITING  # ...but the episode waits for it on resuming
    ep.pause()
    assert ep.operator(True) is None and ep.phase == PAUSED  # the pad back does not resume a pause
    assert ep.resume() and ep.running and ep.steps == 1
    assert ep.resume() and ep.running  # resuming a running episode keeps it running
    ep.start()  # a start while running restarts without an end
    assert ep.steps == 0 and ep.last_end is None


class ScriptedEnv:
    """A task whose steps' flags are given (importing the simulator takes seconds; test_node_bridge runs it)."""

    max_steps = 4

    def __init__(self, script: list[dict]) -> None:
        self.script, self.resets, self.actions = script, [], []

    def reset(self, seed):
        self.resets.append(seed)
        return np.array([float(seed or 0), 0.0])

    def step(self, action):
        self.actions.append(action)
        flags = self.script[len(self.actions) - 1] if len(self.actions) <= len(self.script) else {}
        step = {"success": False, "terminated": False, "truncated": False, **flags}  # what SimEnv.step gives
        return SimpleNamespace(obs=np.array([0.0, float(len(self.actions))]), reward=0.5, **step)


def test_bridge_core_runs_its_episodes_on_the_machine():
    env = ScriptedEnv([{}, {"success": True, "terminated": True}])
    core = BridgeCore(env, 50_000_000, start_ns=0)
    assert core.max_steps == 4 and core.episode.max_steps == 4  # 0: the task's own limit
    assert core.ended and not core.running and not core.resume()
    with pytest.raises(RuntimeError, match="reset first"):
        core.step(np.zeros(4))
    first = core.reset(7)
    assert (first.stamp_ns, first.steps, first.ended, env.resets) == (50_000_000, 0, False, [7])
    assert not core.step(np.zeros(4)).ended
    core.pause()
    with pytest.raises(RuntimeError, match="paused"):
        core.step(np.zeros(4))
    assert core.resume() and core.running
    out = core.step(np.ones(4))
    assert (out.ended, out.reason, out.success, out.steps, out.episode_return) == (True, "success", True, 2, 1.0)
    assert out.stamp_ns == 150_000_000 and core.ended and not core.resume()
    again = core.reset(8)  # time goes on: stamps stay unique across episodes
    assert again.stamp_ns == 200_000_000 and again.steps == 0 and core.running


def test_bridge_core_step_limit_from_the_parameter():
    core = BridgeCore(ScriptedEnv([]), 1, max_episode_steps=2)
    core.reset(None)
    core.step(np.zeros(4))
    out = core.step(np.zeros(4))
    assert (out.ended, out.reason, out.steps) == (True, "time_limit", 2)
    with pytest.raises(ValueError):
        BridgeCore(ScriptedEnv([]), 0)
