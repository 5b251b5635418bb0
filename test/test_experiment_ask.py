"""The asking-for-help measurement's command line refuses what it cannot run (the run itself: the
smoke command in docs/learning.md, "Asking for help")."""

from __future__ import annotations

import pytest

from mile_ros.experiments import ask_for_help


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--iterations", "1"], "at least 2"),
        (["--episodes", "0"], "at least 1"),
        (["--thresholds", "1.5"], "probability"),
        (["--timeout-steps", "0"], "ask_timeout_steps"),
        (["--cooldown-steps", "-1"], "ask_cooldown_steps"),
        (["--answer-steps", "0"], "answer-steps"),
        (["--conditions", "sometimes"], "invalid choice"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, capsys, extra, message) -> None:
    with pytest.raises(SystemExit) as exc:
        ask_for_help.main(["--out", str(tmp_path), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()
