"""The simulated human of MILE's simulation experiments (docs/mile-model.md, the paper's section 5).

Each step the human computes ``P(I=1|s)`` from the intervention model, with the scripted expert as
``pi_H`` and a behaviour-cloned model of the robot's policy as the mental model ``pi_hat_R``; draws
``I ~ Bernoulli(P(I=1|s))``; and, when intervening, acts from eq. 3 (``pi_H`` tilted by the
probability of stepping in for that action) or simply with the expert's own action.

Its timing (``timing``) is per step by default. A ``holding`` human keeps a takeover for a variable
time (at least ``min_takeover_steps``, then handing back with a constant hazard, so lengths are a
shifted geometric of mean ``hold_mean``); a ``waiting`` human, once concerned, watches the robot for
``wait_steps`` more steps and steps in only if still concerned on each of them (the robot
"recovers" when a check comes out no); ``holding_waiting`` does both. Every check is a fresh draw of
``Bernoulli(P(I=1|s))`` at the step's state. ``mile_ros.learning.temporal`` is the model of these
humans (docs/learning.md, "The temporal intervention model").

A robot that asks for help (:mod:`mile_ros.graph.asking`) is answered: asked while not driving, the
human looks and takes over at once for ``answer_steps`` steps, driving as the expert does (its own
``pi_H``), then hands back and goes on as before. ``free_intervention=False`` is a human who steps in
only when asked (one who does not watch the robot all the time).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

from mile_ros.learning import (
    BCConfig,
    ContinuousIntervention,
    DiscreteIntervention,
    FrameStacker,
    MileCheckpoint,
    PolicyNet,
    PolicyRunner,
    Spec,
    fit_bc,
    gaussian_spread,
    holdout_mask,
    load_checkpoint,
)

from .envs import SimEnv, make_env
from .experts import Expert, make_expert
from .presets import load_preset
from .rollout import Episode, episodes_to_dataset, run_episode, single_torch_thread

__all__ = [
    "ACTION_MODES",
    "TIMINGS",
    "MentalModelFit",
    "SimulatedHuman",
    "auto_sigma",
    "check_human_settings",
    "fit_belief",
    "fit_mental_model",
    "make_simulated_human",
    "start_rate_for_held_rate",
    "state_value_gaps",
    "streak_probability",
]

# eq3: the exact model's draw; authors: the authors' simulated human, N(p mu_E, (p sigma_E)^2) with
# p = P(I=1|s) (docs/mile-model.md; continuous actions only); expert: the scripted action.
ACTION_MODES = ("eq3", "authors", "expert")
# per_step: a fresh decision every free step (the paper's human; held for min_takeover_steps);
# holding: takeovers of variable length; waiting: steps in after a streak of wait_steps + 1 checks.
TIMINGS = ("per_step", "holding", "waiting", "holding_waiting")
MENTAL_SEED_OFFSET = 1_000_000  # mental-model rollouts never reuse evaluation seeds
CALIBRATION_SEED_OFFSET = 4_000_000


def check_human_settings(
    sigma: Any,
    min_takeover_steps: Any,
    action_mode: Any,
    timing: Any = "per_step",
    hold_mean: Any = 10.0,
    wait_steps: Any = 3,
) -> None:
    """Raise ValueError for a probit scale, takeover length, action mode or timing a simulated human cannot use."""
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"the human's probit scale (sigma) must be a positive number, got {sigma!r}")
    if (
        isinstance(min_takeover_steps, bool)
        or not isinstance(min_takeover_steps, numbers.Integral)
        or min_takeover_steps < 1
    ):
        raise ValueError(f"min_takeover_steps must be a whole number of at least 1, got {min_takeover_steps!r}")
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {', '.join(ACTION_MODES)}, got {action_mode!r}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, got {timing!r}")
    if timing in ("holding", "holding_waiting") and (
        isinstance(hold_mean, bool)
        or not isinstance(hold_mean, numbers.Real)
        or not (math.isfinite(hold_mean) and hold_mean >= min_takeover_steps)
    ):
        raise ValueError(
            f"hold_mean must be a number at least min_takeover_steps ({min_takeover_steps}), got {hold_mean!r}"
        )
    if isinstance(wait_steps, bool) or not isinstance(wait_steps, numbers.Integral) or wait_steps < 0:
        raise ValueError(f"wait_steps must be a whole number of at least 0, got {wait_steps!r}")


@dataclass
class MentalModelFit:
    """A behaviour-cloned model of the robot's policy and the rollout states it was fit on."""

    net: PolicyNet
    stacked_obs: np.ndarray
    frames: np.ndarray
    robot_success_rate: float
    rollouts: int
    seconds: float
    # How well the belief matches the robot on rollouts it was not fit on: mean negative
    # log-likelihood per step and, for continuous actions, mean squared error of its mean action.
    heldout_nll: float = math.nan
    heldout_mse: float = math.nan
    episode: np.ndarray | None = None  # each state's rollout (a waiting human's calibration needs runs)


