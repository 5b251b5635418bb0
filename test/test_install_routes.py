"""The package installed without colcon: a wheel (``pip install .``) into a folder (``--target``) and
into a prefix (``--prefix``, as a venv or /usr/local), each used from outside the checkout with
AMENT_PREFIX_PATH unset; and the finder's own rules. (The colcon install: test_package_layout.py.)

The wheel is built once from this checkout (no dependencies, no build isolation: seconds) and installed
with ``--ignore-installed`` semantics, so the test environment's editable install is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pip(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT), cwd=out)
    [built] = out.glob("mile_ros-*.whl")
    return built


def outside_env(python_path: Path) -> dict[str, str]:
    """The installed copy first on the path, the checkout nowhere, AMENT_PREFIX_PATH unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    env.update(PYTHONPATH=str(python_path), COLUMNS="1000")
    return env


FINDER = (
    "import mile_ros, mile_ros.paths as p\n"
    "from mile_ros.graph.joy_mapping import load_joy_mapping, default_mapping_path\n"
    "from mile_ros.sim.presets import load_preset\n"
    "assert load_joy_mapping('ps3').name == 'ps3'\n"
    "print(mile_ros.__file__)\n"
    "print(p.find_data('config', 'sim.yaml'))\n"
    "print(default_mapping_path('ps3'))\n"
    "print(load_preset('drawer-open-v3')['preset_file'])\n"
    "print(p.find_data('launch', 'sim.launch.py'))\n"
)


def check_installed(site: Path, share: Path, scripts: Path, cwd: Path) -> None:
    env = outside_env(site)
    done = subprocess.run([sys.executable, "-c", FINDER], env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    module, config, joy, preset, launch = map(Path, done.stdout.split())
    assert module == site / "mile_ros" / "__init__.py"
    assert (config, joy, preset, launch) == (
        share / "config" / "sim.yaml",
        share / "config" / "joy_ps3.yaml",
        share / "sim" / "drawer-open-v3.yaml",
        share / "launch" / "sim.launch.py",
    )
    shown = subprocess.run(
        [str(scripts / "mile-ros"), "sim", "--help"], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert str(share / "config" / "sim.yaml") in shown.stdout
    finder = subprocess.run(
        [sys.executable, "-m", "mile_ros.paths", "config/joy_sdl.yaml"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert finder.returncode == 0, finder.stderr
    assert f"config/joy_sdl.yaml: {share / 'config' / 'joy_sdl.yaml'}" in finder.stdout


@pytest.mark.slow
def test_wheel_installed_into_a_target_folder(wheel, tmp_path):
    target = tmp_path / "target"
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    check_installed(target, target / "share" / "mile_ros", target / "bin", tmp_path)


@pytest.mark.slow
def test_wheel_installed_into_a_prefix_has_the_ament_layout(wheel, tmp_path):
    """The prefix is what ros2 launch needs: the index marker, share/mile_ros, and lib/mile_ros/<node>
    (each running the prefix's bin/<node>, which pip wrote for this interpreter)."""
    prefix = tmp_path / "prefix"
    pip("install", "--no-deps", "--ignore-installed", "--prefix", str(prefix), str(wheel))
    site = prefix / Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    check_installed(site, prefix / "share" / "mile_ros", prefix / "bin", tmp_path)
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "mile_ros").is_file()
    from mile_ros.nodes import NODES

    for name in (*NODES, "mile-ros"):
        wrapper = prefix / "lib" / "mile_ros" / name
        assert wrapper.is_file() and os.access(wrapper, os.X_OK), wrapper
    shown = subprocess.run(
        [str(prefix / "lib" / "mile_ros" / "mile-ros"), "sim", "--help"],
        env=outside_env(site),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and str(prefix / "share" / "mile_ros" / "config" / "sim.yaml") in shown.stdout


def test_finder_rules(tmp_path, monkeypatch):
    from mile_ros import paths

    # The checkout comes first: its files are this code's.
    assert paths.data_roots()[0] == ROOT
    assert paths.find_data("sim", "default.yaml") == ROOT / "sim" / "default.yaml"
    with pytest.raises(paths.DataNotFoundError, match=r"config/nothing\.yaml not found \(searched: .*config"):
        paths.find_data("config", "nothing.yaml")
    with pytest.raises(ValueError, match="unknown kind"):
        paths.find_data("models", "x.pt")
    with pytest.raises(ValueError, match="without folders"):
        paths.find_data("config", "../setup.py")
    # A prefix on AMENT_PREFIX_PATH counts only with the index marker and a package.xml naming mile_ros.
    fake = tmp_path / "share" / "mile_ros"
    (fake / "config").mkdir(parents=True)
    (fake / "config" / "only_here.yaml").write_text("{}")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    with pytest.raises(paths.DataNotFoundError):
        paths.find_data("config", "only_here.yaml")
    marker = tmp_path / paths.INDEX_MARKER
    marker.parent.mkdir(parents=True)
    marker.touch()
    (fake / "package.xml").write_text("<package><name>other_pkg</name></package>")
    with pytest.raises(paths.DataNotFoundError):
        paths.find_data("config", "only_here.yaml")
    (fake / "package.xml").write_text("<package><name>mile_ros</name></package>")
    assert paths.find_data("config", "only_here.yaml") == fake / "config" / "only_here.yaml"


def test_link_into_registers_the_checkout_in_a_prefix(tmp_path):
    from mile_ros import paths

    made = paths.link_into(tmp_path)
    assert (tmp_path / paths.INDEX_MARKER).is_file()
    for kind, pattern in paths.PATTERNS.items():
        for source in (ROOT / kind).glob(pattern):
            link = tmp_path / "share" / "mile_ros" / kind / source.name
            assert link.is_symlink() and link.resolve() == source.resolve() and link in made
    stale = tmp_path / "share" / "mile_ros" / "launch" / "gone.launch.py"
    stale.symlink_to(tmp_path / "nowhere")
    paths.link_into(tmp_path)  # again: links of files since removed are dropped
    assert not stale.is_symlink()
    scripts = Path(sysconfig.get_path("scripts"))
    for name in paths.console_scripts():
        if (scripts / name).is_file():
            assert (tmp_path / "lib" / "mile_ros" / name).resolve() == (scripts / name).resolve()
