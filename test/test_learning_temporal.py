"""The temporal intervention model: its exact likelihood against Monte Carlo of the process it
describes, its nesting of per-step MILE, and its fit on a record from a holding, waiting human."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, fields

import numpy as np
import pytest
import torch

from mile_ros.learning import InterventionDataset, MileCheckpoint, MileConfig, Spec, build_model, fit_mile
from mile_ros.learning.temporal import (
    StepTerms,
    TemporalConfig,
    TemporalModel,
    filter_sequences,
    fit_temporal,
    run_lengths,
    takeover_starts,
)

MC = 200_000
MILE_FIELDS = {f.name for f in fields(MileConfig)}
T, K, D, W = 6, 2, 3, 2  # steps, actions, duration buckets, longest wait


def _process(rng):
    """Per-step quantities of a process with known parameters: pi_H(k), the per-action probit
    phi(k) (so P(I=1|s) = sum_k pi_H(k) phi(k)), the hazard h(t, d) and the wait mixture."""
    pi = rng.dirichlet(np.ones(K), size=T)
    phi = rng.uniform(0.15, 0.9, size=(T, K))
    h = rng.uniform(0.1, 0.9, size=(T, D))
    wait = np.array([0.5, 0.2, 0.3])
    return pi, phi, h, wait


def _simulate(pi, phi, h, wait, n, rng):
    """The generative process itself, drawn ``n`` times (vectorised over draws): codes per step,
    0 = robot, 1 + k = human with action k."""
    mode = np.zeros(n, int)  # 0 free, 1 waiting, 2 holding
    w = np.zeros(n, int)
    j = np.zeros(n, int)
    d = np.zeros(n, int)
    codes = np.zeros((n, T), int)
    for t in range(T):
        holding = mode == 2
        release = holding & (rng.random(n) < h[t, np.minimum(d, D) - 1])
        stay = holding & ~release
        a_held = (rng.random(n) > pi[t, 0]).astype(int)
        codes[stay, t] = 1 + a_held[stay]
        d[stay] += 1
        mode[release] = 0
        deciding = ~stay
        a = (rng.random(n) > pi[t, 0]).astype(int)  # the nominal action behind each check
        yes = deciding & (rng.random(n) < phi[t, a])
        free_yes = yes & (mode == 0)
        w_new = rng.choice(W + 1, size=n, p=wait)
        w[free_yes], j[free_yes] = w_new[free_yes], 0
        ready = yes & (((mode == 0) & (w == 0)) | ((mode == 1) & (j == w)))
        wait_on = yes & ~ready
        codes[ready, t] = 1 + a[ready]
        mode[ready], d[ready] = 2, 1
        mode[wait_on], j[wait_on] = 1, j[wait_on] + 1
        mode[deciding & ~yes] = 0
    return codes


def _model(max_wait=W, max_hold=D):
    spec = Spec(3, K, True, frame_stack=0)
    mile = build_model(spec, MileConfig(hidden=(8,), cost=1.0, sigma=1.0, seed=0))
    return TemporalModel(mile, max_wait, max_hold, (4,)).double()


def _terms_for(patterns, pi, phi, h):
    """StepTerms for each pattern's rows (pattern-major), with the known per-step quantities."""
    n = len(patterns)
    codes = np.asarray(patterns).reshape(-1)
    t = np.tile(np.arange(T), n)
    p = (pi * phi).sum(1)[t]
    act = np.clip(codes - 1, 0, K - 1)
    on = codes > 0
    log_phi = np.where(on, np.log(phi[t, act]), 0.0)
    log_pi = np.where(on, np.log(pi[t, act]), 0.0)
    hh = h[t]
    terms = StepTerms(*(torch.tensor(x) for x in (np.log(p), np.log1p(-p), log_phi, log_pi, np.log(hh), np.log1p(-hh))))
    flag = torch.tensor(on)
    index = torch.arange(n * T).reshape(n, T)
    return terms, flag, index, torch.ones(n, T, dtype=torch.bool)


