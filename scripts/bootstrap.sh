#!/usr/bin/env bash
# Bootstrap everything `make demo` / `make test` need on a fresh Debian 12 /
# Ubuntu 24.04 machine: apt packages, a Python 3.11 .venv, pinned packages
# (requirements/lock.txt), cyclonedds 0.10.2 built against Debian's libddsc,
# and surgbot itself (editable).  Re-running is a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(cyclonedds-dev libosmesa6 libegl1 libgl1 libglx-mesa0 libgles2 ffmpeg ca-certificates)
VENV=.venv
STAMP=$VENV/.surgbot-stamp
LOCK=requirements/lock.txt

say() { echo "[bootstrap] $*" >&2; }

# 1. apt packages (only the missing ones; dpkg-query is fast)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
find_python() {
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$c"; return 0
    fi
  done
  return 1
}
PYTHON=$(find_python || true)
if [ -z "$PYTHON" ]; then missing+=(python3.11 python3.11-venv python3.11-dev); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  PYTHON=$(find_python || true)
fi
if [ -z "$PYTHON" ]; then
  say "error: Python 3.11 is required (the ROS 2 rclpy wheels are cp311); install python3.11 and python3.11-venv"
  exit 2
fi

# 2. the venv, rebuilt when the lock or this script changes
want=$(cat "$LOCK" "$0" setup.py packaging/lerobot_policy_surgvla/setup.py | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
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
