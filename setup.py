"""ament_python package `surgbot`; also a plain pip-installable distribution."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "surgbot"
AREAS = ("sim", "policies", "teleop", "bench")   # = surgbot.AREAS

# ROS 2 executables (contract section 1); each is also a console script.
NODES = {
    "sim_node": "surgbot.nodes.sim_node:main",
    "g1_bridge": "surgbot.nodes.g1_bridge:main",
    "endoscope_holder": "surgbot.nodes.endoscope_holder:main",
    "safety_supervisor": "surgbot.nodes.safety_supervisor:main",
    "recorder": "surgbot.nodes.recorder:main",
    "teleop_console": "surgbot.nodes.teleop_console:main",
    "teleop_mapper": "surgbot.nodes.teleop_mapper:main",
    "policy_node": "surgbot.nodes.policy_node:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    # The design card's top-level folders install inside the one `surgbot`
    # package (surgbot/__init__.py serves the same names in a source checkout).
    packages=find_packages(include=["surgbot", "surgbot.*"]) + [
        f"{PACKAGE}.{p}" for area in AREAS for p in find_packages(include=[area, f"{area}.*"])],
    package_dir={f"{PACKAGE}.{area}": area for area in AREAS},
    package_data={f"{PACKAGE}.sim": ["models/*.xml", "models/**/*.xml"],
                  f"{PACKAGE}.teleop": ["web/*.html", "web/*.js", "web/*.css", "web/package*.json"],
                  # the bundled VLA checkpoint (`--checkpoint default`, scripts/train_default_policy.sh)
                  f"{PACKAGE}.policies": ["vla/checkpoints/default/*.json", "vla/checkpoints/default/*.safetensors"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="surgbot developers",
    maintainer_email="surgbot@example.org",
    description="ROS 2 control stack for robot-assisted surgery (G1 endoscope holder, dVRK PSM, VLA).",
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{PACKAGE}=surgbot.cli:main"]
        + [f"{name}={target}" for name, target in NODES.items()],
    },
)