def _load(checkpoint: str | Any) -> MileCheckpoint:
    return checkpoint if isinstance(checkpoint, MileCheckpoint) else load_checkpoint(checkpoint)


def fit_mental_model(
    task: str,
    checkpoint: str | MileCheckpoint,
    rollouts: int | None = None,
    seed: int = 0,
    env: SimEnv | None = None,
    config: BCConfig | None = None,
) -> MentalModelFit:
    """Roll the robot's policy out ``rollouts`` times and behaviour-clone what it did.

    Defaults come from the task preset's ``mental_model`` section: a fixed number of epochs, no
    model selection (the paper's fit; selecting by held-out loss kept an untrained epoch 0 when few
    rollouts were held out), and a fraction of the rollouts held out only to report the belief's
    error. The rollouts use seeds far from the evaluation seeds, offset by ``seed``.
    """
    started = time.perf_counter()
    preset = load_preset(task)["mental_model"]
    rollouts = int(rollouts if rollouts is not None else preset["rollouts"])
    if rollouts <= 0:
        raise ValueError(f"rollouts must be positive, got {rollouts}")
    ckpt = _load(checkpoint)
    own_env = env is None
    env = env or make_env(task, seed=seed)
    try:
        runner = PolicyRunner(ckpt)
        episodes = [run_episode(env, runner, MENTAL_SEED_OFFSET + 1000 * seed + i) for i in range(rollouts)]
    finally:
        if own_env:
            env.close()
    return fit_belief(task, episodes, ckpt, seed, config, started)


def fit_belief(
    task: str,
    episodes: Sequence[Episode],
    checkpoint: MileCheckpoint,
    seed: int = 0,
    config: BCConfig | None = None,
    started: float | None = None,
) -> MentalModelFit:
    """Behaviour-clone ``checkpoint``'s policy from episodes it ran (the belief of a human who
    watched them); the preset's ``mental_model`` settings, as :func:`fit_mental_model`."""
    started = time.perf_counter() if started is None else started
    preset = load_preset(task)["mental_model"]
    rollouts = len(episodes)
    data = episodes_to_dataset(episodes)
    stacked = data.stacked_observations(checkpoint.padding)
    config = config or BCConfig(
        hidden=tuple(preset.get("hidden") or checkpoint.policy.hidden),
        lr=float(preset["lr"]),
        epochs=int(preset["epochs"]),
        batch_size=int(preset["batch_size"]),
        select_best=False,
        patience=None,
        val_fraction=float(preset["heldout_fraction"]) if rollouts > 1 else 0.0,
        seed=seed,
    )
    with single_torch_thread():  # measured 4x faster than two threads on a loaded 2-core machine
        net, _ = fit_bc(data.spec, stacked, data.robot_action, data.episode, config=config, desc="mental model")
        nll, mse = _heldout_error(net, data, stacked, config)
    return MentalModelFit(
        net,
        stacked,
        data.observation,
        float(np.mean([ep.success for ep in episodes])),
        rollouts,
        time.perf_counter() - started,
        nll,
        mse,
        data.episode,
    )


