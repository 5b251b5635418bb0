"""Parameters are applied when set at run time or declared read-only (``Param(live=...)``,
``declare_parameters(strict=True)``): through the real parameter service of a running Metaworld bridge,
a read-only parameter is refused and the live ones take effect."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from std_srvs.srv import Trigger

from mile_ros.nodes.probe import NodeProcess, Probe, unique_domain_id

pytestmark = pytest.mark.slow  # test/conftest.py: left out of the fast tier


def first_state(probe: Probe, seed: int) -> np.ndarray:
    """The first observation of an episode started after setting ``seed`` (a live parameter)."""
    probe.set_params("metaworld_bridge", {"seed": seed}, timeout=120)
    before = len(probe.messages("/robot/state"))
    assert probe.call("/episode/reset", Trigger, timeout=120).success
    return np.asarray(probe.wait_count("/robot/state", before + 1, timeout=60)[before].position)


def resends(probe: Probe, seconds: float) -> int:
    """Observations published in ``seconds`` after a reset, with no command coming (lockstep): resends."""
    assert probe.call("/episode/reset", Trigger, timeout=120).success
    time.sleep(0.3)
    before = len(probe.messages("/robot/state"))
    time.sleep(seconds)
    return len(probe.messages("/robot/state")) - before


def test_read_only_parameters_are_refused_and_live_ones_take_effect(tmp_path):
    domain = unique_domain_id()
    node = NodeProcess("metaworld_bridge", domain, {"max_episode_steps": 50}, tmp_path)
    probe = Probe(domain)
    try:
        probe.listen("/robot/state")
        # Read at start-up (they build the environment): refused, not reported as set and ignored.
        for name, value in (("task", "reach-v3"), ("max_episode_steps", 10), ("render", True)):
            with pytest.raises(RuntimeError, match="read-only"):
                probe.set_params("metaworld_bridge", {name: value}, timeout=120)
        # seed: read at each reset.
        a = first_state(probe, 1)
        b = first_state(probe, 2)
        assert not np.allclose(a, b), "a new seed must start another episode"
        np.testing.assert_array_equal(first_state(probe, 1), a)
        # resend_s: applied when set (lockstep resends the observation while no command comes).
        slow = resends(probe, 2.0)  # the default 0.5 s: at most 4-5 in 2 s
        probe.set_params("metaworld_bridge", {"resend_s": 0.1})
        fast = resends(probe, 2.0)
        assert slow <= 5 and fast >= 2 * slow + 4, (slow, fast)
        # Out of its range: refused, and the value in effect stays.
        with pytest.raises(RuntimeError):
            probe.set_params("metaworld_bridge", {"resend_s": 100.0})
        assert node.alive(), node.output()[-2000:]
    finally:
        node.stop()
        probe.close()
