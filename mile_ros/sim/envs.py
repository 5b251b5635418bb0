"""Simulation environments behind one small interface: Metaworld v3 tasks and LunarLander-v3.

``make_env(task)`` returns a :class:`SimEnv` whose observations are single float32 frames (the
networks stack the history themselves), whose ``step`` reports success, and whose episodes are
reproducible from a seed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mile_ros.learning import Spec

__all__ = ["LUNAR_LANDER", "SimEnv", "StepResult", "make_env", "metaworld_tasks", "valid_tasks"]

LUNAR_LANDER = "LunarLander-v3"
LUNAR_SUCCESS_RETURN = 200.0  # the usual "solved" score of LunarLander
METAWORLD_CAMERA = "corner"
MT1_TASK_SET_SEED = 0


@dataclass
class StepResult:
    """What one ``step`` produced; ``success`` is the task's own success flag for this step."""

    obs: np.ndarray
    reward: float
    success: bool
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def metaworld_tasks() -> list[str]:
    """Every Metaworld v3 task name (e.g. ``drawer-open-v3``)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def valid_tasks() -> list[str]:
    return [*metaworld_tasks(), LUNAR_LANDER]


def _load_llvm_users_in_safe_order() -> None:
    """Import torch's compiler stack (and its bundled LLVM, via triton) before Mesa's EGL loads its own.

    Measured here: once an EGL context exists (llvmpipe), the first ``torch.optim`` optimiser,
    which imports ``torch._dynamo`` and triton, crashes the process with a segmentation fault;
    in the other order both work.
    """
    with contextlib.suppress(ImportError):  # no torch: nothing to protect
        import torch._dynamo  # noqa: F401


class SimEnv:
    """Common interface; subclasses wrap one Gymnasium environment (``raw_env``)."""

    task: str
    spec: Spec
    max_steps: int
    raw_env: Any

    def __init__(self, seed: int, stop_on_success: bool, image_size: int) -> None:
        self.stop_on_success = stop_on_success
        self.image_size = image_size
        self._rng = np.random.default_rng(seed)
        self.steps = 0
        self.episode_return = 0.0
        self.episode_success = False
        self._done = True

    def _next_seed(self, seed: int | None) -> int:
        return int(self._rng.integers(2**31 - 1)) if seed is None else int(seed)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode and return its first frame; the same ``seed`` gives the same episode."""
        self.steps, self.episode_return, self.episode_success, self._done = 0, 0.0, False, False
        return self._reset(self._next_seed(seed))

    def step(self, action: Any) -> StepResult:
        """Apply ``action`` for one step; refuses to run past an episode's end."""
        if self._done:
            raise RuntimeError(f"{self.task}: step() after the episode ended; call reset() first")
        result = self._step(action)
        self.steps += 1
        self.episode_return += result.reward
        self.episode_success = self.episode_success or result.success
        if self.steps >= self.max_steps and not result.terminated:
            result.truncated = True
        self._done = result.done
        return result

    def render(self) -> np.ndarray:
        """An ``image_size`` x ``image_size`` RGB uint8 image, right side up."""
        raise NotImplementedError

    def ee_position(self) -> np.ndarray | None:
        """End-effector position in metres, where the task has one."""
        return None

    def close(self) -> None:
        self.raw_env.close()

    def _reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def _step(self, action: Any) -> StepResult:
        raise NotImplementedError

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MetaworldEnv(SimEnv):
    """A Metaworld v3 task (MT1): each reset seed picks one of the task's 50 object/goal configurations.

    Metaworld ignores the reset seed itself; placements come only from the chosen configuration.
    """

    def __init__(self, task: str, seed: int, render: bool, image_size: int, stop_on_success: bool) -> None:
        super().__init__(seed, stop_on_success, image_size)
        if render:
            os.environ.setdefault("MUJOCO_GL", "egl")
            _load_llvm_users_in_safe_order()
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World/ environments)

        kwargs: dict[str, Any] = {}
        if render:
            kwargs = dict(render_mode="rgb_array", width=image_size, height=image_size, camera_name=METAWORLD_CAMERA)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the passive checker complains about Metaworld's own spaces
            # The MT1 seed generates the task's 50 configurations: it is fixed so that an episode
            # depends only on its reset seed, never on the seed the environment was made with.
            self.raw_env = gym.make(
                "Meta-World/MT1", env_name=task, seed=MT1_TASK_SET_SEED, disable_env_checker=True, **kwargs
            )
        self.task = task
        self.unwrapped = self.raw_env.unwrapped
        self.tasks = self.raw_env.get_wrapper_attr("tasks")
        # The task (object and goal placement) is chosen here from the reset seed, not from the
        # wrapper's generator, so that reset(seed) alone determines the episode.
        self.raw_env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
        self.max_steps = int(self.unwrapped.max_path_length)
        space = self.raw_env.action_space
        self.spec = Spec(
            obs_dim=int(np.prod(self.raw_env.observation_space.shape)),
            act_dim=int(space.shape[0]),
            discrete=False,
            frame_stack=3,
            action_low=tuple(float(x) for x in space.low),
            action_high=tuple(float(x) for x in space.high),
            obs_source="state",
        )
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self._fast_render_ready = False

    def _reset(self, seed: int) -> np.ndarray:
        index = int(np.random.default_rng(seed).integers(len(self.tasks)))
        self.unwrapped.set_task(self.tasks[index])
        obs, _ = self.raw_env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float32)

    def _step(self, action: Any) -> StepResult:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape[0] != self.spec.act_dim:
            raise ValueError(f"{self.task}: action has {a.shape[0]} values, expected {self.spec.act_dim}")
        if not np.isfinite(a).all():
            raise ValueError(f"{self.task}: action contains NaN or infinite values: {a}")
        obs, reward, _, truncated, info = self.raw_env.step(np.clip(a, self._low, self._high))
        success = bool(info.get("success", 0.0) > 0.5)
        return StepResult(
            np.asarray(obs, dtype=np.float32),
            float(reward),
            success,
            terminated=success and self.stop_on_success,
            truncated=bool(truncated),
            info=info,
        )

    def _prepare_fast_render(self) -> None:
        """Shadows, reflections, skybox and multisampling off: ~6x faster on a CPU renderer."""
        import mujoco

        self.unwrapped.model.vis.quality.offsamples = 0
        viewer = self.unwrapped.mujoco_renderer._get_viewer("rgb_array")
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            viewer.scn.flags[flag] = 0
        self._fast_render_ready = True

    def render(self) -> np.ndarray:
        if self.unwrapped.render_mode != "rgb_array":
            raise RuntimeError(f"{self.task}: created without rendering; use make_env(..., render=True)")
        if not self._fast_render_ready:
            self._prepare_fast_render()
        image = self.unwrapped.render()
        # Metaworld's corner cameras look at the table upside down.
        return np.ascontiguousarray(np.flipud(image))

    def ee_position(self) -> np.ndarray | None:
        """The hand's position, as in the observation's first three values (metres, world frame)."""
        return np.array(self.unwrapped.get_endeff_pos(), dtype=np.float64)