@torch.no_grad()
def _heldout_error(net: PolicyNet, data: Any, stacked: np.ndarray, config: BCConfig) -> tuple[float, float]:
    """The belief's NLL per step and mean-action MSE on the episodes ``fit_bc`` held out."""
    held = holdout_mask(data.episode, config.val_fraction, config.seed)
    if not held.any():
        return math.nan, math.nan
    obs = torch.from_numpy(stacked[held])
    act = torch.from_numpy(data.robot_action[held])
    nll = float(-net.log_prob(obs, act).mean())
    if data.spec.discrete:
        return nll, math.nan
    return nll, float((net(obs)[0] - act).square().sum(-1).mean())


class SimulatedHuman:
    """A noisy expert who steps in when their action beats what they expect of the robot.

    ``action_mode``: ``"eq3"`` draws the intervening action from ``pi_H(a|s) Phi((v(s,a)-c)/sigma)``
    (rejection sampling for Gaussians, exact for discrete actions); ``"authors"`` draws it as the
    authors' code does, from ``N(p mu_E, (p sigma_E)^2)`` with ``p = P(I=1|s)`` (continuous actions
    only); ``"expert"`` uses the scripted expert's own action. ``min_takeover_steps`` keeps a
    takeover going for at least that many steps, as a person holding the gamepad would. Usable one
    step at a time: :meth:`decide` takes the stacked observation (for the mental model) and the
    current frame (for the expert).
    """

    def __init__(
        self,
        expert: Expert,
        mental: PolicyNet | MentalModelFit,
        spec: Spec,
        cost: float,
        sigma: float,
        action_mode: str = "eq3",
        min_takeover_steps: int = 1,
        seed: int = 0,
        clip_actions: bool = True,
        padding: str = "repeat",
        max_draws: int = 100_000,
        timing: str = "per_step",
        hold_mean: float = 10.0,
        wait_steps: int = 3,
        answer_steps: int = 10,
        free_intervention: bool = True,
    ) -> None:
        check_human_settings(sigma, min_takeover_steps, action_mode, timing, hold_mean, wait_steps)
        if isinstance(answer_steps, bool) or not isinstance(answer_steps, numbers.Integral) or answer_steps < 1:
            raise ValueError(f"answer_steps must be a whole number of at least 1, got {answer_steps!r}")
        if cost < 0:
            raise ValueError(f"need cost >= 0, got cost={cost}")
        if expert.discrete != spec.discrete:
            raise ValueError("expert and spec disagree on discrete actions")
        if action_mode == "authors" and spec.discrete:
            raise ValueError("the authors' action mode shrinks a Gaussian expert: it needs continuous actions")
        self.expert, self.spec = expert, spec
        self.set_mental(mental)
        self.cost, self.sigma = float(cost), float(sigma)
        self.action_mode = action_mode
        self.min_takeover_steps = int(min_takeover_steps)
        self.timing = timing
        self.holds = timing in ("holding", "holding_waiting")
        self.hold_mean = float(hold_mean) if self.holds else float(self.min_takeover_steps)
        self.wait_steps = int(wait_steps) if timing in ("waiting", "holding_waiting") else 0
        self.clip_actions = clip_actions
        self.max_draws = max_draws
        self.stacker = FrameStacker(spec.obs_dim, spec.frame_stack, padding)
        self.rng = np.random.default_rng(seed)
        self._continuous = ContinuousIntervention()
        self._discrete = DiscreteIntervention()
        self._takeover_left = 0
        self._held = 0  # steps the current takeover has lasted (holding/waiting timings)
        self._streak = 0  # consecutive concerned checks while waiting
        self.last_probability = math.nan
        self.fallback_draws = 0  # eq.-3 draws that hit max_draws (then the most likely action is used)
        # What the timed humans did, for checks: finished takeovers' lengths (cut by an episode's end:
        # not counted), and concern streaks that ended without a takeover (the robot recovered).
        self.takeover_lengths: list[int] = []
        self.recoveries = 0
        # Help requests (a robot that asks): steps each answer lasts, and what the human answered.
        self.answer_steps = int(answer_steps)
        self.free_intervention = bool(free_intervention)
        self._answer_left = 0
        self.answers = 0  # requests answered (takeovers started because the robot asked)
        self.answered_steps = 0  # steps driven in answers

    # ---- state ------------------------------------------------------------------------------

    def set_mental(self, mental: PolicyNet | MentalModelFit) -> None:
        """Use another mental model (e.g. refit on the robot's current policy each iteration)."""
        self.mental = (mental.net if isinstance(mental, MentalModelFit) else mental).eval()

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (optionally reseeding the human's randomness)."""
        self.stacker.reset()
        self._takeover_left = 0
        self._held = self._streak = 0
        self._answer_left = 0
        self.last_probability = math.nan
        if seed is not None:
            self.rng = np.random.default_rng([seed, 7919])

    # ---- the intervention model -------------------------------------------------------------

    @torch.no_grad()
    def _model_inputs(self, stacked_obs: np.ndarray, frames: np.ndarray) -> tuple:
        """Expert and mental-model distributions for a batch of states, as tensors."""
        obs = torch.as_tensor(np.asarray(stacked_obs, dtype=np.float32)).reshape(-1, self.spec.stacked_dim)
        frames = np.asarray(frames).reshape(len(obs), self.spec.obs_dim)
        mental_out = self.mental(obs)
        if self.spec.discrete:
            log_pi_h = torch.as_tensor(np.stack([self.expert.distribution(f) for f in frames]))
            return log_pi_h, mental_out
        dists = [self.expert.distribution(f) for f in frames]
        mu = torch.as_tensor(np.stack([d[0] for d in dists]))
        std = torch.as_tensor(np.stack([d[1] for d in dists]))
        return (mu, std), mental_out

    def _p_int(self, expert_out: Any, mental_out: Any, cost: float) -> torch.Tensor:
        c, s = torch.tensor(cost), torch.tensor(self.sigma)
        if self.spec.discrete:
            return self._discrete.log_probs(expert_out, mental_out, c, s).p_int
        (mu, std), (m, std_r) = expert_out, mental_out
        return self._continuous.log_probs(mu, std, m, std_r, c, s).p_int

    def intervention_probability(self, stacked_obs: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """``P(I=1|s)`` (eq. 1) for a batch of states (stacked observations and their current frames)."""
        expert_out, mental_out = self._model_inputs(stacked_obs, frames)
        return self._p_int(expert_out, mental_out, self.cost).numpy().astype(np.float64)

    def calibrate(
        self,
        stacked_obs: np.ndarray,
        frames: np.ndarray,
        target_rate: float = 0.3,
        margin: float = 0.0,
        episode: np.ndarray | None = None,
    ) -> float:
        """Set the cost so that the mean ``P(I=1|s)`` over these states is ``target_rate - margin``.

        ``P(I=1|s)`` falls monotonically in the cost, so bisection finds it; when even a zero cost
        predicts fewer interventions the cost becomes 0. Returns the new cost. A holding or waiting
        human is calibrated on its expected fraction of intervened steps along these states
        (:meth:`expected_intervened`; ``episode`` says which states follow each other), so give it
        the target fraction of intervened steps itself.
        """
        target = target_rate - margin
        if not 0.0 < target < 1.0:
            raise ValueError(f"target rate must lie in (0, 1), got {target}")
        if self.timing != "per_step" and episode is None:
            raise ValueError("a holding or waiting human's calibration needs each state's episode (their order)")
        expert_out, mental_out = self._model_inputs(stacked_obs, frames)

        def rate(c: float) -> float:
            p = self._p_int(expert_out, mental_out, c)
            if self.timing != "per_step":
                return float(self.expected_intervened(p.numpy().astype(np.float64), episode).mean())
            return float(p.mean())

        lo, hi = 0.0, max(1.0, self.cost)
        if rate(lo) <= target:
            self.cost = 0.0
            return self.cost
        while rate(hi) > target:
            lo, hi = hi, hi * 2.0
            if hi > 1e9:
                raise RuntimeError("could not bring the intervention rate down to the target")
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if rate(mid) > target else (lo, mid)
        self.cost = hi  # the side at or under the target
        return self.cost

    # ---- acting -----------------------------------------------------------------------------

    def draw_action(self, stacked_obs: np.ndarray, frame: np.ndarray) -> Any:
        """A human action given that the human intervenes (eq. 3, or the expert's own action)."""
        if self.action_mode == "expert":
            return self.expert.act(frame)
        return self._draw(*self._model_inputs(stacked_obs, frame))

    def _draw(self, expert_out: Any, mental_out: Any, p_int: float | None = None) -> Any:
        if self.action_mode == "authors":
            p = float(self._p_int(expert_out, mental_out, self.cost)[0]) if p_int is None else p_int
            return self._draw_shrunk(expert_out, p)
        if self.spec.discrete:
            return self._draw_discrete(expert_out[0], mental_out[0])
        return self._draw_continuous(expert_out, mental_out)

    def _draw_discrete(self, log_pi_h: torch.Tensor, log_pi_r: torch.Tensor) -> int:
        v = DiscreteIntervention.value_gap(log_pi_h, log_pi_r).numpy().astype(np.float64)
        weight = np.exp(log_pi_h.numpy().astype(np.float64)) * ndtr((v - self.cost) / self.sigma)
        if weight.sum() <= 0:
            self.fallback_draws += 1
            return int(np.argmax(v))
        return int(self.rng.choice(len(weight), p=weight / weight.sum()))

    def _draw_continuous(self, expert_out: tuple, mental_out: tuple) -> np.ndarray:
        (mu, std), (m, std_r) = expert_out, mental_out
        mu, std = mu[0].numpy().astype(np.float64), std[0].numpy().astype(np.float64)
        m, std_r = m[0].numpy().astype(np.float64), std_r[0].numpy().astype(np.float64)
        spread = float((((std_r**2) + (m - mu) ** 2) / std**2).sum())
        # Rejection sampling: a ~ pi_H, accepted with probability Phi((v(s,a) - c) / sigma),
        # v = (D - q(a)) / 2; candidates in batches so that rare acceptance stays fast.
        drawn, batch = 0, 256
        while drawn < self.max_draws:
            z = self.rng.standard_normal((batch, len(mu)))
            q = (z**2).sum(1)
            accept = self.rng.random(batch) < ndtr((0.5 * (spread - q) - self.cost) / self.sigma)
            if accept.any():
                return self._finish(mu + std * z[int(np.argmax(accept))])
            drawn += batch
            batch = min(batch * 4, 65_536)
        self.fallback_draws += 1
        return self._finish(mu)  # the most likely action under eq. 3 (q = 0)

    def _draw_shrunk(self, expert_out: tuple, p: float) -> np.ndarray:
        mu, std = (t[0].numpy().astype(np.float64) for t in expert_out)
        return self._finish(p * mu + p * std * self.rng.standard_normal(len(mu)))

    def _finish(self, action: np.ndarray) -> np.ndarray:
        if self.clip_actions and self.spec.action_low is not None and self.spec.action_high is not None:
            action = np.clip(action, self.spec.action_low, self.spec.action_high)
        return np.asarray(action, dtype=np.float32)

    def decide(self, stacked_obs: np.ndarray, frame: np.ndarray, asked: bool = False) -> tuple[bool, Any]:
        """One step: ``(intervene, action)``; action is None when not intervening.

        ``asked``: the robot's help request is open (it holds, waiting for a takeover).
        ``last_probability`` holds this state's ``P(I=1|s)``.
        """
        expert_out, mental_out = self._model_inputs(stacked_obs, frame)
        p = float(self._p_int(expert_out, mental_out, self.cost)[0])
        self.last_probability = p
        if self._answer_left or (asked and not self.driving):
            return True, self._answer(expert_out, frame)
        if not self.free_intervention:
            return False, None
        if self.timing != "per_step":
            return self._decide_timed(expert_out, mental_out, p, frame)
        if self._takeover_left > 0:
            self._takeover_left -= 1
            intervene = True
        else:
            intervene = bool(self.rng.random() < p)
            if intervene:
                self._takeover_left = self.min_takeover_steps - 1
        if not intervene:
            return False, None
        if self.action_mode == "expert":
            return True, self.expert.act(frame)
        return True, self._draw(expert_out, mental_out, p)

    def expected_intervened(self, p: np.ndarray, episode: np.ndarray) -> np.ndarray:
        """Per state, the probability that this (holding or waiting) human intervenes there, along
        the given state sequences with checks saying yes with probability ``p``: the exact forward
        recursion of its process (docs/learning.md, "The temporal intervention model"), with the
        states taken as given (what interventions would change about them is not modelled)."""
        p = np.asarray(p, dtype=np.float64)
        episode = np.asarray(episode)
        out = np.zeros(len(p))
        cap = max(self.min_takeover_steps, 1)
        release = np.array([self.release_probability(d) for d in range(1, cap + 1)])
        w = self.wait_steps
        free, chain, hold = 1.0, np.zeros(w), np.zeros(cap)
        for t in range(len(p)):
            if t == 0 or episode[t] != episode[t - 1]:
                free, chain, hold = 1.0, np.zeros(w), np.zeros(cap)
            kept = hold * (1.0 - release)
            at_check = free + float((hold * release).sum())
            if w:
                start = float(chain[-1]) * p[t]
                new_chain = np.empty(w)
                new_chain[0] = at_check * p[t]
                new_chain[1:] = chain[:-1] * p[t]
                free = (at_check + float(chain.sum())) * (1.0 - p[t])
                chain = new_chain
            else:
                start = at_check * p[t]
                free = at_check * (1.0 - p[t])
            hold = np.zeros(cap)
            hold[0] = start
            if cap > 1:
                hold[1:] = kept[:-1]
            hold[-1] += kept[-1]
            out[t] = start + float(kept.sum())
        return out

    def release_probability(self, held: int) -> float:
        """The hazard of handing back at a step, after a takeover has lasted ``held`` steps.

        Zero before ``min_takeover_steps``; then constant, ``1 / (hold_mean - min_takeover_steps + 1)``,
        so a takeover lasts ``min_takeover_steps + k`` steps with ``k`` geometric and mean ``hold_mean``
        (a per-step human hands back at once).
        """
        if held < self.min_takeover_steps:
            return 0.0
        return 1.0 / (self.hold_mean - self.min_takeover_steps + 1.0)

    def _decide_timed(self, expert_out: Any, mental_out: Any, p: float, frame: np.ndarray) -> tuple[bool, Any]:
        """A holding or waiting human's step (the generative model in docs/learning.md).

        Holding: the release check comes first; a human who hands back is free at the same step
        and decides again there (so a per-step human is the case of an immediate release).
        """
        if self._held:
            if self.rng.random() >= self.release_probability(self._held):
                self._held += 1
                # A held step: the human drives as the expert does; no decision selected this action.
                return True, self._draw_plain(expert_out, frame, p)
            self.takeover_lengths.append(self._held)
            self._held = 0
        concerned = bool(self.rng.random() < p)
        if not concerned:
            if self._streak:
                self.recoveries += 1
            self._streak = 0
            return False, None
        self._streak += 1
        if self._streak <= self.wait_steps:
            return False, None  # concerned, but gives the robot another step
        self._streak = 0
        if self.holds:
            self._held = 1
        else:
            # a waiting human who does not hold takes one step per takeover (min_takeover_steps more)
            self._held = 1 if self.min_takeover_steps > 1 else 0
            if not self._held:
                self.takeover_lengths.append(1)
        if self.action_mode == "expert":
            return True, self.expert.act(frame)
        return True, self._draw(expert_out, mental_out, p)

    def _draw_plain(self, expert_out: Any, frame: np.ndarray, p: float) -> Any:
        """An action while holding: the expert's policy ``pi_H`` itself (or the mode's own rule)."""
        if self.action_mode == "authors":
            return self._draw_shrunk(expert_out, p)
        return self._draw_expert(expert_out, frame)

    def _draw_expert(self, expert_out: Any, frame: np.ndarray) -> Any:
        """The expert's own action: a draw from ``pi_H``, or the scripted action in ``expert`` mode."""
        if self.action_mode == "expert":
            return self.expert.act(frame)
        if self.spec.discrete:
            probs = expert_out[0].exp().numpy().astype(np.float64)
            return int(self.rng.choice(len(probs), p=probs / probs.sum()))
        mu, std = (t[0].numpy().astype(np.float64) for t in expert_out)
        return self._finish(mu + std * self.rng.standard_normal(len(mu)))

    @property
    def driving(self) -> bool:
        """The human is in a takeover that goes on at the next step (an answer or a held takeover)."""
        return bool(self._answer_left or self._takeover_left or self._held)

    def _answer(self, expert_out: Any, frame: np.ndarray) -> Any:
        """A step of answering a help request: the human drives as the expert does (``pi_H``)."""
        if not self._answer_left:  # a new answer: it interrupts a waiting human's watch
            self._answer_left = self.answer_steps
            self._streak = 0
            self.answers += 1
        self._answer_left -= 1
        self.answered_steps += 1
        return self._draw_expert(expert_out, frame)

    def act(self, frame: np.ndarray, asked: bool = False) -> tuple[bool, Any]:
        """:meth:`decide` with this human's own frame stacking (call :meth:`reset` at episode start)."""
        return self.decide(self.stacker.push(frame), frame, asked)

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def from_preset(
        cls, task: str, env: SimEnv, mental: PolicyNet | MentalModelFit, seed: int = 0, **overrides: Any
    ) -> SimulatedHuman:
        """A human with the task preset's cost, probit scale, expert noise and options.

        A preset ``sigma: auto`` is ``sigma_scale`` times the spread of the state value gaps on the
        mental model's rollout states (:func:`auto_sigma`): give a :class:`MentalModelFit`, or the
        ``sigma`` itself.
        """
        preset = load_preset(task)
        human = preset["human"]
        expert = make_expert(task, env)
        sigma = overrides.pop("sigma", preset["sigma"])
        if sigma == "auto":
            if not isinstance(mental, MentalModelFit):
                raise ValueError(f"{task}'s preset sets sigma: auto, which needs the mental model's fit (or a sigma)")
            sigma = auto_sigma(expert, mental, float(preset["sigma_scale"]))
        kwargs = dict(
            cost=float(preset["cost"]),
            sigma=float(sigma),
            action_mode=human["action_mode"],
            min_takeover_steps=int(human["min_takeover_steps"]),
            seed=seed,
            timing=human.get("timing", "per_step"),
            hold_mean=float(human.get("hold_mean", 10.0)),
            wait_steps=int(human.get("wait_steps", 3)),
        )
        kwargs.update(overrides)
        if "hold_mean" not in overrides:  # the preset's mean hold, but never below a longer minimum
            kwargs["hold_mean"] = max(float(kwargs["hold_mean"]), float(kwargs["min_takeover_steps"]))
        return cls(expert, mental, env.spec, **kwargs)


def state_value_gaps(expert: Expert, fit: MentalModelFit) -> np.ndarray:
    """``E_a v(s, a) = (D(s) - d) / 2`` on the fit's states: how much better than the belief the
    expert's own action is expected to be (continuous actions; the units of ``log pi_H``)."""
    dists = [expert.distribution(f) for f in fit.frames]
    mu = torch.as_tensor(np.stack([d[0] for d in dists]))
    std = torch.as_tensor(np.stack([d[1] for d in dists]))
    with torch.no_grad():
        m, std_r = fit.net(torch.as_tensor(fit.stacked_obs))
    spread = gaussian_spread(mu.float(), std.float(), m, std_r)
    return (0.5 * (spread - mu.shape[-1])).numpy().astype(np.float64)


def auto_sigma(expert: Expert, fit: MentalModelFit, scale: float) -> float:
    """A probit scale in this expert's units: ``scale`` times the spread of the state value gaps.

    The authors' 75-200 were in the units of their SAC experts' log-densities; with another expert
    the same number can be far wider than the gaps it divides, and then ``P(I=1|s)`` is nearly the
    same in every state (docs/results.md, "The simulated human"). The spread is the standard
    deviation over the robot's rollout states; the cost is then calibrated to the target rate.
    """
    if expert.discrete:
        raise ValueError("sigma: auto is for continuous actions; give a number for a discrete task")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"sigma_scale must be a positive number, got {scale!r}")
    spread = float(np.std(state_value_gaps(expert, fit)))
    return max(scale * spread, 1e-3)


def streak_probability(p: np.ndarray, episode: np.ndarray, wait: int) -> np.ndarray:
    """Per state, the probability that the checks at it and the ``wait`` states before it in its
    episode all said yes (``prod p``); 0 where the episode has fewer states before it."""
    p = np.asarray(p, dtype=np.float64)
    episode = np.asarray(episode)
    if len(p) != len(episode):
        raise ValueError(f"{len(p)} probabilities but {len(episode)} episode ids")
    out = p.copy()
    for lag in range(1, wait + 1):
        same = np.zeros(len(p), bool)
        same[lag:] = episode[lag:] == episode[:-lag]
        shifted = np.zeros(len(p))
        shifted[lag:] = p[:-lag]
        out *= np.where(same, shifted, 0.0)
    return out


def start_rate_for_held_rate(rate: float, hold: float) -> float:
    """Per-step probability of starting a takeover that gives a fraction ``rate`` of intervened steps.

    Takeovers of ``hold`` steps on average, each started with probability ``p`` on a step not already
    held, fill ``p * hold / (1 - p + p * hold)`` of the steps (a renewal argument: on average
    ``(1 - p) / p`` free steps between takeovers); this inverts that. ``hold = 1`` gives ``rate``.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must lie in (0, 1), got {rate}")
    if hold < 1:
        raise ValueError(f"hold must be at least 1, got {hold}")
    return rate / (hold - rate * (hold - 1))


def make_simulated_human(
    task: str,
    checkpoint: str | MileCheckpoint,
    env: SimEnv,
    seed: int = 0,
    rollouts: int | None = None,
    calibrate: bool = True,
    target_rate: float | None = None,
    oversight_episodes: int | None = None,
    **overrides: Any,
) -> tuple[SimulatedHuman, MentalModelFit]:
    """Fit the mental model on the robot's rollouts, build the human and (by default) calibrate its cost.

    Calibration first sets the mean ``P(I=1|s)`` over the robot's own rollout states to the target;
    then, because interventions change which states are visited, it runs ``oversight_episodes``
    episodes with the human watching and recalibrates on the states seen there (preset
    ``human.oversight_episodes``; 0 skips this second pass). A human who holds each takeover for
    ``min_takeover_steps`` steps is calibrated to the start rate that gives the target fraction of
    intervened steps (:func:`start_rate_for_held_rate`), not to the target itself; a holding or
    waiting one on its expected fraction of intervened steps (:meth:`SimulatedHuman.expected_intervened`).
    """
    fit = fit_mental_model(task, checkpoint, rollouts=rollouts, seed=seed)
    human = SimulatedHuman.from_preset(task, env, fit, seed=seed, **overrides)
    if calibrate:
        preset = load_preset(task)
        target = float(target_rate if target_rate is not None else preset["target_intervention_rate"])
        if human.timing == "per_step":
            target = start_rate_for_held_rate(target, human.hold_mean)
        margin = float(preset["human"]["calibration_margin"])
        human.calibrate(fit.stacked_obs, fit.frames, target, margin, fit.episode)
        n = int(oversight_episodes if oversight_episodes is not None else preset["human"]["oversight_episodes"])
        if n > 0:
            runner = PolicyRunner(_load(checkpoint))
            seeds = [CALIBRATION_SEED_OFFSET + 1000 * seed + i for i in range(n)]
            episodes = [run_episode(env, runner, s, human=human) for s in seeds]
            data = episodes_to_dataset(episodes)
            stacked = data.stacked_observations(human.stacker.padding)
            human.calibrate(stacked, data.observation, target, margin, data.episode)
            human.reset(seed)
    return human, fit
