"""Session bookkeeping: the run directory, what has been done (for resuming), metrics and the plot.

A run directory holds ``session.json`` (configuration and progress, rewritten atomically after
every step), ``bags/`` (one bag per episode), ``checkpoints/``, ``metrics.csv``/``metrics.json``
and ``learning_curve.png``. :func:`next_task` looks only at the saved progress, so a session
manager restarted on the same directory continues where the previous one stopped.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mile_ros.seeds import collect_seed, eval_seed

__all__ = ["SessionConfig", "SessionState", "Task", "next_task", "write_metrics"]

STATE_FILE = "session.json"


@dataclass(frozen=True)
class SessionConfig:
    iterations: int = 5
    episodes: int = 1  # intervention episodes per iteration
    eval_episodes: int = 1  # episodes of the policy alone after each update (and before the first)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.episodes < 1 or self.eval_episodes < 0:
            raise ValueError(f"need iterations >= 1, episodes >= 1, eval_episodes >= 0: {self}")


@dataclass(frozen=True)
class Task:
    kind: str  # episode | train | done
    iteration: int = 0
    index: int = 0
    mode: str = "train"  # train (human on) | eval (policy alone)
    seed: int = 0

    @property
    def name(self) -> str:
        return f"iter_{self.iteration:03d}/{self.mode}_{self.index:03d}"


@dataclass
class SessionState:
    run_dir: Path
    config: SessionConfig
    task: str = ""
    initial_checkpoint: str = ""
    episodes: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)  # iteration (after training) -> path

    @classmethod
    def open(cls, run_dir: str | os.PathLike, config: SessionConfig, task: str) -> SessionState:
        """Load the saved progress of ``run_dir``, or start a new one there."""
        run_dir = Path(run_dir)
        path = run_dir / STATE_FILE
        if path.is_file():
            raw = json.loads(path.read_text())
            saved = SessionConfig(**raw["config"])
            if raw.get("task") != task:
                raise ValueError(f"{run_dir} is a session of task {raw.get('task')!r}, not {task!r}")
            # More iterations than before may be asked for; the rest must match to resume.
            if (saved.episodes, saved.eval_episodes, saved.seed) != (
                config.episodes,
                config.eval_episodes,
                config.seed,
            ):
                raise ValueError(f"{run_dir} was started with {saved}; resume it with the same settings")
            return cls(run_dir, config, task, raw.get("initial_checkpoint", ""), raw["episodes"], raw["checkpoints"])
        run_dir.mkdir(parents=True, exist_ok=True)
        state = cls(run_dir, config, task)
        state.save()
        return state

    def save(self) -> None:
        data = {
            "task": self.task,
            "config": asdict(self.config),
            "initial_checkpoint": self.initial_checkpoint,
            "episodes": self.episodes,
            "checkpoints": self.checkpoints,
        }
        tmp = self.run_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.run_dir / STATE_FILE)

    def done(self, task: Task) -> bool:
        return any(e["name"] == task.name for e in self.episodes)

    def record_episode(self, task: Task, result: dict[str, Any]) -> None:
        self.episodes.append(
            {
                "name": task.name,
                "iteration": task.iteration,
                "index": task.index,
                "mode": task.mode,
                "seed": task.seed,
                **result,
            }
        )
        self.save()

    def record_checkpoint(self, iteration: int, path: str) -> None:
        self.checkpoints[str(iteration)] = path
        self.save()

    def current_checkpoint(self) -> str:
        """The newest checkpoint of the session (the initial one before any training)."""
        if self.checkpoints:
            return self.checkpoints[str(max(int(k) for k in self.checkpoints))]
        return self.initial_checkpoint

    def bag_path(self, task: Task) -> Path:
        return self.run_dir / "bags" / f"iter_{task.iteration:03d}" / f"{task.mode}_{task.index:03d}"


def next_task(state: SessionState) -> Task:
    """What to do next. Iteration ``i`` evaluates the policy trained after ``i`` updates (0: the
    initial policy), then, for ``i < iterations``, records intervention episodes and trains."""
    cfg = state.config
    for it in range(cfg.iterations + 1):
        for k in range(cfg.eval_episodes):
            t = Task("episode", it, k, "eval", eval_seed(k))  # the benchmark's evaluation episodes
            if not state.done(t):
                return t
        if it == cfg.iterations:
            break
        for k in range(cfg.episodes):
            t = Task("episode", it, k, "train", collect_seed(cfg.seed, cfg.episodes, it, k))
            if not state.done(t):
                return t
        if str(it + 1) not in state.checkpoints:
            return Task("train", it + 1)
    return Task("done")


def metrics_rows(state: SessionState) -> list[dict[str, Any]]:
    """One row per iteration: collection success and intervention rates, the policy's own success."""
    rows = []
    for it in range(state.config.iterations + 1):
        # An episode the operator discarded is kept in the state (it is not run again) but is no
        # evidence about the policy: it counts in no rate.
        eps = [e for e in state.episodes if e["iteration"] == it and not e.get("discarded")]
        train = [e for e in eps if e["mode"] == "train"]
        ev = [e for e in eps if e["mode"] == "eval"]
        if not eps:
            continue
        steps = sum(e.get("steps", 0) for e in train)
        rows.append(
            {
                "iteration": it,
                "updates": it,
                "eval_episodes": len(ev),
                "eval_success_rate": sum(bool(e.get("success")) for e in ev) / len(ev) if ev else None,
                "train_episodes": len(train),
                "train_success_rate": sum(bool(e.get("success")) for e in train) / len(train) if train else None,
                "intervention_rate": sum(e.get("interventions", 0) for e in train) / steps if steps else None,
                "steps": steps,
                "checkpoint": state.checkpoints.get(str(it), state.initial_checkpoint if it == 0 else ""),
            }
        )
    return rows


def write_metrics(state: SessionState, plot: bool = True) -> list[dict[str, Any]]:
    """Write metrics.csv, metrics.json and (with matplotlib) learning_curve.png; return the rows."""
    rows = metrics_rows(state)
    d = state.run_dir
    (d / "metrics.json").write_text(
        json.dumps({"task": state.task, "iterations": rows, "episodes": state.episodes}, indent=2)
    )
    if rows:
        with open(d / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if plot and rows:
        plot_learning_curve(rows, d / "learning_curve.png", state.task)
    return rows


def plot_learning_curve(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (
        ("eval_success_rate", "policy alone: success", "o-"),
        ("train_success_rate", "with the human: success", "s--"),
        ("intervention_rate", "intervention rate (steps)", "^:"),
    ):
        pts = [(r["iteration"], r[key]) for r in rows if r[key] is not None]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.set_xlabel("MILE updates")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
