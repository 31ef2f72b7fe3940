#!/usr/bin/env bash
# Runs the test suite inside the project environment (env.sh). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/env.sh"
# A fresh DDS domain per run, so concurrent runs (and other users) never see each other.
export ROS_DOMAIN_ID="${ROS3D_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
cd "$ROOT"
exec python -m pytest "$@"
