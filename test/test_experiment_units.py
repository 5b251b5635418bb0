"""The benchmark's bookkeeping without simulation: scores, plans, method options, resumable CSV, report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mile_ros.experiments import (
    BenchmarkPlan,
    Cell,
    get_preset,
    load_rows,
    parse_method,
    plan_cells,
    prediction_scores,
    write_report,
)
from mile_ros.experiments.runner import append_rows, completed_keys


def test_prediction_scores_match_their_definitions():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.25
    p = np.clip(0.25 + 0.4 * y + 0.2 * rng.standard_normal(300), 0.01, 0.99)
    s = prediction_scores(p, y)
    pairs = (p[y][:, None] > p[~y][None, :]).mean() + 0.5 * (p[y][:, None] == p[~y][None, :]).mean()
    assert s["auc"] == pytest.approx(pairs)
    guess = p >= 0.5
    assert s["accuracy"] == pytest.approx((guess == y).mean())
    assert s["balanced_accuracy"] == pytest.approx(0.5 * (guess[y].mean() + (~guess[~y]).mean()))
    assert s["log_likelihood"] == pytest.approx(np.mean(np.where(y, np.log(p), np.log(1 - p))))
    assert (s["steps"], s["interventions"]) == (300, int(y.sum()))
    majority = prediction_scores(np.full(300, y.mean()), y)
    assert majority["balanced_accuracy"] == pytest.approx(0.5)
    assert majority["auc"] == pytest.approx(0.5)
    assert math.isnan(prediction_scores(np.full(4, 0.2), np.zeros(4, bool))["auc"])
    with pytest.raises(ValueError):
        prediction_scores(np.ones(3), np.ones(2, bool))


def test_method_options_parse_into_typed_overrides():
    assert parse_method("iwr") == ("iwr", {})
    name, opts = parse_method("mile@continuous_form=authors,learn_cost=true,epochs=40,lr=1e-3")
    assert name == "mile"
    assert opts == {"continuous_form": "authors", "learn_cost": True, "epochs": 40, "lr": 1e-3}
    with pytest.raises(ValueError, match="key=value"):
        parse_method("mile@authors")
    assert parse_method("mile@paper,lr=1e-4") == ("mile", {"variant": "paper", "lr": 1e-4})


def test_a_plan_refuses_method_settings_no_cell_could_train_with():
    """Resolved against every task's preset before any cell runs, not found by every cell failing."""
    for bad, why in (("mile@epochz=3", "unknown setting"), ("iwr@paper", "no variant"), ("dagger", "unknown method")):
        with pytest.raises(ValueError, match=why):
            plan_cells(BenchmarkPlan("iterative", ["drawer-open-v3"], [bad], [0], 3, 1))
    paper = plan_cells(BenchmarkPlan("single", ["peg-insert-side-v3"], ["mile@paper"], [0], 1, 1))
    assert paper[0].method == "mile@paper"


def test_a_cell_trains_a_methods_variant_with_the_tasks_values():
    from mile_ros.experiments.cells import Cell, train_for_cell
    from mile_ros.learning import MileCheckpoint, Spec, build_policy
    from mile_ros.learning.synthetic import make_ground_truth, sample_record

    spec = Spec(8, 4, frame_stack=0)
    data = sample_record(make_ground_truth(spec, seed=0), episodes=2, steps=20, seed=1)
    init = MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (8,)))
    cell = Cell("iterative", "peg-insert-side-v3", "mile@paper,epochs=2", seed=1, iterations=3, episodes=1)
    trained = train_for_cell(cell.method, data, init, cell, get_preset("quick"), 2, None)
    config = trained.meta["config"]
    assert (config["policy_std"], config["cost"], config["sigma"], config["lr"]) == ("state", 75.0, 175.0, 5e-6)
    assert config["epochs"] == 2 and config["seed"] == 1002 and trained.meta["epochs_run"] == 2


