#!/usr/bin/env bash
# The README's main command after set-up: the environment check, then a synthetic robot's rosbag
# replayed in real time into the live node, with grounded questions answered and scored.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/env.sh"
# A fresh DDS domain per run, so concurrent runs (and other users) never see each other.
export ROS_DOMAIN_ID="${ROS3D_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
cd "$ROOT"
exec ros3d-agent demo "$@"
