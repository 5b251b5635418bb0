"""Simulation environments: specs, stepping, seeding, rendering, errors (real Metaworld and Gymnasium)."""

from __future__ import annotations

import numpy as np
import pytest

from mile_ros.sim import load_preset, make_env, valid_tasks
from mile_ros.sim.presets import PresetError

METAWORLD = ["drawer-open-v3", "peg-insert-side-v3", "button-press-v3"]


@pytest.mark.parametrize("task", METAWORLD)
def test_metaworld_spec_and_stepping(task: str) -> None:
    with make_env(task, seed=0) as env:
        spec = env.spec
        assert (spec.obs_dim, spec.act_dim, spec.discrete, spec.frame_stack) == (39, 4, False, 3)
        assert spec.stacked_dim == 156 and spec.obs_source == "state"
        assert spec.action_low == (-1.0,) * 4 and spec.action_high == (1.0,) * 4
        assert env.max_steps == 500
        first = env.reset(seed=5)
        assert first.shape == (39,) and first.dtype == np.float32 and np.isfinite(first).all()
        np.testing.assert_allclose(env.ee_position(), first[:3], atol=1e-6)
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (20, 4)).astype(np.float32)
        trace = []
        for a in actions:
            r = env.step(a)
            assert r.obs.shape == (39,) and r.obs.dtype == np.float32
            assert isinstance(r.reward, float) and isinstance(r.success, bool)
            assert not r.truncated
            trace.append(r.obs)
        assert env.steps == 20
        # The same seed replays the same episode; the action moved the arm.
        again = env.reset(seed=5)
        np.testing.assert_array_equal(again, first)
        replay = [env.step(a).obs for a in actions]
        np.testing.assert_allclose(np.array(replay), np.array(trace), atol=1e-6)
        assert not np.allclose(trace[-1][:3], first[:3])


def test_metaworld_seeds_pick_different_configurations() -> None:
    with make_env("drawer-open-v3") as env:
        starts = {tuple(np.round(env.reset(seed=s)[4:7], 4)) for s in range(6)}
    assert len(starts) > 1


def test_metaworld_episode_depends_only_on_the_reset_seed() -> None:
    # Workers of a parallel evaluation make their environments with other seeds.
    with make_env("peg-insert-side-v3", seed=0) as a, make_env("peg-insert-side-v3", seed=9) as b:
        for s in (1, 2, 3):
            np.testing.assert_array_equal(a.reset(seed=s), b.reset(seed=s))
        first = [a.reset() for _ in range(3)]  # without a seed: the env's own seeded sequence
    with make_env("peg-insert-side-v3", seed=0) as c:
        np.testing.assert_array_equal(np.array([c.reset() for _ in range(3)]), np.array(first))


def test_metaworld_end_effector_follows_the_action() -> None:
    with make_env("button-press-v3") as env:
        env.reset(seed=0)
        z0 = env.ee_position()[2]
        for _ in range(15):
            env.step(np.array([0.0, 0.0, 1.0, 0.0]))
        assert env.ee_position()[2] > z0 + 0.02


def test_metaworld_episode_runs_to_max_steps_and_stops() -> None:
    with make_env("drawer-open-v3", stop_on_success=False) as env:
        env.reset(seed=1)
        last = None
        for _ in range(env.max_steps):
            last = env.step(np.zeros(4))
        assert last.truncated and not last.terminated and env.steps == 500
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(4))


def test_lunar_lander_spec_and_stepping() -> None:
    with make_env("LunarLander-v3", seed=0) as env:
        spec = env.spec
        assert (spec.obs_dim, spec.act_dim, spec.discrete) == (8, 4, True)
        assert spec.stacked_dim == 32 and env.max_steps == 1000
        assert env.ee_position() is None
        obs = env.reset(seed=3)
        assert obs.shape == (8,) and obs.dtype == np.float32
        total, r = 0.0, None
        while True:
            r = env.step(0)  # no thrust: the lander falls and crashes
            total += r.reward
            if r.done:
                break
        assert r.terminated and not r.success
        assert env.episode_return == pytest.approx(total)
        env.reset(seed=3)
        with pytest.raises(ValueError, match="outside"):
            env.step(7)
        with pytest.raises(ValueError, match="one integer"):
            env.step(float("nan"))
        with pytest.raises(ValueError, match="one integer"):
            env.step(1.5)
        assert env.step(np.int64(2)).obs.shape == (8,)


def test_bad_actions_are_refused() -> None:
    with make_env("drawer-open-v3") as env:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="NaN"):
            env.step(np.array([0.0, np.nan, 0.0, 0.0]))
        with pytest.raises(ValueError, match="4"):
            env.step(np.zeros(3))


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        make_env("drawer-opne-v3")
    message = str(err.value)
    assert "drawer-opne-v3" in message
    for name in ("drawer-open-v3", "peg-insert-side-v3", "button-press-v3", "LunarLander-v3"):
        assert name in message
    assert "reach-v3" in valid_tasks()


def test_any_other_metaworld_task_works_with_the_default_preset() -> None:
    preset = load_preset("reach-v3")
    assert preset["preset_file"].endswith("default.yaml")
    with make_env("reach-v3") as env:
        env.reset(seed=0)
        assert env.step(np.zeros(4)).obs.shape == (39,)


def test_presets_of_the_four_tasks() -> None:
    for task in [*METAWORLD, "LunarLander-v3"]:
        p = load_preset(task)
        assert p["preset_file"].endswith(f"{task}.yaml")
        assert p["cost"] >= 0 and 0 < p["target_intervention_rate"] < 1
        # Metaworld's probit scale is in its expert's units (sigma: auto); LunarLander's is a number
        assert (p["sigma"] == "auto" and p["sigma_scale"] > 0) if task in METAWORLD else p["sigma"] > 0
        assert len(p["initial_policy"]["band"]) == 2
    assert load_preset("LunarLander-v3")["expert"]["epsilon"] > 0


def test_missing_preset_folder_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import mile_ros.sim.presets as presets

    monkeypatch.setattr(presets, "preset_dirs", lambda: [tmp_path])
    with pytest.raises(PresetError, match=r"default\.yaml"):
        presets.load_preset("drawer-open-v3")
    (tmp_path / "default.yaml").write_text("cost: [unclosed\n")
    with pytest.raises(PresetError, match="cannot read"):
        presets.load_preset("drawer-open-v3")


def _top_bottom_brightness(image: np.ndarray) -> tuple[float, float]:
    h = image.shape[0]
    return float(image[: h // 5].mean()), float(image[-h // 5 :].mean())


@pytest.mark.parametrize("task,size", [("drawer-open-v3", 96), ("LunarLander-v3", 64)])
def test_render_is_right_side_up(task: str, size: int) -> None:
    with make_env(task, render=True, image_size=size) as env:
        env.reset(seed=0)
        image = env.render()
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    # Upright, the table (Metaworld) or the moon's surface (LunarLander) fills the bottom of the
    # image and the dark background the top; an upside-down image has it the other way round.
    top, bottom = _top_bottom_brightness(image)
    assert bottom > top + 30


def test_render_without_render_flag_is_an_error() -> None:
    with make_env("LunarLander-v3") as env:
        env.reset(seed=0)
        with pytest.raises(RuntimeError, match="render=True"):
            env.render()