class LunarLanderEnv(SimEnv):
    """Gymnasium's LunarLander-v3 with 4 discrete actions; success is a return of at least 200."""

    def __init__(self, seed: int, render: bool, image_size: int, stop_on_success: bool) -> None:
        super().__init__(seed, stop_on_success, image_size)
        import gymnasium as gym

        self.task = LUNAR_LANDER
        self.raw_env = gym.make(LUNAR_LANDER, render_mode="rgb_array" if render else None)
        self.max_steps = int(self.raw_env.spec.max_episode_steps or 1000)
        self.spec = Spec(
            obs_dim=int(self.raw_env.observation_space.shape[0]),
            act_dim=int(self.raw_env.action_space.n),
            discrete=True,
            frame_stack=3,
        )

    def _reset(self, seed: int) -> np.ndarray:
        obs, _ = self.raw_env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float32)

    def _step(self, action: Any) -> StepResult:
        raw = np.asarray(action, dtype=np.float64).reshape(-1)
        if raw.size != 1 or not np.isfinite(raw[0]) or raw[0] != round(raw[0]):
            raise ValueError(f"{self.task}: action must be one integer, got {action!r}")
        a = int(raw[0])
        if not 0 <= a < self.spec.act_dim:
            raise ValueError(f"{self.task}: action {a} outside 0..{self.spec.act_dim - 1}")
        obs, reward, terminated, truncated, info = self.raw_env.step(a)
        ret = self.episode_return + float(reward)
        ended = bool(terminated) or bool(truncated) or self.steps + 1 >= self.max_steps
        # Success is judged on the whole episode, so it can only be known at its end.
        success = ended and ret >= LUNAR_SUCCESS_RETURN
        return StepResult(
            np.asarray(obs, dtype=np.float32), float(reward), success, bool(terminated), bool(truncated), info
        )

    def render(self) -> np.ndarray:
        if self.raw_env.render_mode != "rgb_array":
            raise RuntimeError(f"{self.task}: created without rendering; use make_env(..., render=True)")
        import cv2

        image = self.raw_env.render()
        if image.shape[:2] != (self.image_size, self.image_size):
            image = cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image, dtype=np.uint8)


def make_env(
    task: str, seed: int = 0, render: bool = False, image_size: int = 224, stop_on_success: bool = True
) -> SimEnv:
    """A Metaworld v3 task by name or ``LunarLander-v3``.

    ``stop_on_success`` ends Metaworld episodes at the first successful step (as in the paper's
    appendix); without it they always run ``max_steps`` (500) steps.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if task == LUNAR_LANDER:
        return LunarLanderEnv(seed, render, image_size, stop_on_success)
    names = metaworld_tasks()
    if task not in names:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join([*names, LUNAR_LANDER])}")
    return MetaworldEnv(task, seed, render, image_size, stop_on_success)
