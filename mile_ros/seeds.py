"""Episode and update seeds shared by the offline benchmark and the ROS session.

One scheme for both, so that a session through the node graph and a benchmark cell of the same
seed run the same episodes and updates (``test/test_session_sim.py`` checks the graph's record
against the offline one step for step). No imports: the graph's session bookkeeping uses it too.
"""

from __future__ import annotations

__all__ = ["COLLECT_SEED", "EVAL_SEED", "SELECT_SEED", "collect_seed", "eval_seed", "update_seed"]

EVAL_SEED = 0  # every method and seed is evaluated on episodes EVAL_SEED .. EVAL_SEED + n - 1
COLLECT_SEED = 10_000  # intervention episodes never reuse evaluation seeds
# Model selection by rollouts (the authors' protocol, benchmark only) scores candidates on episodes
# SELECT_SEED .. SELECT_SEED + n - 1: never the evaluation episodes that report the result.
SELECT_SEED = 5_000_000


def eval_seed(k: int) -> int:
    """Evaluation episode ``k``: the same episodes for every run, seed and iteration."""
    return EVAL_SEED + k


def collect_seed(seed: int, episodes_per_iteration: int, iteration: int, k: int) -> int:
    """Intervention episode ``k`` of ``iteration`` (0 = the first round, run by the initial policy)."""
    return COLLECT_SEED + 1000 * seed + episodes_per_iteration * iteration + k


def update_seed(seed: int, update: int) -> int:
    """Training seed of update number ``update`` (1 = the first) of a run with this ``seed``."""
    return 1000 * seed + update
