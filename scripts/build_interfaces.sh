#!/usr/bin/env bash
# Build the ROS 2 interface package ros2_ws/src/crtk_msgs (the dVRK's CRTK
# messages) with the ROS 2 PyPI wheels of the venv, without a ROS install,
# into <venv>/opt/crtk_msgs.  surgbot/hw/crtk_msgs_path.py finds it there at
# run time (no sourcing needed).  Rebuilds only when the definitions, the ROS
# wheels in the lock or this script change (hash stamp); ~15-60 s otherwise.
#
#   scripts/build_interfaces.sh [VENV]      (default .venv; called by scripts/bootstrap.sh)
#
# Needs: g++, Python.h (python3.X-dev for the venv's interpreter), the ros-* build wheels of
# requirements/lock-pyX.Y.txt (ament_cmake, rosidl_default_generators) in the venv.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."

VENV=${1:-.venv}
VENV=$(cd "$VENV" && pwd)
PKG=$PWD/ros2_ws/src/crtk_msgs
PREFIX=$VENV/opt/crtk_msgs
STAMP=$PREFIX/.surgbot-stamp
PY=$VENV/bin/python

say() { echo "[build_interfaces] $*" >&2; }

PYV=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
LOCK=requirements/lock-py$PYV.txt

# Everything the generated code depends on: the definitions, the build
# files, this script, the ROS wheels (their versions), the interpreter.
want=$( { find "$PKG" -type f \( -name '*.msg' -o -name '*.srv' -o -name CMakeLists.txt -o -name package.xml \) \
            -print0 | sort -z | xargs -0 sha256sum | sed "s|$PKG/||";
          grep -E '^ros-' "$LOCK"; cat "$SELF"; "$PY" -c 'import sys; print(sys.version)'; } \
        | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

# A C/C++ compiler and Python.h: installed with apt when missing (as the bootstrap does).
pyinc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
[ -f "$pyinc/Python.h" ] || missing+=("python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-dev")
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v g++ >/dev/null && command -v make >/dev/null && [ -f "$pyinc/Python.h" ] \
  || { say "error: g++, make and $pyinc/Python.h are required"; exit 2; }
CMAKE=$VENV/bin/cmake
[ -x "$CMAKE" ] || CMAKE=$(command -v cmake || true)
[ -n "$CMAKE" ] || { say "error: cmake is required"; exit 2; }
[ -d "$VENV/share/ament_cmake" ] && [ -d "$VENV/share/rosidl_default_generators" ] || {
  say "error: $VENV lacks the ament_cmake / rosidl_default_generators wheels (pinned in $LOCK)"; exit 2; }

say "building crtk_msgs into $PREFIX"
mkdir -p "$VENV/opt"
work=$(mktemp -d "$VENV/opt/.crtk_msgs-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/build.log
stage=$work/install
t0=$(date +%s)
# The venv root is a ROS prefix (share/<pkg>/cmake, lib/, the ament index);
# unset a sourced ROS environment so the build uses the wheels it runs with.
if ! env -u COLCON_PREFIX_PATH -u ROS_DISTRO \
     AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PYTHONPATH="" \
     CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" bash -c '
  set -e
  "$0" -S "$1" -B "$2/build" -DCMAKE_INSTALL_PREFIX="$3" -DCMAKE_BUILD_TYPE=Release \
       -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$4" -DPython3_FIND_STRATEGY=LOCATION
  "$0" --build "$2/build"
  "$0" --install "$2/build"
' "$CMAKE" "$PKG" "$work" "$stage" "$PY" >"$log" 2>&1; then
  tail -40 "$log" >&2
  say "error: building crtk_msgs failed"
  exit 1
fi
PYVER=$("$PY" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
[ -d "$stage/lib/$PYVER/site-packages/crtk_msgs" ] || { tail -20 "$log" >&2; say "error: no Python package installed"; exit 1; }
echo "$want" > "$stage/.surgbot-stamp"
# Swap the finished prefix in whole: a reader never sees a half-built one.
rm -rf "$PREFIX.old"
[ -d "$PREFIX" ] && mv "$PREFIX" "$PREFIX.old"
mv "$stage" "$PREFIX"
rm -rf "$PREFIX.old"
say "crtk_msgs built in $(( $(date +%s) - t0 )) s ($(du -sh "$PREFIX" | cut -f1))"
