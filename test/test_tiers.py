"""The two test tiers (test/conftest.py): ``slow`` is a registered marker, and a run that tests nothing fails.

Each case runs pytest in a child process on a small suite beside a copy of the project's conftest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

SUITE = {
    "test_fast.py": "def test_fast():\n    pass\n",
    "test_slow.py": "import pytest\n\npytestmark = pytest.mark.slow\n\n\ndef test_slow():\n    pass\n",
    "test_skipped.py": "import pytest\n\n\n@pytest.mark.skip(reason='r')\ndef test_skipped():\n    pass\n",
}


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestUnknownMarkWarning",
            *args,
        ],
        cwd=folder,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # only pytest and this conftest
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def suite(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "code", "outcome"),
    [
        (("-m", "not slow"), 0, "1 passed, 1 skipped, 1 deselected"),
        ((), 0, "2 passed, 1 skipped"),
        (("-m", "not slow", "test_slow.py"), 5, "1 deselected"),  # the tier keeps nothing
        (("test_skipped.py",), 5, "1 skipped"),  # every test skipped: nothing tested
        (("-k", "no_such_test"), 5, "3 deselected"),
    ],
)
def test_the_tiers_select_and_a_run_that_tests_nothing_fails(suite, args, code, outcome):
    proc = pytest_in(suite, *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert outcome in proc.stdout, proc.stdout
    if code == 5 and "skipped" in outcome:
        assert "nothing was tested, which counts as a failure" in proc.stdout


def test_slow_is_a_registered_marker(suite):
    proc = pytest_in(suite, "--markers")
    assert proc.returncode == 0 and "@pytest.mark.slow:" in proc.stdout
