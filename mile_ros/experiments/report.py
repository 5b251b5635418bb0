"""The markdown summary (mean ± s.e. over seeds) and the plots of a benchmark CSV."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_rows", "mean_se", "metric_for", "write_report"]


def load_rows(csv_path: Path) -> list[dict[str, Any]]:
    """CSV rows with numbers parsed back into floats (ints stay ints where they are whole)."""
    out = []
    with Path(csv_path).open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                try:
                    x = float(v)
                    parsed[k] = int(x) if x.is_integer() and k in ("seed", "iteration", "demos") else x
                except (TypeError, ValueError):
                    parsed[k] = v
            out.append(parsed)
    return out


def metric_for(task: str) -> str:
    """LunarLander is judged by return, Metaworld tasks by success rate."""
    return "mean_return" if "lunar" in task.lower() else "success_rate"


def mean_se(values: Sequence[float]) -> tuple[float, float, int]:
    x = np.asarray([v for v in values if isinstance(v, float | int) and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, 0
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return float(x.mean()), se, len(x)


def _cell(values: Sequence[float], digits: int = 2) -> str:
    m, se, n = mean_se(values)
    if n == 0:
        return "—"
    return f"{m:.{digits}f} ± {se:.{digits}f} (n={n})" if n > 1 else f"{m:.{digits}f} (n=1)"


def _group(rows, *keys) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def _final_rows(rows) -> list[dict[str, Any]]:
    last: dict[tuple, dict] = {}
    for r in rows:
        k = (r["task"], r["method"], r["seed"], r["demos"])
        if k not in last or r["iteration"] > last[k]["iteration"]:
            last[k] = r
    return list(last.values())


def _seed_curve_means(rows, task: str, method: str) -> dict[Any, float]:
    """Per seed: the metric averaged over iterations 1.. (iteration 0 is the shared initial policy)."""
    per_seed = _group([r for r in rows if r["task"] == task and r["method"] == method and r["iteration"] > 0], "seed")
    means = {s: float(np.mean([r[metric_for(task)] for r in g])) for (s,), g in per_seed.items()}
    return {s: m for s, m in means.items() if math.isfinite(m)}  # a seed with a failed iteration is left out


def _curve_means(rows, task: str, method: str) -> list[float]:
    return list(_seed_curve_means(rows, task, method).values())


def _learning_summary(rows, experiment: str) -> list[str]:
    tasks = sorted({r["task"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    final = _final_rows(rows)
    lines = [f"## {experiment}: final success (mean ± s.e. over seeds; LunarLander: return)", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    init = {t: next(r for r in rows if r["task"] == t and r["iteration"] == 0) for t in tasks}
    lines.append("| initial policy | " + " | ".join(f"{init[t][metric_for(t)]:.2f}" for t in tasks) + " |")
    lines.append(
        "| expert (intervening) | "
        + " | ".join(f"{init[t]['expert_return' if 'lunar' in t.lower() else 'expert_success']:.2f}" for t in tasks)
        + " |"
    )
    for m in methods:
        cells = [_cell([r[metric_for(t)] for r in final if r["task"] == t and r["method"] == m]) for t in tasks]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if max(r["iteration"] for r in rows) > 1:
        lines += [
            "",
            "Mean over iterations 1 to the last of each seed (area under the learning curve; "
            "how soon a method learns, which the final figure hides once several reach 1.00):",
            "",
        ]
        lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for m in methods:
            cells = [_cell(_curve_means(rows, t, m), 2) for t in tasks]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += _paired_summary(rows, tasks, methods, final)
    lines += _human_timing_summary(rows, tasks)
    lines += ["", "Intervened steps in the training data at the end (mean over seeds):", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for m in methods:
        cells = [_cell([r["intervened_steps"] for r in final if r["task"] == t and r["method"] == m], 0) for t in tasks]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Time per cell (mean over seeds, seconds): simulation / training / evaluation / total", ""]
    lines += ["| task | method | sim | train | eval | total |", "|---|---|---|---|---|---|"]
    for (t, m), group in sorted(_group(rows, "task", "method").items()):
        per_seed = _group(group, "seed")
        sums = {k: [sum(r[k] for r in g) for g in per_seed.values()] for k in ("sim_s", "train_s", "eval_s")}
        total = [max(r["cell_s"] for r in g) for g in per_seed.values()]
        lines.append(
            f"| {t} | {m} | "
            + " | ".join(f"{np.mean(sums[k]):.0f}" for k in ("sim_s", "train_s", "eval_s"))
            + f" | {np.mean(total):.0f} |"
        )
    if max(r["iteration"] for r in rows) > 1:
        for t in tasks:
            iters = sorted({r["iteration"] for r in rows if r["task"] == t})
            lines += ["", f"### {t}: {metric_for(t)} after each iteration", ""]
            lines += ["| method | " + " | ".join(str(i) for i in iters) + " |", "|---|" + "---|" * len(iters)]
            for m in methods:
                by_it = _group([r for r in rows if r["task"] == t and r["method"] == m], "iteration")
                vals = [mean_se([r[metric_for(t)] for r in by_it.get((i,), [])])[0] for i in iters]
                lines.append(f"| {m} | " + " | ".join("—" if math.isnan(v) else f"{v:.2f}" for v in vals) + " |")
    return lines


def _per_seed(rows, task: str, method: str, final: list[dict[str, Any]]) -> dict[str, dict[Any, float]]:
    """Per seed: the final figure minus the initial policy's, and the mean over iterations 1.."""
    metric = metric_for(task)
    ends = {r["seed"]: r[metric] for r in final if r["task"] == task and r["method"] == method and r["iteration"] > 0}
    start = next(r[metric] for r in rows if r["task"] == task and r["iteration"] == 0)
    means = _seed_curve_means(rows, task, method)
    return {"gain": {s: v - start for s, v in ends.items()}, "final": ends, "mean": means}