def test_a_cell_gives_demonstrations_only_to_a_method_that_gets_them():
    """The demonstration rule is the method's own (``GETS_DEMOS``), the same for the plan and the
    cell: the rows each method trained on tell whether the demonstrations reached it."""
    from mile_ros import baselines
    from mile_ros.experiments.cells import Cell, train_for_cell
    from mile_ros.learning import MileCheckpoint, Spec, build_policy
    from mile_ros.learning.synthetic import make_ground_truth, sample_record

    spec = Spec(8, 4, frame_stack=0)
    truth = make_ground_truth(spec, seed=0)
    data = sample_record(truth, episodes=2, steps=20, seed=1)
    demos = sample_record(truth, episodes=1, steps=10, seed=2)
    init = MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (8,)))
    rows = {}
    for method in ("mile@epochs=1", "mile_temporal@epochs=1,window=8", "iwr@epochs=1"):
        cell = Cell("demos", "drawer-open-v3", method, seed=1, iterations=3, episodes=1, demos=1)
        trained = train_for_cell(method, data, init, cell, get_preset("quick"), 1, demos)
        name = method.split("@")[0]
        rows[name] = trained.meta.get("train_rows", trained.meta.get("bc_rows"))
        assert rows[name] == len(data) + (len(demos) if baselines.gets_demos(name) else 0), method
    assert rows == {"mile": 40, "mile_temporal": 40, "iwr": 50}


def test_plans_give_demos_to_the_baselines_only_and_single_is_one_iteration():
    plan = BenchmarkPlan("demos", ["drawer-open-v3"], ["mile", "iwr", "mile_temporal@window=8"], [0, 1], 3, 1, (0, 5))
    cells = plan_cells(plan)
    assert sorted((c.method, c.seed, c.demos) for c in cells) == [
        ("iwr", 0, 0),
        ("iwr", 0, 5),
        ("iwr", 1, 0),
        ("iwr", 1, 5),
        ("mile", 0, 0),
        ("mile", 1, 0),
        ("mile_temporal@window=8", 0, 0),
        ("mile_temporal@window=8", 1, 0),
    ]
    single = plan_cells(BenchmarkPlan("single", ["a"], ["mile"], [0], 20, 5))
    assert single[0].iterations == 1
    pred = plan_cells(BenchmarkPlan("prediction", ["a"], ["mile", "iwr", "mile@freeze_mental=true"], [0, 1], 3, 1))
    assert [(c.method, c.seed) for c in pred] == [
        ("mile", 0),
        ("mile@freeze_mental=true", 0),
        ("mile", 1),
        ("mile@freeze_mental=true", 1),
    ]
    with pytest.raises(ValueError, match="name mile or mile@"):
        plan_cells(BenchmarkPlan("prediction", ["a"], ["iwr"], [0], 3, 1))
    with pytest.raises(ValueError, match="at least 2 iterations"):
        plan_cells(BenchmarkPlan("prediction", ["a"], ["mile"], [0], 1, 1))
    with pytest.raises(ValueError, match="unknown experiment"):
        plan_cells(BenchmarkPlan("fig9", ["a"], ["mile"], [0], 1, 1))


def _rows(method: str, seed: int, successes: list[float], demos: int = 0, experiment: str = "iterative") -> list[dict]:
    rows = []
    for it, s in enumerate(successes):
        rows.append(
            {
                "experiment": experiment,
                "task": "drawer-open-v3",
                "method": method,
                "seed": seed,
                "demos": demos,
                "episodes_per_iteration": 1,
                "expert_success": 0.9,
                "expert_return": 4000.0,
                "human_cost": 100.0,
                "human_sigma": 75.0,
                "iteration": it,
                "steps_total": 500 * it,
                "intervened_steps": 50 * it,
                "intervention_rate": 0.1,
                "success_rate": s,
                "success_se": 0.1,
                "mean_return": 100 * s,
                "sim_s": 1.0,
                "train_s": 2.0,
                "eval_s": 3.0,
                "cell_s": 6.0 * it,
            }
        )
    return rows


