"""``mile-ros train --bags``: the trainer once, outside the graph, with precise errors."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")  # the test writes its bags with rclpy's serializer

from test_graph_bags import OBS_DIM, write_episode

from mile_ros.cli.main import main
from mile_ros.learning import MileCheckpoint, MileConfig, Spec, build_policy, load_checkpoint


def test_train_command(tmp_path, capsys):
    for k in range(2):
        write_episode(tmp_path / "bags" / f"ep{k}", 12, human_steps={1, 2}, seed=k)
    (tmp_path / "bags" / "zz").mkdir()
    (tmp_path / "bags" / "zz" / "zz.mcap").write_bytes(b"junk")
    spec = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (8,))).save(tmp_path / "init.pt")
    args = [
        "train",
        "--bags",
        str(tmp_path / "bags"),
        "--init",
        str(tmp_path / "init.pt"),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--cost",
        "1",
        "--sigma",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "new.pt")]) == 0
    out = capsys.readouterr()
    assert "24 steps from 2 bags" in out.out and "zz" in out.err
    meta = load_checkpoint(tmp_path / "new.pt", expected=spec).meta
    assert meta["rows"] == 24
    # given settings win; the rest are the chosen MILE's (anchor on, lr 1e-4)
    assert meta["config"]["cost"] == 1 and meta["config"]["epochs"] == 2
    assert meta["config"]["lambda_mental"] == MileConfig().lambda_mental == 1.0
    assert meta["config"]["lr"] == MileConfig().lr
    assert main([*args, "--out", str(tmp_path / "new.pt")]) == 2  # never overwrites
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--bags",
                str(tmp_path / "nowhere"),
                "--init",
                str(tmp_path / "init.pt"),
                "--out",
                str(tmp_path / "x.pt"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_train_with_the_initial_policys_demonstrations_as_prior(tmp_path, capsys):
    import numpy as np

    from mile_ros.learning import InterventionDataset

    write_episode(tmp_path / "bags" / "ep0", 12, human_steps={1, 2}, seed=0)
    spec = Spec(OBS_DIM, 4, action_low=(-1,) * 4, action_high=(1,) * 4)
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (8,))).save(tmp_path / "init.pt")
    rows = 30
    act = np.full((rows, 4), 0.5, np.float32)
    demos = InterventionDataset(
        spec,
        np.zeros((rows, OBS_DIM)),
        act,
        np.zeros(rows, bool),
        np.full_like(act, np.nan),
        np.zeros(rows),
        np.arange(rows),
    )
    demos.save(tmp_path / "init-demos.npz")
    args = ["train", "--bags", str(tmp_path / "bags"), "--init", str(tmp_path / "init.pt"), "--epochs", "2"]
    assert main([*args, "--prior", str(tmp_path / "init-demos.npz"), "--out", str(tmp_path / "a.pt")]) == 0
    meta = load_checkpoint(tmp_path / "a.pt", expected=spec).meta
    assert meta["prior_rows"] == rows and meta["rows"] == 12
    capsys.readouterr()
    # a prior of another shape, or a file that is not one, is refused by name and nothing is written
    other = Spec(OBS_DIM + 1, 4)
    InterventionDataset(
        other,
        np.zeros((3, OBS_DIM + 1)),
        np.zeros((3, 4)),
        np.zeros(3, bool),
        np.full((3, 4), np.nan),
        np.zeros(3),
        np.arange(3),
    ).save(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    for bad, why in (("other.npz", "does not fit"), ("junk.npz", "cannot read the prior")):
        assert main([*args, "--prior", str(tmp_path / bad), "--out", str(tmp_path / "b.pt")]) == 2
        assert why in capsys.readouterr().err
        assert not (tmp_path / "b.pt").exists()


def test_train_help_states_the_defaults_it_uses(capsys):
    """The help text names the defaults without importing torch; they must not drift from MileConfig."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = MileConfig()
    for phrase in (
        f"epochs (MILE's default {d.epochs})",
        f"minibatch size (default {d.batch_size})",
        f"learning rate (MILE's default {d.lr:.0e}".replace("e-0", "e-"),
        "cost c starts (default: the bags' own rate decides)" if d.cost_from_rate else f"starts (default {d.cost:g})",
        f"sigma starts (default {d.sigma:g}; both are fitted)",
        f"anchor weight (default {d.lambda_mental:g};",
    ):
        assert phrase in text, phrase
