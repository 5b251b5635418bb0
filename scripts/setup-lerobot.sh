#!/usr/bin/env bash
# A separate environment, .venv-lerobot, with LeRobot's own dataset loader, to check `mile-ros export
# --lerobot` against it (test/test_export_lerobot.py). No LeRobot release that reads format v3.0 (0.4.x)
# installs beside the project's torch (they require torch < 2.11), so LeRobot 0.4.4 is installed
# without its dependency pins and uses .venv's torch and torchvision (linked in with a .pth file, so
# nothing is downloaded twice and .venv is never changed); only the loader's own libraries are added.
# Needs .venv (scripts/setup.sh --test). About 2 minutes and 270 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv: run scripts/setup.sh --test first" >&2; exit 2; }
PY=${PYTHON:-python3}
[ -x .venv-lerobot/bin/python ] || "$PY" -m venv .venv-lerobot
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
# Appended after .venv-lerobot's own site-packages: its packages win where both have one.
site_of .venv/bin/python > "$(site_of .venv-lerobot/bin/python)/mile_ros_venv.pth"
pip_install() { .venv-lerobot/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
pip_install --no-deps "lerobot==0.4.4"
# The libraries lerobot.datasets imports, in the ranges LeRobot 0.4.4 asks for.
pip_install "datasets>=4.0,<5" "huggingface-hub>=0.34.2,<0.36" "accelerate>=1.10,<2" "av>=15,<16" \
  "jsonlines>=4,<5" "draccus==0.10.0" "deepdiff>=7,<9" "termcolor>=2.4,<4" pandas pyarrow \
  "numpy<2.4"  # LeRobot 0.4.4 writes (1,)-shaped values with float(array), which numpy 2.4 refuses
.venv-lerobot/bin/python -c "import lerobot, torch; from lerobot.datasets.lerobot_dataset import LeRobotDataset; print('lerobot', lerobot.__version__, 'torch', torch.__version__)"
