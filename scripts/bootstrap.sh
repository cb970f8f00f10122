#!/usr/bin/env bash
# Bootstrap everything `make demo` / `make test` need on a fresh Debian 12 /
# Ubuntu 24.04 machine: apt packages, a .venv on a supported Python (3.11 or
# 3.12), the pinned packages of that Python's lock (requirements/lock-pyX.Y.txt),
# cyclonedds 0.10.2 built against the distribution's libddsc, and surgbot
# itself (editable).  Re-running is a no-op when nothing changed.
#   SURGBOT_PYTHON=/path/to/python   use this interpreter (must be a supported version)
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED=(3.12 3.11)       # newest first is only the search order; the default is what the machine has
APT_PACKAGES=(cyclonedds-dev libosmesa6 libegl1 libgl1 libglx-mesa0 libgles2 ffmpeg ca-certificates)
# --- teleop console (issue 12): Chromium for the page's browser tests, Node.js + npm for its assets ---
APT_PACKAGES+=(chromium chromium-driver)
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)   # a Node.js that bundles npm counts
# --- end teleop console ---
VENV=.venv
STAMP=$VENV/.surgbot-stamp

say() { echo "[bootstrap] $*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# A shell with a system ROS 2 sourced (/opt/ros/<distro>/setup.bash) puts that
# distribution's Python packages and libraries first: mixed with the venv's
# PyPI ROS 2 wheels, rclpy loads the wrong typesupport libraries.
if [ -n "${ROS_DISTRO:-}" ] || [[ "${AMENT_PREFIX_PATH:-}" == *"/opt/ros/"* ]]; then
  say "error: this shell has ROS 2 ${ROS_DISTRO:-} sourced (${AMENT_PREFIX_PATH:-}); the .venv brings its own ROS 2 client from PyPI and the two must not be mixed. Use a new shell that does not source /opt/ros/*/setup.bash, or build with colcon against the system ROS (README: 'On a machine with ROS 2 installed')"
  exit 2
fi

py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
is_supported() { local v; for v in "${SUPPORTED[@]}"; do [ "$1" = "$v" ] && return 0; done; return 1; }
# Interpreter to use: SURGBOT_PYTHON, else python3.11 (Debian 12's, what CI and
# the lock were first tested with), else python3.12 (Ubuntu 24.04's), else python3.
if [ -n "${SURGBOT_PYTHON:-}" ]; then
  v=$(py_version "$SURGBOT_PYTHON") || true
  if [ -z "$v" ]; then say "error: SURGBOT_PYTHON=$SURGBOT_PYTHON does not run"; exit 2; fi
  if ! is_supported "$v"; then say "error: SURGBOT_PYTHON is Python $v; supported: ${SUPPORTED[*]}"; exit 2; fi
fi
find_python() {
  local c v
  if [ -n "${SURGBOT_PYTHON:-}" ]; then command -v "$SURGBOT_PYTHON"; return 0; fi
  for c in python3.11 python3.12 python3; do
    command -v "$c" >/dev/null || continue
    v=$(py_version "$c") || continue
    if is_supported "$v"; then command -v "$c"; return 0; fi
  done
  return 1
}

# 1. apt packages (only the missing ones; dpkg-query is fast)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
PYTHON=$(find_python || true)
if [ -z "$PYTHON" ]; then missing+=(python3 python3-venv python3-dev); fi
if [ -n "$PYTHON" ] && [ "${PYTHON#/usr/bin/}" != "$PYTHON" ]; then
  # the distribution's interpreter needs its venv module and headers (cyclonedds builds against them)
  pv=$(py_version "$PYTHON")
  for p in "python$pv-venv" "python$pv-dev"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  PYTHON=$(find_python || true)
fi
if [ -z "$PYTHON" ]; then
  say "error: no supported Python found (supported: ${SUPPORTED[*]}). Debian 12 ships 3.11 (apt install python3.11 python3.11-venv python3.11-dev), Ubuntu 24.04 ships 3.12 (apt install python3.12 python3.12-venv python3.12-dev); or point SURGBOT_PYTHON at one (e.g. from pyenv)"
  exit 2
fi
PYV=$(py_version "$PYTHON")
LOCK=requirements/lock-py$PYV.txt
if [ ! -f "$LOCK" ]; then say "error: no lock for Python $PYV ($LOCK)"; exit 2; fi

# --- teleop console web assets (issue 12): IWER (WebXR emulation) from the npm registry, pinned by
# teleop/web/package-lock.json; reinstalled only when the lock changes.  The console serves them itself.
WEB=teleop/web
web_want=$(cat "$WEB/package.json" "$WEB/package-lock.json" | sha256sum | cut -c1-16)
if [ "$(cat "$WEB/node_modules/.surgbot-stamp" 2>/dev/null)" != "$web_want" ]; then
  say "installing the console page's npm packages ($WEB/package-lock.json)"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >&2) || { say "error: npm ci failed in $WEB"; exit 1; }
  echo "$web_want" > "$WEB/node_modules/.surgbot-stamp"
