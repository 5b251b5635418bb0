"""One minibatch training loop for every learner: seeded, held-out loss recorded, optional model selection."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "LoopConfig",
    "LoopResult",
    "RolloutSelection",
    "TrainingDivergedError",
    "TrainingInterruptedError",
    "train_loop",
]


class TrainingDivergedError(FloatingPointError):
    """A minibatch loss was NaN or infinite: the update stops instead of writing broken weights."""


class TrainingInterruptedError(RuntimeError):
    """The cancellation check said stop: the loop ends between two minibatches and returns no weights."""


@dataclass
class LoopConfig:
    """Optimisation settings common to MILE and the baselines."""

    lr: float = 1e-4
    batch_size: int = 1024
    epochs: int = 300
    weight_decay: float = 0.0
    # Model selection: end at the epoch with the lowest held-out loss, stopping after ``patience``
    # epochs without improvement (None: never). Off, the held-out loss is still recorded per epoch
    # and the weights are the last epoch's.
    select_best: bool = True
    patience: int | None = 50
    seed: int = 0
    progress: bool = False
    grad_clip: float | None = 10.0


@dataclass
class LoopResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.inf
    stopped_early: bool = False
    rollout_scores: list[tuple[int, float]] = field(default_factory=list)  # (epoch, score); -1: before training


@dataclass(frozen=True)
class RolloutSelection:
    """The authors' model selection, for simulation benchmarks only: every ``every`` epochs (and
    before the first and after the last) ``score(modules)`` rolls the policy out in the environment;
    the loop ends with the best-scoring weights (the later candidate on a tie).

    A real robot has no rollouts to spare, so nothing turns this on by itself: a benchmark passes
    one to the training call (``selection=``), which hands it down to :func:`train_loop`.
    """

    score: Callable[[Sequence[nn.Module]], float]
    every: int = 50

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"rollout selection needs every >= 1 epochs, got {self.every}")


class _RolloutCandidates:
    """The best-scoring weights seen so far under a :class:`RolloutSelection`."""

    def __init__(self, selection: RolloutSelection, modules: Sequence[nn.Module], result: LoopResult) -> None:
        self.selection, self.modules, self.result = selection, modules, result
        self.best_score, self.best_state = -math.inf, None

    def offer(self, epoch: int) -> None:
        for m in self.modules:
            m.eval()
        with torch.no_grad():
            score = float(self.selection.score(self.modules))
        self.result.rollout_scores.append((epoch, score))
        if score >= self.best_score:
            self.best_score, self.result.best_epoch = score, epoch
            self.best_state = [copy.deepcopy(m.state_dict()) for m in self.modules]

    def restore(self) -> None:
        for m, s in zip(self.modules, self.best_state or []):
            m.load_state_dict(s)


def train_loop(
    modules: Sequence[nn.Module],
    batch_loss: Callable[[Tensor], Tensor | tuple[Tensor, dict[str, float]]],
    n_rows: int,
    config: LoopConfig,
    val_loss: Callable[[], float] | None = None,
    desc: str = "train",
    extra_params: Sequence[nn.Parameter] = (),
    extra_lr: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    selection: RolloutSelection | None = None,
) -> LoopResult:
    """Minimise ``batch_loss(indices)`` over shuffled minibatches of ``range(n_rows)``.

    ``val_loss`` is recorded every epoch; with ``config.select_best`` the modules end at the epoch with
    the lowest held-out loss (model selection by likelihood) and training stops
    after ``patience`` epochs without improvement. ``extra_params`` (e.g. MILE's cost and probit
    scale) are trained at ``extra_lr`` (default: ``config.lr``) without weight decay.
    With ``selection`` the weights are chosen by rollouts instead (benchmarks only).
    ``should_stop`` is checked before every minibatch; when it returns true the loop raises
    :class:`TrainingInterruptedError`.
    """
    extra_ids = {id(p) for p in extra_params}
    seen: set[int] = set()
    params = [p for m in modules for p in m.parameters() if p.requires_grad and id(p) not in extra_ids]
    params = [p for p in params if not (id(p) in seen or seen.add(id(p)))]
    extras = [p for p in extra_params if p.requires_grad]
    groups = [{"params": params}]
    if extras:
        groups.append({"params": extras, "lr": extra_lr or config.lr, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    params = params + extras
    gen = torch.Generator().manual_seed(config.seed)
    result = LoopResult()
    best_state = None
    candidates = _RolloutCandidates(selection, modules, result) if selection is not None else None
    if candidates is not None:
        candidates.offer(-1)
    bar = tqdm(range(config.epochs), desc=desc, disable=not config.progress, leave=False, dynamic_ncols=True)
    for epoch in bar:
        for m in modules:
            m.train()
        perm = torch.randperm(n_rows, generator=gen)
        total, batches = 0.0, 0
        for start in range(0, n_rows, config.batch_size):
            if should_stop is not None and should_stop():
                raise TrainingInterruptedError(f"{desc}: stopped at epoch {epoch}")
            out = batch_loss(perm[start : start + config.batch_size])
            loss = out[0] if isinstance(out, tuple) else out
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"{desc}: the loss is {float(loss)} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            total += float(loss.detach())
            batches += 1
        row = {"epoch": epoch, "train_loss": total / max(batches, 1)}
        if val_loss is not None:
            for m in modules:
                m.eval()
            with torch.no_grad():
                row["val_loss"] = float(val_loss())
            if candidates is not None:
                pass  # the rollouts choose the weights, not the held-out loss
            elif not config.select_best:
                result.best_val, result.best_epoch = row["val_loss"], epoch
            elif row["val_loss"] < result.best_val:
                result.best_val, result.best_epoch = row["val_loss"], epoch
                best_state = [copy.deepcopy(m.state_dict()) for m in modules]
            elif config.patience is not None and epoch - result.best_epoch >= config.patience:
                result.history.append(row)
                result.stopped_early = True
                break
        result.history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "epoch"})
        if candidates is not None and ((epoch + 1) % selection.every == 0 or epoch == config.epochs - 1):
            candidates.offer(epoch)
    if candidates is not None:
        candidates.restore()
    elif best_state is not None:  # only ever set with select_best
        for m, s in zip(modules, best_state):
            m.load_state_dict(s)
    else:
        result.best_epoch = len(result.history) - 1
    for m in modules:
        m.eval()
    return result
