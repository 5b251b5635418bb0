"""ament_python package definition for mile_ros (also installs with pip alone)."""

import ast
import os
import sys
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mile_ros"


def node_names() -> list:
    """Nodes: one module each under mile_ros/nodes/, one console script each. The list is
    ``NODE_GROUPS`` in mile_ros/nodes/__init__.py, read as a literal: importing the package here
    would need rclpy and torch at build time (colcon, pip)."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), PACKAGE, "nodes", "__init__.py")
    with open(source, encoding="utf-8") as f:
        tree = ast.parse(f.read(), source)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "NODE_GROUPS" for t in stmt.targets):
            return [name for group in ast.literal_eval(stmt.value).values() for name in group]
    raise RuntimeError(f"{source} defines no NODE_GROUPS literal")


NODES = node_names()
SCRIPTS = ["mile-ros", *NODES]


def libexec_wrappers() -> list:
    """``lib/mile_ros/<script>`` for a wheel (``pip install .``): where ``ros2 run`` and launch_ros's
    ``Node`` look for a package's executables. pip puts console scripts in ``<prefix>/bin`` only
    (setup.cfg's install_scripts is colcon's), so each wrapper runs ``<prefix>/bin/<script>``, which
    carries the right interpreter. Only for a wheel: colcon's ``setup.py install`` puts the scripts
    themselves in lib/mile_ros, and its install_data would overwrite them with these."""
    if "bdist_wheel" not in sys.argv:
        return []
    out = os.path.join("build", "libexec")
    os.makedirs(out, exist_ok=True)
    files = []
    for script in SCRIPTS:
        path = os.path.join(out, script)
        with open(path, "w", encoding="utf-8") as f:
            f.write(f'#!/bin/sh\nexec "$(dirname "$0")/../../bin/{script}" "$@"\n')
        os.chmod(path, 0o755)
        files.append(path)
    return [(f"lib/{PACKAGE}", files)]


ROS = [
    "ros-kilted-rclpy[fastrtps]",
    "ros-kilted-std-msgs",
    "ros-kilted-sensor-msgs",
    "ros-kilted-geometry-msgs",
    "ros-kilted-std-srvs",
    "ros-kilted-rosgraph-msgs",
    "ros-kilted-builtin-interfaces",
    "rich>=13",  # mile-ros screen, the operator's terminal view
]
SIM = [
    "metaworld==3.1.1",
    "mujoco==3.3.0",
    "gymnasium>=1.0,<2",
    "packaging",
    "box2d==2.3.10",
    "stable-baselines3>=2.3,<3",
    "matplotlib>=3.7",
]
# DDS security's keystore (mile-ros security create): keys, certificates, S/MIME signatures.
SECURITY = ["cryptography>=42"]
ROBOT = ["opencv-python-headless>=4.8", "pygame>=2.5,<3"]
# torchvision 0.29.1 exists here only beside torch 2.14.1 (a 5.5 GB CUDA build that runs on CPU).
VISION = ["torchvision==0.29.1", *ROBOT]
TEST = [
    "pytest>=7.4",
    "ruff>=0.6",
    "colcon-core",
    "colcon-ros",
    "colcon-python-setup-py",
    "colcon-package-selection",
    "colcon-output",
    "colcon-library-path",
    "colcon-defaults",
    "pyarrow>=15",
    "pandas>=2",
    "pillow>=10",  # mile-ros export --lerobot, tested (the lerobot extra)
    "foxglove-sdk>=0.30",  # mile-ros sim --foxglove (the foxglove extra) and, beside it, the tests' client
    "websockets>=13",
    "ray>=2.40,<3",  # mile-ros benchmark --backend ray, tested on a local head (the ray extra)
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.json")),
        (f"share/{PACKAGE}/sim", glob("sim/*.yaml")),
        *libexec_wrappers(),
    ],
    python_requires=">=3.11",
    install_requires=[
        "numpy>=1.26",
        # 2.13.0 is the small CPU build; the vision extra moves it to 2.14.1 for torchvision.
        "torch>=2.13.0,<=2.14.1",
        "scipy>=1.11",
        "pyyaml>=6",
        "tqdm>=4.66",
        "rosbags>=0.10",
    ],
    extras_require={
        "ros": ROS + SECURITY,
        "security": SECURITY,
        "sim": SIM,
        "robot": ROBOT,
        "vision": VISION,
        "test": TEST,
        "lerobot": ["pyarrow>=15", "pandas>=2", "pillow>=10"],  # mile-ros export (LeRobotDataset v3.0)
        "foxglove": ["foxglove-sdk>=0.30"],  # mile-ros sim --foxglove: the live view
        "ray": ["ray>=2.40,<3"],  # mile-ros benchmark --backend ray
        "all": ROS + SECURITY + SIM + VISION + TEST,
    },
    zip_safe=True,
    maintainer="mile_ros developers",
    maintainer_email="mile-ros@example.org",
    description="MILE (Model-based Intervention Learning) on ROS 2: learn a robot policy from human interventions.",
    license="MIT",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "mile-ros = mile_ros.cli:main",
            *[f"{node} = mile_ros.nodes.{node}:main" for node in NODES],
        ],
    },
)
