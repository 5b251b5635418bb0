#!/usr/bin/env bash
# Set up the test environment (.venv with every extra, torchvision included), run the lint, then the tests.
#   scripts/test.sh          lint + the whole suite (CI runs this)
#   scripts/test.sh --fast   lint + the fast tier, the tests not marked slow (test/conftest.py): for every change
# Other arguments go to pytest, e.g. scripts/test.sh --fast -k learning
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(test) name="the whole suite"
args=()
for arg in "$@"; do
  if [ "$arg" = --fast ]; then tier=(test -m "not slow") name="the fast tier (-m 'not slow')"; else args+=("$arg"); fi
done
bash scripts/setup.sh --test
# shellcheck disable=SC1091
source .venv/bin/activate
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy MUJOCO_GL=${MUJOCO_GL:-egl} MPLBACKEND=Agg
echo "== ruff"
ruff check .
ruff format --check mile_ros/learning test/test_learning_*.py
echo "== pytest: $name"
rc=0
python -m pytest -p no:cacheprovider -rs --durations=25 "${tier[@]}" ${args[@]+"${args[@]}"} || rc=$?
# pytest exits 5 when it collects no test (a -k or -m that matches nothing, every module skipped):
# that tested nothing, so it fails here as any other error does.
if [ "$rc" = 5 ]; then echo "scripts/test.sh: no test was collected, which counts as a failure" >&2; fi
exit "$rc"
