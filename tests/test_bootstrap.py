"""The bootstrap's choice of Python (README: supported platforms).

Runs scripts/bootstrap.sh up to its interpreter check with a PATH that holds
only what that part needs, so no apt or pip command reaches the machine: the
apt tools are stand-ins at the edge of the system (the thing under test is
the script's decision and its message).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("bash", "dirname", "cat", "grep", "id", "sha256sum", "cut", "rm", "mkdir", "ln", "gcc", "sed", "head")


def _fake_python(path: Path, version: str) -> None:
    path.write_text(f"#!/bin/bash\n# stand-in interpreter that only reports its version\n"
                    f"[ \"$1\" = -c ] && {{ echo {version}; exit 0; }}\nexit 1\n")
    path.chmod(0o755)


def _sandbox(tmp_path: Path, pythons: dict[str, str]) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    # dpkg-query reports every package installed; apt-get must not be reached
    (bin_dir / "dpkg-query").write_text("#!/bin/bash\necho 'install ok installed'\n")
    (bin_dir / "apt-get").write_text("#!/bin/bash\necho apt-get-called >&2\nexit 0\n")
    for f in ("dpkg-query", "apt-get"):
        (bin_dir / f).chmod(0o755)
    for name, version in pythons.items():
        _fake_python(bin_dir / name, version)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "bootstrap.sh")], env=env, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_no_supported_python_says_which_and_how_with_exit_2(tmp_path):
    env = _sandbox(tmp_path, {"python3": "3.13"})
    out = _run(env)
    assert out.returncode == 2, out.stderr
    assert "supported: 3.12 3.11" in out.stderr
    assert "apt install python3.11" in out.stderr and "SURGBOT_PYTHON" in out.stderr


def test_surgbot_python_of_an_unsupported_version_is_refused(tmp_path):
    env = _sandbox(tmp_path, {"python3.10": "3.10"})
    env["SURGBOT_PYTHON"] = str(tmp_path / "bin" / "python3.10")
    out = _run(env)
    assert out.returncode == 2
    assert "Python 3.10; supported: 3.12 3.11" in out.stderr
    assert "apt-get-called" not in out.stderr


def test_each_supported_python_has_a_complete_lock():
    for version in ("3.11", "3.12"):
        lock = REPO / "requirements" / f"lock-py{version}.txt"
        pins = [ln for ln in lock.read_text().splitlines() if ln and not ln.startswith("#")]
        assert all("==" in p for p in pins), lock
        names = {p.split("==")[0].lower() for p in pins}
        for needed in ("ros-rclpy", "mujoco", "pin", "torch", "lerobot", "cyclonedds", "unitree-sdk2py-dimos"):
            assert needed in names, (lock, needed)


def test_this_interpreter_is_supported():
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in ("3.11", "3.12")


def test_a_shell_with_system_ros_sourced_is_refused(tmp_path):
    env = _sandbox(tmp_path, {"python3.11": "3.11"})
    env.update(ROS_DISTRO="jazzy", AMENT_PREFIX_PATH="/opt/ros/jazzy")
    out = _run(env)
    assert out.returncode == 2
    assert "must not be mixed" in out.stderr and "apt-get-called" not in out.stderr
