"""The zero-motion starting policy of a real-robot session: right observation spec, no motion proposed."""

from __future__ import annotations

import numpy as np

from mile_ros.learning import PolicyRunner, load_checkpoint
from mile_ros.robot.initial_policy import OBS_DIM, main, real_robot_spec


def test_still_policy_round_trip(tmp_path):
    out = tmp_path / "initial.pt"
    assert main(["--out", str(out), "--hidden", "32,32"]) == 0
    checkpoint = load_checkpoint(out, expected=real_robot_spec())
    assert checkpoint.spec.obs_source == "r3m+ee" and checkpoint.spec.obs_dim == 2051 == OBS_DIM
    runner = PolicyRunner(checkpoint)
    rng = np.random.default_rng(0)
    for _ in range(4):
        action = runner.act(rng.normal(size=OBS_DIM).astype(np.float32))
        np.testing.assert_array_equal(action, np.zeros(4, np.float32))
    mean, std = checkpoint.policy(torch_obs(rng, checkpoint.spec.stacked_dim))
    np.testing.assert_array_equal(mean.detach().numpy(), 0.0)
    np.testing.assert_allclose(std.detach().numpy(), 0.3, rtol=1e-5)


def torch_obs(rng, dim):
    import torch

    return torch.as_tensor(rng.normal(size=(3, dim)), dtype=torch.float32)
