"""`lerobot_policy_surgvla`: the LeRobot plugin distribution for surgbot's VLA policy.

LeRobot 0.4.4 (`lerobot.utils.import_utils.register_third_party_plugins`)
imports every installed distribution whose name starts with `lerobot_policy_`
before it parses `--policy.type`; importing this one registers the `surgvla`
config, so `lerobot-train --policy.type=surgvla` works.  The code itself lives
in surgbot (`surgbot.policies.vla`); this distribution only points at it.
Installed by scripts/bootstrap.sh: `pip install --no-deps --no-build-isolation -e packaging/lerobot_policy_surgvla`.
"""

from setuptools import setup

setup(
    name="lerobot_policy_surgvla",
    version="0.1.0",
    packages=["lerobot_policy_surgvla"],
    install_requires=["surgbot", "lerobot==0.4.4"],
    description="LeRobot plugin: registers surgbot's surgvla policy type",
    license="Apache-2.0",
    python_requires=">=3.10",
)