def test_csv_resume_keys_and_report(tmp_path):
    path = tmp_path / "iterative.csv"
    append_rows(path, _rows("mile", 0, [0.1, 0.5, 0.7]))
    append_rows(path, _rows("mile", 1, [0.1, 0.3, 0.9]))
    append_rows(path, _rows("iwr", 0, [0.1, 0.2, 0.2]))
    done = completed_keys(path)
    assert done == {("iterative", "drawer-open-v3", m, s, "0") for m, s in (("mile", "0"), ("mile", "1"), ("iwr", "0"))}
    cell = Cell("iterative", "drawer-open-v3", "mile", 1, 2, 1)
    assert cell.key in done
    assert Cell("iterative", "drawer-open-v3", "mile", 2, 2, 1).key not in done
    rows = load_rows(path)
    assert len(rows) == 9 and rows[0]["seed"] == 0 and rows[-1]["success_rate"] == pytest.approx(0.2)
    summary = write_report(path).read_text()
    assert "| mile | 0.80 ± 0.10 (n=2) |" in summary  # final success: (0.7 + 0.9) / 2, s.e. 0.1
    assert "| iwr | 0.20 (n=1) |" in summary
    curve = summary.split("area under the learning curve")[1].split("Final minus")[0]
    assert "| mile | 0.60 ± 0.00 (n=2) |" in curve  # iterations 1-2: (0.5 + 0.7) / 2 and (0.3 + 0.9) / 2
    gain = summary.split("Final minus the initial policy")[1].split("paired by seed")[0]
    assert "| mile | 0.70 ± 0.10 (n=2) |" in gain and "| iwr | 0.10 (n=1) |" in gain
    paired = summary.split("mile minus each method, paired by seed (final")[1].split("mean over iterations")[0]
    assert "| iwr | 0.50 (n=1) |" in paired  # seed 0 only: both methods ran it (0.7 - 0.2)
    assert (tmp_path / "iterative_success_vs_iteration.png").stat().st_size > 1000
    assert (tmp_path / "iterative_success_vs_intervened_steps.png").stat().st_size > 1000


def test_demos_report_keeps_each_demonstration_count_apart(tmp_path):
    path = tmp_path / "demos.csv"
    for seed in (0, 1):
        append_rows(path, _rows("mile", seed, [0.4, 0.8], experiment="demos"))
        append_rows(path, _rows("iwr", seed, [0.4, 0.2], experiment="demos"))
        append_rows(path, _rows("iwr", seed, [0.4, 0.6 + 0.2 * seed], demos=5, experiment="demos"))
    summary = write_report(path).read_text()
    assert "| iwr | 0.20 ± 0.00 (n=2) |\n" in summary  # not averaged with the 5-demo cells
    assert "| iwr +5 demos | 0.70 ± 0.10 (n=2) |" in summary
    assert "| iwr | 0.20 ± 0.00 (n=2) | 0.70 ± 0.10 (n=2) |" in summary  # the by-count table
    assert "| mile | 0.80 ± 0.00 (n=2) | — |" in summary
    assert (tmp_path / "demos_success_vs_demos.png").stat().st_size > 1000


