"""Where mile_ros's data files are: ``config/*.yaml``, ``sim/*.yaml`` presets, ``launch/*.launch.py``.

One lookup for every way the package can be present. The data travels with the code that is
running, so the places are searched in this order:

1. the source tree the package was imported from (a checkout, or an editable install, whose module
   files stay in the checkout): ``<checkout>/config``, ``<checkout>/sim``, ``<checkout>/launch``;
2. the installation the package was imported from: ``<prefix>/share/mile_ros/...`` where ``<prefix>``
   is a folder above the installed module (a colcon install's ``install/mile_ros``, a venv or
   ``/usr/local`` after ``pip install .``, the ``--target`` folder of ``pip install --target``);
3. every prefix on ``AMENT_PREFIX_PATH`` that has mile_ros in its ament index;
4. the interpreter's data prefix (``sysconfig``'s ``data`` path, where pip puts ``data_files``).

A share directory counts only when its ``package.xml`` names mile_ros, so an unrelated ``share/``
or an empty folder is never taken. ``python -m mile_ros.paths [KIND/NAME ...]`` prints the places
and what is found where.

An editable install (``pip install -e .``) installs no data files, so ``ros2 launch mile_ros ...``
would not find the package. ``python -m mile_ros.paths --link-into PREFIX`` (run by
``scripts/setup.sh``) gives PREFIX what colcon and a wheel install would: the ament index marker,
``share/mile_ros/`` with links to the checkout's files, and ``lib/mile_ros/<script>`` links to the
console scripts (where launch_ros's ``Node`` and ``ros2 run`` look).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["KINDS", "PACKAGE", "DataNotFoundError", "data_roots", "find_data", "link_into", "source_tree"]

PACKAGE = "mile_ros"
# Each kind of data and the files of it that are installed (setup.py's data_files install the same).
PATTERNS = {"config": "*.yaml", "sim": "*.yaml", "launch": "*.launch.py"}
KINDS = tuple(PATTERNS)
INDEX_MARKER = Path("share", "ament_index", "resource_index", "packages", PACKAGE)
_MODULE_DIR = Path(__file__).resolve().parent


class DataNotFoundError(FileNotFoundError):
    """A data file none of the searched places holds; the message lists the places."""


def _is_package_root(root: Path) -> bool:
    """``root/package.xml`` exists and names this package."""
    try:
        name = ET.parse(root / "package.xml").getroot().findtext("name")
    except (OSError, ET.ParseError):
        return False
    return (name or "").strip() == PACKAGE


def source_tree() -> Path | None:
    """The checkout this module was imported from (source tree or editable install), else None."""
    root = _MODULE_DIR.parent
    return root if (root / "setup.py").is_file() and _is_package_root(root) else None


def _ament_prefixes() -> list[Path]:
    prefixes = []
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / INDEX_MARKER).is_file():
            prefixes.append(Path(entry))
    return prefixes


def data_roots() -> list[Path]:
    """Folders holding the package's data (each with ``config/``, ``sim/``, ``launch/``), best first."""
    candidates: list[Path] = []
    if tree := source_tree():
        candidates.append(tree)
    # The installation this module belongs to: share/ sits beside lib/ (or site-packages' folder for
    # pip --target), so look above the module for the first folder whose share/ holds the package.
    for prefix in _MODULE_DIR.parents:
        if _is_package_root(prefix / "share" / PACKAGE):
            candidates.append(prefix / "share" / PACKAGE)
            break
    candidates += [prefix / "share" / PACKAGE for prefix in _ament_prefixes()]
    candidates += [Path(sysconfig.get_path("data")) / "share" / PACKAGE, Path(sys.prefix) / "share" / PACKAGE]
    roots: list[Path] = []
    for root in candidates:
        if root not in roots and _is_package_root(root):
            roots.append(root)
    return roots


def find_data(kind: str, name: str) -> Path:
    """The file ``name`` of ``kind`` (one of :data:`KINDS`) from the first root that has it.

    Raises :class:`DataNotFoundError` naming every folder searched.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of data {kind!r}; kinds: {', '.join(KINDS)}")
    if not name or Path(name).name != name:
        raise ValueError(f"a data file name without folders, got {name!r}")
    roots = data_roots()
    for root in roots:
        path = root / kind / name
        if path.is_file():
            return path
    searched = ", ".join(str(r / kind) for r in roots) or (
        f"no mile_ros data folder at all: not a source checkout ({_MODULE_DIR.parent}), no share/{PACKAGE} "
        f"above {_MODULE_DIR} or under {sysconfig.get_path('data')}, none on AMENT_PREFIX_PATH"
    )
    raise DataNotFoundError(f"{kind}/{name} not found (searched: {searched})")


def _link(link: Path, target: Path) -> None:
    """``link`` -> ``target``, replacing whatever is at ``link`` in one step."""
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def console_scripts() -> list[str]:
    """The installed distribution's console scripts (``mile-ros`` and one per node)."""
    dist = importlib.metadata.distribution(PACKAGE)
    return sorted(e.name for e in dist.entry_points if e.group == "console_scripts")


def link_into(prefix: Path) -> list[Path]:
    """Register this checkout in the ament prefix ``prefix`` with links; returns what it made.

    File links, not folder links: ``ros2 launch`` lists a package's launch files with ``os.walk``,
    which does not follow a linked folder. Links left from files since removed are dropped. The
    scripts linked are this interpreter's (``sysconfig``'s scripts folder), as pip installed them.
    """
    tree = source_tree()
    if tree is None:
        raise RuntimeError(f"{_MODULE_DIR} is not in a checkout of {PACKAGE}: nothing to link (is it installed?)")
    prefix = Path(prefix).absolute()
    share = prefix / "share" / PACKAGE
    made = []
    for kind, pattern in PATTERNS.items():
        folder = share / kind
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_symlink():
                old.unlink()
        for source in sorted((tree / kind).glob(pattern)):
            _link(folder / source.name, source)
            made.append(folder / source.name)
    _link(share / "package.xml", tree / "package.xml")
    marker = prefix / INDEX_MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    made += [share / "package.xml", marker]
    scripts = Path(sysconfig.get_path("scripts"))
    lib = prefix / "lib" / PACKAGE
    lib.mkdir(parents=True, exist_ok=True)
    for name in console_scripts():
        if (scripts / name).is_file():
            _link(lib / name, scripts / name)
            made.append(lib / name)
    return made


def main(argv: list[str] | None = None) -> int:
    """Print the data roots, then where each ``KIND/NAME`` argument is found (exit 1 if one is not);
    or, with ``--link-into PREFIX``, register the checkout there."""
    parser = argparse.ArgumentParser(prog="python -m mile_ros.paths", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", metavar="KIND/NAME", help="e.g. config/sim.yaml")
    parser.add_argument("--link-into", type=Path, metavar="PREFIX", help="register this checkout in PREFIX")
    args = parser.parse_args(argv)
    if args.link_into is not None:
        try:
            made = link_into(args.link_into)
        except (RuntimeError, OSError, importlib.metadata.PackageNotFoundError) as exc:
            print(f"mile_ros.paths: cannot link into {args.link_into}: {exc}", file=sys.stderr)
            return 1
        print(f"{PACKAGE}: {len(made)} links and the ament index marker under {args.link_into}")
        return 0
    for root in data_roots():
        print(f"root: {root}")
    status = 0
    for arg in args.files:
        kind, _, name = arg.partition("/")
        try:
            print(f"{arg}: {find_data(kind, name)}")
        except (DataNotFoundError, ValueError) as exc:
            print(f"{arg}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
