"""The intervention record: frame stacking, validation with precise errors, lossless files."""

import numpy as np
import pytest

from mile_ros.learning import DatasetError, FrameStacker, InterventionDataset, Spec, stack_frames


def _dataset(discrete=False, episodes=3, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    n = episodes * steps
    spec = Spec(3, 4 if discrete else 2, discrete, frame_stack=2)
    flag = rng.random(n) < 0.4
    if discrete:
        robot = rng.integers(0, 4, n)
        human = np.where(flag, rng.integers(0, 4, n), -1)
    else:
        robot = rng.normal(size=(n, 2))
        human = np.where(flag[:, None], rng.normal(size=(n, 2)), np.nan)
    return InterventionDataset(
        spec,
        rng.normal(size=(n, 3)),
        robot,
        flag,
        human,
        np.repeat(np.arange(episodes), steps),
        np.tile(np.arange(steps), episodes),
    )


def test_stacking_orders_oldest_first_and_pads_at_episode_start():
    obs = np.arange(12, dtype=np.float32).reshape(6, 2)  # two episodes of three steps
    episode = np.array([0, 0, 0, 1, 1, 1])
    out = stack_frames(obs, episode, k=2)
    np.testing.assert_array_equal(out[0], [0, 1, 0, 1, 0, 1])  # first frame repeated
    np.testing.assert_array_equal(out[2], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(out[3], [6, 7, 6, 7, 6, 7])  # no leak across episodes
    np.testing.assert_array_equal(out[4], [6, 7, 6, 7, 8, 9])
    zero = stack_frames(obs, episode, k=2, padding="zero")
    np.testing.assert_array_equal(zero[4], [0, 0, 6, 7, 8, 9])


def test_online_stacker_equals_offline_stacking():
    ds = _dataset()
    offline = ds.stacked_observations()
    stacker = FrameStacker(3, 2)
    online = []
    for i in range(len(ds)):
        if ds.step[i] == 0:
            stacker.reset()
        online.append(stacker.push(ds.observation[i]))
    np.testing.assert_array_equal(np.stack(online), offline)


@pytest.mark.parametrize("discrete", [False, True])
def test_save_and_load_are_lossless(tmp_path, discrete):
    ds = _dataset(discrete)
    path = ds.save(tmp_path / "data.npz")
    back = InterventionDataset.load(path)
    assert back.spec == ds.spec
    for name in ("observation", "robot_action", "intervention", "human_action", "episode", "step"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
        assert getattr(back, name).dtype == getattr(ds, name).dtype


def test_rows_with_nan_are_refused_naming_episode_and_step():
    ds = _dataset()
    obs = ds.observation.copy()
    obs[7, 1] = np.nan  # episode 1, step 2
    with pytest.raises(DatasetError, match=r"episode 1 step 2: observation is NaN"):
        InterventionDataset(ds.spec, obs, ds.robot_action, ds.intervention, ds.human_action, ds.episode, ds.step)
    robot = ds.robot_action.copy()
    robot[11, 0] = np.inf
    with pytest.raises(DatasetError, match=r"episode 2 step 1: robot action"):
        InterventionDataset(ds.spec, ds.observation, robot, ds.intervention, ds.human_action, ds.episode, ds.step)


@pytest.mark.parametrize("discrete", [False, True])
def test_intervention_without_human_action_is_refused(discrete):
    ds = _dataset(discrete)
    flag = ds.intervention.copy()
    human = ds.human_action.copy()
    flag[4] = True
    human[4] = -1 if discrete else np.nan
    with pytest.raises(DatasetError, match=r"episode 0 step 4: intervention \(I=1\) without a finite human action"):
        InterventionDataset(ds.spec, ds.observation, ds.robot_action, flag, human, ds.episode, ds.step)


def test_duplicate_steps_are_refused_and_rows_are_put_in_order():
    ds = _dataset()
    order = np.random.default_rng(1).permutation(len(ds))
    shuffled = ds.select(order)
    np.testing.assert_array_equal(shuffled.observation, ds.observation)  # sorted back by (episode, step)
    step = ds.step.copy()
    step[3] = 2
    with pytest.raises(DatasetError, match="duplicate"):
        InterventionDataset(
            ds.spec, ds.observation, ds.robot_action, ds.intervention, ds.human_action, ds.episode, step
        )


def test_split_keeps_whole_episodes(tmp_path):
    ds = _dataset(episodes=10)
    train, val = ds.split_by_episode(0.2, seed=3)
    assert len(train) + len(val) == len(ds)
    assert len(val.episodes) == 2
    assert not set(train.episodes) & set(val.episodes)
    one = _dataset(episodes=1)
    train, val = one.split_by_episode(0.2)
    assert len(val) == 0 and len(train) == len(one)


def test_corrupt_file_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a dataset")
    with pytest.raises(DatasetError, match="not a mile_ros dataset"):
        InterventionDataset.load(bad)