def test_prediction_report_keeps_each_mile_variant_apart(tmp_path):
    path = tmp_path / "prediction.csv"
    for method, auc in (("mile", 0.5), ("mile@freeze_mental=true", 0.7)):
        for seed in (0, 1):
            rows = [
                {
                    "experiment": "prediction",
                    "task": "drawer-open-v3",
                    "method": method,
                    "seed": seed,
                    "demos": 0,
                    "predictor": predictor,
                    "iteration": 2,
                    "accuracy": 0.8,
                    "balanced_accuracy": 0.5,
                    "auc": value + 0.1 * seed,
                    "log_likelihood": -0.5,
                    "steps": 100,
                    "interventions": 20,
                }
                for predictor, value in (("mile", auc), ("nn_classifier", 0.6 - 0.1 * seed), ("majority", 0.5))
            ]
            append_rows(path, rows)
    summary = write_report(path).read_text()
    assert "| mile: mile | 0.800 ± 0.000 (n=2) | 0.500 ± 0.000 (n=2) | 0.550 ± 0.050 (n=2) |" in summary
    frozen = "| mile@freeze_mental=true: mile | 0.800 ± 0.000 (n=2) | 0.500 ± 0.000 (n=2) | 0.750 ± 0.050 (n=2) |"
    assert frozen in summary
    assert "400 held-out steps, 80 of them intervened (all variants' cells together)." in summary
    # paired by seed and iteration: MILE 0.5 - 0.6 and 0.6 - 0.6
    assert "| mile | -0.050 ± 0.050 (n=2) | 0.000 ± 0.000 (n=2) |" in summary
    assert "| mile@freeze_mental=true | 0.150 ± 0.050 (n=2) | 0.000 ± 0.000 (n=2) |" in summary


def test_resuming_with_other_settings_is_refused(tmp_path):
    from mile_ros.experiments.runner import check_settings

    plan = BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 1, preset="quick")
    check_settings(tmp_path, plan)
    check_settings(tmp_path, plan)  # same settings: resuming is fine
    with pytest.raises(ValueError, match=r"episodes 1 \(now 3\)"):
        check_settings(tmp_path, BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 3, preset="quick"))
    check_settings(tmp_path, BenchmarkPlan("single", ["drawer-open-v3"], ["mile"], [0], 6, 3))  # another experiment
    with pytest.raises(ValueError, match=r"train_from 'initial' \(now 'previous'\)"):
        resume = BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 1, train_from="previous")
        check_settings(tmp_path, resume)


def test_runs_stored_before_train_from_existed_resume_only_as_previous(tmp_path):
    import json

    from mile_ros.experiments.runner import check_settings

    old = {"iterations": 6, "episodes": 1, "preset": "quick", "refit_mental": False}
    (tmp_path / "iterative.settings.json").write_text(json.dumps(old))
    then = {"train_from": "previous", "belief": "frozen"}
    check_settings(tmp_path, BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 1, **then))
    with pytest.raises(ValueError, match=r"train_from 'previous' \(now 'initial'\)"):
        check_settings(tmp_path, BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 1, belief="frozen"))
    # before the belief option, the human's belief was the initial policy's throughout
    with pytest.raises(ValueError, match=r"belief 'frozen' \(now 'tracking'\)"):
        check_settings(
            tmp_path, BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 1, train_from="previous")
        )
    with pytest.raises(ValueError, match="unknown belief"):
        plan_cells(BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 6, 1, belief="psychic"))


def test_the_humans_options_are_checked_and_part_of_the_stored_settings(tmp_path):
    import json

    from mile_ros.experiments.runner import check_settings

    for bad, message in (
        ({"sigma": 0.0}, "must be a positive number"),
        ({"sigma": math.nan}, "must be a positive number"),
        ({"sigma": "wide"}, "must be a positive number"),
        ({"min_takeover_steps": 0}, "at least 1"),
        ({"min_takeover_steps": 2.5}, "at least 1"),
        ({"action_mode": "telepathy"}, "action_mode must be one of eq3, authors, expert"),
        ({"patience": 3}, "unknown simulated-human option"),
    ):
        with pytest.raises(ValueError, match=message):
            plan_cells(BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 3, 1, human=bad))
    held = BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 3, 1, human={"min_takeover_steps": 10})
    check_settings(tmp_path, held)
    with pytest.raises(ValueError, match=r"human \{'min_takeover_steps': 10\} \(now \{\}\)"):
        check_settings(tmp_path, BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 3, 1))
    # a run stored before the option existed used the presets' human
    old = {
        "iterations": 3,
        "episodes": 1,
        "preset": "quick",
        "refit_mental": False,
        "train_from": "initial",
        "belief": "tracking",
    }
    (tmp_path / "iterative.settings.json").write_text(json.dumps(old))
    check_settings(tmp_path, BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 3, 1))
    with pytest.raises(ValueError, match=r"human \{\} \(now \{'min_takeover_steps': 10\}\)"):
        check_settings(tmp_path, held)


