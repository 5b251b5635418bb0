"""Shared test set-up: the ``slow`` marker of the two tiers, and fixtures more than one file uses.

The fast tier (``scripts/test.sh --fast``, i.e. ``-m "not slow"``) is what to run on every change;
the full suite (``scripts/test.sh``) is CI's. A test is ``slow`` when it alone takes more than a
few seconds on a busy 2-core machine: whole sessions, node processes over DDS, benchmark runs.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here rather than in setup.cfg so that the marker travels with the tests.
    config.addinivalue_line(
        "markers", "slow: takes seconds to minutes (sessions, node processes, benchmarks); left out of the fast tier"
    )


def _nothing_tested(config: pytest.Config, exitstatus: int) -> bool:
    """A run that would pass but ran no test: pytest itself fails one that collects nothing (exit 5);
    one whose every test was skipped (a missing extra, a marker expression that keeps only skipped
    tests) tested nothing either."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus != pytest.ExitCode.OK or reporter is None or config.option.collectonly:
        return False
    return not reporter.stats.get("passed") and not reporter.stats.get("xpassed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _nothing_tested(session.config, exitstatus):
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _nothing_tested(config, exitstatus):
        terminalreporter.write_sep(
            "=", "every test was skipped: nothing was tested, which counts as a failure", red=True
        )


@pytest.fixture
def init(tmp_path):
    """A small untrained initial policy for drawer-open-v3, as ``mile-ros sim --init-policy`` takes."""
    from mile_ros.learning import MileCheckpoint, build_policy
    from mile_ros.sim import make_env

    spec = make_env("drawer-open-v3").spec
    path = tmp_path / "init.pt"
    MileCheckpoint(spec, build_policy(spec.stacked_dim, 4, False, (32, 32))).save(path)
    return path