fi
# --- end teleop console web assets ---

# 2. the venv, rebuilt when the lock or this script changes
want=$( (echo "$PYV"; cat "$LOCK" "$0" setup.py packaging/lerobot_policy_surgvla/setup.py) | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  bash scripts/build_interfaces.sh "$VENV"   # section "ROS 2 interface packages" below; no-op when built
  exit 0
fi
if [ -x "$VENV/bin/python" ] && [ "$(py_version "$VENV/bin/python")" != "$PYV" ]; then
  say "$VENV is Python $(py_version "$VENV/bin/python"), $PYV asked: recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON (Python $PYV)"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade "pip==26.3"   # setuptools and wheel come pinned from the lock

# cyclonedds 0.10.2 (the G1's own DDS version) builds against Debian's libddsc:
# its setup looks for $CYCLONEDDS_HOME/{include,bin,lib/libddsc.so}.
CDDS_HOME="$PWD/$VENV/cyclonedds-home"
mkdir -p "$CDDS_HOME"
ln -sfn /usr/include "$CDDS_HOME/include"
ln -sfn /usr/bin "$CDDS_HOME/bin"
ln -sfn "/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)" "$CDDS_HOME/lib"

say "installing pinned packages from $LOCK (first run takes a few minutes)"
log="$VENV/pip-install.log"
# --no-deps: the lock is complete (every dependency pinned).  It also keeps
# unitree-sdk2py-dimos's declared opencv-python out: lerobot's
# opencv-python-headless provides the same cv2, and two wheels owning cv2 break it.
if ! CYCLONEDDS_HOME="$CDDS_HOME" "$VENV/bin/python" -m pip install --progress-bar off --no-deps -r "$LOCK" >"$log" 2>&1; then
  grep -v "is ignored: it is neither" "$log" | tail -30 >&2; say "error: pip install failed (full log: $log)"; exit 1
fi
if ! "$VENV/bin/python" -m pip install --no-deps --no-build-isolation -e . >>"$log" 2>&1; then
  grep -v "is ignored: it is neither" "$log" | tail -30 >&2; say "error: installing surgbot failed"; exit 1
fi
# VLA policy: LeRobot plugin distribution `lerobot_policy_surgvla` (LeRobot imports every installed
# distribution named lerobot_policy_*, which registers policy type `surgvla` for lerobot-train).
if ! "$VENV/bin/python" -m pip install --no-deps --no-build-isolation -e packaging/lerobot_policy_surgvla >>"$log" 2>&1; then
  grep -v "is ignored: it is neither" "$log" | tail -30 >&2; say "error: installing the lerobot_policy_surgvla plugin failed"; exit 1
fi
"$VENV/bin/python" -c "import rclpy, mujoco, pinocchio, unitree_sdk2py, cyclonedds" \
  || { say "error: the venv does not import its core packages"; exit 1; }
echo "$want" > "$STAMP"
say "ready: $VENV"

# ---- ROS 2 interface packages (crtk_msgs, issue 10) ---------------------------
# The dVRK's crtk_msgs built with the ROS wheels into $VENV/opt/crtk_msgs
# (found at run time by surgbot/hw/crtk_msgs_path.py).  Also called on the
# venv-up-to-date path above; the script skips the build when its hash stamp
# matches (definitions, ros-* wheel versions, interpreter).
bash scripts/build_interfaces.sh "$VENV"
# ---- end ROS 2 interface packages ---------------------------------------------
