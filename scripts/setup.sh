#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install mile_ros into it.
#   scripts/setup.sh            core + ROS 2 (rclpy from PyPI) + simulation + robot I/O, torch 2.13.0 CPU (~2 GB)
#   scripts/setup.sh --vision   adds torchvision 0.29.1 for the R3M encoder; moves torch to 2.14.1 (~5.5 GB)
#   scripts/setup.sh --test     adds the test tools (pytest, ruff, colcon); implies --vision. Where the
#                               vendored ROS 2 launch stack is there ($ROS2_LAUNCH_VENDOR, default
#                               ../shared/vendor/ros2-launch), it installs it too (launch, launch_ros,
#                               launch_testing, launch_pytest, `ros2 launch`), with pytest pinned to 7.4.4
# The editable install is then registered in .venv's ament prefix (python -m mile_ros.paths --link-into
# .venv), so `ros2 launch mile_ros ...` finds the package with AMENT_PREFIX_PATH=$PWD/.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="ros,sim,robot"
vision=0
testing=0
for arg in "$@"; do
  case "$arg" in
    --vision) vision=1 ;;
    --test) vision=1; testing=1; extras="$extras,test" ;;
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
# An empty ROS2_LAUNCH_VENDOR leaves the stack out (then the launch tests need a ROS 2 distribution).
vendor=${ROS2_LAUNCH_VENDOR-../shared/vendor/ros2-launch}
launch_stack=0
[ "$testing" = 1 ] && [ -n "$vendor" ] && [ -f "$vendor/install.sh" ] && launch_stack=1
pins=()
# launch_testing's and launch_pytest's pytest plugins break pytest >= 8 (the vendor's README). The pin
# goes in the same pip command as colcon, whose pytest-rerunfailures would otherwise pull pytest 9.
[ "$launch_stack" = 1 ] && pins+=("pytest==7.4.4")
pip_install -e ".[$extras]" "${pins[@]}"
if [ "$launch_stack" = 1 ]; then
  # install.sh takes ~30 s and is rerunnable: run it when the stack or the vendored copy changed.
  stamp=.venv/.ros2-launch-installed
  want=$(cat "$vendor/install.sh" "$vendor/README.md" | sha256sum | cut -d" " -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import launch_pytest, launch_ros, ros2launch" 2>/dev/null; then
    bash "$vendor/install.sh" .venv/bin/python
    echo "$want" >"$stamp"
  fi
fi
.venv/bin/python -m mile_ros.paths --link-into .venv
stack=""
[ "$launch_stack" = 1 ] && stack="; ROS 2 launch stack: export AMENT_PREFIX_PATH=$PWD/.venv for ros2 launch"
echo "mile_ros installed in .venv (extras: $extras; $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')$stack)"
