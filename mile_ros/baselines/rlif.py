"""RLIF (Luo et al. 2023): off-policy RL whose only reward is the human taking over.

Rewards: a takeover costs -1, everything else is worth 0. The -1 is attached to the robot's own
proposal at the takeover step (the action the human overrode) as a terminal transition; every
executed step ``(s_t, a_t, 0, s_{t+1})`` is an ordinary transition, terminal at the episode's end.
Expert demonstrations (the offline-demonstration ablation) are transitions with reward 0.

Backbones, trained offline for a fixed number of gradient steps on a replay buffer that holds
exactly the recorded transitions (so it is sized like the other methods' data):

- continuous actions: RLPD-style SAC: an ensemble of layer-normalised critics with a min over a
  random pair for the target, several critic updates per actor update (UTD), symmetric sampling
  (half of each batch from the demonstrations, half from the intervention record, when demos exist)
  and an automatically tuned entropy temperature; the actor is a clone of the initial policy.
- discrete actions (LunarLander): double DQN whose Q-network is a clone of the initial categorical
  policy (its logits are the initial Q-values); the result's policy is ``softmax(Q / temperature)``.

Written here rather than with stable-baselines3 because SB3's SAC builds its own tanh-squashed actor
(our Gaussian policy with its input normaliser cannot be its starting point), has no layer-normalised
critic ensemble and no symmetric sampling between two buffers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mile_ros.learning import (
    CategoricalMLP,
    GaussianMLP,
    InterventionDataset,
    MileCheckpoint,
    Normalizer,
    RolloutSelection,
    TrainingInterruptedError,
)

from .common import clone_policy

__all__ = ["RLIFConfig", "Transitions", "intervention_transitions", "train"]

NAME = "rlif"
# How the benchmark treats it (mile_ros.baselines: gets_demos, train, check_selection).
GETS_DEMOS = True  # expert demonstrations in the demonstration ablation
TAKES_PRIOR = False  # an RL learner: it takes no prior (D0)
EPOCH_SELECTION = False  # it trains by updates: rollout selection has no epochs to pick from


@dataclass
class RLIFConfig:
    """Defaults: the paper's table (batch 256, lr 3e-4, discount 0.99, UTD 4) and RLPD's ensemble."""

    lr: float = 3e-4
    batch_size: int = 256
    discount: float = 0.99
    utd: int = 4  # critic updates per actor update
    actor_updates: int = 500  # gradient steps of the actor; the critics take utd times as many
    n_critics: int = 10
    critic_subset: int = 2
    critic_hidden: tuple[int, ...] = (256, 256)
    tau: float = 0.005
    init_temperature: float = 0.1
    dqn_temperature: float = 0.1  # softmax temperature of the DQN policy's Q-values
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


CONFIG = RLIFConfig


@dataclass
class Transitions:
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)


def intervention_transitions(dataset: InterventionDataset, demo: bool = False) -> Transitions:
    """RLIF's relabelled transitions from a record (``demo``: every row is an expert step, no takeovers)."""
    obs = dataset.stacked_observations()
    flag = np.zeros(len(dataset), bool) if demo else dataset.intervention
    if dataset.spec.discrete:
        executed = np.where(dataset.intervention, dataset.human_action, dataset.robot_action)
        if demo:
            executed = np.where(dataset.human_action >= 0, dataset.human_action, dataset.robot_action)
    else:
        executed = np.where(dataset.intervention[:, None], dataset.human_action, dataset.robot_action)
        if demo:
            have = np.isfinite(dataset.human_action).all(1)
            executed = np.where(have[:, None], dataset.human_action, dataset.robot_action)
    last = np.r_[dataset.episode[1:] != dataset.episode[:-1], True]
    next_obs = np.where(last[:, None], obs, np.roll(obs, -1, axis=0))
    new_episode = np.r_[True, dataset.episode[1:] != dataset.episode[:-1]]
    takeover = flag & (new_episode | ~np.r_[False, flag[:-1]])
    t = np.flatnonzero(takeover)
    return Transitions(
        np.concatenate([obs, obs[t]]),
        np.concatenate([executed, dataset.robot_action[t]]),
        np.concatenate([np.zeros(len(obs)), -np.ones(len(t))]).astype(np.float32),
        np.concatenate([next_obs, obs[t]]),
        np.concatenate([last, np.ones(len(t), bool)]).astype(np.float32),
    )


