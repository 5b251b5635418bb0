#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install mile_ros into it.
#   scripts/setup.sh            core + ROS 2 (rclpy from PyPI) + simulation + robot I/O, torch 2.13.0 CPU (~2 GB)
#   scripts/setup.sh --vision   adds torchvision 0.29.1 for the R3M encoder; moves torch to 2.14.1 (~5.5 GB)
#   scripts/setup.sh --test     adds the test tools (pytest, ruff, colcon); implies --vision
set -euo pipefail
cd "$(dirname "$0")/.."
extras="ros,sim,robot"
vision=0
for arg in "$@"; do
  case "$arg" in
    --vision) vision=1 ;;
    --test) vision=1; extras="$extras,test" ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
[ "$vision" = 1 ] && extras="$extras,vision"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if [ "$vision" = 1 ]; then
  pip_install "torch==2.14.1" "torchvision==0.29.1"
elif ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # The small CPU build; any other pin pulls a multi-GB CUDA build.
  pip_install "torch==2.13.0"
fi
pip_install -e ".[$extras]"
echo "mile_ros installed in .venv (extras: $extras; $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
