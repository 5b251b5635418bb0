"""Small helpers the benchmarks share for what they print."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["load_average", "percentile", "percentiles"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as numpy's default)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def percentiles(values_ms: Sequence[float]) -> str:
    """``p50 …, p99 …, max … (n=…)`` of latencies in milliseconds."""
    if len(values_ms) == 0:
        return "no samples"
    return (
        f"p50 {percentile(values_ms, 50):.2f} ms, p99 {percentile(values_ms, 99):.2f} ms, "
        f"max {max(values_ms):.2f} ms (n={len(values_ms)})"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for the line that says how busy the machine was."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())
