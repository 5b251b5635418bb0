"""Experts, rollouts and evaluation on real Metaworld / LunarLander with real torch policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from mile_ros.learning import MileCheckpoint, PolicyRunner, build_policy, load_checkpoint
from mile_ros.sim import episodes_to_dataset, evaluate, make_env, make_expert, run_episode


class ExpertActor:
    def __init__(self, expert) -> None:
        self.expert = expert

    def reset(self) -> None:
        pass

    def act(self, frame):
        return self.expert.act(frame)


class RecordingRunner(PolicyRunner):
    """A PolicyRunner that keeps every stacked observation it acted on."""

    def reset(self) -> None:
        super().reset()
        self.seen: list[np.ndarray] = []

    def act(self, frame):
        action = super().act(frame)
        self.seen.append(self.last_stacked.copy())
        return action


def random_checkpoint(env, seed: int = 0, hidden=(32, 32)) -> MileCheckpoint:
    torch.manual_seed(seed)
    spec = env.spec
    return MileCheckpoint(spec, build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, hidden))


@pytest.mark.parametrize("task,seeds", [("drawer-open-v3", [0, 1]), ("button-press-v3", [0, 1])])
def test_metaworld_expert_succeeds_and_episode_stops_at_success(task: str, seeds: list[int]) -> None:
    with make_env(task) as env:
        actor = ExpertActor(make_expert(task, env))
        for s in seeds:
            ep = run_episode(env, actor, s, record=False)
            assert ep.success and ep.length < env.max_steps, (task, s, ep.length)


def test_lunar_lander_heuristic_lands() -> None:
    with make_env("LunarLander-v3") as env:
        actor = ExpertActor(make_expert("LunarLander-v3", env))
        returns = [run_episode(env, actor, s, record=False).episode_return for s in (0, 1)]
    assert min(returns) >= 200


def test_gaussian_expert_distribution() -> None:
    with make_env("peg-insert-side-v3") as env:
        expert = make_expert("peg-insert-side-v3", env, std=0.2)
        frame = env.reset(seed=0)
    mean, std = expert.distribution(frame)
    np.testing.assert_array_equal(mean, expert.act(frame))
    np.testing.assert_array_equal(std, np.full(4, 0.2, np.float32))
    draws = np.array([expert.sample(frame, np.random.default_rng(i)) for i in range(2000)])
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(draws.std(0), 0.2, atol=0.02)
    with pytest.raises(ValueError, match="std"):
        make_expert("peg-insert-side-v3", env, std=-1.0)


def test_discrete_expert_distribution() -> None:
    with make_env("LunarLander-v3") as env:
        expert = make_expert("LunarLander-v3", env, epsilon=0.2)
        frame = env.reset(seed=0)
        for _ in range(30):  # get off the spawn point so the heuristic fires its engines
            frame = env.step(expert.act(frame)).obs
    log_p = expert.distribution(frame)
    assert log_p.shape == (4,)
    assert logsumexp(log_p) == pytest.approx(0.0, abs=1e-6)
    assert int(np.argmax(log_p)) == expert.act(frame)
    assert np.exp(log_p).max() == pytest.approx(0.8 + 0.2 / 4, abs=1e-6)


def test_rollout_stacks_like_the_dataset() -> None:
    with make_env("drawer-open-v3") as env:
        runner = RecordingRunner(random_checkpoint(env))
        ep = run_episode(env, runner, seed=3)
    assert ep.length == len(ep.observation) == len(runner.seen) == env.max_steps
    data = ep.to_dataset(episode_id=7)
    np.testing.assert_array_equal(data.stacked_observations(), np.array(runner.seen))
    assert (data.episode == 7).all() and not data.intervention.any()
    assert np.isnan(data.human_action).all()
    assert ep.intervention_count == 0 and ep.intervention_rate == 0.0
    assert ep.wall_time > 0 and ep.steps_per_second > 0


def test_episodes_join_into_one_dataset() -> None:
    with make_env("LunarLander-v3") as env:
        runner = PolicyRunner(random_checkpoint(env))
        eps = [run_episode(env, runner, s) for s in (0, 1)]
    data = episodes_to_dataset(eps, first_id=10)
    assert len(data) == sum(e.length for e in eps)
    assert set(data.episodes) == {10, 11}
    assert (data.human_action == -1).all()
    # robot actions were actually executed: replaying them reproduces the recorded frames
    with make_env("LunarLander-v3") as env:
        frame = env.reset(seed=0)
        for t, a in enumerate(eps[0].robot_action[:50]):
            np.testing.assert_array_equal(frame, eps[0].observation[t])
            frame = env.step(int(a)).obs
    unrecorded = run_episode(make_env("LunarLander-v3"), runner, 0, record=False)
    assert unrecorded.length == eps[0].length and len(unrecorded.observation) == 0
    with pytest.raises(ValueError, match="record=False"):
        unrecorded.to_dataset(0)


def test_evaluate_uses_fixed_seeds_and_parallel_matches_serial(tmp_path) -> None:
    with make_env("LunarLander-v3") as env:
        path = random_checkpoint(env, seed=1).save(tmp_path / "p.pt")
    serial = evaluate("LunarLander-v3", path, episodes=4, seed=20, workers=1)
    again = evaluate("LunarLander-v3", load_checkpoint(path), episodes=4, seed=20, workers=1)
    parallel = evaluate("LunarLander-v3", path, episodes=4, seed=20, workers=2)
    assert serial.seeds == [20, 21, 22, 23] and parallel.workers == 2
    assert serial.returns == again.returns == parallel.returns
    assert serial.lengths == parallel.lengths
    assert serial.mean_return == pytest.approx(np.mean(serial.returns))
    assert serial.return_se == pytest.approx(np.std(serial.returns, ddof=1) / 2)
    assert 0.0 <= serial.success_rate <= 1.0
    other = evaluate("LunarLander-v3", path, episodes=4, seed=40, workers=1)
    assert other.returns != serial.returns


def test_evaluate_refuses_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="positive"):
        evaluate("LunarLander-v3", tmp_path / "p.pt", episodes=0)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    from mile_ros.learning import CheckpointError

    with pytest.raises(CheckpointError, match="corrupt"):
        evaluate("LunarLander-v3", bad, episodes=4, workers=2)