def _paired_summary(rows, tasks: list[str], methods: list[str], final: list[dict[str, Any]]) -> list[str]:
    """Each method's gain over the initial policy, and MILE minus each other method paired by seed."""
    per = {(t, m): _per_seed(rows, t, m, final) for t in tasks for m in methods}
    lines = ["", "Final minus the initial policy (mean ± s.e. over seeds):", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_cell(list(per[(t, m)]["gain"].values())) for t in tasks) + " |")
    miles = [m for m in methods if m.split("@")[0] == "mile"]
    others = [m for m in methods if m.split("@")[0] != "mile"]
    for mile in miles:
        for key, what in (("final", "final"), ("mean", "mean over iterations")):
            lines += ["", f"{mile} minus each method, paired by seed ({what}; mean ± s.e. of the differences):", ""]
            lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
            for m in others:
                cells = []
                for t in tasks:
                    a, b = per[(t, mile)][key], per[(t, m)][key]
                    cells.append(_cell([a[s] - b[s] for s in sorted(set(a) & set(b), key=str)]))
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _human_timing_summary(rows, tasks: list[str]) -> list[str]:
    """How informative the simulated human's timing was on its records (the last iteration's figures)."""
    if not any("human_auc" in r for r in rows):
        return []
    final = [r for r in _final_rows(rows) if r["iteration"] > 0]
    lines = ["", "The simulated human's own timing on its records: AUC of its P(I=1|s), and nats per step "]
    lines[-1] += "over a constant rate (mean ± s.e. over cells):"
    lines += ["", "| | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for key in ("human_auc", "human_nats", "human_sigma"):
        vals = [_cell([r.get(key, math.nan) for r in final if r["task"] == t], 3) for t in tasks]
        lines.append(f"| {key} | " + " | ".join(vals) + " |")
    return lines


def _demos_summary(rows) -> list[str]:
    final = _final_rows(rows)
    lines = ["## demos: final success by number of expert demonstrations (MILE: none)", ""]
    for t in sorted({r["task"] for r in final}):
        counts = sorted({r["demos"] for r in final if r["task"] == t})
        lines += [f"### {t}", "", "| method | " + " | ".join(f"{c} demos" for c in counts) + " |"]
        lines.append("|---|" + "---|" * len(counts))
        for m in dict.fromkeys(r["method"] for r in final):
            cells = [
                _cell([r[metric_for(t)] for r in final if r["task"] == t and r["method"] == m and r["demos"] == c])
                for c in counts
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _prediction_summary(rows) -> list[str]:
    metrics = ("accuracy", "balanced_accuracy", "auc", "log_likelihood")
    lines = ["## prediction: held-out interventions of iteration k, predictors fit on iterations < k", ""]
    lines += ["mean ± s.e. over seeds x iterations", ""]
    for t in sorted({r["task"] for r in rows}):
        lines += [
            f"### {t}",
            "",
            "| predictor | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        task_rows = [r for r in rows if r["task"] == t]
        scored = _group(task_rows, "method", "predictor")
        methods = list(dict.fromkeys(r["method"] for r in task_rows))
        for method in methods:  # each MILE variant ran its own cells, so its rivals scored its data
            for p in dict.fromkeys(r["predictor"] for r in rows):
                sel = scored.get((method, p), [])
                name = p if len(methods) == 1 else f"{method}: {p}"
                lines.append(f"| {name} | " + " | ".join(_cell([r[m] for r in sel], 3) for m in metrics) + " |")
        majority = [r for r in task_rows if r["predictor"] == "majority"]
        n_steps, n_int = sum(r["steps"] for r in majority), sum(r["interventions"] for r in majority)
        over = " (all variants' cells together)" if len(methods) > 1 else ""
        lines += ["", f"{int(n_steps)} held-out steps, {int(n_int)} of them intervened{over}.", ""]
        lines += _paired_against_classifier(task_rows, methods)
    return lines


def _paired_against_classifier(rows, methods: list[str]) -> list[str]:
    """MILE minus the classifier on the same held-out iteration: the seeds' shared noise cancels."""
    lines = ["| MILE minus the classifier, paired by held-out iteration | auc | log_likelihood |", "|---|---|---|"]
    for method in methods:
        scored = _group([r for r in rows if r["method"] == method], "seed", "iteration")
        pairs = [{r["predictor"]: r for r in group} for group in scored.values()]
        pairs = [p for p in pairs if "mile" in p and "nn_classifier" in p]
        diffs = [
            _cell([float(p["mile"][m]) - float(p["nn_classifier"][m]) for p in pairs], 3)
            for m in ("auc", "log_likelihood")
        ]
        lines.append(f"| {method} | " + " | ".join(diffs) + " |")
    return [*lines, ""]


def _plot_learning(rows, out: Path, experiment: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    paths = []
    for xkey, name in (("iteration", "iteration"), ("intervened_steps", "intervened steps")):
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
        for ax, t in zip(axes[0], tasks):
            metric = metric_for(t)
            for m in methods:
                by_it = _group([r for r in rows if r["task"] == t and r["method"] == m], "iteration")
                its = sorted(k[0] for k in by_it)
                mean = np.array([mean_se([r[metric] for r in by_it[(i,)]])[0] for i in its])
                se = np.nan_to_num(np.array([mean_se([r[metric] for r in by_it[(i,)]])[1] for i in its]))
                x = np.array([np.mean([r[xkey] for r in by_it[(i,)]]) for i in its])
                ax.plot(x, mean, marker="o", ms=3, label=m)
                ax.fill_between(x, mean - se, mean + se, alpha=0.2)
            first = next(r for r in rows if r["task"] == t)
            expert = first["expert_return" if metric == "mean_return" else "expert_success"]
            ax.axhline(expert, color="k", ls="--", lw=1, label="expert")
            ax.set_title(t)
            ax.set_xlabel(name)
            ax.set_ylabel("return" if metric == "mean_return" else "success rate")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{experiment}_success_vs_{xkey}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_demos(rows, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final = _final_rows(rows)
    tasks = sorted({r["task"] for r in final})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        metric = metric_for(t)
        counts = sorted({r["demos"] for r in final if r["task"] == t})
        for m in dict.fromkeys(r["method"] for r in final):
            sel = [r for r in final if r["task"] == t and r["method"] == m]
            if m.startswith("mile"):
                mean, se, _ = mean_se([r[metric] for r in sel])
                ax.axhline(mean, color="k", ls="--", lw=1.5, label=f"{m} (no demos)")
                if math.isfinite(se):
                    ax.axhspan(mean - se, mean + se, color="k", alpha=0.1, lw=0)
                continue
            stats = [mean_se([r[metric] for r in sel if r["demos"] == c]) for c in counts]
            ax.errorbar(counts, [s[0] for s in stats], yerr=np.nan_to_num([s[1] for s in stats]), marker="o", label=m)
        ax.set_title(t)
        ax.set_xlabel("expert demonstrations")
        ax.set_ylabel("return" if metric == "mean_return" else "success rate")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "demos_success_vs_demos.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _label_demos(rows) -> list[dict[str, Any]]:
    """Rows whose method names carry their demonstration count ("iwr +5 demos"), so that the
    per-method tables of the ablation keep each count apart instead of averaging over them."""
    return [{**r, "method": f"{r['method']} +{r['demos']} demos"} if r["demos"] else r for r in rows]


def _cell_key(row: dict[str, Any]) -> tuple:
    return (row["task"], row["method"], row["seed"], row["demos"])


def write_report(csv_path: Path, out: Path | None = None) -> Path:
    """Write ``<experiment>_summary.md`` and the plots next to the CSV; returns the summary's path."""
    csv_path = Path(csv_path)
    out = Path(out or csv_path.parent)
    rows = load_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} holds no rows")
    experiment = rows[0]["experiment"]
    failed = {_cell_key(r): r["error"] for r in rows if r.get("error")}
    rows = [r for r in rows if _cell_key(r) not in failed]  # a failed cell is reported, not averaged
    if not rows:
        lines, plots = [], []
    elif experiment == "prediction":
        lines, plots = _prediction_summary(rows), []
    elif experiment == "demos":
        lines = [*_learning_summary(_label_demos(rows), experiment), "", *_demos_summary(rows)]
        plots = _plot_demos(rows, out)
    else:
        lines, plots = _learning_summary(rows, experiment), _plot_learning(rows, out, experiment)
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    if failed:
        lines += ["", "## Failed cells (left out of every table and plot above)", ""]
        lines += [
            f"- {task} {method} seed {seed} demos {demos}: {error}"
            for (task, method, seed, demos), error in failed.items()
        ]
    path = out / f"{experiment}_summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