def test_train_from_reaches_every_cell_and_rejects_unknown_values():
    plan = BenchmarkPlan("demos", ["drawer-open-v3"], ["mile", "iwr"], [0, 1], 3, 1, (0, 5), train_from="previous")
    cells = plan_cells(plan)
    assert len(cells) == 2 * (1 + 2) and {c.train_from for c in cells} == {"previous"}
    with pytest.raises(ValueError, match="unknown train_from 'scratch'"):
        plan_cells(BenchmarkPlan("iterative", ["drawer-open-v3"], ["mile"], [0], 3, 1, train_from="scratch"))


def test_quick_preset_trains_like_the_paper_and_only_measures_less():
    """The common 1e-3 of the old quick preset over-trained (docs/results-history.md); quick trains as the paper."""
    quick, paper = get_preset("quick"), get_preset("paper")
    for method in ("mile", "hg_dagger", "iwr", "sirius", "bc_intervention"):
        assert quick.overrides(method) == paper.overrides(method) == {}
    assert quick.eval_episodes < paper.eval_episodes
    assert quick.mental_rollouts == paper.mental_rollouts >= 100  # the human's belief is fit as the paper's


def test_the_diagnosis_measures_a_policy_against_the_experts_actions_on_real_states():
    import torch

    from mile_ros.experiments.diagnose import diagnose, expert_actions
    from mile_ros.learning import InterventionDataset, MileCheckpoint, build_policy
    from mile_ros.sim import make_env
    from mile_ros.sim.experts import make_expert

    task = "drawer-open-v3"
    env = make_env(task, seed=3)
    try:
        spec, expert = env.spec, make_expert(task, env)
        frames = [env.reset(seed=3)]
        rng = np.random.default_rng(0)
        for _ in range(29):
            frames.append(env.step(rng.uniform(-1, 1, spec.act_dim).astype(np.float32)).obs)
    finally:
        env.close()
    obs = np.stack(frames).astype(np.float32)
    n = len(obs)
    flag = np.arange(n) % 3 == 0
    human = np.where(flag[:, None], np.full((n, spec.act_dim), 0.5), np.nan).astype(np.float32)
    record = InterventionDataset(
        spec, obs, np.zeros((n, spec.act_dim), np.float32), flag, human, np.zeros(n, int), np.arange(n)
    )
    want = expert_actions(task, record)
    np.testing.assert_allclose(want, np.stack([expert.act(f) for f in obs]))

    torch.manual_seed(0)
    policy = build_policy(spec.stacked_dim, spec.act_dim, False, (16,), "shared")
    mental = build_policy(spec.stacked_dim, spec.act_dim, False, (16,), "shared")
    with torch.no_grad():
        policy.mean_head.bias.fill_(2.0)  # every mean component outside the [-1, 1] bounds
    row = diagnose(MileCheckpoint(spec, policy, mental, 1.0, 1.0), record, want)
    with torch.no_grad():
        mean = policy(torch.from_numpy(record.stacked_observations()))[0].numpy()
    assert row["err_all"] == pytest.approx(float(np.sqrt(np.mean((mean - want) ** 2))), rel=1e-5)
    assert row["err_human"] == pytest.approx(float(np.sqrt(np.mean((mean[flag] - want[flag]) ** 2))), rel=1e-5)
    assert row["out_of_bounds"] == 1.0 and row["std_min"] == row["std_max"]
    assert 0.0 <= row["p_int_median"] <= 1.0 and 0.0 <= row["auc"] <= 1.0 and math.isfinite(row["nats_over_rate"])
    without_model = diagnose(MileCheckpoint(spec, policy), record, want)
    assert math.isnan(without_model["auc"]) and without_model["err_all"] == row["err_all"]
