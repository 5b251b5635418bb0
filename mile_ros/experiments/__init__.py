"""The paper's simulation experiments (Figs. 3, 4, 5 and 7's question) over the sim API and the baselines.

Each experiment is a plan of cells (task x method x seed); :func:`run_benchmark` runs them over a
process pool with a resumable CSV, and :func:`write_report` turns the CSV into a markdown summary
and plots. ``mile-ros benchmark`` is the command-line front end.
"""

from .cells import Cell, run_cell
from .metrics import prediction_scores
from .presets import PRESETS, ExperimentPreset, get_preset, parse_method
from .report import load_rows, write_report
from .runner import EXPERIMENTS, BenchmarkPlan, plan_cells, run_benchmark

__all__ = [
    "EXPERIMENTS",
    "PRESETS",
    "BenchmarkPlan",
    "Cell",
    "ExperimentPreset",
    "get_preset",
    "load_rows",
    "parse_method",
    "plan_cells",
    "prediction_scores",
    "run_benchmark",
    "run_cell",
    "write_report",
]
