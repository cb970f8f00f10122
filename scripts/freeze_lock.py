"""Write requirements/lock-pyX.Y.txt (this interpreter's version) from the current .venv.

`pip freeze` also lists the `.egg-info` records that the ROS 2 PyPI wheels
carry inside them (action_msgs, builtin_interfaces, ...): those are not
installable distributions, so only `.dist-info` ones are kept.  Developer
tools that the project does not need are left out.

    .venv/bin/python scripts/freeze_lock.py
"""

import sys
from importlib.metadata import distributions
from pathlib import Path

# ours (surgbot and its LeRobot plugin install from this checkout) and developer tools
SKIP = {"surgbot", "lerobot_policy_surgvla", "lerobot-policy-surgvla",
        "py-spy", "pyflakes", "line-profiler", "line_profiler"}
HEADER = """\
# Exact versions tested together (Python {version}). Regenerate from a venv that passed `make test`:
#   .venv/bin/python scripts/freeze_lock.py
# cyclonedds builds from source against Debian's cyclonedds-dev (scripts/bootstrap.sh sets CYCLONEDDS_HOME).
# Installed with --no-deps: complete, and opencv-python-headless (lerobot) is the one cv2 (see bootstrap.sh).
"""


def main() -> None:
    pins = {}
    for dist in distributions():
        path = getattr(dist, "_path", None)
        name = dist.metadata["Name"]
        if not name or path is None or not str(path).endswith(".dist-info"):
            continue
        if name.lower() in SKIP:
            continue
        pins[name.lower()] = f"{name}=={dist.version}"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    lock = Path(__file__).resolve().parents[1] / "requirements" / f"lock-py{version}.txt"
    lock.write_text(HEADER.format(version=version) + "\n".join(pins[k] for k in sorted(pins)) + "\n")
    print(f"{lock}: {len(pins)} pins")


if __name__ == "__main__":
    main()
