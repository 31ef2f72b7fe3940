#!/usr/bin/env bash
# One-step environment for ros3d_agent.
#
# Creates .venv (CPython 3.12; 3.10 or 3.13 when 3.12 is absent: the ROS 2 wheels exist for
# cp310/cp312/cp313 only), installs every dependency from PyPI, builds the project's own ROS
# interfaces (msg/ srv/ action/) with CMake + rosidl into the venv, and installs the package
# in editable mode. Every step is skipped when its inputs did not change, so a second run
# takes seconds.
#
# Two sources of ROS 2:
#   wheels  (default on x86_64)  ROS 2 Kilted from the ros-* PyPI wheels, inside the venv.
#   system  (default when a ROS 2 install is sourced, i.e. $ROS_DISTRO is set; the only option
#            on aarch64/Jetson)  rclpy and messages from /opt/ros/$ROS_DISTRO; the venv is made
#            with --system-site-packages and only the ML stack is pip-installed.
# Force one with ROS3D_ROS_SOURCE=wheels|system. Other knobs: ROS3D_PYTHON (interpreter),
# ROS3D_VENV (venv path), ROS3D_SKIP_ML=1 (ROS only, for a robot that runs no model).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROS3D_VENV:-$ROOT/.venv}"
STAMPS="$VENV/.ros3d-stamps"
T0=$(date +%s)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }
sha_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
is_root() { [ "$(id -u)" = 0 ]; }

# ---------------------------------------------------------------- ROS source
ARCH="$(uname -m)"
ROS_SOURCE="${ROS3D_ROS_SOURCE:-}"
if [ -z "$ROS_SOURCE" ]; then
  if [ -n "${ROS_DISTRO:-}" ] && [ -d "/opt/ros/${ROS_DISTRO}" ]; then ROS_SOURCE=system
  elif [ "$ARCH" = x86_64 ]; then ROS_SOURCE=wheels
  else
    die "no ROS 2 found: the ROS 2 PyPI wheels are x86_64-only and this machine is $ARCH.
       Install ROS 2 (Humble/Jazzy/Kilted) from apt, 'source /opt/ros/<distro>/setup.bash', and run this again
       (docs/INSTALL.md, section 'Jetson and existing ROS 2 installs')."
  fi
fi
case "$ROS_SOURCE" in
  wheels) [ "$ARCH" = x86_64 ] || die "ROS3D_ROS_SOURCE=wheels needs x86_64 (this is $ARCH)";;
  system) [ -n "${ROS_DISTRO:-}" ] || die "ROS3D_ROS_SOURCE=system needs a sourced ROS 2 install (source /opt/ros/<distro>/setup.bash)";;
  *) die "ROS3D_ROS_SOURCE must be 'wheels' or 'system', not '$ROS_SOURCE'";;
esac
log "ROS 2 from: $ROS_SOURCE${ROS_DISTRO:+ ($ROS_DISTRO)}; machine $ARCH; venv $VENV"

# ---------------------------------------------------------------- Python
python_ok() {  # usable interpreter of a supported version, with headers and venv
  "$1" - <<'EOF' >/dev/null 2>&1
import os, sys, sysconfig, venv
assert sys.version_info[:2] in ((3, 10), (3, 12), (3, 13))
assert os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
EOF
}
find_python() {
  if [ -n "${ROS3D_PYTHON:-}" ]; then echo "$ROS3D_PYTHON"; return; fi
  if [ "$ROS_SOURCE" = system ]; then echo /usr/bin/python3; return; fi  # must match the ROS build
  local v c
  for v in 3.12 3.10 3.13; do
    for c in "$(command -v "python$v" 2>/dev/null || true)" \
             "$HOME"/.pyenv/versions/"$v".*/bin/"python$v" /usr/bin/"python$v" /usr/local/bin/"python$v"; do
      [ -n "$c" ] && [ -x "$c" ] && python_ok "$c" && { echo "$c"; return; }
    done
  done
}

if [ -x "$VENV/bin/python" ] && python_ok "$VENV/bin/python"; then
  log "reusing $VENV ($("$VENV/bin/python" -V))"
