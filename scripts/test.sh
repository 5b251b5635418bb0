#!/usr/bin/env bash
# Set up the test environment (.venv with every extra, torchvision included) and run lint + the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k learning
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# shellcheck disable=SC1091
source .venv/bin/activate
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy MUJOCO_GL=${MUJOCO_GL:-egl} MPLBACKEND=Agg
echo "== ruff"
ruff check .
ruff format --check mile_ros/learning test/test_learning_*.py
echo "== pytest"
# pytest exits 5 when it collects no test: set -e turns that into a failure too.
python -m pytest -p no:cacheprovider -rs --durations=15 test "$@"
