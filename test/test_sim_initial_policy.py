"""Initial policies: reproducible from a seed, mediocre as intended, made by ``mile-ros init-policy``."""

from __future__ import annotations

import pytest
import torch

from mile_ros.cli.main import main
from mile_ros.learning import load_checkpoint
from mile_ros.sim import evaluate, load_preset, make_initial_policy


def test_init_policy_command_is_reproducible(tmp_path, capsys) -> None:
    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    assert main(["init-policy", "--task", "LunarLander-v3", "--out", str(a), "--seed", "0"]) == 0
    assert main(["init-policy", "--task", "LunarLander-v3", "--out", str(b), "--seed", "0"]) == 0
    assert main(["init-policy", "--task", "LunarLander-v3", "--out", str(c), "--seed", "1"]) == 0
    assert "LunarLander-v3" in capsys.readouterr().out
    ka, kb, kc = (load_checkpoint(p) for p in (a, b, c))
    sa, sb, sc = (k.policy.state_dict() for k in (ka, kb, kc))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    spec = ka.spec
    assert (spec.frame_stack, spec.obs_source, spec.discrete) == (3, "state", True)
    assert ka.mental is None
    # the demonstrations it was cloned from are kept beside it, for the trainers' prior
    from mile_ros.learning import InterventionDataset

    demos = InterventionDataset.load(tmp_path / "a-demos.npz")
    assert demos.spec == spec and len(demos) == ka.meta["demo_steps"]
    # A low return, well below the heuristic expert's ~260.
    lo, hi = load_preset("LunarLander-v3")["initial_policy"]["band"]
    assert lo <= ka.meta["check"] <= hi


def test_init_policy_command_refuses_unknown_task(tmp_path, capsys) -> None:
    assert main(["init-policy", "--task", "nope-v3", "--out", str(tmp_path / "x.pt")]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_metaworld_initial_policy_is_mediocre() -> None:
    result = make_initial_policy("drawer-open-v3", seed=0)
    lo, hi = result.checkpoint.meta["band"]
    assert result.in_band and lo <= result.check_metric <= hi
    assert result.checkpoint.spec.obs_dim == 39 and result.checkpoint.spec.stacked_dim == 156
    # An independent quick check on the evaluation seeds: not an expert (the expert solves them all).
    quick = evaluate("drawer-open-v3", result.checkpoint, episodes=8, seed=0, workers=1)
    assert quick.success_rate <= 0.75