else
  PY="$(find_python)"
  [ -n "$PY" ] || die "no CPython 3.12/3.10/3.13 with development headers found.
       Debian/Ubuntu: apt-get install python3.12 python3.12-venv python3.12-dev (or use pyenv); or set ROS3D_PYTHON."
  python_ok "$PY" || die "$PY is not a usable CPython 3.10/3.12/3.13 with headers (Python.h) and venv"
  log "creating $VENV with $PY ($("$PY" -V 2>&1))"
  rm -rf "$VENV"
  if [ "$ROS_SOURCE" = system ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
mkdir -p "$STAMPS"
PYV="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ---------------------------------------------------------------- Python dependencies
REQS=()
[ "$ROS_SOURCE" = wheels ] && REQS+=("$ROOT/requirements/ros-wheels.txt")
[ "${ROS3D_SKIP_ML:-0}" = 1 ] || REQS+=("$ROOT/requirements/ml.txt")
REQS+=("$ROOT/requirements/test.txt")
REQ_HASH="$(sha_of "${REQS[@]}")-$ROS_SOURCE-$PYV"
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" = "$REQ_HASH" ]; then
  log "Python dependencies unchanged: skipped"
else
  log "installing Python dependencies (first time: several minutes, about 7 GB with the CUDA build of torch)"
  args=(); for r in "${REQS[@]}"; do args+=(-r "$r"); done
  "$VENV/bin/python" -m pip install --progress-bar off "${args[@]}"
  "$VENV/bin/python" -m pip check || die "pip check found broken requirements (see above)"
  echo "$REQ_HASH" > "$STAMPS/requirements"
fi

# ---------------------------------------------------------------- system libraries
# open3d's wheel links libusb-1.0 without shipping it. Root: apt. Otherwise: unpack the
# Debian package and copy the library next to the venv, where open3d's RPATH finds it.
if [ "$ARCH" = x86_64 ] && [ "${ROS3D_SKIP_ML:-0}" != 1 ]; then
  if ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || ls "$VENV"/lib/libusb-1.0.so.0* >/dev/null 2>&1; then
    log "libusb-1.0 (for open3d): present"
  elif is_root && command -v apt-get >/dev/null; then
    log "installing libusb-1.0-0 with apt (for open3d)"
    apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0; }
  elif command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
    log "copying libusb-1.0 into $VENV/lib (no root; for open3d)"
    tmp="$(mktemp -d)"; (cd "$tmp" && apt-get download libusb-1.0-0 >/dev/null && dpkg -x libusb-1.0-0_*.deb x)
    cp -a "$tmp"/x/usr/lib/*/libusb-1.0.so.0* "$VENV/lib/"; rm -rf "$tmp"
  else
    die "open3d needs libusb-1.0: install it with your package manager (Debian/Ubuntu: libusb-1.0-0)"
  fi
fi

# ---------------------------------------------------------------- build tools for the interfaces
command -v cmake >/dev/null || [ -x "$VENV/bin/cmake" ] || { log "cmake not found: installing it into the venv from PyPI"; "$VENV/bin/python" -m pip install -q cmake; }
command -v ninja >/dev/null || [ -x "$VENV/bin/ninja" ] || { log "ninja not found: installing it into the venv from PyPI"; "$VENV/bin/python" -m pip install -q ninja; }
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null; then
  if is_root && command -v apt-get >/dev/null; then log "installing g++ with apt"; apt-get install -y -qq g++ >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq g++; }
  else die "a C++ compiler is needed to build the ROS interfaces (Debian/Ubuntu: apt-get install g++)"; fi
fi
export PATH="$VENV/bin:$PATH"

# ---------------------------------------------------------------- our ROS interfaces
if [ "$ROS_SOURCE" = wheels ]; then
  "$VENV/bin/python" "$ROOT/tools/fix_ros_wheel_cmake.py" --prefix "$VENV"
  PREFIX_PATH="$VENV"
else
  PREFIX_PATH="$VENV:${AMENT_PREFIX_PATH:-/opt/ros/$ROS_DISTRO}"
fi
# build_interfaces NAME SRC_DIR IMPORT_CHECK FILES...: CMake + rosidl build into the venv prefix,
# skipped when the hash of FILES is unchanged and the generated Python module imports.
build_interfaces() {
  local name="$1" src="$2" check="$3"; shift 3
  local hash; hash="$(sha_of "$@")-$PYV-$ROS_SOURCE"
  if [ "$(cat "$STAMPS/interfaces-$name" 2>/dev/null)" = "$hash" ] && "$VENV/bin/python" -c "$check" 2>/dev/null; then
    log "ROS interfaces $name unchanged: skipped"; return
  fi
  log "building ROS interfaces $name with CMake + rosidl into $VENV"
  local build="$ROOT/build/$name"
  mkdir -p "$ROOT/build"; rm -rf "$build"
  local gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S "$src" -B "$build" "${gen[@]}" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$PREFIX_PATH" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
        > "$ROOT/build/$name-configure.log" 2>&1 || { cat "$ROOT/build/$name-configure.log"; die "$name: configure failed"; }
  cmake --build "$build" -j"$(nproc)" > "$ROOT/build/$name-build.log" 2>&1 || { tail -50 "$ROOT/build/$name-build.log"; die "$name: build failed"; }
  cmake --install "$build" > /dev/null
  "$VENV/bin/python" -c "$check" || die "$name was built but does not import (see $ROOT/build/$name-build.log)"
  echo "$hash" > "$STAMPS/interfaces-$name"
}

# tf2_msgs (TFMessage for /tf, /tf_static) is not among the PyPI wheels; a ROS 2 install has its own.
TF2_DIR="$ROOT/interfaces/tf2_msgs"
if [ "$ROS_SOURCE" = wheels ] || ! "$VENV/bin/python" -c 'import tf2_msgs.msg' 2>/dev/null; then
  build_interfaces tf2_msgs "$TF2_DIR" 'import tf2_msgs.msg' "$TF2_DIR"/msg/*.msg "$TF2_DIR"/CMakeLists.txt "$TF2_DIR"/package.xml
else
  log "tf2_msgs: provided by ROS 2 $ROS_DISTRO"
fi
IFACE_DIR="$ROOT/interfaces/ros3d_agent_interfaces"
build_interfaces ros3d_agent_interfaces "$IFACE_DIR" \
  'import ros3d_agent_interfaces.msg, ros3d_agent_interfaces.srv, ros3d_agent_interfaces.action' \
  "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT"/action/*.action "$IFACE_DIR"/CMakeLists.txt "$IFACE_DIR"/package.xml

# ---------------------------------------------------------------- the package itself
PKG_HASH="$(sha_of "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml")-$PYV"
if [ "$(cat "$STAMPS/package" 2>/dev/null)" = "$PKG_HASH" ] && "$VENV/bin/python" -c 'import ros3d_agent' 2>/dev/null; then
  log "ros3d_agent (editable install): unchanged"
else
  log "installing ros3d_agent in editable mode"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$PKG_HASH" > "$STAMPS/package"
fi

log "done in $(elapsed). Next: 'source env.sh', then 'ros3d-agent doctor'."
