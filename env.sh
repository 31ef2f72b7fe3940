# Source this file (". env.sh") before running anything of ros3d_agent by hand; the Makefile,
# the demo, the tests and CI source it too. It is the one place that sets the environment.

_ros3d_here="${BASH_SOURCE[0]:-${(%):-%x}}"
ROS3D_ROOT="$(cd "$(dirname "$_ros3d_here")" && pwd)"
export ROS3D_ROOT
unset _ros3d_here

# The venv made by scripts/setup.sh (ROS 2 wheels + ML stack + our interfaces).
if [ -f "${ROS3D_VENV:-$ROS3D_ROOT/.venv}/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "${ROS3D_VENV:-$ROS3D_ROOT/.venv}/bin/activate"
else
  echo "env.sh: no venv yet; run 'make setup' (scripts/setup.sh) first" >&2
fi

# DDS discovery stays on this machine unless you ask otherwise (ROS3D_DISCOVERY_RANGE=SUBNET
# on a robot whose nodes span hosts). Kilted ignores ROS_LOCALHOST_ONLY; this is its successor.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS3D_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"

# The PyPI wheels carry Fast DDS only: any other RMW makes 'import rclpy' exit with code 102.
if [ -z "${ROS_DISTRO:-}" ] || [ "${ROS3D_ROS_SOURCE:-}" = wheels ]; then
  unset RMW_IMPLEMENTATION
fi

# Shared-memory transport with segments big enough for 30 Hz RGB-D (see the XML's comment).
if [ "${ROS3D_DDS_PROFILE:-shm}" = shm ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE="$ROS3D_ROOT/config/fastdds_shm_large_images.xml"
else
  unset FASTDDS_DEFAULT_PROFILES_FILE
fi

# ament_index (share/ lookups) finds our package and interfaces in the venv prefix.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";;
  esac
fi

# Nothing downloads at run time: models and tokenizers load from local paths only.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1
