#!/usr/bin/env bash
# Set up .venv and run the main job: a simulated intervention-learning session on the ROS 2 graph
# (Metaworld drawer-open, simulated human, rosbag2 recording, MILE updates) into runs/quickstart.
# Arguments replace the defaults, e.g. scripts/quickstart.sh --task peg-insert-side-v3 --iterations 5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl} MPLBACKEND=Agg
if [ "$#" -eq 0 ]; then
  set -- --task drawer-open-v3 --iterations 5 --episodes 1 --out runs/quickstart
fi
exec .venv/bin/mile-ros sim "$@"
