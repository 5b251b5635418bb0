"""``mile-ros train --bags``: the trainer once, outside the graph, with precise errors."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")  # the test writes its bags with rclpy's serializer

from test_graph_bags import OBS_DIM, write_episode

from mile_ros.cli.main import main
from mile_ros.learning import MileCheckpoint, Spec, build_policy, load_checkpoint


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
    assert load_checkpoint(tmp_path / "new.pt", expected=spec).meta["rows"] == 24
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