class _Sampler:
    """Batches half from the demos, half from the record (RLPD); all from the record without demos."""

    def __init__(self, record: Transitions, prior: Transitions | None, discrete: bool, gen: torch.Generator) -> None:
        self.parts = [self._tensors(record, discrete)] + ([self._tensors(prior, discrete)] if prior is not None else [])
        self.gen = gen

    @staticmethod
    def _tensors(t: Transitions, discrete: bool) -> list[Tensor]:
        act = torch.as_tensor(t.action).long() if discrete else torch.as_tensor(t.action, dtype=torch.float32)
        return [
            torch.as_tensor(t.obs),
            act,
            torch.as_tensor(t.reward),
            torch.as_tensor(t.next_obs),
            torch.as_tensor(t.done),
        ]

    def sample(self, batch: int) -> list[Tensor]:
        share = batch // len(self.parts)
        picks = []
        for part in self.parts:
            idx = torch.randint(len(part[0]), (share,), generator=self.gen)
            picks.append([x[idx] for x in part])
        return [torch.cat(cols) for cols in zip(*picks)]


class _CriticEnsemble(nn.Module):
    """``n`` Q-networks with layer norm (RLPD), evaluated together: output ``(n, batch)``."""

    def __init__(self, normalizer: Normalizer, obs_dim: int, act_dim: int, hidden: tuple[int, ...], n: int) -> None:
        super().__init__()
        self.normalizer = copy.deepcopy(normalizer)
        self.normalizer.requires_grad_(False)

        def q_net() -> nn.Sequential:
            layers: list[nn.Module] = []
            width = obs_dim + act_dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU()]
                width = h
            return nn.Sequential(*layers, nn.Linear(width, 1))

        self.nets = nn.ModuleList(q_net() for _ in range(n))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        x = torch.cat([self.normalizer(obs), action], -1)
        return torch.stack([net(x).squeeze(-1) for net in self.nets])


def _stop_check(should_stop: Callable[[], bool] | None, what: str) -> None:
    if should_stop is not None and should_stop():
        raise TrainingInterruptedError(f"RLIF: stopped at {what}")


