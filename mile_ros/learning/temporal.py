"""The temporal intervention model: MILE's probit starts a takeover, a hazard ends it, and a human
may wait a few concerned steps before stepping in (docs/learning.md, "The temporal intervention model").

Per-step MILE treats every step of a held takeover as a fresh decision. Here the human is a small
state machine, and the record's likelihood is summed exactly over its hidden states with a
forward recursion (in log space, differentiable):

- free ``F``: each step a check ``e ~ Bernoulli(P(I=1|s))`` (MILE's eq. 1). On a yes the human
  picks how many more steps to wait, ``w ~ pi_w`` (``w = 0 .. max_wait``, learned); ``w = 0`` steps
  in at once, with the action drawn from eq. 3 (weight ``pi_H(a) Phi((v(s,a) - c) / sigma)``);
- waiting ``C(w, j)`` (``j = 1 .. w`` checks passed): the robot acts; the next check says yes
  (``P(I=1|s)``) to go on, or no and the human is free again (the robot recovered); the check
  after the last wait step starts the takeover with eq. 3's weight;
- holding ``H(d)`` (held ``d`` steps): each step the human hands back with hazard
  ``h(s, d) = sigmoid(g(s) + b_min(d, max_hold))`` and is then free at that same step; otherwise
  it drives, ``a ~ pi_H(.|s)``.

With ``max_wait = 0`` and ``h = 1`` this is per-step MILE exactly. The steps of one takeover are
then not independent decisions, and the robot-controlled steps before a takeover (the waiting
steps) carry their own evidence through ``P(I=1|s)`` at those states.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import MileCheckpoint
from .dataset import InterventionDataset
from .intervention import DiscreteIntervention, gaussian_spread, log_ndtr
from .loop import LoopResult, train_loop
from .model import MileModel
from .networks import diag_gaussian_log_prob
from .prior import PriorTerm
from .trainer import MileConfig, calibrate_cost, prepare_fit, record_tensors

__all__ = [
    "StepTerms",
    "TemporalConfig",
    "TemporalModel",
    "TemporalResult",
    "filter_sequences",
    "fit_temporal",
    "run_lengths",
    "takeover_starts",
]

# The log-probability of an impossible state: finite, because the gradient of logaddexp at two -inf
# inputs is NaN, and far below any reachable log-probability (exp() of it is 0).
NEG_INF = -1e30


@dataclass
class TemporalConfig(MileConfig):
    """MILE's settings plus the temporal model's; the same defaults for what they share."""

    max_wait: int = 4  # waits of 0 .. max_wait extra concerned checks are modelled (their mixture is learned)
    max_hold: int = 32  # the hand-back hazard has its own duration term up to this many held steps
    hazard_hidden: tuple[int, ...] = (64,)  # the state's part of the hazard, g(s)
    learn_wait: bool = True
    # Training runs the exact recursion over windows of this many steps; each window starts from the
    # filtered state under the epoch's starting weights (no gradient through it). 0: whole episodes.
    window: int = 64
    refresh_every: int = 5  # epochs between recomputing the windows' start states

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["hazard_hidden"] = list(self.hazard_hidden)
        return d


@dataclass
class StepTerms:
    """What the recursion needs at each step, as logarithms (``log_phi``/``log_pi`` only where I = 1)."""

    log_p: Tensor  # log P(I=1|s): a check says yes
    log_q: Tensor  # log P(I=0|s): a check says no
    log_phi: Tensor  # log Phi((v(s, a_H) - c) / sigma): the start's weight for the recorded action
    log_pi: Tensor  # log pi_H(a_H|s)
    log_h: Tensor  # (rows, max_hold): log h(s, d), d = 1 .. max_hold
    log_1mh: Tensor  # log(1 - h(s, d))


class TemporalModel(nn.Module):
    """MILE's networks, cost and probit scale (``mile``) plus the hazard and the waiting mixture."""

    def __init__(
        self, mile: MileModel, max_wait: int = 4, max_hold: int = 32, hazard_hidden: tuple[int, ...] = (64,)
    ) -> None:
        super().__init__()
        if max_wait < 0 or max_hold < 1:
            raise ValueError(f"need max_wait >= 0 and max_hold >= 1, got {max_wait}, {max_hold}")
        self.mile = mile
        self.max_wait, self.max_hold = int(max_wait), int(max_hold)
        self.hazard_hidden = tuple(int(h) for h in hazard_hidden)
        layers: list[nn.Module] = []
        last = mile.policy.normalizer.mean.shape[-1]
        for h in self.hazard_hidden:
            layers += [nn.Linear(last, h), nn.Tanh()]
            last = h
        out = nn.Linear(last, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.hazard_net = nn.Sequential(*layers, out)
        self.hold_bias = nn.Parameter(torch.zeros(self.max_hold))  # logit of the hazard by duration
        self.wait_logits = nn.Parameter(torch.zeros(self.max_wait + 1))
        # The chain of waiting states: block w (w = 1 .. max_wait) holds C(w, 1) .. C(w, w).
        first, last_idx, is_first = [], [], []
        for w in range(1, self.max_wait + 1):
            start = w * (w - 1) // 2
            first.append(start)
            last_idx.append(start + w - 1)
            is_first += [True] + [False] * (w - 1)
        self.register_buffer("_chain_first", torch.tensor(first, dtype=torch.long), persistent=False)
        self.register_buffer("_chain_last", torch.tensor(last_idx, dtype=torch.long), persistent=False)
        self.register_buffer("_chain_is_first", torch.tensor(is_first, dtype=torch.bool), persistent=False)
        self.register_buffer(
            "_block_of",
            torch.tensor([w - 1 for w in range(1, self.max_wait + 1) for _ in range(w)], dtype=torch.long),
            persistent=False,
        )

    @property
    def policy(self) -> nn.Module:
        """The policy network (what gets evaluated; rollout selection scores it)."""
        return self.mile.policy

    @property
    def n_chain(self) -> int:
        return self.max_wait * (self.max_wait + 1) // 2

    def log_wait(self) -> Tensor:
        """``log pi_w``, w = 0 .. max_wait."""
        return torch.log_softmax(self.wait_logits, -1)

    def temporal_state(self) -> dict:
        """The temporal part's settings and weights (for a checkpoint's meta; tensors load with weights_only)."""
        return {
            "max_wait": self.max_wait,
            "max_hold": self.max_hold,
            "hazard_hidden": list(self.hazard_hidden),
            "state_dict": {
                k: v.detach().cpu().clone() for k, v in self.state_dict().items() if not k.startswith("mile.")
            },
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: MileCheckpoint) -> TemporalModel:
        """The fitted temporal model of a checkpoint written by :func:`fit_temporal`."""
        info = checkpoint.meta.get("temporal")
        mile = checkpoint.intervention_model()
        if info is None or mile is None:
            raise ValueError("this checkpoint holds no temporal intervention model (train it with mile_temporal)")
        model = cls(mile, int(info["max_wait"]), int(info["max_hold"]), tuple(info["hazard_hidden"]))
        model.load_state_dict(info["state_dict"], strict=False)
        return model.eval()

    # ---- per-step terms ---------------------------------------------------------------------

    def step_terms(self, obs: Tensor, flag: Tensor, human_action: Tensor) -> StepTerms:
        """Every per-step quantity of the recursion for stacked observations ``obs``."""
        mile = self.mile
        policy_out, mental_out = mile.policy(obs), mile.mental(obs)
        lp = mile._log_probs(policy_out, mental_out, None)
        cost, sigma = mile.cost, mile.sigma
        if mile.discrete:
            k = human_action.long().clamp(0, policy_out.shape[-1] - 1).unsqueeze(-1)
            z = (DiscreteIntervention.value_gap(policy_out, mental_out) - cost) / sigma
            log_phi = log_ndtr(z.gather(-1, k).squeeze(-1))
            log_pi = policy_out.gather(-1, k).squeeze(-1)
        else:
            (mu, std_h), (m, std_r) = policy_out, mental_out
            a = torch.nan_to_num(human_action)
            spread = gaussian_spread(mu, std_h, m, std_r)
            q = ((a - mu) / std_h).square().sum(-1)
            log_phi = log_ndtr((0.5 * (spread - q) - cost) / sigma)
            log_pi = diag_gaussian_log_prob(a, mu, std_h)
        zero = torch.zeros_like(log_phi)
        held = flag.bool()
        logit = self.hazard_net(mile.policy.normalizer(obs)) + self.hold_bias  # (rows, max_hold)
        return StepTerms(
            lp.log_p_int,
            lp.log_p_no,
            torch.where(held, log_phi, zero),
            torch.where(held, log_pi, zero),
            nn.functional.logsigmoid(logit),
            nn.functional.logsigmoid(-logit),
        )

    # ---- the forward recursion --------------------------------------------------------------
    # States, in this order: F; C(1, 1), C(2, 1), C(2, 2), ...; H(1) .. H(max_hold).

    @property
    def n_states(self) -> int:
        return 1 + self.n_chain + self.max_hold

    def initial_state(self, batch: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Log-probabilities of the states at an episode's start: free with certainty."""
        state = torch.full((batch, self.n_states), NEG_INF, dtype=dtype)
        state[:, 0] = 0.0
        return state

    def transitions(self, terms: StepTerms, flag: Tensor) -> tuple[Tensor, Tensor]:
        """Per row: ``log M[i, j]`` = log P(state j after the step, I_t, start weight | state i before it)
        for the recorded ``I_t`` (rows, K, K), and per state the log-probability that ``I_t = 1``
        with the action marginalised out (rows, K), for one-step predictions."""
        n, nc, nh = len(flag), self.n_chain, self.max_hold
        dtype = terms.log_p.dtype
        neg = torch.full((), NEG_INF, dtype=dtype)
        log_w = self.log_wait().to(dtype)
        lp, lq = terms.log_p.unsqueeze(-1), terms.log_q.unsqueeze(-1)
        is_first, is_last = self._chain_is_first, torch.zeros(nc, dtype=torch.bool)
        is_last[self._chain_last] = True
        # From F at the check: no -> F; yes -> C(w, 1) (w >= 1) or a start at once (w = 0).
        chain_in = torch.where(is_first, lp + log_w[1:][self._block_of], neg) if nc else lp[:, :0]
        f0 = torch.cat([lq, chain_in, neg.expand(n, nh)], -1)
        start = torch.cat([(log_w[0] + terms.log_phi).unsqueeze(-1), neg.expand(n, nh - 1)], -1)
        f1 = torch.cat([neg.expand(n, 1 + nc), start], -1)
        # From C(w, j): no -> F; yes -> C(w, j + 1), or after the last wait a start.
        step_on = torch.zeros(nc, nc, dtype=torch.bool)
        for k in range(nc):
            if not is_last[k]:
                step_on[k, k + 1] = True
        c0 = torch.cat(
            [lq.unsqueeze(1).expand(n, nc, 1), torch.where(step_on, lp.unsqueeze(-1), neg), neg.expand(n, nc, nh)], -1
        )
        c_start = torch.where(is_last, terms.log_phi.unsqueeze(-1), neg)  # (rows, nc)
        c1 = torch.cat([neg.expand(n, nc, 1 + nc), c_start.unsqueeze(-1), neg.expand(n, nc, nh - 1)], -1)
        # From H(d): hand back (then as F at the same step), or hold on into H(d + 1) (the last bucket stays).
        h0 = terms.log_h.unsqueeze(-1) + f0.unsqueeze(1)
        h1 = terms.log_h.unsqueeze(-1) + f1.unsqueeze(1)
        hold_on = torch.zeros(nh, nh, dtype=torch.bool)
        for d in range(nh):
            hold_on[d, min(d + 1, nh - 1)] = True
        kept = torch.where(hold_on, terms.log_1mh.unsqueeze(-1), neg)
        h1 = torch.cat([h1[..., : 1 + nc], torch.logaddexp(h1[..., 1 + nc :], kept)], -1)
        m0 = torch.cat([f0.unsqueeze(1), c0, h0], 1)
        m1 = torch.cat([f1.unsqueeze(1), c1, h1], 1)
        log_m = torch.where(flag.bool().view(n, 1, 1), m1, m0)
        # P(I_t = 1 | state): the start's weight with the action marginalised is P(I=1|s) itself.
        pred_f = log_w[0] + terms.log_p.unsqueeze(-1)
        pred_c = torch.where(is_last, lp, neg) if nc else lp[:, :0]
        pred_h = torch.logaddexp(terms.log_h + pred_f, terms.log_1mh)
        return log_m, torch.cat([pred_f, pred_c, pred_h], -1)

    def run(
        self,
        terms: StepTerms,
        flag: Tensor,
        index: Tensor,
        mask: Tensor,
        state: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The recursion over padded sequences: ``index`` (batch, T) picks rows of ``terms``.

        Returns per-step ``log P(I_t, a_t | past)`` (batch, T; 0 where masked), the predicted
        ``P(I_t = 1 | past)`` and the normalised state before each step (the first: the start).
        """
        batch, steps = index.shape
        state = self.initial_state(batch, terms.log_p.dtype) if state is None else state
        log_m, log_pred = self.transitions(terms, flag)
        logs, preds, states = [], [], [state]
        for t in range(steps):
            rows, live = index[:, t], mask[:, t]
            new = torch.logsumexp(state.unsqueeze(-1) + log_m[rows], 1)
            total = torch.logsumexp(new, -1)
            preds.append(torch.logsumexp(state + log_pred[rows], -1).exp())
            state = torch.where(live.unsqueeze(-1), new - total.unsqueeze(-1), state)
            logs.append(torch.where(live, total + terms.log_pi[rows], torch.zeros_like(total)))
            states.append(state)
        return torch.stack(logs, 1), torch.stack(preds, 1), states


def _episode_layout(episode: np.ndarray, window: int = 0) -> tuple[Tensor, Tensor, list[int]]:
    """Rows grouped into sequences (whole episodes, or windows of ``window`` steps inside them).

    Returns ``index`` (sequences, T), ``mask`` and, per sequence, its position in its episode
    (0 for an episode's first window).
    """
    n = len(episode)
    bounds = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1], True]) if n else np.array([0])
    seqs, offsets = [], []
    for a, b in itertools.pairwise(bounds):
        step = window if window > 0 else b - a
        for s in range(a, b, step):
            seqs.append(np.arange(s, min(s + step, b)))
            offsets.append(s - a)
    width = max((len(s) for s in seqs), default=0)
    index = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=bool)
    for i, s in enumerate(seqs):
        index[i, : len(s)] = s
        mask[i, : len(s)] = True
    return torch.from_numpy(index), torch.from_numpy(mask), offsets


@torch.no_grad()
def filter_sequences(model: TemporalModel, dataset: InterventionDataset, padding: str = "repeat") -> dict:
    """The exact log-likelihood of a record and the one-step-ahead predictions, episode by episode.

    Returns per row (in the dataset's order) ``log_lik`` (``log P(I_t, a_t | past)``) and ``p_next``
    (``P(I_t = 1 | past)``), and ``total`` (their sum).
    """
    model.eval()
    obs, flag, human, _ = record_tensors(dataset, padding)
    terms = model.step_terms(obs, flag, human)
    index, mask, _ = _episode_layout(dataset.episode)
    logs, preds, _ = model.run(terms, flag, index, mask)
    log_lik = np.zeros(len(dataset))
    p_next = np.zeros(len(dataset))
    m = mask.numpy()
    log_lik[index.numpy()[m]] = logs.numpy()[m]
    p_next[index.numpy()[m]] = preds.numpy()[m]
    return {"log_lik": log_lik, "p_next": p_next, "total": float(log_lik.sum())}


def run_lengths(flags: np.ndarray, episode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths of the runs of intervened steps and whether each ended before its episode did."""
    lengths, finished = [], []
    n = len(flags)
    i = 0
    while i < n:
        if flags[i]:
            j = i
            while j + 1 < n and flags[j + 1] and episode[j + 1] == episode[i]:
                j += 1
            lengths.append(j - i + 1)
            finished.append(j + 1 < n and episode[j + 1] == episode[i])
            i = j + 1
        else:
            i += 1
    return np.asarray(lengths, dtype=np.int64), np.asarray(finished, dtype=bool)


def takeover_starts(flags: np.ndarray, episode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The steps where a takeover could start (the first of an episode, or after a robot step) and
    whether one did: what a prediction of takeover starts is scored on."""
    flags = np.asarray(flags, bool)
    episode = np.asarray(episode)
    first = np.r_[True, episode[1:] != episode[:-1]]
    prev_free = np.r_[True, ~flags[:-1]]
    candidate = first | prev_free
    return candidate, flags & candidate


def _initial_hold_bias(flags: np.ndarray, episode: np.ndarray, max_hold: int) -> Tensor:
    """The record's own hand-back hazard by duration (smoothed), as logits: where training starts."""
    lengths, finished = run_lengths(flags, episode)
    bias = torch.zeros(max_hold)
    pooled_rel, pooled_risk = 0.5, 1.0
    for d in range(1, max_hold + 1):
        at_risk = ((lengths >= d) & ((lengths > d) | finished)).sum() if d < max_hold else (lengths >= d).sum()
        released = ((lengths == d) & finished).sum() if d < max_hold else ((lengths >= d) & finished).sum()
        pooled_rel, pooled_risk = pooled_rel + released, pooled_risk + at_risk
        rate = (released + 0.5 * pooled_rel / pooled_risk) / (at_risk + 0.5)
        rate = float(np.clip(rate, 1e-3, 1 - 1e-3))
        bias[d - 1] = math.log(rate / (1 - rate))
    return bias


@dataclass
class TemporalResult:
    model: TemporalModel
    config: TemporalConfig
    loop: LoopResult
    train_rows: int = 0
    val_rows: int = 0
    meta: dict = field(default_factory=dict)

    def checkpoint(self, spec, **meta) -> MileCheckpoint:
        info = {
            "trainer": "mile_temporal",
            "config": self.config.to_dict(),
            "best_epoch": self.loop.best_epoch,
            "best_val_nll": self.loop.best_val if np.isfinite(self.loop.best_val) else None,
            "epochs_run": len(self.loop.history),
            "train_rows": self.train_rows,
            "val_rows": self.val_rows,
            "temporal": self.model.temporal_state(),
            **self.meta,
            **meta,
        }
        return MileCheckpoint.from_model(spec, self.model.mile, self.config.padding, info)


def fit_temporal(
    dataset: InterventionDataset,
    config: TemporalConfig | None = None,
    init: MileCheckpoint | None = None,
    prior: InterventionDataset | None = None,
    should_stop: Callable[[], bool] | None = None,
    selection: Any = None,
) -> TemporalResult:
    """Fit the temporal model to ``dataset`` by maximum likelihood (the options as :func:`fit_mile`'s).

    The loss per minibatch is the record's negative log-likelihood per step over a batch of windows
    (``config.window`` steps each, ``batch_size // window`` per batch), plus the prior's and the
    mental-model anchor's terms as in MILE. ``selection`` (a ``RolloutSelection``) chooses the
    weights by rollouts, as for MILE (simulation benchmarks only).
    """
    config = config or TemporalConfig()
    if config.window < 0:
        raise ValueError(f"window must be 0 (whole episodes) or a number of steps, got {config.window}")
    start = prepare_fit(dataset, config, init)
    train, val, mile, lambda_mental = start.train, start.val, start.model, start.lambda_mental
    obs, flag, human, robot = start.obs, start.flag, start.human, start.robot
    torch.manual_seed(config.seed)
    model = TemporalModel(mile, config.max_wait, config.max_hold, config.hazard_hidden)
    with torch.no_grad():
        model.hold_bias.copy_(_initial_hold_bias(train.intervention, train.episode, config.max_hold))
    model.wait_logits.requires_grad_(config.learn_wait)
    candidate, started = takeover_starts(train.intervention, train.episode)
    if config.cost_from_rate:
        rate = float(started.sum() / max(candidate.sum(), 1))
        if 0.0 < rate < 1.0:
            calibrate_cost(mile, obs[torch.from_numpy(candidate)], rate)

    index, mask, offsets = _episode_layout(train.episode, config.window)
    n_seq = len(index)
    full_index, full_mask, _ = _episode_layout(train.episode)
    # Which episode each window lies in, to look its filtered start state up.
    ep_first_rows = full_index[:, 0].numpy()
    episode_of_seq = np.searchsorted(ep_first_rows, index[:, 0].numpy(), side="right") - 1
    prior_term = PriorTerm.of(prior, len(train), config.lambda_prior, config.padding)
    prior_chunks = (
        np.array_split(np.random.default_rng(config.seed).permutation(len(prior_term)), n_seq)
        if prior_term is not None
        else None
    )
    starts_cache: dict[str, Tensor | int] = {"epoch_batches": 0}
    per_batch = (
        max(1, config.batch_size // max(config.window, 1))
        if config.window
        else max(1, config.batch_size // max(int(mask.sum(1).max()), 1))
    )
    batches_per_epoch = math.ceil(n_seq / per_batch)

    def refresh_start_states() -> None:
        # The exact filtered state at every window's start, under the current weights.
        with torch.no_grad():
            terms = model.step_terms(obs, flag, human)
            _, _, states = model.run(terms, flag, full_index, full_mask)
        every = torch.stack(states, 1)  # (episodes, T + 1, K)
        starts_cache["state"] = every[torch.from_numpy(episode_of_seq), torch.tensor(offsets)]

    def batch_loss(idx: Tensor) -> Tensor:
        if starts_cache["epoch_batches"] % (batches_per_epoch * max(config.refresh_every, 1)) == 0:
            model.eval()
            refresh_start_states()
            model.train()
        starts_cache["epoch_batches"] += 1
        seq_index, seq_mask = index[idx], mask[idx]
        rows = seq_index[seq_mask]
        uniq, inverse = torch.unique(rows, return_inverse=True)
        local = torch.zeros_like(seq_index)
        local[seq_mask] = inverse
        terms = model.step_terms(obs[uniq], flag[uniq], human[uniq])
        logs, _, _ = model.run(terms, flag[uniq], local, seq_mask, starts_cache["state"][idx])  # type: ignore[index]
        total = -logs.sum()
        count = len(rows)
        if lambda_mental:
            out = mile.mental(obs[uniq])
            total = total - lambda_mental * mile.mental.log_prob_of(out, robot[uniq]).sum()
        if prior_term is not None:
            pri = torch.from_numpy(np.concatenate([prior_chunks[i] for i in idx.tolist()]).astype(np.int64))
            total = total + prior_term.nll_sum(mile.policy, pri, config.prior_trains_std)
            count += len(pri)
        return total / max(count, 1)

    val_loss = None
    if len(val):
        v_data = val

        def val_loss() -> float:  # the held-out record's exact NLL per step
            return -filter_sequences(model, v_data, config.padding)["total"] / len(v_data)

    loop_config = _with_batch(config, per_batch)
    loop = train_loop(
        # The policy first: rollout selection scores it and compares candidates by its weights.
        [mile.policy, model],
        batch_loss,
        n_seq,
        loop_config,
        val_loss,
        "MILE-temporal",
        [*mile.scalar_parameters(with_stds=config.std_step == "scalar"), model.wait_logits, model.hold_bias],
        config.scalar_lr,
        should_stop,
        selection=selection,
    )
    return TemporalResult(model, config, loop, len(train), len(val))


def _with_batch(config: TemporalConfig, per_batch: int) -> TemporalConfig:
    """The config with its batch counted in windows (what the loop shuffles)."""
    return replace(config, batch_size=per_batch)