def test_exact_likelihood_matches_monte_carlo_of_the_process():
    rng = np.random.default_rng(0)
    pi, phi, h, wait = _process(rng)
    model = _model()
    with torch.no_grad():
        model.wait_logits.copy_(torch.tensor(np.log(wait)))
    patterns = list(itertools.product(range(K + 1), repeat=T))
    terms, flag, index, mask = _terms_for(patterns, pi, phi, h)
    with torch.no_grad():
        logs, p_next, _ = model.run(terms, flag, index, mask)
    prob = logs.sum(1).exp().numpy()
    assert prob.sum() == pytest.approx(1.0, abs=1e-9)  # a distribution over every possible record

    codes = _simulate(pi, phi, h, wait, MC, rng)
    keys = codes @ (K + 1) ** np.arange(T)[::-1]
    freq = np.bincount(keys, minlength=(K + 1) ** T) / MC
    order = np.argsort(-prob)[:40]  # the likeliest records, many of them with waits and holds
    se = np.sqrt(prob[order] * (1 - prob[order]) / MC)
    assert np.all(np.abs(freq[order] - prob[order]) < 5 * se + 1e-5), np.c_[freq[order], prob[order]]
    # A wrong process is told apart: no waiting (w = 0 always) does not fit these draws.
    with torch.no_grad():
        model.wait_logits.copy_(torch.tensor([0.0, -30.0, -30.0]))
        wrong, _, _ = model.run(terms, flag, index, mask)
    wrong_prob = wrong.sum(1).exp().numpy()
    assert np.abs(freq[order] - wrong_prob[order]).max() > 10 * se.max()

    # The one-step prediction P(I_t = 1 | past) of the first record matches the draws' frequency.
    first = codes[:, 0] > 0
    assert p_next[0, 0].item() == pytest.approx(first.mean(), abs=5 * math.sqrt(0.25 / MC))


def test_no_wait_and_immediate_hand_back_is_per_step_mile():
    """max_wait = 0 and a hazard of 1: the temporal likelihood is MILE's per-step one."""
    torch.manual_seed(0)
    for discrete in (True, False):
        spec = Spec(5, 3, discrete, frame_stack=0)
        mile = build_model(spec, MileConfig(hidden=(16,), cost=0.5, sigma=0.8, seed=1))
        model = TemporalModel(mile, 0, 4, (8,))
        with torch.no_grad():
            model.hold_bias.fill_(40.0)  # hand back at once: every step is a fresh decision
        n = 60
        obs = torch.randn(n, 5)
        flag = torch.rand(n) < 0.4
        human = torch.randint(0, 3, (n,)) if discrete else torch.randn(n, 3)
        with torch.no_grad():
            terms = model.step_terms(obs, flag, human)
            logs, _, _ = model.run(terms, flag, torch.arange(n).reshape(3, 20), torch.ones(3, 20, dtype=torch.bool))
            per_step = -mile.losses(obs, flag, human).total * n
        assert logs.sum().item() == pytest.approx(per_step.item(), rel=1e-5, abs=1e-4)


def test_run_lengths_and_starts():
    flags = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1], bool)
    episode = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    lengths, finished = run_lengths(flags, episode)
    assert lengths.tolist() == [2, 2, 1, 2] and finished.tolist() == [True, False, True, False]
    candidate, started = takeover_starts(flags, episode)
    assert np.flatnonzero(started).tolist() == [1, 4, 6, 8]
    # after a held step the human has just handed back: not a step where a takeover starts
    assert candidate.tolist() == [True, True, False, False, True, False, True, False, True, False]


def _draw_record(rng, episodes=10, length=100):
    """A record drawn from the temporal model's own process: pi_H = softmax(3 x[:3]) at state x, a
    robot that always takes action 0 (the human's belief), c = 0.5, sigma = 1; the human waits two
    more concerned checks before stepping in and hands back with hazard 0.25 after two held steps."""
    from mile_ros.learning import DiscreteIntervention

    obs, flags, human, eps, steps = [], [], [], [], []
    belief = torch.log_softmax(torch.tensor([6.0, 0.0, 0.0]), -1)
    for e in range(episodes):
        x = rng.normal(size=(length, 4)).astype(np.float32)
        log_pi = torch.log_softmax(3 * torch.from_numpy(x[:, :3]).double(), -1)
        z = (DiscreteIntervention.value_gap(log_pi, belief.double().expand(length, 3)) - 0.5) / 1.0
        pi = log_pi.exp().numpy()
        tilted = pi * torch.special.ndtr(z).numpy()
        p = tilted.sum(1)
        held, streak = 0, 0
        for t in range(length):
            on, action = False, -1
            if held:
                if held < 2 or rng.random() > 0.25:
                    held += 1
                    on, action = True, int(rng.choice(3, p=pi[t]))
                else:
                    held = 0
            if not on:
                if rng.random() < p[t]:
                    streak += 1
                    if streak > 2:
                        on, held, streak = True, 1, 0
                        action = int(rng.choice(3, p=tilted[t] / p[t]))
                else:
                    streak = 0
            obs.append(x[t])
            flags.append(on)
            human.append(action)
            eps.append(e)
            steps.append(t)
    spec = Spec(4, 3, True, frame_stack=0)
    robot = np.zeros(len(obs), int)
    return InterventionDataset(spec, np.array(obs), robot, np.array(flags), np.array(human), eps, steps)