def _train_sac(
    record: Transitions,
    prior: Transitions | None,
    init: MileCheckpoint,
    cfg: RLIFConfig,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[GaussianMLP, dict]:
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    actor: GaussianMLP = clone_policy(init)  # type: ignore[assignment]
    spec = init.spec
    critic = _CriticEnsemble(actor.normalizer, spec.stacked_dim, spec.act_dim, cfg.critic_hidden, cfg.n_critics)
    target = copy.deepcopy(critic).requires_grad_(False)
    log_alpha = torch.tensor(float(np.log(cfg.init_temperature)), requires_grad=True)
    target_entropy = -float(spec.act_dim)
    opt_actor = torch.optim.Adam(actor.parameters(), lr=cfg.lr)
    opt_critic = torch.optim.Adam(critic.parameters(), lr=cfg.lr)
    opt_alpha = torch.optim.Adam([log_alpha], lr=cfg.lr)
    sampler = _Sampler(record, prior, False, gen)

    def sample_action(obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = actor(obs)
        dist = torch.distributions.Normal(mean, std)
        a = dist.rsample()
        return a, dist.log_prob(a).sum(-1)

    critic_losses, actor_losses = [], []
    for update in range(cfg.actor_updates):
        for _ in range(cfg.utd):
            _stop_check(should_stop, f"actor update {update}")
            obs, act, rew, nxt, done = sampler.sample(cfg.batch_size)
            with torch.no_grad():
                a2, logp2 = sample_action(nxt)
                subset = torch.randperm(cfg.n_critics, generator=gen)[: cfg.critic_subset]
                q_next = target(nxt, a2)[subset].min(0).values - log_alpha.exp() * logp2
                y = rew + cfg.discount * (1.0 - done) * q_next
            loss_q = (critic(obs, act) - y).square().mean(-1).sum()
            opt_critic.zero_grad(set_to_none=True)
            loss_q.backward()
            opt_critic.step()
            with torch.no_grad():
                for p, tp in zip(critic.parameters(), target.parameters()):
                    tp.lerp_(p, cfg.tau)
            critic_losses.append(loss_q.item())
        obs = sampler.sample(cfg.batch_size)[0]
        a, logp = sample_action(obs)
        loss_pi = (log_alpha.exp().detach() * logp - critic(obs, a).mean(0)).mean()
        opt_actor.zero_grad(set_to_none=True)
        loss_pi.backward()
        opt_actor.step()
        loss_alpha = -(log_alpha * (logp.detach() + target_entropy)).mean()
        opt_alpha.zero_grad(set_to_none=True)
        loss_alpha.backward()
        opt_alpha.step()
        actor_losses.append(loss_pi.item())
    actor.eval()
    info = {
        "backbone": "sac-rlpd",
        "final_critic_loss": float(np.mean(critic_losses[-50:])) if critic_losses else None,
        "final_actor_loss": float(np.mean(actor_losses[-50:])) if actor_losses else None,
        "temperature": log_alpha.exp().item(),
    }
    return actor, info


def _train_dqn(
    record: Transitions,
    prior: Transitions | None,
    init: MileCheckpoint,
    cfg: RLIFConfig,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[CategoricalMLP, dict]:
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    q_net: CategoricalMLP = clone_policy(init)  # type: ignore[assignment]

    def q_values(net: CategoricalMLP, obs: Tensor) -> Tensor:
        return net.logits_head(net.features(obs))

    target = copy.deepcopy(q_net).requires_grad_(False)
    opt = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)
    sampler = _Sampler(record, prior, True, gen)
    losses = []
    for update in range(cfg.actor_updates * cfg.utd):
        _stop_check(should_stop, f"update {update}")
        obs, act, rew, nxt, done = sampler.sample(cfg.batch_size)
        with torch.no_grad():
            best = q_values(q_net, nxt).argmax(-1, keepdim=True)  # double DQN: online net picks, target rates
            y = rew + cfg.discount * (1.0 - done) * q_values(target, nxt).gather(-1, best).squeeze(-1)
        q = q_values(q_net, obs).gather(-1, act.unsqueeze(-1)).squeeze(-1)
        loss = F.smooth_l1_loss(q, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(q_net.parameters(), 10.0)
        opt.step()
        with torch.no_grad():
            for p, tp in zip(q_net.parameters(), target.parameters()):
                tp.lerp_(p, cfg.tau)
        losses.append(loss.item())
    with torch.no_grad():  # the policy: softmax(Q / temperature), the greedy action unchanged
        q_net.logits_head.weight.div_(cfg.dqn_temperature)
        q_net.logits_head.bias.div_(cfg.dqn_temperature)
    q_net.eval()
    return q_net, {
        "backbone": "double-dqn",
        "final_td_loss": float(np.mean(losses[-50:])) if losses else None,
    }


def train(
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: RLIFConfig | None = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    """RLIF on the record (and ``demos``). It takes no ``prior`` (an RL learner: it ignores one) and
    no rollout ``selection`` (it trains by updates, not epochs)."""
    if selection is not None:
        raise ValueError("rollout selection picks among epochs; RLIF trains by updates")
    cfg = config or RLIFConfig()
    if len(dataset) == 0:
        raise ValueError("RLIF needs at least one recorded step")
    record = intervention_transitions(dataset)
    demo_part = intervention_transitions(demos, demo=True) if demos is not None and len(demos) else None
    learner = _train_dqn if dataset.spec.discrete else _train_sac
    policy, info = learner(record, demo_part, init, cfg, should_stop)
    meta = {
        "trainer": "rlif",
        "transitions": len(record),
        "demo_transitions": len(demo_part) if demo_part else 0,
        **info,
    }
    return MileCheckpoint(dataset.spec, policy, meta=meta)