def test_fit_learns_the_wait_and_beats_per_step_prediction_of_starts():
    rng = np.random.default_rng(1)
    train, test = _draw_record(rng), _draw_record(rng, episodes=6)
    config = TemporalConfig(
        hidden=(32,),
        lr=3e-3,
        epochs=40,
        batch_size=512,
        window=32,
        cost=0.5,
        sigma=1.0,
        seed=0,
        lambda_mental=1.0,
        cost_from_rate=True,
        learn_cost=True,
        learn_sigma=True,
        select_best=False,
        max_wait=3,
        max_hold=6,
        scalar_lr=0.05,
    )
    result = fit_temporal(train, config)
    wait = result.model.log_wait().exp().detach().numpy()
    assert wait.argmax() == 2, wait  # the human waits two more checks
    cand, started = takeover_starts(test.intervention, test.episode)
    out = filter_sequences(result.model, test)
    p = np.clip(out["p_next"][cand], 1e-9, 1 - 1e-9)
    y = started[cand]
    ll_temporal = float(np.mean(np.where(y, np.log(p), np.log1p(-p))))
    rate = y.mean()
    ll_constant = float(np.mean(np.where(y, np.log(rate), np.log1p(-rate))))
    assert ll_temporal > ll_constant + 0.02, (ll_temporal, ll_constant)
    # Per-step MILE with the same settings, scored on the same steps by its P(I=1|s).
    mile = fit_mile(train, MileConfig(**{k: v for k, v in asdict(config).items() if k in MILE_FIELDS}))
    obs = torch.from_numpy(test.stacked_observations())
    q = np.clip(mile.model.intervention_probability(obs).numpy()[cand], 1e-9, 1 - 1e-9)
    ll_mile = float(np.mean(np.where(y, np.log(q), np.log1p(-q))))
    assert ll_temporal > ll_mile + 0.01, (ll_temporal, ll_mile, ll_constant)
    assert np.isfinite(out["total"])


def test_method_trains_from_an_initial_policy_and_its_checkpoint_keeps_the_temporal_model(tmp_path):
    from mile_ros.baselines import mile_temporal
    from mile_ros.learning import load_checkpoint

    rng = np.random.default_rng(2)
    record = _draw_record(rng, episodes=4, length=60)
    spec = record.spec
    init_net = build_model(spec, MileConfig(hidden=(16,), seed=3)).policy
    init = MileCheckpoint(spec, init_net)
    config = TemporalConfig(hidden=(16,), epochs=3, batch_size=64, window=16, max_wait=2, max_hold=4, seed=0)
    ckpt = mile_temporal.train(record, init, config)
    assert ckpt.meta["trainer"] == "mile_temporal" and ckpt.mental is not None
    path = ckpt.save(tmp_path / "t.pt")
    loaded = TemporalModel.from_checkpoint(load_checkpoint(path))
    again = TemporalModel.from_checkpoint(ckpt)
    a, b = filter_sequences(loaded, record), filter_sequences(again, record)
    assert a["total"] == pytest.approx(b["total"], rel=1e-6)
    np.testing.assert_allclose(loaded.log_wait().detach().numpy(), again.log_wait().detach().numpy())
    # Another run continues from its own checkpoint, mental model included.
    ckpt2 = mile_temporal.train(record, ckpt, config)
    assert ckpt2.meta["temporal"]["max_wait"] == 2
    with pytest.raises(ValueError, match="no temporal"):
        TemporalModel.from_checkpoint(init)


@pytest.mark.parametrize("fit", [fit_mile, fit_temporal])
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"std_step": "scalars"}, "std_step must be network or scalar"),
        ({"policy_std": "per-state"}, "policy_std must be one of"),
        ({"freeze_mental": True}, "freeze_mental keeps the initial checkpoint's mental model"),
    ],
)
def test_mile_and_the_temporal_fit_refuse_the_same_bad_settings(fit, setting, message):
    """One set-up (``prepare_fit``) for both: a setting either refuses, the other refuses too."""
    record = _draw_record(np.random.default_rng(3), episodes=2, length=20)
    config = (TemporalConfig if fit is fit_temporal else MileConfig)(hidden=(8,), epochs=1, **setting)
    with pytest.raises(ValueError, match=message):
        fit(record, config)
    with pytest.raises(ValueError, match="empty"):
        fit(record.select(np.zeros(len(record), bool)), config)
